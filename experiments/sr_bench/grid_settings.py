"""The SR grid's settings: model families, the presets' sizes and
schedules (--runlocal, --quick per dataset, --scale N), the per-family SR
schedule (steps, learning rate, crops, the model it starts from, model
fields) and
the results file's name."""

from __future__ import annotations

import argparse
import dataclasses

from experiments.configs import downstream as ds_config
from experiments.configs import sr as sr_config
from experiments.sr_bench import grid_data

# The pixel-loss families (CPU minutes); the full run adds the GAN (ESRGAN
# recipe) and the diffusion model.
SR_MODELS = ("bicubic", "edsr", "swinir", "implicit")
SR_MODELS_FULL = SR_MODELS + ("gan", "diffusion")
DOWNSTREAM = ("unet", "segformer", "swin")
# --runlocal: the smallest grid that exercises every stage.
RUNLOCAL = dict(
    sr_models=("bicubic", "edsr"), downstream=("unet",), max_tasks=1
)
# Keys of a family's schedule (Settings.schedules[family]): "steps", "lr"
# (the family's training; default Settings.sr_steps / lr), "crop" (HR px;
# default Settings.crop), "init" (a family whose trained model this one
# starts from: ESRGAN's adversarial "gan" from its L1 stage "gan_psnr"),
# "model" (fields over the config's model) and INFERENCE_KEYS (model
# fields used at inference only, e.g. the diffusion model's DDIM steps:
# not in the model's cache key).
INFERENCE_KEYS = ("sample_steps",)
SCHEDULE_KEYS = ("steps", "lr", "crop", "init", "model") + INFERENCE_KEYS


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything that sizes a run (what changes a model is hashed into its
  cache key)."""

  sr_steps: int
  task_steps: int
  batch_size: int
  size: str  # downstream size in ds_config.SIZES
  sr_size: str  # sr_config.SIZES
  lr: float = 1e-3  # SR models
  task_lr: float = 3e-3  # downstream models
  # Segmentation loss (crossscale.models.dense_backbones.SEG_LOSSES): class-
  # balanced CE + Dice; plain "ce" collapses to all-background on toyworld.
  seg_loss: str = "balanced_ce+dice"
  cls_steps: int | None = None  # classification steps (None: task_steps)
  max_train: int | None = None  # images per split (None: all)
  max_test: int | None = None
  feature_distance: bool = True
  # The learned feature distance ("hrenc"): a cross-scale pretraining run
  # of ours, or (pretrain_steps > 0) one the grid trains on its records.
  feature_init: str = ""
  pretrain_steps: int = 0
  bootstrap_draws: int = 1000  # over test windows; 0: no intervals
  top_k: int = 3
  seed: int = 0
  # Records of ucmerced / rsscn7 (image folders): LR `scale`x coarser than
  # HR, HR resized to `hr_size` px (0: the preset's default).
  scale: int = 0
  hr_size: int = 0
  # SR training on random aligned crops of `crop` HR px (0: whole images).
  crop: int = 0
  # Per SR family {SCHEDULE_KEYS: value} over sr_steps / lr.
  schedules: dict = dataclasses.field(default_factory=dict)
  sr_only: bool = False  # no downstream models: SR fidelity only
  # The evaluated windows: "test", or "val" to choose schedules (SR only;
  # model keys do not depend on it, so the test run reuses the models).
  split: str = "test"


def settings(preset: str, **overrides) -> Settings:
  """The grid's Settings of a preset ("tiny", "quick", "full"): steps,
  batch and model sizes from the SR and downstream configs at the preset's
  arg (grid_data.CONFIG_ARG; full: downstream size=base), then
  `overrides` (Settings fields)."""
  arg = grid_data.CONFIG_ARG[preset]
  sr = sr_config.get_config(arg)
  ds = ds_config.get_config(arg or "size=base")
  s = Settings(
      sr_steps=sr.total_steps,
      task_steps=ds.total_steps,
      batch_size=sr.batch_size,
      size=ds.size,
      sr_size=sr.model_size,
  )
  if preset == "tiny":  # seconds: a subset, no feature distance
    s = dataclasses.replace(
        s,
        max_train=64,
        max_test=32,
        feature_distance=False,
        bootstrap_draws=200,
    )
  return dataclasses.replace(s, **overrides)


# --quick per dataset, sized for a loaded 2-core CPU (~10 min a dataset):
# Settings fields, and the downstream models (per task where they differ).
# toyworld's scene class is the fine texture of ~1% of the pixels (its LR
# tint matches the class only half the time): the classifier needs ~1500
# steps to get past the tint shortcut, so only the U-Net classifies there.
QUICK = {
    "toyworld": dict(
        settings=dict(cls_steps=1500),
        task_downstream={"classification": ("unet",)},
    ),
    "rsscn7": dict(settings=dict(task_steps=200), downstream=("unet", "swin")),
    # 1176 / 252 scenes, 128 px, 21 classes; + a 300-step pretraining run.
    "ucmerced": dict(
        settings=dict(task_steps=300, pretrain_steps=300),
        downstream=("unet", "swin"),
    ),
}

# --quick --scale 4 on UC Merced at its native 0.3 m (256 px HR, LR 64 px):
# every family on random HR crops (64 px, LR 16 px; fewer for the costlier
# implicit and diffusion models); steps sized so the SR part fits a loaded
# 2-core CPU, learning rates (1e-3, 2e-3, 4e-3 at 300 steps), the GAN's
# adversarial lr and the DDIM steps chosen on the val windows
# (experiments/sr_bench/README.md, "UC Merced 4x").
QUICK_SCALE = {
    ("ucmerced", 4): dict(
        settings=dict(
            hr_size=256,
            crop=64,
            pretrain_steps=300,
            schedules={
                "edsr": dict(steps=2000, lr=4e-3),
                "swinir": dict(steps=1000, lr=4e-3),
                "implicit": dict(steps=500, lr=4e-3, crop=48),
                # ESRGAN: L1 stage, then the adversarial stage from it.
                "gan_psnr": dict(steps=1000, lr=4e-3),
                "gan": dict(init="gan_psnr", steps=300, lr=2e-4),
                # Twice the tiny widths.
                "diffusion": dict(
                    steps=2000,
                    lr=4e-3,
                    crop=32,
                    model=dict(widths=(16, 32), time_dim=32),
                    sample_steps=2,
                ),
            },
        ),
        sr_models=SR_MODELS + ("gan_psnr", "gan", "diffusion"),
    ),
}
# RSSCN7 at 4x (issue 25): UC Merced 4x's SR schedule unchanged, to be
# checked on RSSCN7's val windows before its test run (README "RSSCN7 4x":
# not finished yet), at RSSCN7's native 400 px (LR 100 px); no
# pretraining run (no learned feature distance: PSNR / SSIM / random
# features only, to fit the CPU).
QUICK_SCALE[("rsscn7", 4)] = dict(
    settings={
        **QUICK_SCALE[("ucmerced", 4)]["settings"],
        "hr_size": 400,
        "pretrain_steps": 0,
    },
    sr_models=QUICK_SCALE[("ucmerced", 4)]["sr_models"],
)


# The full variant of the 4x SR run (accelerators; not measured here): the
# configs' base sizes and 3000 steps (batch 32) on 96 px HR crops, the
# ESRGAN stages (L1, then adversarial at ESRGAN's lr 1e-4).
FULL_SCALE = {
    ("ucmerced", 4): dict(
        settings=dict(
            crop=96,
            pretrain_steps=3000,
            schedules={"gan": dict(init="gan_psnr", lr=1e-4)},
        ),
        sr_models=SR_MODELS + ("gan_psnr", "gan", "diffusion"),
    ),
}


def preset_table(preset: str, dataset: str, scale: int = 0) -> dict:
  """The preset's per-dataset table: RUNLOCAL ("tiny"), QUICK[dataset]
  with QUICK_SCALE[(dataset, scale)] over it ("quick"),
  FULL_SCALE[(dataset, scale)] ("full"), else {}."""
  if preset == "tiny":
    return RUNLOCAL
  if preset == "full":
    return FULL_SCALE.get((dataset, scale), {})
  if preset != "quick":
    return {}
  q, extra = QUICK.get(dataset, {}), QUICK_SCALE.get((dataset, scale), {})
  return {
      **q,
      **extra,
      "settings": {**q.get("settings", {}), **extra.get("settings", {})},
  }


def with_schedule(s: Settings, change: dict) -> Settings:
  """`s` with `change` ({family: {SCHEDULE_KEYS: value}}) merged into its
  schedules (a family's "model" fields merged too)."""
  out = {f: dict(v) for f, v in s.schedules.items()}
  for fam, sched in change.items():
    bad = set(sched) - set(SCHEDULE_KEYS)
    if bad:
      raise ValueError(
          f"schedule of {fam!r}: unknown keys {sorted(bad)}; known: "
          f"{SCHEDULE_KEYS}"
      )
    cur = out.setdefault(fam, {})
    model = {**cur.get("model", {}), **sched.get("model", {})}
    cur.update(sched)
    if model:
      cur["model"] = model
  return dataclasses.replace(s, schedules=out)


def family_schedule(s: Settings, family: str) -> dict:
  """{"steps", "lr"} of `family` (bicubic: 0 steps), with "init" where
  its schedule has one."""
  sched = s.schedules.get(family, {})
  out = {
      "steps": 0 if family == "bicubic" else sched.get("steps", s.sr_steps),
      "lr": sched.get("lr", s.lr),
  }
  if family != "bicubic" and sched.get("init"):
    if sched["init"] == family:
      raise ValueError(f"schedule of {family!r}: init names itself.")
    out["init"] = sched["init"]
  return out


def schedule_name(preset: str, s: Settings) -> str:
  """The results file's schedule: "runlocal" / "quick" / "full", then
  "_x<scale>" (--scale), "_sr" (SR only), "_val" (val windows)."""
  name = {"tiny": "runlocal"}.get(preset, preset)
  if s.scale:
    name += f"_x{s.scale}"
  if s.sr_only:
    name += "_sr"
  if s.split != "test":
    name += f"_{s.split}"
  return name


def training_summary(metas: dict) -> dict:
  """{family: its SR model's schedule ("steps", "lr", "crop", "batch",
  "init": the key it started from), "train_seconds" (its own steps),
  "seconds_per_step" and "final_loss"} from the cached model metadata
  {family: meta or None (not trained yet)}."""
  out = {}
  for fam, meta in metas.items():
    if not meta:
      continue
    spec = meta["spec"]
    row = {
        k: spec[k]
        for k in ("steps", "lr", "crop", "batch", "init")
        if k in spec
    }
    steps, sec = spec["steps"], meta.get("train_seconds")
    row["train_seconds"] = sec
    row["seconds_per_step"] = sec / steps if steps and sec else None
    row["final_loss"] = meta.get("final_loss")
    out[fam] = row
  return out


def parser(description: str) -> argparse.ArgumentParser:
  """sr_grid's command line."""
  p = argparse.ArgumentParser(description=description)
  p.add_argument(
      "--dataset",
      default="toyworld",
      help=f"{', '.join(grid_data.DATASETS)} or a records directory",
  )
  size = p.add_mutually_exclusive_group()
  size.add_argument("--quick", action="store_true", help="CPU-sized run")
  size.add_argument(
      "--runlocal",
      action="store_true",
      help="smoke run in seconds (tiny sizes, bicubic + edsr, unet, one task)",
  )
  p.add_argument("--out", required=True)
  p.add_argument(
      "--sr_models",
      default="",
      help=f"comma-separated; default {','.join(SR_MODELS)} (--quick) or "
      f"{','.join(SR_MODELS_FULL)}",
  )
  p.add_argument(
      "--downstream",
      default="",
      help=f"comma-separated; default {','.join(DOWNSTREAM)} "
      "(--quick: per dataset, see QUICK)",
  )
  p.add_argument("--tasks", default="", help="comma-separated; default all")
  p.add_argument(
      "--feature_init",
      default="",
      help="a cross-scale pretraining run (conv hr_encoder) for the learned "
      "feature distance and its Frechet distance",
  )
  p.add_argument(
      "--pretrain_steps",
      type=int,
      default=None,
      help="without --feature_init: pretrain one here for N steps "
      "(0: none; --quick ucmerced: 300)",
  )
  p.add_argument("--bootstrap_draws", type=int, default=None)
  p.add_argument(
      "--scale",
      type=int,
      default=None,
      help="ucmerced/rsscn7: LR N x coarser than HR (records built for it; "
      "default 8). --quick --scale 4 on ucmerced (HR 256 px, 0.3 m) and "
      "rsscn7 (HR 400 px): every SR family on 64 px HR crops, schedules in "
      "grid_settings.QUICK_SCALE",
  )
  p.add_argument(
      "--sr_only",
      action="store_true",
      help="SR fidelity only (PSNR, SSIM, feature and Frechet distances, "
      "paired intervals vs bicubic): no downstream models",
  )
  p.add_argument(
      "--split",
      default="test",
      choices=("test", "val"),
      help="windows to score; val (with --sr_only) to choose SR schedules: "
      "the test run reuses the trained models",
  )
  p.add_argument(
      "--crop",
      type=int,
      default=None,
      help="train SR on random N px HR crops (0: whole images)",
  )
  p.add_argument(
      "--sr_steps", type=int, default=None, help="every SR family's steps"
  )
  p.add_argument(
      "--sr_lr", type=float, default=None, help="every SR family's lr"
  )
  p.add_argument(
      "--schedule",
      default="",
      help="JSON {family: {steps, lr, crop, init, model: {...}, sample_steps}}"
      " merged into the per-family SR schedules, e.g. "
      '\'{"gan": {"steps": 300, "lr": 1e-4}}\'',
  )
  p.add_argument("--task_steps", type=int, default=None)
  p.add_argument(
      "--cache", default=None, help="cache directory (default OUT/cache)"
  )
  p.add_argument(
      "--data_root",
      default=None,
      help="where named datasets are built (default $CROSSSCALE_DATA)",
  )
  return p
