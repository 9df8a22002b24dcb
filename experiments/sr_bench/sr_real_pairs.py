r"""SR fidelity on REAL LR/HR pairs (no labels there: fidelity only).

  python -m experiments.sr_bench.sr_real_pairs --quick --out DIR
  python -m experiments.sr_bench.sr_real_pairs --quick --pairs worldstrat \
      --out DIR
  python -m experiments.sr_bench.sr_real_pairs --runlocal --out /tmp/rp  # smoke

Pairs (PAIRS, from ../shared/data; train and test windows spatially
disjoint, ids in the JSON's "windows"): spacenet_pan_ms (MS 4 bands -> pan,
2x; test = tile pan3), landsat8_pan_ms and landsat7_pan_ms (B2-B4 -> B8 pan,
2x; test = the east window columns), worldstrat (Sentinel-2 RGB -> SPOT RGB,
2x, cross-sensor; test = the east quarter).
Models: "bicubic" (LR bands averaged where the band counts differ),
"bicubic_ls" (bicubic, then a per-band least-squares map of the LR bands:
the fair baseline across sensors), "edsr" and "implicit" (sr.py's "small"
widths, pixel L1, crossscale.train.fit_arrays on standardised windows).
Each side is scaled to [0, 1] by its train 99.9th percentile; PSNR / SSIM
(crossscale.fidelity) are means over the test windows. --runlocal: 10 steps
on landsat8_pan_ms with bicubic, bicubic_ls and edsr.
Writes OUT/real_pairs_<schedule>_s0-0.json (crossscale.reporting.results_name),
a PNG beside it, and prints a table.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time

import jax.numpy as jnp
import matplotlib
import numpy as np

from crossscale import fidelity, reporting, shards, train
from crossscale.models import sr as sr_lib
from data import common as data_common
from experiments.configs import sr as sr_config
from experiments.sr_bench import grid_data, sr_grid

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

PAIRS = ("spacenet_pan_ms", "landsat8_pan_ms", "landsat7_pan_ms", "worldstrat")
MODELS = ("bicubic", "bicubic_ls", "edsr", "implicit")
MAX_ZERO_FRAC = 0.05
STEPS = {"tiny": 10, "quick": 300, "full": 3000}
RUNLOCAL = dict(pairs=("landsat8_pan_ms",), models=MODELS[:3])
L8 = "landsat_pan_ms/LC08_L1TP_195025_20130707_20170503_01_T1"
L7 = "landsat_pan_ms/LE07_L1TP_195025_20010730_20170204_01_T1"


# --------------------------------------------------------------------- data


def _row_col(scene_id: str) -> tuple[int, int]:
  r, c = re.search(r"_r(\d+)_c(\d+)$", scene_id).groups()
  return int(r), int(c)


def _geotiff_windows(hr: list[str], lr: list[str], scene_px: int) -> list[dict]:
  """Windows of one real pair built by data.geotiff_pairs (its own seeded
  split is ignored: callers split spatially). Each: {"id", "row", "col",
  "lr" [h, w, C_lr], "hr" [H, W, C_hr]} (float32, raw units). Windows with
  more than MAX_ZERO_FRAC all-zero pixels on either side are dropped (their
  ids returned third, after the manifest)."""
  from data import geotiff_pairs  # pylint: disable=import-outside-toplevel

  with tempfile.TemporaryDirectory() as tmp:
    m = geotiff_pairs.build(tmp, hr, lr, scene_px=scene_px, grid=4)
    out, dropped = [], []
    for split in m.splits:
      for s in shards.iter_scenes(tmp, split, verify=False):
        # Fill without a nodata tag (pan2/pan3 have a zero top third).
        if (
            max((s.hr == 0).all(-1).mean(), (s.lr == 0).all(-1).mean())
            > MAX_ZERO_FRAC
        ):
          dropped.append(s.id)
          continue
        r, c = _row_col(s.id)
        out.append(
            {
                "id": s.id,
                "row": r,
                "col": c,
                "lr": s.lr.astype(np.float32),
                "hr": s.hr.astype(np.float32),
            }
        )
  return sorted(out, key=lambda w: w["id"]), m, sorted(dropped)


def _split(windows: list[dict], is_test) -> dict:
  out = {"train": [], "test": []}
  for w in windows:
    out["test" if is_test(w) else "train"].append(w)
  for k, v in out.items():
    if not v:
      raise ValueError(f"no {k} windows: the spatial split rule left none.")
  return out


def _spacenet(src: str) -> dict:
  base = os.path.join(src, "spacenet", "preproc_tutorial")
  wins, dropped = [], []
  for i in (1, 2, 3):
    w, m, drop = _geotiff_windows(
        [os.path.join(base, f"pan{i}.tif")],
        [os.path.join(base, f"ms{i}.tif")],
        64,
    )
    wins += w
    dropped += drop
  split = _split(wins, lambda w: w["id"].startswith("pan3_"))
  return {
      "split": split,
      "scale": m.builder["scale"],
      "lr_bands": list(m.lr_bands),
      "hr_bands": ["pan"],
      "gsd": [m.lr_gsd, m.hr_gsd],
      "files": "spacenet/preproc_tutorial/{pan,ms}{1,2,3}.tif",
      "split_rule": "tile: pan1 + pan2 train, pan3 test",
      "dropped_windows": dropped,
      "notes": [
          f"pan2 and pan3 have a zero fill over their top third "
          f"without a nodata tag: {len(dropped)} windows with more "
          f"than {MAX_ZERO_FRAC:.0%} zero pixels dropped.",
          "MS and pan of the same satellite acquisition (data "
          "README); MS bands 1-4 as stored in the sample (float64 "
          "DN), pan uint16: a 4 -> 1 band SR (spectral mapping + "
          "2x).",
      ],
  }


def _landsat(src: str, base: str, lr_bands: tuple[int, ...]) -> dict:
  p = os.path.join(src, base)
  wins, m, dropped = _geotiff_windows(
      [f"{p}_B8.TIF"], [f"{p}_B{b}.TIF" for b in lr_bands], 16
  )
  split = _split(wins, lambda w: w["col"] >= 3)
  return {
      "split": split,
      "scale": m.builder["scale"],
      "lr_bands": list(m.lr_bands),
      "hr_bands": list(m.hr_bands),
      "gsd": [m.lr_gsd, m.hr_gsd],
      "files": f"{base}_B{{8,{','.join(map(str, lr_bands))}}}.TIF",
      "split_rule": "window columns 0-2 train, 3-4 test (east strip)",
      "dropped_windows": dropped,
      "notes": [
          f"one 82 px (1.2 km) pan scene: {len(wins)} windows of "
          "16 px, too small for more than a smoke-level estimate; "
          "int16 DN, nodata windows dropped by geotiff_pairs."
      ],
  }


def _worldstrat(src: str, scene_px: int = 64) -> dict:
  from PIL import Image  # pylint: disable=import-outside-toplevel

  root = os.path.join(src, "worldstrat")
  lr = np.asarray(
      Image.open(os.path.join(root, "L1.png")).convert("RGB"), np.float32
  )  # [400, 400, 3]
  hr = np.asarray(
      Image.open(os.path.join(root, "HR.png")).convert("RGB"), np.float32
  )  # [800, 800, 3]
  scale = hr.shape[0] // lr.shape[0]
  if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
    raise ValueError(
        f"{root}: HR {hr.shape} is not an integer multiple of "
        f"LR {lr.shape}."
    )
  p = scene_px // scale
  wins = []
  for r in range(hr.shape[0] // scene_px):
    for c in range(hr.shape[1] // scene_px):
      wins.append(
          {
              "id": f"worldstrat_r{r}_c{c}",
              "row": r,
              "col": c,
              "lr": lr[r * p : (r + 1) * p, c * p : (c + 1) * p],
              "hr": hr[
                  r * scene_px : (r + 1) * scene_px,
                  c * scene_px : (c + 1) * scene_px,
              ],
          }
      )
  ncol = hr.shape[1] // scene_px
  first_test = ncol - ncol // 4
  split = _split(wins, lambda w: w["col"] >= first_test)
  return {
      "split": split,
      "scale": scale,
      "lr_bands": ["R", "G", "B"],
      "hr_bands": ["R", "G", "B"],
      "gsd": [None, None],
      "files": "worldstrat/{L1,HR}.png",
      "split_rule": f"window columns 0-{first_test - 1} train, "
      f"{first_test}-{ncol - 1} test (east quarter)",
      "notes": [
          "CROSS-SENSOR: a Sentinel-2 revisit (L1.png) vs SPOT "
          "(HR.png), both 8-bit display renders with their own "
          "stretch, different dates and spectral responses; the "
          "files are 2x of each other as given (the native ground "
          "resolutions differ more). Radiometry differs (see "
          "radiometry), so plain bicubic is penalised for colour, "
          "not only for detail: compare against bicubic_ls."
      ],
  }


def load_pair(name: str, src: str | None = None) -> dict:
  """{"train"|"test": {"lr": [N, h, w, C_lr], "hr": [N, H, W, C_hr]} in
  [0, 1] float32, "windows": {split: ids}, "scale", bands, "split_rule",
  "radiometry", "notes"}; each side scaled by its train 99.9th percentile."""
  src = src or data_common.SHARED_DATA
  if name == "spacenet_pan_ms":
    d = _spacenet(src)
  elif name == "landsat8_pan_ms":
    d = _landsat(src, L8, (2, 3, 4))
  elif name == "landsat7_pan_ms":
    d = _landsat(src, L7, (2, 3, 4))
  elif name == "worldstrat":
    d = _worldstrat(src)
  else:
    raise ValueError(f"unknown pair {name!r}; known: {', '.join(PAIRS)}")
  split = d.pop("split")
  hi = {
      k: float(np.percentile(np.stack([w[k] for w in split["train"]]), 99.9))
      for k in ("lr", "hr")
  }
  out = {
      "name": name,
      **d,
      "percentile_999": hi,
      "windows": {s: [w["id"] for w in ws] for s, ws in split.items()},
  }
  for s, ws in split.items():
    out[s] = {
        k: np.clip(np.stack([w[k] for w in ws]) / hi[k], 0.0, 1.0).astype(
            np.float32
        )
        for k in ("lr", "hr")
    }
  tr = out["train"]
  out["radiometry"] = {
      "lr_band_means": [round(float(v), 4) for v in tr["lr"].mean((0, 1, 2))],
      "hr_band_means": [round(float(v), 4) for v in tr["hr"].mean((0, 1, 2))],
      "lr_band_stds": [round(float(v), 4) for v in tr["lr"].std((0, 1, 2))],
      "hr_band_stds": [round(float(v), 4) for v in tr["hr"].std((0, 1, 2))],
  }
  return out


# ------------------------------------------------------------------- models


def _up(lr: np.ndarray, hw) -> np.ndarray:
  return np.asarray(sr_lib.resize(jnp.asarray(lr), hw))


def fit_band_map(lr_up: np.ndarray, hr: np.ndarray) -> np.ndarray:
  """Least-squares `[C_lr + 1, C_hr]` (weights, then bias) with hr ~=
  [lr_up, 1] @ W over every pixel of `[N, H, W, C]` arrays."""
  x = lr_up.reshape(-1, lr_up.shape[-1]).astype(np.float64)
  x = np.concatenate([x, np.ones((len(x), 1))], 1)
  y = hr.reshape(-1, hr.shape[-1]).astype(np.float64)
  return np.linalg.lstsq(x, y, rcond=None)[0]


def apply_band_map(lr_up: np.ndarray, w: np.ndarray) -> np.ndarray:
  return (lr_up @ w[:-1] + w[-1]).astype(np.float32)


def predict_model(
    family: str, d: dict, steps: int, batch_size: int = 16, seed: int = 0
) -> tuple[np.ndarray, dict]:
  """(SR of the test LR `[N, H, W, C_hr]` in [0, 1], info)."""
  tr, te = d["train"], d["test"]
  hw = tuple(te["hr"].shape[1:3])
  c_lr, c_hr = tr["lr"].shape[-1], tr["hr"].shape[-1]
  if family == "bicubic":
    band_map = None if c_lr == c_hr else ((tuple(range(c_lr)),) * c_hr)
    cfg = dict(name="sr_bicubic", scale=d["scale"], band_map=band_map)
    _, pred = sr_grid.predict_fn(cfg, "sr", hw)
    return np.asarray(pred({}, te["lr"])), {"band_map": band_map}
  if family == "bicubic_ls":
    w = fit_band_map(_up(tr["lr"], tr["hr"].shape[1:3]), tr["hr"])
    return apply_band_map(_up(te["lr"], hw), w), {"band_map_ls": w.tolist()}
  cfg = sr_config.model_config(family, d["scale"], c_hr, "small")
  model, pred = sr_grid.predict_fn(cfg, "sr", hw)
  m_lr, s_lr = grid_data.band_stats(tr["lr"])
  m_hr, s_hr = grid_data.band_stats(tr["hr"])
  arrays = {"lr": (tr["lr"] - m_lr) / s_lr, "hr": (tr["hr"] - m_hr) / s_hr}
  params = train.init_params(
      model, {k: v[:1] for k, v in arrays.items()}, seed=seed
  )
  t0 = time.time()
  params, losses = train.fit_arrays(
      model,
      params,
      arrays,
      steps=steps,
      batch_size=batch_size,
      lr=1e-3,
      seed=seed,
  )
  out = sr_grid.batched(
      lambda x: pred(params, x), ((te["lr"] - m_lr) / s_lr).astype(np.float32)
  )
  return out * s_hr + m_hr, {
      "steps": steps,
      "model": cfg,
      "train_seconds": round(time.time() - t0, 1),
      "first_loss": losses[0] if losses else None,
      "final_loss": losses[-1] if losses else None,
  }


def scores(sr01: np.ndarray, hr: np.ndarray) -> dict:
  f = fidelity.fidelity(jnp.asarray(sr01), jnp.asarray(hr), 1.0)
  return {
      "psnr": float(np.mean(f["psnr"])),
      "ssim": float(np.mean(f["ssim"])),
      "psnr_per_band": [float(v) for v in np.mean(f["psnr_per_band"], 0)],
  }


def run(
    out_dir: str,
    preset: str = "quick",
    pairs=PAIRS,
    models=MODELS,
    src: str | None = None,
    log=print,
) -> dict:
  steps = STEPS[preset]
  t0 = time.time()
  results, rows, examples = {}, [], {}
  for name in pairs:
    d = load_pair(name, src)
    log(
        f"{name}: {len(d['train']['hr'])} train / {len(d['test']['hr'])} "
        f"test windows, lr {d['train']['lr'].shape[1:]} -> hr "
        f"{d['train']['hr'].shape[1:]}"
    )
    res = {}
    hr = d["test"]["hr"]
    i = int(np.argmax(hr.std((1, 2, 3))))  # the window with most detail
    examples[name] = {
        "LR": d["test"]["lr"][i],
        "HR": hr[i],
        "window": d["windows"]["test"][i],
        "sr": {},
    }
    for family in models:
      sr, info = predict_model(family, d, steps)
      res[family] = {**scores(sr, hr), **info}
      examples[name]["sr"][family] = (
          np.clip(sr[i], 0.0, 1.0),
          scores(sr[i : i + 1], hr[i : i + 1])["psnr"],
      )
    ref = res.get("bicubic_ls", res.get("bicubic"))
    for family, r in res.items():
      rows.append(
          {
              "pair": name,
              "sr": family,
              "psnr": r["psnr"],
              "ssim": r["ssim"],
              "d_psnr_vs_bicubic_ls": (
                  r["psnr"] - ref["psnr"] if ref else None
              ),
              "n_train": len(d["train"]["hr"]),
              "n_test": len(d["test"]["hr"]),
          }
      )
    results[name] = {
        "models": res,
        "scale": d["scale"],
        "lr_bands": d["lr_bands"],
        "hr_bands": d["hr_bands"],
        "gsd_lr_hr_m": d["gsd"],
        "files": d["files"],  # relative to the shared data folder
        "split_rule": d["split_rule"],
        "windows": d["windows"],
        "dropped_windows": d.get("dropped_windows", []),
        "percentile_999": d["percentile_999"],
        "radiometry": d["radiometry"],
        "notes": d["notes"],
    }
  payload = {
      "rows": rows,
      "pairs": results,
      "preset": preset,
      "steps": steps,
      "machine": reporting.machine(),
      "seconds": round(time.time() - t0, 1),
  }
  schedule = {"tiny": "runlocal"}.get(preset, preset)
  payload["file"] = reporting.results_name("real_pairs", schedule, 0, 0)
  reporting.write_json(out_dir, payload["file"], payload)
  stem = os.path.splitext(payload["file"])[0]
  figure(examples, os.path.join(out_dir, stem + ".png"))
  return payload


def _show(img: np.ndarray, rgb: bool) -> tuple[np.ndarray, str | None]:
  """`[h, w, C]` in [0, 1] -> what imshow draws: RGB when `rgb`, else the
  band mean in gray; stretched to its 1st-99th percentiles."""
  x = img if rgb else img.mean(-1)
  lo, hi = np.percentile(x, (1, 99))
  return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1), (
      None if x.ndim == 3 else "gray"
  )


def figure(examples: dict, path: str) -> None:
  """One row per pair: LR, each model's SR (with its PSNR on the window),
  HR; in colour when both sides are 3-band RGB, else band means in gray."""
  if not examples:
    return
  cols = max(len(e["sr"]) for e in examples.values()) + 2
  fig, axes = plt.subplots(
      len(examples),
      cols,
      squeeze=False,
      figsize=(2.1 * cols, 2.3 * len(examples)),
  )
  for row, (name, e) in zip(axes, examples.items()):
    panels = (
        [("LR", e["LR"])]
        + [(f"{f}\n{psnr:.2f} dB", img) for f, (img, psnr) in e["sr"].items()]
        + [("HR", e["HR"])]
    )
    rgb = e["LR"].shape[-1] == 3 and e["HR"].shape[-1] == 3
    for ax, (title, img) in zip(row, panels):
      shown, cmap = _show(img, rgb)
      ax.imshow(shown, cmap=cmap, interpolation="nearest")
      ax.set_title(title, fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
    for ax in row[len(panels) :]:
      ax.axis("off")
    where = re.search(r"r\d+_c\d+$", e["window"])
    row[0].set_ylabel(
        f"{name}\n{where.group() if where else e['window']}", fontsize=7
    )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  print(f"wrote {path}")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  size = p.add_mutually_exclusive_group()
  size.add_argument("--quick", action="store_true", help="CPU-sized run")
  size.add_argument(
      "--runlocal", action="store_true", help="smoke run in seconds"
  )
  p.add_argument("--out", required=True)
  p.add_argument("--pairs", default="", help=f"default {','.join(PAIRS)}")
  p.add_argument("--models", default="", help=f"default {','.join(MODELS)}")
  a = p.parse_args(argv)
  preset = "tiny" if a.runlocal else ("quick" if a.quick else "full")
  dflt = RUNLOCAL if a.runlocal else dict(pairs=PAIRS, models=MODELS)
  res = run(
      a.out,
      preset,
      a.pairs.split(",") if a.pairs else dflt["pairs"],
      a.models.split(",") if a.models else dflt["models"],
  )
  reporting.print_table(
      res["rows"],
      [
          "pair",
          "sr",
          "psnr",
          "ssim",
          "d_psnr_vs_bicubic_ls",
          "n_train",
          "n_test",
      ],
  )
  for name, r in res["pairs"].items():
    print(f"{name}: {r['split_rule']}; radiometry {r['radiometry']}")


if __name__ == "__main__":
  main()
