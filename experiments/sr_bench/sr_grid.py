r"""Does SR fidelity predict downstream usefulness? SR model x downstream
model x task grid.

  python -m experiments.sr_bench.sr_grid --dataset toyworld --quick --out DIR
  python -m experiments.sr_bench.sr_grid --dataset levircd --quick --out DIR
  python -m experiments.sr_bench.sr_grid --dataset toyworld --out DIR  # full
  python -m experiments.sr_bench.sr_grid --runlocal --out /tmp/g  # smoke

`--dataset`: toyworld, rsscn7, ucmerced, spacenet_buildings, spacenet_roads,
levircd, hag (grid_data.DATASETS: registered datasets, built on first use under
$CROSSSCALE_DATA or --data_root) or a records directory. Sizes come from
the configs' args (experiments/configs/sr.py and downstream.py): --runlocal
-> ":runlocal", --quick -> ":quick", else the full sizes (+ gan,
diffusion). Every model is trained by crossscale.train.fit_arrays: each SR
model on the train LR/HR pairs, each downstream model on the true HR; each
downstream model is then scored on SR(LR) of every SR model, on HR and on
bicubic LR ("lr_up"); grid_stats correlates fidelity with the score.

Learned features (grid_windows): --feature_init RUN or --pretrain_steps N;
intervals over test windows: grid_stats.bootstrap_grid.

SR at another scale, SR only (grid_settings.QUICK_SCALE): `--dataset
ucmerced --quick --scale 4 --sr_only` trains every SR family on random HR
crops of records with LR 4x coarser and scores PSNR, SSIM and the feature
and Frechet distances with paired intervals vs bicubic; `--split val`
scores the val windows instead (to choose schedules: --sr_steps, --sr_lr,
--schedule JSON), and the test run reuses the models it trained.

`--cache DIR` (default OUT/cache): trained parameters (<key>.npz, written
by crossscale.checkpoint) and metadata / cells (<key>.json, written last);
keys hash the data, model config, steps and seeds, so a rerun resumes.
Writes OUT/<dataset>_<schedule>_s<seed>-<seed>.json (crossscale.reporting.
results_name), a PNG beside it, and prints a table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Sequence

import einops
import jax.numpy as jnp
import numpy as np

from crossscale import checkpoint, fidelity, reporting, shards, train
from crossscale.models import sr as sr_lib
from experiments.configs import downstream as ds_config
from experiments.configs import sr as sr_config
from experiments.sr_bench import grid_data, grid_plot, grid_stats
from experiments.sr_bench import grid_settings as gs
from experiments.sr_bench import grid_windows as gw
from experiments.sr_bench.grid_settings import (  # noqa: F401 (re-exported)
    DOWNSTREAM,
    QUICK,
    QUICK_SCALE,
    RUNLOCAL,
    SR_MODELS,
    SR_MODELS_FULL,
    Settings,
    settings,
)
from experiments.sr_bench.grid_stats import SCORES, gap_recovered
from experiments.sr_bench.grid_windows import (  # noqa: F401 (re-exported)
    CACHE_VERSION,
    batched,
    cache_key,
    load_json,
    load_params,
    predict_fn,
    save_json,
    save_params,
)

# --------------------------------------------------------------------- grid


class Grid:
  """Lazily trained/loaded SR and downstream models of one dataset."""

  def __init__(self, data: dict, s: Settings, cache: str, log=print):
    self.data, self.s, self.cache, self.log = data, s, cache, log
    self.train = grid_data.limit(data["splits"]["train"], s.max_train)
    test = grid_data.limit(data["splits"]["test"], s.max_test)
    if s.split not in data["splits"]:
      raise ValueError(
          f"{data['name']} has no {s.split!r} split; it has "
          f"{sorted(data['splits'])}."
      )
    # The evaluated windows (s.split); keys hash train + test either way.
    self.test = grid_data.limit(data["splits"][s.split], s.max_test)
    self.mean, self.std = grid_data.band_stats(self.train["hr"])
    self.fp = grid_data.fingerprint(
        {"splits": {"train": self.train, "test": test}}
    )
    # Images per inference batch: 32 of 128 x 128 px, fewer when larger.
    hw = int(np.prod(self.test["hr"].shape[1:3]))
    self.infer_batch = int(max(1, min(32, 32 * 128 * 128 // hw)))
    # SR runs per group of bands (levircd: the before and the after image).
    self.groups = int(data.get("sr_groups", 1))
    self.trained: list[str] = []
    self._sr: dict[str, tuple[np.ndarray, dict]] = {}
    self._ds: dict[tuple[str, str], tuple] = {}
    self._nets, self._hr_feats = None, None
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
    """What trains `family` (hashed into its key; keys absent when unset,
    so older caches keep theirs): data, model, losses, schedule
    (gs.family_schedule), batch, seed, "crop", "init" (the key of the
    model it starts from)."""
    groups = {"groups": self.groups} if self.groups > 1 else {}
    model = sr_config.model_config(
        family,
        self.data["scale"],
        len(self.data["bands"]) // self.groups,
        self.s.sr_size,
    )
    model.update(self.s.schedules.get(family, {}).get("model", {}))
    sched = gs.family_schedule(self.s, family)
    init = sched.pop("init", None)
    c = self.s.schedules.get(family, {}).get("crop", self.s.crop)
    return {
        "data": self.fp,
        "family": family,
        **groups,
        "model": model,
        "aux_weights": sr_config.AUX_WEIGHTS.get(family, {}),
        **sched,
        "batch": self.s.batch_size,
        "seed": self.s.seed,
        **({"crop": c} if c and sched["steps"] else {}),
        **({"init": self.sr_key(init)} if init else {}),
    }

  def sr_key(self, family: str) -> str:
    return cache_key(f"sr_{family}", self.sr_spec(family))

  def sr_params(self, family: str):
    """(params, meta) of `family`'s SR model: cached, else trained on the
    train pairs (from the trained parameters of its schedule's "init"
    family: ESRGAN's adversarial stage from its L1 stage "gan_psnr")."""
    spec, key = self.sr_spec(family), self.sr_key(family)
    model, _ = predict_fn(spec["model"], "sr")
    params, meta = load_params(self.cache, key)
    if params is not None:
      return params, meta
    t0 = time.time()
    lr_n = self.to_groups(self.norm(self.train["lr"]))
    hr_n = self.to_groups(self.norm(self.train["hr"]))
    params = train.init_params(
        model, {"lr": lr_n[:1], "hr": hr_n[:1]}, seed=self.s.seed
    )
    init = gs.family_schedule(self.s, family).get("init")
    if init:
      params = checkpoint.replace_checked(
          params, self.sr_params(init)[0], f"SR {family} from {init}"
      )
    losses = []
    if spec["steps"]:
      self.log(f"  training SR {family} ({spec['steps']} steps)")
      crop = spec.get("crop")
      params, losses = train.fit_arrays(
          model,
          params,
          {"lr": lr_n, "hr": hr_n},
          steps=spec["steps"],
          batch_size=self.s.batch_size,
          lr=spec["lr"],
          seed=self.s.seed,
          aux_weights=spec["aux_weights"],
          transform=(
              (
                  lambda b, r: grid_data.crop_pairs(
                      b, r, crop, self.data["scale"]
                  )
              )
              if crop
              else None
          ),
      )
    meta = {
        "spec": spec,
        "train_seconds": time.time() - t0,
        "final_loss": losses[-1] if losses else None,
    }
    save_params(self.cache, key, params, meta)
    self.trained.append(key)
    return params, meta

  def sr(self, family: str) -> tuple[np.ndarray, dict]:
    """(SR of the test LR `[N, H, W, C]` in [0, 1], fidelity dict)."""
    if family in self._sr:
      return self._sr[family]
    spec, key = self.sr_spec(family), self.sr_key(family)
    hw = tuple(int(n) for n in self.test["hr"].shape[1:3])
    infer = self.inference(family)  # inference-only fields over the model
    _, pred = predict_fn({**spec["model"], **infer}, "sr", hw)
    params, meta = self.sr_params(family)
    out = self.from_groups(
        batched(
            lambda x: pred(params, x),
            self.to_groups(self.norm(self.test["lr"])),
            self.infer_batch,
        )
    )
    sr01 = np.clip(out * self.std + self.mean, 0.0, 1.0)
    win = gw.load_arrays(self.cache, self.win_name(family))
    if win is None:
      win = gw.window_fidelity(
          sr01, self.test["hr"], self.nets(), self.infer_batch
      )
      gw.save_arrays(self.cache, self.win_name(family), win)
    fid_key = "_".join(
        ([] if self.s.split == "test" else [self.s.split])
        + ["fidelity"]
        + [f"{k}{v}" for k, v in sorted(infer.items())]
    )
    if fid_key not in meta:  # means over the windows (randfeat: None off)
      meta[fid_key] = {
          k: float(win[k].mean()) if k in win else None
          for k in ("psnr", "ssim", "randfeat_dist")
      }
      save_params(self.cache, key, params, meta)
    self._sr[family] = (sr01, meta[fid_key])
    return self._sr[family]

  def inference(self, family: str) -> dict:
    """The family's inference-only model fields (gs.INFERENCE_KEYS) from
    its schedule: they change the windows' cache name, not the model's
    key, so choosing them on val retrains nothing."""
    sched = self.s.schedules.get(family, {})
    return {k: sched[k] for k in gs.INFERENCE_KEYS if k in sched}

  # ---- feature nets and per-window fidelity
  def hrenc_run(self) -> tuple[str, str]:
    """(workdir, id for cache names) of the learned-feature encoder's run:
    s.feature_init, else one pretrained here (s.pretrain_steps), else
    ("", "")."""
    if self.s.feature_init:
      return self.s.feature_init, os.path.abspath(self.s.feature_init)
    if not (self.s.pretrain_steps and self.s.feature_distance):
      return "", ""
    s = self.s
    return gw.pretrain_run(
        self.cache, self.data["path"], s.pretrain_steps, s.seed, self.log
    )

  def nets(self) -> dict:
    if self._nets is None:
      run, _ = self.hrenc_run()
      self._nets = gw.feature_nets(
          self.test["hr"].shape[-1], self.s.feature_distance, run
      )
    return self._nets

  def win_name(self, family: str) -> str:
    """Cache name of the per-window fidelity of `family`'s SR (it names
    the feature encoders, so another --feature_init recomputes it)."""
    nets = {"randfeat": self.s.feature_distance, "hrenc": self.hrenc_run()[1]}
    if self.s.split != "test":
      nets["split"] = self.s.split
    nets.update(self.inference(family))
    return cache_key(f"win_{self.sr_key(family)}", nets)

  def sr_windows(self, family: str) -> tuple[dict, dict]:
    """({metric: [N]}, {net: SR features [N, F]}) of the test windows."""
    win = gw.load_arrays(self.cache, self.win_name(family))
    if win is None:
      self.sr(family)
      win = gw.load_arrays(self.cache, self.win_name(family))
    return gw.split_windows(win)

  def hr_features(self) -> dict:
    """{net: pooled features `[N, F]`} of the test HR."""
    if self._hr_feats is None:
      self._hr_feats = gw.pooled(self.test["hr"], self.nets(), self.infer_batch)
    return self._hr_feats

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

    win = gw.load_arrays(self.cache, f"{key}-win")
    if "hr" not in meta or win is None:
      k = self.data["tasks"][task].get("num_classes")
      win = {}
      for name, x in (("hr", self.test["hr"]), ("lr_up", self.lr_up())):
        y = predict(x)
        meta[name] = grid_stats.task_metrics(task, y, self.test, k)
        win[name] = grid_stats.window_stats(task, y, self.test, k)
      gw.save_arrays(self.cache, f"{key}-win", win)  # per window
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
    if cached is not None and gw.load_arrays(self.cache, key) is not None:
      return cached, False  # (caches before the per-window arrays: redone)
    sr01, fid = self.sr(family)
    predict, meta = self.downstream(task, backbone)
    k = self.data["tasks"][task].get("num_classes")
    pred = predict(sr01)
    m = grid_stats.task_metrics(task, pred, self.test, k)
    gw.save_arrays(
        self.cache, key, grid_stats.window_stats(task, pred, self.test, k)
    )
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
        "ds_key": self.ds_key(task, backbone),
    }
    save_json(self.cache, key, cell)
    return cell, True

  def cell_windows(self, cell: dict) -> dict:
    """{"sr", "hr", "lr_up": grid_stats.window_stats} of a cell."""
    ds = gw.load_arrays(self.cache, f"{cell['ds_key']}-win")
    if ds is None:  # cached before the per-window arrays
      self.downstream(cell["task"], cell["downstream"])
      ds = gw.load_arrays(self.cache, f"{cell['ds_key']}-win")
    return {"sr": gw.load_arrays(self.cache, cell["key"]), **ds}

  def bootstrap(self, cells: list[dict], families: Sequence[str]) -> dict:
    """grid_stats.bootstrap_grid over this grid's test windows."""
    wins = {f: self.sr_windows(f) for f in families}
    return grid_stats.bootstrap_grid(
        cells,
        [self.cell_windows(c) for c in cells],
        {f: w[0] for f, w in wins.items()},
        {f: w[1] for f, w in wins.items()},
        self.hr_features(),
        draws=self.s.bootstrap_draws,
        seed=self.s.seed,
        top_k=self.s.top_k,
        # paired differences vs the model each one started from
        pairs={
            f: i
            for f in families
            if (i := gs.family_schedule(self.s, f).get("init")) in families
        },
    )


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
    sr_lr: float | None = None,
    schedule: dict | None = None,
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
  default with quick=True) or "full" (`settings`); task_steps and other
  `Settings` fields (`overrides`, e.g. max_train=64, scale=4,
  sr_only=True, split="val") refine it; sr_steps / sr_lr replace every SR
  family's steps / learning rate, then `schedule` ({family: {key:
  value}}, gs.SCHEDULE_KEYS) is merged into the per-family schedules.
  sr_models: None = SR_MODELS, SR_MODELS_FULL for "full" (RUNLOCAL's for
  "tiny"). downstream: the backbones (None: DOWNSTREAM); task_downstream:
  {task: backbones} where a task differs; with "quick", QUICK[dataset]
  (and QUICK_SCALE[(dataset, scale)]) fills what the call leaves unset.
  tasks: None = every task the dataset has (the first only for "tiny").
  cache_dir: trained models and cells (default OUT/cache); data_root:
  where named datasets are built.
  """
  preset = preset or ("quick" if quick else "full")
  q = gs.preset_table(preset, dataset, overrides.get("scale", 0))
  s = settings(preset, **{**q.get("settings", {}), **overrides})
  if sr_steps is not None or sr_lr is not None:
    drop = {"steps"} if sr_steps is not None else set()
    drop |= {"lr"} if sr_lr is not None else set()
    s = dataclasses.replace(
        s,
        sr_steps=s.sr_steps if sr_steps is None else sr_steps,
        lr=s.lr if sr_lr is None else sr_lr,
        schedules={
            f: {k: v for k, v in d.items() if k not in drop}
            for f, d in s.schedules.items()
        },
    )
  s = gs.with_schedule(s, schedule or {})
  if s.split != "test" and not s.sr_only:
    raise ValueError(
        f"split={s.split!r} (choosing SR schedules) needs sr_only: the "
        "downstream models are scored on the test windows only."
    )
  if downstream is None:
    downstream = q.get("downstream", DOWNSTREAM)
  if task_downstream is None:
    task_downstream = q.get("task_downstream", {})
  if sr_models is None:
    sr_models = q.get(
        "sr_models", SR_MODELS_FULL if preset == "full" else SR_MODELS
    )
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
  data = grid_data.load_dataset(
      dataset, preset, s.seed, data_root, s.scale, s.hr_size
  )
  if s.sr_only:
    tasks = []
  elif tasks is None:
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
  sr_fidelity = {}  # SR only: the means over the windows, every family
  for family in sr_models if s.sr_only else ():
    sr_fidelity[family] = grid.sr(family)[1]
    log(f"  {family}: {s.split} {sr_fidelity[family]}")
  boot = None
  if s.bootstrap_draws and (cells or s.sr_only):
    boot = grid.bootstrap(cells, sr_models)
    for c in cells:  # the set-level and learned-feature fidelity
      fam = boot["sr_models"][c["sr"]]
      for m in ("hrenc_dist", "fid_randfeat", "fid_hrenc"):
        c[m] = fam.get(m)
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
      "split": s.split,  # the evaluated windows ("test" unless choosing)
      **({"sr_fidelity": sr_fidelity} if s.sr_only else {}),
      "sr_training": gs.training_summary(
          {f: load_json(cache, grid.sr_key(f)) for f in sr_models}
      ),
      "run": {
          "trained": grid.trained,
          "cells_computed": computed,
          "seconds": time.time() - t0,
      },
  }
  if boot is not None:
    grid_stats.merge_intervals(results, boot)
    results["feature_nets"] = {
        "randfeat": s.feature_distance,
        "hrenc": grid.hrenc_run()[1] or None,
        "frechet_min_windows": {
            k: fidelity.frechet_min_samples(v.shape[1])
            for k, v in grid.hr_features().items()
        },
    }
    results["run"]["seconds"] = time.time() - t0
  results["file"] = reporting.results_name(
      dataset, gs.schedule_name(preset, s), s.seed, s.seed
  )
  reporting.write_json(out_dir, results["file"], results)
  return results


def main(argv=None):
  a = gs.parser(__doc__.split("\n")[0]).parse_args(argv)
  results = run_grid(
      a.dataset,
      a.out,
      quick=a.quick,
      preset="tiny" if a.runlocal else None,
      sr_models=a.sr_models.split(",") if a.sr_models else None,
      downstream=a.downstream.split(",") if a.downstream else None,
      tasks=a.tasks.split(",") if a.tasks else None,
      sr_steps=a.sr_steps,
      sr_lr=a.sr_lr,
      schedule=json.loads(a.schedule) if a.schedule else None,
      task_steps=a.task_steps,
      cache_dir=a.cache,
      data_root=a.data_root,
      **{
          k: v
          for k, v in (
              ("feature_init", a.feature_init),
              ("pretrain_steps", a.pretrain_steps),
              ("bootstrap_draws", a.bootstrap_draws),
              ("scale", a.scale),
              ("crop", a.crop),
              ("sr_only", a.sr_only or None),
              ("split", a.split if a.split != "test" else None),
          )
          if v not in (None, "")
      },
  )
  grid_plot.print_results(results)
  stem = os.path.splitext(results["file"])[0]
  if results["settings"]["sr_only"] and "sr_models" not in results:
    return  # no intervals (--bootstrap_draws 0): no figure
  plot = grid_plot.plot_sr if results["settings"]["sr_only"] else grid_plot.plot
  png = plot(results, os.path.join(a.out, stem + ".png"))
  print(f"wrote {png}")


if __name__ == "__main__":
  main()
