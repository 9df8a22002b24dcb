r"""SR fidelity on real LR/HR pairs and on synthetic 4x of real HR (no
labels there: fidelity only).

  python -m experiments.sr_bench.sr_real_pairs --quick --out DIR
  python -m experiments.sr_bench.sr_real_pairs --quick --split val \
      --schedule ucm4x --cache C --out DIR   # choose on the val windows
  python -m experiments.sr_bench.sr_real_pairs --quick --cache C --out DIR \
      --pair_schedule spacenet_pan_ms=ucm4x,worldstrat=short  # test, once
  python -m experiments.sr_bench.sr_real_pairs --runlocal --out /tmp/rp  # smoke

Pairs (real_pairs_data.PAIRS, from ../shared/data; train / val / test
windows spatially disjoint, the val windows carved out of the train area,
real_pairs_data.SPLIT_RULES, ids in the JSON's "windows"): the real pairs
spacenet_pan_ms (MS 4 bands -> pan, 2x), landsat8_pan_ms and
landsat7_pan_ms (B2-B4 -> B8 pan, 2x), worldstrat (Sentinel-2 RGB -> SPOT
RGB, 2x, cross-sensor), and the synthetic 4x pairs spacenet_pan_x4 and
naip_x4 (LR = sensor.degrade of the HR).
Models (MODELS, all by default): "bicubic" (LR bands averaged where the band
counts differ), "bicubic_ls" (bicubic, then a per-band least-squares map of
the LR bands fitted on the train windows), and every learned family of
sr_grid (LEARNED: edsr, swinir, implicit, gan_psnr, gan, diffusion),
trained and predicted by sr_grid.Grid (sr.py's "small" widths, batch 16,
standardised per side) under a named schedule (SCHEDULE_SETS: "short" =
STEPS steps at lr 1e-3 on whole windows; "ucm4x" = UC Merced 4x's
grid_settings.QUICK_SCALE schedule, crops no larger than the windows;
"long" = ucm4x with twice the steps of each family trained from scratch;
--schedule_json merges per-family grid_settings.SCHEDULE_KEYS over it). The
ESRGAN-style "gan" starts from its L1 stage "gan_psnr". Each side is scaled
to [0, 1] by its train 99.9th percentile (synthetic pairs: the HR's for
both); every output is clipped to [0, 1]. PSNR / SSIM (crossscale.fidelity)
per evaluated window (--split: test, or val to choose a schedule; models
train on the train windows only, so a test run on the same --cache reuses
them); the rows give their means, the per-window lists and the paired
bootstrap 95% interval of the difference to the pair's reference
(bicubic_ls on real pairs, bicubic on synthetic ones; DRAWS draws of the
windows with replacement, the same draws for every model): "above" only
where its lower end is > 0.
--runlocal: 10 steps on landsat8_pan_ms with bicubic, bicubic_ls and edsr.
Writes OUT/real_pairs_<preset>[_<schedule>][_<split>]_s0-0.json
(crossscale.reporting.results_name, with its provenance), a PNG beside it,
and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time

import jax.numpy as jnp
import matplotlib
import numpy as np

from crossscale import bootstrap, fidelity, reporting
from crossscale.models import sr as sr_lib
from data import common as data_common
from experiments.sr_bench import (
    grid_data,
    grid_settings,
    grid_stats,
    real_pairs_data,
    sr_grid,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

PAIRS = real_pairs_data.PAIRS
load_pair = real_pairs_data.load_pair
BASELINES = ("bicubic", "bicubic_ls")
# sr_grid's learned families (experiments/configs/sr.py FAMILIES), the
# ESRGAN-style L1 stage before its adversarial stage.
LEARNED = ("edsr", "swinir", "implicit", "gan_psnr", "gan", "diffusion")
MODELS = BASELINES + LEARNED
# "short": per family over STEPS / lr 1e-3 (grid_settings.SCHEDULE_KEYS):
# ESRGAN's adversarial stage from its trained L1 stage, at sr.py's GAN lr.
SCHEDULES = {"gan": dict(init="gan_psnr", lr=2e-4)}
_UCM4X = grid_settings.QUICK_SCALE[("ucmerced", 4)]["settings"]
# Named schedules: Settings fields "lr", "crop" (HR px, 0: whole windows)
# and the per-family "schedules". "ucm4x": the one chosen on UC Merced 4x's
# val windows (README "UC Merced 4x"); crops >= a pair's window size become
# whole windows (fit_crops). "long": ucm4x with twice the steps of every
# family trained from scratch (the GAN's adversarial stage unchanged), a
# candidate for the 64 px pairs where ucm4x left families under their bar.
SCHEDULE_SETS = {
    "short": dict(lr=1e-3, crop=0, schedules=SCHEDULES),
    "ucm4x": dict(lr=1e-3, crop=_UCM4X["crop"], schedules=_UCM4X["schedules"]),
}
SCHEDULE_SETS["long"] = dict(
    SCHEDULE_SETS["ucm4x"],
    schedules={
        f: v if "init" in v else {**v, "steps": 2 * v["steps"]}
        for f, v in _UCM4X["schedules"].items()
    },
)
DRAWS, LEVEL = 2000, 0.95  # paired bootstrap over the evaluated windows
STEPS = {"tiny": 10, "quick": 300, "full": 3000}
RUNLOCAL = dict(pairs=("landsat8_pan_ms",), models=MODELS[:3])


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


def fit_crops(sched: dict, window_px: int, scale: int) -> dict:
  """SCHEDULE_SETS entry `sched` for windows of `window_px` HR px: every
  crop (the default and per family) >= the window becomes 0 (whole
  windows), others are rounded down to a multiple of `scale`."""
  fit = lambda c: 0 if not c or c >= window_px else c // scale * scale
  return {
      **sched,
      "crop": fit(sched.get("crop", 0)),
      "schedules": {
          f: {**v, "crop": fit(v["crop"])} if "crop" in v else dict(v)
          for f, v in sched.get("schedules", {}).items()
      },
  }


def pair_grid(
    d: dict,
    preset: str,
    cache: str,
    seed: int = 0,
    log=print,
    schedule: str = "short",
    split: str = "test",
    extra: dict | None = None,
) -> sr_grid.Grid:
  """sr_grid.Grid (SR only) that trains the learned families on pair `d`'s
  train windows under SCHEDULE_SETS[schedule] (crops fitted to the
  windows, then `extra` {family: {SCHEDULE_KEYS: value}} merged by
  grid_settings.with_schedule; "tiny" caps every family at STEPS["tiny"])
  and predicts its `split` windows. The Grid standardises both sides by the
  HR train band stats; the LR it is given is the LR mapped so that this
  standardisation gives the LR's own ((lr - mean_lr) / std_lr: the bands
  and radiometry differ across sensors), and its outputs come back in HR
  units, clipped to [0, 1]."""
  if schedule not in SCHEDULE_SETS:
    raise ValueError(
        f"unknown schedule {schedule!r}; known: {sorted(SCHEDULE_SETS)}"
    )
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
          for s in ("train", "val", "test")
          if s in d
      },
      "tasks": {},
      "notes": [],
  }
  sched = fit_crops(SCHEDULE_SETS[schedule], tr["hr"].shape[1], d["scale"])
  s = sr_grid.settings(
      preset,
      sr_steps=STEPS[preset],
      sr_size="small",
      batch_size=16,
      lr=sched["lr"],
      crop=sched["crop"],
      max_train=None,
      max_test=None,
      feature_distance=False,
      bootstrap_draws=0,
      sr_only=True,
      seed=seed,
      split=split,
  )
  s = grid_settings.with_schedule(s, sched["schedules"])
  s = grid_settings.with_schedule(s, extra or {})
  if preset == "tiny":  # seconds, whatever the schedule
    s = grid_settings.with_schedule(
        s,
        {
            f: {"steps": min(STEPS["tiny"], v.get("steps", STEPS["tiny"]))}
            for f, v in s.schedules.items()
        },
    )
  return sr_grid.Grid(data, s, cache, log)


def predict_model(
    family: str, d: dict, grid=None, split: str = "test"
) -> tuple[np.ndarray, dict]:
  """(SR of the `split` LR `[N, H, W, C_hr]` in [0, 1], info); the learned
  families through `grid` (`pair_grid` with the same split)."""
  tr, te = d["train"], d[split]
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
  if grid.s.split != split:
    raise ValueError(f"the grid scores {grid.s.split!r}, not {split!r}.")
  sr01, _ = grid.sr(family)
  _, meta = grid.sr_params(family)  # from the grid's cache
  spec = meta["spec"]
  return sr01, {
      "steps": spec["steps"],
      "lr": spec["lr"],
      "batch": spec["batch"],
      "crop": spec.get("crop", 0),  # 0: whole windows
      "init": grid_settings.family_schedule(grid.s, family).get("init"),
      "init_key": spec.get("init"),
      "model": spec["model"],
      "inference": grid.inference(family),
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
    base: str = "bicubic_ls",
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


def results_schedule(
    preset: str, schedule: str, pair_schedule: dict, split: str, extra
) -> str:
  """The results file's schedule part: "runlocal" / "quick" / "full",
  then "_<schedule>" (not "short"), "_chosen" (per-pair schedules),
  "_custom" (--schedule_json), "_<split>" (not test)."""
  name = {"tiny": "runlocal"}.get(preset, preset)
  name += "" if schedule == "short" else f"_{schedule}"
  name += "_chosen" if pair_schedule else ""
  name += "_custom" if extra else ""
  return name + ("" if split == "test" else f"_{split}")


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
    schedule: str = "short",
    pair_schedule: dict | None = None,
    split: str = "test",
    extra: dict | None = None,
) -> dict:
  """Every model on every pair, scored on its `split` windows; writes the
  JSON and the PNG into `out_dir`. schedule: SCHEDULE_SETS name of every
  pair, pair_schedule {pair: name} over it, extra: per-family schedule
  fields over both (pair_grid). cache: the Grid's trained models (default:
  a temporary folder, gone after the run). The pair's reference
  (real_pairs_data.reference) is always computed (listed only when in
  `models`)."""
  unknown = [m for m in models if m not in MODELS]
  if unknown:
    raise ValueError(f"unknown SR models {unknown}; known: {MODELS}")
  pair_schedule = dict(pair_schedule or {})
  for name, sch in [("*", schedule), *pair_schedule.items()]:
    if sch not in SCHEDULE_SETS:
      raise ValueError(
          f"{name}: unknown schedule {sch!r}; known: {sorted(SCHEDULE_SETS)}"
      )
  if split not in real_pairs_data.SPLITS[1:]:
    raise ValueError(f"split {split!r}: score val or test windows.")
  if cache:
    os.makedirs(cache, exist_ok=True)
  t0 = time.time()
  results, rows, examples = {}, [], {}
  with tempfile.TemporaryDirectory() as tmp:
    for name in pairs:
      d = load_pair(name, src)
      ref, sched = d["reference"], pair_schedule.get(name, schedule)
      n = "/".join(str(len(d[k]["hr"])) for k in ("train", "val", "test"))
      log(
          f"{name}: {n}"
          f" train / val / test windows, lr {d['train']['lr'].shape[1:]} -> "
          f"hr {d['train']['hr'].shape[1:]}; schedule {sched}, scoring {split}"
      )
      res, grid = {}, None
      hr = d[split]["hr"]
      i = int(np.argmax(hr.std((1, 2, 3))))  # the window with most detail
      examples[name] = {
          "LR": d[split]["lr"][i],
          "HR": hr[i],
          "window": d["windows"][split][i],
          "sr": {},
      }
      for family in dict.fromkeys([ref, *models]):
        if family in LEARNED and grid is None:
          grid = pair_grid(
              d, preset, cache or tmp, seed, log, sched, split, extra
          )
        t1 = time.time()
        sr, info = predict_model(family, d, grid, split)
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
          base=ref,
          draws=draws,
          seed=seed,
      )
      for family in models:
        r, v = res[family], iv[family]
        r.update(vs_ref=v)
        rows.append(
            {
                "pair": name,
                "sr": family,
                "reference": ref,
                "schedule": sched,
                "psnr": r["psnr"],
                "ssim": r["ssim"],
                "d_psnr_vs_ref": v["d_psnr"],
                "d_psnr_vs_ref_interval": v["d_psnr_interval"],
                "d_ssim_vs_ref": v["d_ssim"],
                "d_ssim_vs_ref_interval": v["d_ssim_interval"],
                "vs_ref": v["vs"],
                "ssim_vs_ref": v["ssim_vs"],
                "verdict": v["verdict"],
                # per window, in the order of the pair's windows[split]
                "psnr_windows": [round(x, 4) for x in r["psnr_windows"]],
                "ssim_windows": [round(x, 5) for x in r["ssim_windows"]],
                "n_train": len(d["train"]["hr"]),
                "n_eval": len(hr),
            }
        )
      results[name] = {
          "models": {  # the per-window lists are in the rows
              f: {k: v for k, v in r.items() if not k.endswith("_windows")}
              for f, r in res.items()
              if f in models
          },
          "reference": ref,
          "schedule": sched,
          "settings": (
              {
                  "lr": grid.s.lr,
                  "crop": grid.s.crop,
                  "sr_steps": grid.s.sr_steps,
                  "schedules": grid.s.schedules,
              }
              if grid
              else None
          ),
          "scale": d["scale"],
          "lr_bands": d["lr_bands"],
          "hr_bands": d["hr_bands"],
          "gsd_lr_hr_m": d["gsd"],
          "files": d["files"],  # relative to the shared data folder
          "split_rule": d["split_rule"],
          "windows": d["windows"],  # windows[split]: the per-window order
          "dropped_windows": d.get("dropped_windows", []),
          "degradation": d.get("degradation"),
          "percentile_999": d["percentile_999"],
          "radiometry": d["radiometry"],
          "notes": d["notes"],
      }
  payload = {
      "rows": rows,
      "pairs": results,
      "preset": preset,
      "split": split,
      "steps": STEPS[preset],
      "schedule": schedule,
      "pair_schedule": pair_schedule,
      "schedule_json": extra or {},
      "schedule_sets": SCHEDULE_SETS,
      "bootstrap": {
          "draws": draws,
          "level": LEVEL,
          "seed": seed,
          "reference": {n: r["reference"] for n, r in results.items()},
          "resampled": f"{split} windows, with replacement, paired over "
          "models",
      },
      "machine": reporting.machine(),
      "seconds": round(time.time() - t0, 1),
  }
  payload["file"] = reporting.results_name(
      "real_pairs",
      results_schedule(preset, schedule, pair_schedule, split, extra),
      seed,
      seed,
  )
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
  """Mean PSNR / SSIM, the differences to the pair's reference with their
  95% intervals, and "above" / "below" only where the interval excludes
  0."""
  reporting.print_table(
      [
          {
              **r,
              "psnr": f"{r['psnr']:.2f}",
              "ssim": f"{r['ssim']:.3f}",
              "dPSNR [95%]": _span(
                  r["d_psnr_vs_ref"], r["d_psnr_vs_ref_interval"]
              ),
              "dSSIM [95%]": _span(
                  r["d_ssim_vs_ref"], r["d_ssim_vs_ref_interval"], 3
              ),
          }
          for r in rows
      ],
      [
          "pair",
          "sr",
          "psnr",
          "ssim",
          "reference",
          "dPSNR [95%]",
          "vs_ref",
          "dSSIM [95%]",
          "ssim_vs_ref",
          "n_eval",
      ],
  )


def _pair_schedule(text: str) -> dict:
  """ "pair=schedule,..." -> {pair: schedule}."""
  out = {}
  for item in filter(None, text.split(",")):
    pair, _, sched = item.partition("=")
    if pair not in PAIRS or not sched:
      raise ValueError(f"--pair_schedule {item!r}: want PAIR=SCHEDULE.")
    out[pair] = sched
  return out


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
      "--split",
      default="test",
      choices=("test", "val"),
      help="windows to score; val to choose a schedule (same models)",
  )
  p.add_argument(
      "--schedule",
      default="short",
      choices=sorted(SCHEDULE_SETS),
      help="every pair's named schedule (SCHEDULE_SETS)",
  )
  p.add_argument(
      "--pair_schedule",
      default="",
      help="PAIR=SCHEDULE,... over --schedule (the per-pair val choice)",
  )
  p.add_argument(
      "--schedule_json",
      default="",
      help="JSON {family: {steps, lr, crop, init, model, sample_steps}} "
      "merged over the named schedule (grid_settings.SCHEDULE_KEYS)",
  )
  p.add_argument(
      "--cache",
      default=None,
      help="keep the trained models here (a rerun, or the test run after "
      "the val run, reuses them); default: a temporary folder",
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
      schedule=a.schedule,
      pair_schedule=_pair_schedule(a.pair_schedule),
      split=a.split,
      extra=json.loads(a.schedule_json) if a.schedule_json else None,
  )
  table(res["rows"])
  for name, r in res["pairs"].items():
    print(f"{name}: {r['split_rule']}; radiometry {r['radiometry']}")


if __name__ == "__main__":
  main()
