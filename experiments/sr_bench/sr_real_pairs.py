r"""SR fidelity on REAL LR/HR pairs (no labels there: fidelity only).

  python -m experiments.sr_bench.sr_real_pairs --quick --out DIR
  python -m experiments.sr_bench.sr_real_pairs --quick --pairs worldstrat \
      --models bicubic_ls,edsr,gan_psnr,gan --out DIR
  python -m experiments.sr_bench.sr_real_pairs --runlocal --out /tmp/rp  # smoke

Pairs (PAIRS, from ../shared/data; train and test windows spatially
disjoint, ids in the JSON's "windows"): spacenet_pan_ms (MS 4 bands -> pan,
2x; test = tile pan3), landsat8_pan_ms and landsat7_pan_ms (B2-B4 -> B8 pan,
2x; test = the east window columns), worldstrat (Sentinel-2 RGB -> SPOT RGB,
2x, cross-sensor; test = the east quarter).
Models (MODELS, all by default): "bicubic" (LR bands averaged where the band
counts differ), "bicubic_ls" (bicubic, then a per-band least-squares map of
the LR bands: the fair baseline across sensors, and the reference of every
interval), and every learned family of sr_grid (LEARNED: edsr, swinir,
implicit, gan_psnr, gan, diffusion), trained and predicted by
sr_grid.Grid (sr.py's "small" widths, STEPS steps, batch 16, lr 1e-3, whole
windows, standardised per side; the ESRGAN-style "gan" starts from its L1
stage "gan_psnr" at lr 2e-4: SCHEDULES). Each side is scaled to [0, 1] by
its train 99.9th percentile; every output is clipped to [0, 1]. PSNR / SSIM
(crossscale.fidelity) per test window; the rows give their means, the
per-window lists and the paired bootstrap 95% interval of the difference
to bicubic_ls (DRAWS draws of the test windows with replacement, the same
draws for every model): "above" only where its lower end is > 0.
--runlocal: 10 steps on landsat8_pan_ms with bicubic, bicubic_ls and edsr.
Writes OUT/real_pairs_<schedule>_s0-0.json (crossscale.reporting.results_name,
with its provenance), a PNG beside it, and prints a table.
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

from crossscale import bootstrap, fidelity, reporting, shards
from crossscale.models import sr as sr_lib
from data import common as data_common
from experiments.sr_bench import grid_data, grid_stats, sr_grid

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

PAIRS = ("spacenet_pan_ms", "landsat8_pan_ms", "landsat7_pan_ms", "worldstrat")
BASELINES = ("bicubic", "bicubic_ls")
# sr_grid's learned families (experiments/configs/sr.py FAMILIES), the
# ESRGAN-style L1 stage before its adversarial stage.
LEARNED = ("edsr", "swinir", "implicit", "gan_psnr", "gan", "diffusion")
MODELS = BASELINES + LEARNED
BASE = "bicubic_ls"  # the reference of the paired intervals
# Per family over STEPS / lr 1e-3 (grid_settings.SCHEDULE_KEYS): ESRGAN's
# adversarial stage from its trained L1 stage, at sr.py's GAN lr.
SCHEDULES = {"gan": dict(init="gan_psnr", lr=2e-4)}
DRAWS, LEVEL = 2000, 0.95  # paired bootstrap over the test windows
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


def pair_grid(
    d: dict, preset: str, cache: str, seed: int = 0, log=print
) -> sr_grid.Grid:
  """sr_grid.Grid (SR only) that trains and predicts the learned families
  on pair `d`. The Grid standardises both sides by the HR train band stats;
  the LR it is given is the LR mapped so that this standardisation gives
  the LR's own ((lr - mean_lr) / std_lr: the bands and radiometry differ
  across sensors), and its outputs come back in HR units, clipped to [0,
  1]."""
  tr = d["train"]
  m_lr, s_lr = grid_data.band_stats(tr["lr"])
  m_hr, s_hr = grid_data.band_stats(tr["hr"])
  as_hr = lambda lr: ((lr - m_lr) / s_lr * s_hr + m_hr).astype(np.float32)
  data = {
      "name": d["name"],
      "scale": d["scale"],
      "bands": list(d["hr_bands"]),
      "splits": {
          s: {"lr": as_hr(d[s]["lr"]), "hr": d[s]["hr"]}
          for s in ("train", "test")
      },
      "tasks": {},
      "notes": [],
  }
  s = sr_grid.settings(
      preset,
      sr_steps=STEPS[preset],
      sr_size="small",
      batch_size=16,
      lr=1e-3,
      max_train=None,
      max_test=None,
      feature_distance=False,
      bootstrap_draws=0,
      sr_only=True,
      seed=seed,
      schedules=SCHEDULES,
  )
  return sr_grid.Grid(data, s, cache, log)


def predict_model(family: str, d: dict, grid=None) -> tuple[np.ndarray, dict]:
  """(SR of the test LR `[N, H, W, C_hr]` in [0, 1], info); the learned
  families through `grid` (`pair_grid`)."""
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
  if family not in LEARNED:
    raise ValueError(f"unknown SR model {family!r}; known: {MODELS}")
  sr01, _ = grid.sr(family)
  _, meta = grid.sr_params(family)  # from the grid's cache
  spec = meta["spec"]
  return sr01, {
      "steps": spec["steps"],
      "lr": spec["lr"],
      "batch": spec["batch"],
      "init": SCHEDULES.get(family, {}).get("init"),  # cache key below
      "init_key": spec.get("init"),
      "model": spec["model"],
      "aux_weights": spec["aux_weights"],
      "train_seconds": round(meta["train_seconds"], 1),
      "final_loss": meta["final_loss"],
  }


def scores(sr: np.ndarray, hr: np.ndarray) -> dict:
  """Means over the windows of `[N, H, W, C]` (SR clipped to [0, 1]) and
  the per-window "psnr_windows" / "ssim_windows" `[N]`."""
  f = fidelity.fidelity(jnp.asarray(np.clip(sr, 0, 1)), jnp.asarray(hr), 1.0)
  return {
      "psnr": float(np.mean(f["psnr"])),
      "ssim": float(np.mean(f["ssim"])),
      "psnr_per_band": [float(v) for v in np.mean(f["psnr_per_band"], 0)],
      "psnr_windows": [float(v) for v in f["psnr"]],
      "ssim_windows": [float(v) for v in f["ssim"]],
  }


def paired_intervals(
    windows: dict,
    base: str = BASE,
    draws: int = DRAWS,
    seed: int = 0,
    level: float = LEVEL,
) -> dict:
  """Paired bootstrap of each model's mean PSNR / SSIM minus `base`'s.

  windows: {model: {"psnr": [N], "ssim": [N]}} on the same N test windows.
  Each draw resamples the windows with replacement (bootstrap.
  resample_counts, seeded), the same draws for every model. Returns
  {model: {"d_psnr", "d_psnr_interval", "d_ssim", "d_ssim_interval",
  "vs" ("above" / "below" only where the PSNR interval lies above / below
  0, else "tie"; "baseline" for `base`), "ssim_vs", "verdict"}}.
  """
  n = len(windows[base]["psnr"])
  counts = np.concatenate(
      [np.ones((1, n), np.int64), bootstrap.resample_counts(n, draws, seed)]
  )  # row 0: every window once (the point estimate)
  reps = grid_stats.fidelity_replicates(
      {m: {k: w[k] for k in ("psnr", "ssim")} for m, w in windows.items()},
      {},
      {},
      counts,
  )

  def side(lo, hi):  # bootstrap.verdict's rule, named for a baseline
    return {"ahead": "above", "behind": "below"}.get(
        bootstrap.verdict(lo, hi), "tie"
    )

  out = {}
  for m, r in reps.items():
    v = grid_stats.vs_bicubic(m, r, reps[base], level, base)
    d_ssim = r["ssim"] - reps[base]["ssim"]
    s_iv = list(bootstrap.percentile_interval(d_ssim[1:], level))
    p_iv = v["psnr_gain_interval"]
    out[m] = {
        "d_psnr": v["psnr_gain"],
        "d_psnr_interval": p_iv,
        "d_ssim": float(d_ssim[0]),
        "d_ssim_interval": s_iv,
        "vs": "baseline" if m == base else side(*p_iv),
        "ssim_vs": "baseline" if m == base else side(*s_iv),
        "verdict": v["psnr_verdict"],
    }
  return out


def run(
    out_dir: str,
    preset: str = "quick",
    pairs=PAIRS,
    models=MODELS,
    src: str | None = None,
    log=print,
    cache: str | None = None,
    draws: int = DRAWS,
    seed: int = 0,
) -> dict:
  """Every model on every pair; writes the JSON and the PNG into
  `out_dir`. cache: the Grid's trained models (default: a temporary
  folder, gone after the run). bicubic_ls is always computed: it is the
  reference of the intervals (listed only when in `models`)."""
  unknown = [m for m in models if m not in MODELS]
  if unknown:
    raise ValueError(f"unknown SR models {unknown}; known: {MODELS}")
  steps = STEPS[preset]
  t0 = time.time()
  results, rows, examples = {}, [], {}
  with tempfile.TemporaryDirectory() as tmp:
    for name in pairs:
      d = load_pair(name, src)
      log(
          f"{name}: {len(d['train']['hr'])} train / "
          f"{len(d['test']['hr'])} test windows, lr "
          f"{d['train']['lr'].shape[1:]} -> hr {d['train']['hr'].shape[1:]}"
      )
      res, grid = {}, None
      hr = d["test"]["hr"]
      i = int(np.argmax(hr.std((1, 2, 3))))  # the window with most detail
      examples[name] = {
          "LR": d["test"]["lr"][i],
          "HR": hr[i],
          "window": d["windows"]["test"][i],
          "sr": {},
      }
      for family in dict.fromkeys([BASE, *models]):
        if family in LEARNED and grid is None:
          grid = pair_grid(d, preset, cache or tmp, seed, log)
        t1 = time.time()
        sr, info = predict_model(family, d, grid)
        res[family] = {**scores(sr, hr), **info}
        res[family]["seconds"] = round(time.time() - t1, 1)
        log(
            f"  {family}: psnr {res[family]['psnr']:.2f} ssim "
            f"{res[family]['ssim']:.3f} ({res[family]['seconds']} s)"
        )
        if family in models:
          examples[name]["sr"][family] = (
              np.clip(sr[i], 0.0, 1.0),
              res[family]["psnr_windows"][i],
          )
      iv = paired_intervals(
          {
              f: {"psnr": r["psnr_windows"], "ssim": r["ssim_windows"]}
              for f, r in res.items()
          },
          draws=draws,
          seed=seed,
      )
      for family in models:
        r, v = res[family], iv[family]
        r.update(vs_bicubic_ls=v)
        rows.append(
            {
                "pair": name,
                "sr": family,
                "psnr": r["psnr"],
                "ssim": r["ssim"],
                "d_psnr_vs_bicubic_ls": v["d_psnr"],
                "d_psnr_vs_bicubic_ls_interval": v["d_psnr_interval"],
                "d_ssim_vs_bicubic_ls": v["d_ssim"],
                "d_ssim_vs_bicubic_ls_interval": v["d_ssim_interval"],
                "vs_bicubic_ls": v["vs"],
                "ssim_vs_bicubic_ls": v["ssim_vs"],
                "verdict": v["verdict"],
                # per test window, in the order of the pair's "windows"
                "psnr_windows": [round(x, 4) for x in r["psnr_windows"]],
                "ssim_windows": [round(x, 5) for x in r["ssim_windows"]],
                "n_train": len(d["train"]["hr"]),
                "n_test": len(d["test"]["hr"]),
            }
        )
      results[name] = {
          "models": {  # the per-window lists are in the rows
              f: {k: v for k, v in r.items() if not k.endswith("_windows")}
              for f, r in res.items()
              if f in models
          },
          "scale": d["scale"],
          "lr_bands": d["lr_bands"],
          "hr_bands": d["hr_bands"],
          "gsd_lr_hr_m": d["gsd"],
          "files": d["files"],  # relative to the shared data folder
          "split_rule": d["split_rule"],
          "windows": d["windows"],  # the order of the per-window lists
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
      "schedules": SCHEDULES,
      "bootstrap": {
          "draws": draws,
          "level": LEVEL,
          "seed": seed,
          "reference": BASE,
          "resampled": "test windows, with replacement, paired over models",
      },
      "machine": reporting.machine(),
      "seconds": round(time.time() - t0, 1),
  }
  schedule = {"tiny": "runlocal"}.get(preset, preset)
  payload["file"] = reporting.results_name("real_pairs", schedule, seed, seed)
  reporting.write_json(
      out_dir,
      payload["file"],
      payload,
      datasets={"shared": src or data_common.SHARED_DATA},
  )
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


def _span(v: float, iv, digits: int = 2) -> str:
  f = lambda x: f"{x:+.{digits}f}"
  return f"{f(v)} [{f(iv[0])}, {f(iv[1])}]" if iv else f(v)


def table(rows: list[dict]) -> None:
  """Mean PSNR / SSIM, the differences to bicubic_ls with their 95%
  intervals, and "above" / "below" only where the interval excludes 0."""
  reporting.print_table(
      [
          {
              **r,
              "psnr": f"{r['psnr']:.2f}",
              "ssim": f"{r['ssim']:.3f}",
              "dPSNR [95%]": _span(
                  r["d_psnr_vs_bicubic_ls"], r["d_psnr_vs_bicubic_ls_interval"]
              ),
              "dSSIM [95%]": _span(
                  r["d_ssim_vs_bicubic_ls"],
                  r["d_ssim_vs_bicubic_ls_interval"],
                  3,
              ),
          }
          for r in rows
      ],
      [
          "pair",
          "sr",
          "psnr",
          "ssim",
          "dPSNR [95%]",
          "vs_bicubic_ls",
          "dSSIM [95%]",
          "ssim_vs_bicubic_ls",
          "n_test",
      ],
  )


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
  p.add_argument(
      "--cache",
      default=None,
      help="keep the trained models here (a rerun resumes); default: a "
      "temporary folder",
  )
  a = p.parse_args(argv)
  preset = "tiny" if a.runlocal else ("quick" if a.quick else "full")
  dflt = RUNLOCAL if a.runlocal else dict(pairs=PAIRS, models=MODELS)
  res = run(
      a.out,
      preset,
      a.pairs.split(",") if a.pairs else dflt["pairs"],
      a.models.split(",") if a.models else dflt["models"],
      cache=a.cache,
  )
  table(res["rows"])
  for name, r in res["pairs"].items():
    print(f"{name}: {r['split_rule']}; radiometry {r['radiometry']}")


if __name__ == "__main__":
  main()
