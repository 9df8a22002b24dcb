r"""Does SR fidelity predict downstream usefulness? SR model x downstream
model x task grid.

  python -m experiments.sr_bench.sr_grid --dataset toyworld --quick --out DIR
  python -m experiments.sr_bench.sr_grid --dataset levircd --quick --out DIR
  python -m experiments.sr_bench.sr_grid --dataset toyworld --out DIR  # full
  python -m experiments.sr_bench.sr_grid --runlocal --out /tmp/g  # smoke

`--dataset`: toyworld, rsscn7, spacenet_buildings, spacenet_roads, levircd,
hag (grid_data.DATASETS: registered datasets, built on first use under
$CROSSSCALE_DATA or --data_root) or a records directory. Sizes come from
the configs' args (experiments/configs/sr.py and downstream.py): --runlocal
-> ":runlocal", --quick -> ":quick", else the full sizes (+ gan,
diffusion). Every model is trained by crossscale.train.fit_arrays: each SR
model on the train LR/HR pairs, each downstream model on the true HR; each
downstream model is then scored on SR(LR) of every SR model, on HR and on
bicubic LR ("lr_up"); grid_stats correlates fidelity with the score.

`--cache DIR` (default OUT/cache): trained parameters (<key>.npz, written
by crossscale.checkpoint) and metadata / cells (<key>.json, written last);
keys hash the data, model config, steps and seeds, so a rerun resumes.
Writes OUT/<dataset>_<schedule>_s<seed>-<seed>.json (crossscale.reporting.
results_name), a PNG beside it, and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from typing import Sequence

import einops
import jax
import jax.numpy as jnp
import numpy as np

from crossscale import checkpoint, fidelity, models, reporting, shards, train
from crossscale.models import sr as sr_lib
from crossscale.models import sr_gan
from experiments.configs import downstream as ds_config
from experiments.configs import sr as sr_config
from experiments.sr_bench import grid_data, grid_plot, grid_stats
from experiments.sr_bench.grid_stats import SCORES, gap_recovered

CACHE_VERSION = 2  # 2: parameters as .npz (crossscale.checkpoint)
# The pixel-loss families (CPU minutes); the full run adds the GAN (ESRGAN
# recipe) and the diffusion model.
SR_MODELS = ("bicubic", "edsr", "swinir", "implicit")
SR_MODELS_FULL = SR_MODELS + ("gan", "diffusion")
DOWNSTREAM = ("unet", "segformer", "swin")
# --runlocal: the smallest grid that exercises every stage.
RUNLOCAL = dict(
    sr_models=("bicubic", "edsr"), downstream=("unet",), max_tasks=1
)


# ----------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything that sizes a run (hashed into the cache keys)."""

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
  top_k: int = 3
  seed: int = 0


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
        s, max_train=64, max_test=32, feature_distance=False
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
}


# -------------------------------------------------------------------- cache


def cache_key(kind: str, spec: dict) -> str:
  blob = json.dumps({"v": CACHE_VERSION, **spec}, sort_keys=True, default=str)
  return f"{kind}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def load_json(cache: str, key: str) -> dict | None:
  path = os.path.join(cache, f"{key}.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def save_json(cache: str, key: str, obj: dict) -> None:
  path = os.path.join(cache, f"{key}.json")
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, default=_jsonable)
  os.replace(tmp, path)


def _jsonable(v):
  if isinstance(v, (np.floating, np.integer)):
    return v.item()
  if isinstance(v, np.ndarray):
    return v.tolist()
  raise TypeError(f"not JSON serialisable: {type(v)}")


def load_params(cache: str, key: str):
  """(params, meta) of a finished model (its json written), else None."""
  meta = load_json(cache, key)
  path = os.path.join(cache, f"{key}.npz")
  if meta is None or not os.path.exists(path):
    return None, None
  return checkpoint.load_params(path, f"the grid cache {cache}"), meta


def save_params(cache: str, key: str, params, meta: dict) -> None:
  tmp = os.path.join(cache, f"{key}.tmp{os.getpid()}.npz")
  checkpoint.save_params_npz(tmp, jax.device_get(params))
  os.replace(tmp, os.path.join(cache, f"{key}.npz"))
  save_json(cache, key, meta)  # written last: marks the model done


# ---------------------------------------------------------------- inference


def batched(fn, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
  """`fn` over `[N, ...]` in chunks, concatenated (the last chunk padded so
  one shape compiles once)."""
  outs = []
  for i in range(0, len(x), batch_size):
    chunk = x[i : i + batch_size]
    pad = batch_size - len(chunk)
    if pad and len(x) > batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
    out = np.asarray(fn(chunk))
    outs.append(out[: len(x[i : i + batch_size])])
  return np.concatenate(outs)


_FNS: dict[str, tuple] = {}  # compiled predict functions, per process


def predict_fn(cfg: dict, mode: str, out_hw=None):
  """(model, jitted `fn(params, x)`) for config.model `cfg`, memoised per
  process so a resumed grid does not recompile. mode: "sr" (`predict` to
  `out_hw`), "regression" (the raw output) or "argmax" (class ids)."""
  key = json.dumps([cfg, mode, out_hw], sort_keys=True, default=str)
  if key not in _FNS:
    kw = dict(cfg)
    model = models.get_model(kw.pop("name"), **kw)
    if mode == "sr":
      fn = lambda p, x: model.apply({"params": p}, x, out_hw, method="predict")
    elif mode == "regression":
      fn = lambda p, x: model.apply({"params": p}, x, method="predict")
    else:
      fn = lambda p, x: jnp.argmax(
          model.apply({"params": p}, x, method="predict"), -1
      )
    _FNS[key] = (model, jax.jit(fn))
  return _FNS[key]


# --------------------------------------------------------------------- grid


class Grid:
  """Lazily trained/loaded SR and downstream models of one dataset."""

  def __init__(self, data: dict, s: Settings, cache: str, log=print):
    self.data, self.s, self.cache, self.log = data, s, cache, log
    self.train = grid_data.limit(data["splits"]["train"], s.max_train)
    self.test = grid_data.limit(data["splits"]["test"], s.max_test)
    self.mean, self.std = grid_data.band_stats(self.train["hr"])
    self.fp = grid_data.fingerprint(
        {"splits": {"train": self.train, "test": self.test}}
    )
    # SR runs per group of bands (levircd: the before and the after image).
    self.groups = int(data.get("sr_groups", 1))
    self.trained: list[str] = []
    self._sr: dict[str, tuple[np.ndarray, dict]] = {}
    self._ds: dict[tuple[str, str], tuple] = {}
    if "reg" in self.train:
      self.t_mean = float(np.nanmean(self.train["reg"]))
      self.t_std = float(max(np.nanstd(self.train["reg"]), 1e-6))

  def norm(self, x01: np.ndarray) -> np.ndarray:
    return ((x01 - self.mean) / self.std).astype(np.float32)

  def to_groups(self, x: np.ndarray) -> np.ndarray:
    """`[N, H, W, G * C]` -> `[N * G, H, W, C]` (one image per band group)."""
    return einops.rearrange(x, "n h w (g c) -> (n g) h w c", g=self.groups)

  def from_groups(self, x: np.ndarray) -> np.ndarray:
    return einops.rearrange(x, "(n g) h w c -> n h w (g c)", g=self.groups)

  # ---- SR
  def sr_spec(self, family: str) -> dict:
    groups = {"groups": self.groups} if self.groups > 1 else {}
    return {
        "data": self.fp,
        "family": family,
        **groups,
        "model": sr_config.model_config(
            family,
            self.data["scale"],
            len(self.data["bands"]) // self.groups,
            self.s.sr_size,
        ),
        "aux_weights": sr_config.AUX_WEIGHTS.get(family, {}),
        "steps": 0 if family == "bicubic" else self.s.sr_steps,
        "batch": self.s.batch_size,
        "lr": self.s.lr,
        "seed": self.s.seed,
    }

  def sr_key(self, family: str) -> str:
    return cache_key(f"sr_{family}", self.sr_spec(family))

  def sr(self, family: str) -> tuple[np.ndarray, dict]:
    """(SR of the test LR `[N, H, W, C]` in [0, 1], fidelity dict)."""
    if family in self._sr:
      return self._sr[family]
    spec, key = self.sr_spec(family), self.sr_key(family)
    hw = tuple(int(n) for n in self.test["hr"].shape[1:3])
    model, pred = predict_fn(spec["model"], "sr", hw)
    params, meta = load_params(self.cache, key)
    if params is None:
      t0 = time.time()
      lr_n = self.to_groups(self.norm(self.train["lr"]))
      hr_n = self.to_groups(self.norm(self.train["hr"]))
      params = train.init_params(
          model, {"lr": lr_n[:1], "hr": hr_n[:1]}, seed=self.s.seed
      )
      losses = []
      if spec["steps"]:
        self.log(f"  training SR {family} ({spec['steps']} steps)")
        params, losses = train.fit_arrays(
            model,
            params,
            {"lr": lr_n, "hr": hr_n},
            steps=spec["steps"],
            batch_size=self.s.batch_size,
            lr=self.s.lr,
            seed=self.s.seed,
            aux_weights=spec["aux_weights"],
        )
      meta = {
          "spec": spec,
          "train_seconds": time.time() - t0,
          "final_loss": losses[-1] if losses else None,
      }
      self.trained.append(key)
    out = self.from_groups(
        batched(
            lambda x: pred(params, x),
            self.to_groups(self.norm(self.test["lr"])),
        )
    )
    sr01 = np.clip(out * self.std + self.mean, 0.0, 1.0)
    if "fidelity" not in meta:
      meta["fidelity"] = self.fidelity(sr01)
      save_params(self.cache, key, params, meta)
    self._sr[family] = (sr01, meta["fidelity"])
    return self._sr[family]

  def fidelity(self, sr01: np.ndarray) -> dict:
    hr = self.test["hr"]
    fid = {"psnr": [], "ssim": [], "randfeat_dist": []}
    feat = (
        sr_gan.random_feature_net(hr.shape[-1])
        if self.s.feature_distance
        else None
    )
    for i in range(0, len(hr), 32):
      f = fidelity.fidelity(
          jnp.asarray(sr01[i : i + 32]), jnp.asarray(hr[i : i + 32]), 1.0
      )
      fid["psnr"].append(np.asarray(f["psnr"]))
      fid["ssim"].append(np.asarray(f["ssim"]))
      if feat:
        fid["randfeat_dist"].append(
            np.asarray(
                fidelity.feature_distance(
                    *feat,
                    jnp.asarray(sr01[i : i + 32]),
                    jnp.asarray(hr[i : i + 32]),
                )
            )
        )
    return {
        k: float(np.concatenate(v).mean()) if v else None
        for k, v in fid.items()
    }

  def lr_up(self) -> np.ndarray:
    """Bicubic-upsampled test LR `[N, H, W, C]` in [0, 1]."""
    hw = self.test["hr"].shape[1:3]
    return np.clip(
        np.asarray(sr_lib.resize(jnp.asarray(self.test["lr"]), hw)), 0.0, 1.0
    )

  # ---- downstream
  def ds_spec(self, task: str, backbone: str) -> dict:
    info = self.data["tasks"][task]
    return {
        "data": self.fp,
        "task": task,
        "backbone": backbone,
        "model": ds_config.model_config(
            backbone,
            task,
            info.get("num_classes", 1),
            self.s.size,
            target_key={
                "segmentation": "seg",
                "regression": "reg",
                "classification": "labels",
            }[task],
            seg_loss=self.s.seg_loss,
        ),
        "steps": (
            self.s.cls_steps or self.s.task_steps
            if task == "classification"
            else self.s.task_steps
        ),
        "batch": self.s.batch_size,
        "lr": self.s.task_lr,
        "seed": self.s.seed,
        # Targets are labels: flip only where the dataset says they
        # survive it (toyworld's texture classes do not).
        "flips": "flip" in self.data.get("label_symmetries", shards.SYMMETRIES),
    }

  def ds_key(self, task: str, backbone: str) -> str:
    return cache_key(f"ds_{task}_{backbone}", self.ds_spec(task, backbone))

  def _targets(self, task: str, split: dict) -> dict:
    if task == "segmentation":
      return {"seg": split["seg"]}
    if task == "classification":
      k = self.data["tasks"][task]["num_classes"]
      return {"labels": np.eye(k, dtype=np.float32)[split["cls"]]}
    return {
        "reg": ((split["reg"] - self.t_mean) / self.t_std).astype(np.float32)
    }

  def downstream(self, task: str, backbone: str):
    """(predict fn `[N, H, W, C]` [0, 1] -> predictions, meta with the HR
    and LR-up scores)."""
    if (task, backbone) in self._ds:
      return self._ds[(task, backbone)]
    spec, key = self.ds_spec(task, backbone), self.ds_key(task, backbone)
    model, apply = predict_fn(
        spec["model"], "regression" if task == "regression" else "argmax"
    )
    params, meta = load_params(self.cache, key)
    if params is None:
      t0 = time.time()
      arrays = {
          "hr": self.norm(self.train["hr"]),
          **self._targets(task, self.train),
      }
      params = train.init_params(
          model, {k: v[:1] for k, v in arrays.items()}, seed=self.s.seed
      )
      self.log(
          f"  training {backbone} for {task} on HR " f"({spec['steps']} steps)"
      )
      params, losses = train.fit_arrays(
          model,
          params,
          arrays,
          steps=spec["steps"],
          batch_size=self.s.batch_size,
          lr=spec["lr"],
          seed=self.s.seed,
          task="single_label" if task == "classification" else task,
          flips=spec["flips"],
      )
      meta = {
          "spec": spec,
          "train_seconds": time.time() - t0,
          "first_loss": losses[0] if losses else None,
          "final_loss": losses[-1] if losses else None,
      }
      self.trained.append(key)

    t_mean, t_std = getattr(self, "t_mean", 0.0), getattr(self, "t_std", 1.0)

    def predict(x01):
      y = batched(lambda x: apply(params, x), self.norm(x01))
      return y * t_std + t_mean if task == "regression" else y

    if "hr" not in meta:
      k = self.data["tasks"][task].get("num_classes")
      meta["hr"] = grid_stats.task_metrics(
          task, predict(self.test["hr"]), self.test, k
      )
      meta["lr_up"] = grid_stats.task_metrics(
          task, predict(self.lr_up()), self.test, k
      )
      save_params(self.cache, key, params, meta)
    self._ds[(task, backbone)] = (predict, meta)
    return self._ds[(task, backbone)]

  # ---- cells
  def cell(self, family: str, task: str, backbone: str) -> tuple[dict, bool]:
    """(cell dict, whether it was computed now rather than read)."""
    key = cache_key(
        f"cell_{family}_{backbone}_{task}",
        {"sr": self.sr_key(family), "ds": self.ds_key(task, backbone)},
    )
    cached = load_json(self.cache, key)
    if cached is not None:
      return cached, False
    sr01, fid = self.sr(family)
    predict, meta = self.downstream(task, backbone)
    k = self.data["tasks"][task].get("num_classes")
    m = grid_stats.task_metrics(task, predict(sr01), self.test, k)
    gap, note = gap_recovered(
        m["score"], meta["lr_up"]["score"], meta["hr"]["score"]
    )
    cell = {
        "sr": family,
        "downstream": backbone,
        "task": task,
        "psnr": fid["psnr"],
        "ssim": fid["ssim"],
        "randfeat_dist": fid["randfeat_dist"],
        "score": m["score"],
        "score_name": SCORES[task],
        "score_hr": meta["hr"]["score"],
        "score_lr_up": meta["lr_up"]["score"],
        "gap_recovered": gap,
        "gap_note": note,
        "metrics": {
            k2: v for k2, v in m.items() if not k2.endswith("_per_class")
        },
        "metrics_hr": {
            k2: v
            for k2, v in meta["hr"].items()
            if not k2.endswith("_per_class")
        },
        "metrics_lr_up": {
            k2: v
            for k2, v in meta["lr_up"].items()
            if not k2.endswith("_per_class")
        },
        "key": key,
    }
    save_json(self.cache, key, cell)
    return cell, True


def run_grid(
    dataset: str,
    out_dir: str,
    *,
    quick: bool = True,
    sr_models: Sequence[str] | None = None,
    downstream: Sequence[str] | None = None,
    task_downstream: dict[str, Sequence[str]] | None = None,
    tasks: Sequence[str] | None = None,
    sr_steps: int | None = None,
    task_steps: int | None = None,
    preset: str | None = None,
    cache_dir: str | None = None,
    data_root: str | None = None,
    log=print,
    **overrides,
) -> dict:
  """Runs (or resumes) the grid; writes its results JSON into `out_dir`
  (name in results["file"]) and returns the results.

  preset: "tiny" (seconds: --runlocal, tests, notebooks), "quick" (the
  default with quick=True) or "full" (`settings`); sr_steps / task_steps
  and other `Settings` fields (`overrides`, e.g. max_train=64) refine it.
  sr_models: None = SR_MODELS, SR_MODELS_FULL for "full" (RUNLOCAL's for
  "tiny"). downstream: the backbones (None: DOWNSTREAM); task_downstream:
  {task: backbones} where a task differs; with "quick", QUICK[dataset]
  fills what the call leaves unset. tasks: None = every task the dataset
  has (the first only for "tiny"). cache_dir: trained models and cells
  (default OUT/cache); data_root: where named datasets are built.
  """
  preset = preset or ("quick" if quick else "full")
  q = QUICK.get(dataset, {}) if preset == "quick" else {}
  if preset == "tiny":
    q = RUNLOCAL
  s = settings(preset, **{**q.get("settings", {}), **overrides})
  if downstream is None:
    downstream = q.get("downstream", DOWNSTREAM)
  if task_downstream is None:
    task_downstream = q.get("task_downstream", {})
  if sr_models is None:
    sr_models = q.get(
        "sr_models", SR_MODELS_FULL if preset == "full" else SR_MODELS
    )
  if sr_steps is not None:
    s = dataclasses.replace(s, sr_steps=sr_steps)
  if task_steps is not None:
    s = dataclasses.replace(s, task_steps=task_steps)
  unknown = [m for m in sr_models if m not in sr_config.FAMILIES]
  if unknown:
    raise ValueError(
        f"unknown SR models {unknown}; known: {sr_config.FAMILIES}"
    )
  cache = cache_dir or os.path.join(out_dir, "cache")
  os.makedirs(cache, exist_ok=True)
  t0 = time.time()
  data = grid_data.load_dataset(dataset, preset, s.seed, data_root)
  if tasks is None:
    tasks = sorted(data["tasks"])[: q.get("max_tasks")]
  tasks = list(tasks)
  missing = [t for t in tasks if t not in data["tasks"]]
  if missing:
    raise ValueError(
        f"dataset {dataset!r} has no task {missing}; it has "
        f"{sorted(data['tasks'])}."
    )
  grid = Grid(data, s, cache, log)
  cells, computed = [], []
  for task in tasks:
    for backbone in task_downstream.get(task, downstream):
      for family in sr_models:
        cell, new = grid.cell(family, task, backbone)
        # Recomputed from the cached scores: the notes follow this code.
        cell["gap_recovered"], cell["gap_note"] = gap_recovered(
            cell["score"], cell["score_lr_up"], cell["score_hr"]
        )
        cells.append(cell)
        if new:
          computed.append(cell["key"])
          log(
              f"  cell {family} x {backbone} x {task}: score "
              f"{cell['score']:.4f} (hr {cell['score_hr']:.4f}, lr_up "
              f"{cell['score_lr_up']:.4f}), psnr {cell['psnr']:.2f}"
          )
  results = {
      "cells": cells,
      "correlation": grid_stats.correlations(cells, top_k=s.top_k),
      "machine": reporting.machine(),
      "dataset": data["name"],
      # Paths relative to the data root (records) and to the shared data
      # folder (source files).
      "data": {"records": data["records"], "source": data.get("source")},
      "notes": data["notes"]
      + [
          "score is higher-is-better: segmentation mIoU, classification "
          "accuracy, regression neg_rmse = -RMSE (metres for hag).",
          "sr 'bicubic' is the same operator as the lr_up input (gap 0).",
      ],
      "tasks": data["tasks"],
      "settings": dataclasses.asdict(s),
      "preset": preset,
      "num_train": int(len(grid.train["hr"])),
      "num_test": int(len(grid.test["hr"])),
      "run": {
          "trained": grid.trained,
          "cells_computed": computed,
          "seconds": time.time() - t0,
      },
  }
  schedule = {"tiny": "runlocal"}.get(preset, preset)
  results["file"] = reporting.results_name(dataset, schedule, s.seed, s.seed)
  reporting.write_json(out_dir, results["file"], results)
  return results


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
  p.add_argument("--sr_steps", type=int, default=None)
  p.add_argument("--task_steps", type=int, default=None)
  p.add_argument(
      "--cache", default=None, help="cache directory (default OUT/cache)"
  )
  p.add_argument(
      "--data_root",
      default=None,
      help="where named datasets are built (default $CROSSSCALE_DATA)",
  )
  a = p.parse_args(argv)
  results = run_grid(
      a.dataset,
      a.out,
      quick=a.quick,
      preset="tiny" if a.runlocal else None,
      sr_models=a.sr_models.split(",") if a.sr_models else None,
      downstream=a.downstream.split(",") if a.downstream else None,
      tasks=a.tasks.split(",") if a.tasks else None,
      sr_steps=a.sr_steps,
      task_steps=a.task_steps,
      cache_dir=a.cache,
      data_root=a.data_root,
  )
  grid_plot.print_results(results)
  stem = os.path.splitext(results["file"])[0]
  png = grid_plot.plot(results, os.path.join(a.out, stem + ".png"))
  print(f"wrote {png}")


if __name__ == "__main__":
  main()
