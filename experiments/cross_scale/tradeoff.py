r"""Accuracy-cost trade-off of every tile-acquisition method over budgets.

  python -m experiments.cross_scale.tradeoff --dataset toyworld --quick \
      --out /tmp/tradeoff
  python -m experiments.cross_scale.tradeoff --dataset rsscn7 --quick \
      --out /tmp/tradeoff_r7
  python -m experiments.cross_scale.tradeoff --runlocal --out /tmp/smoke

Trains each method at budgets {0, 1/16, 1/8, 1/4, 1/2, 1} of the HR tile
grid with the same schedule and evaluates it once, at the end, on the test
split (`--split val` while choosing designs): ours (learned sampler +
LR-guided predictor), random, uniform-grid and heuristic (LR variance + edge
energy) selection through the same predictor, HR-only completion (our
sampler, predictor and head without LR) and, where the records carry the
generator's object map (geoworld), the oracle that buys the tiles holding
label-bearing objects and `oracle_sampler`, ours with its sampler trained
on that map (the best LR-only selection this sampler learns). Budget 0
of the LR-using methods is one LR-only run and budget 1 one dense-HR run
(selection is moot there). Every cell trains
`--seeds` seeds (default 3, fixed before the run); ours minus each method,
LR-only and dense HR is reported paired by seed and scene with a 95%
bootstrap interval (`paired_vs`: accuracy on single-label data, macro mAP
on multi-label). Also times a training step of ours at 1/8 against dense HR.
Runs are experiments/configs/cross_scale.py:quick (--quick: 400 steps),
:sweep (the default 1200) or :runlocal,sweep (--runlocal: a seconds-long
smoke on a tiny toyworld) plus overrides. Writes
OUT/<dataset>_<schedule>_s<first>-<last>.json and .png. `--dataset` is a
registered name or any records directory.
`--work_dir DIR` keeps every cell's run (relaunching skips finished cells;
`experiments.cross_scale.selection_swap` cross-evaluates them); `--set
KEY=VALUE` overrides the config of every run; `--variant NAME:KEY=VALUE` adds
a method, ours with that override.
`run_tradeoff(...)` is the sweep as a function and `plot(...)` its figure
(experiments/notebooks/budget_sweep.ipynb and predictor_ablation.ipynb call
them).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile

from absl import flags
import matplotlib
import ml_collections
import numpy as np

from benchmarks import step_time
from crossscale import bootstrap, reporting, run_config, shards, train
from data import registry
from experiments.configs import _common as common
from experiments.configs import cross_scale, pretrain
from experiments.cross_scale import sweep_args

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

BUDGETS = (0.0, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
METHODS = {  # name -> config overrides
    "ours": {"model.policy": "learned"},
    "random": {"model.policy": "random"},
    "uniform": {"model.policy": "uniform"},
    "heuristic": {"model.policy": "heuristic"},
    "hr_only": {
        "model.policy": "learned",
        "model.predictor.lr_guidance": False,
    },
    # Upper reference: buys the tiles holding label-bearing objects (the
    # generator's object map; datasets with masks["objects"] only).
    "oracle": {
        "model.policy": "oracle",
        "data.fields": ("lr", "hr", "labels", "mask_objects"),
    },
    # Upper reference of LR-only selection: ours with its sampler trained
    # on the object map instead of its own targets, from the first step.
    "oracle_sampler": {
        "model.policy": "learned",
        "model.sampler_target.detail": 0.0,
        "model.sampler_target.completion": 0.0,
        "model.sampler_target.objects": 1.0,
        "data.fields": ("lr", "hr", "labels", "mask_objects"),
        "optim.frozen_for": (),
    },
}


# Overrides that only choose tiles (a key, or every key under a "prefix."):
# no effect at budget 0 (none bought) or 1 (all bought), so those cells are
# shared across methods.
SELECTION_KEYS = ("model.policy", "data.fields", "model.sampler_target.")


def selection_only(key: str, value=None) -> bool:
  """Whether the override `key`=`value` only changes which tiles are
  bought: SELECTION_KEYS, or `optim.frozen_for` holding only the sampler's
  parameters ("^sampler/...")."""
  if key == "optim.frozen_for":
    return all(str(p).startswith("^sampler/") for p, _ in value)
  return any(
      key == k or (k.endswith(".") and key.startswith(k))
      for k in SELECTION_KEYS
  )


def config_arg(quick: bool, runlocal: bool = False) -> str:
  """The cross_scale.py config arg of a sweep's runs."""
  if runlocal:
    return "runlocal,sweep"
  return "quick" if quick else "sweep"


def sweep_config(
    quick: bool, data_dir: str, runlocal: bool = False
) -> ml_collections.ConfigDict:
  """cross_scale.py:quick (or :sweep, :runlocal,sweep) reading `data_dir`."""
  c = cross_scale.get_config(config_arg(quick, runlocal))
  c.data.path = data_dir
  return c


def cell_config(
    c, overrides, steps: int, method_overrides: dict, budget, seed, split
) -> ml_collections.ConfigDict:
  """A sweep cell's config: `c` (`sweep_config`) with the sweep's
  `overrides`, `steps` (0: the schedule's), then the method's overrides,
  seed, budget and the split its final eval reads."""
  c.update_from_flattened_dict(dict(overrides or {}))
  if steps:
    c.total_steps = steps
  c.update_from_flattened_dict(
      {
          **method_overrides,
          "seed": seed,
          "model.budget": budget,
          "final_eval_split": split,
      }
  )
  return c


def run_one(config, workdir, defaults=None) -> dict:
  """Final test metrics of one cell, trained in `workdir`; a `workdir` that
  already holds a finished run of this same config (its `config.json` and
  `final_metrics.json`, written by the trainer; `run_config.differences`
  with `defaults`) is read back, not retrained, so a sweep relaunched with the
  same `--work_dir` resumes where it stopped."""
  done = os.path.join(workdir, "final_metrics.json")
  if os.path.exists(done):
    diff = run_config.differences(
        run_config.load_stored(workdir), config, defaults
    )
    if diff:
      raise ValueError(
          f"{workdir} holds a finished run of a different config "
          f"({', '.join(diff[:5])}): give this sweep a new --work_dir (or "
          "delete that directory)."
      )
    print(f"   finished earlier: {done}", flush=True)
    with open(done) as f:
      return json.load(f)["final"]
  out = train.train_and_evaluate(config, workdir)
  if "preempted_at" in out:  # SIGTERM: the trainer saved a checkpoint
    raise SystemExit(
        f"stopped by SIGTERM at step {out['preempted_at']} of the cell in "
        f"{workdir} (checkpoint saved): relaunch the same command with the "
        "same --work_dir to resume it; finished cells are kept."
    )
  return out["final"]


def toyworld_options(quick: bool, runlocal: bool = False) -> dict:
  """Registry options of the toyworld the sweep builds (`quick`: 2000
  training scenes, 500 test scenes; `runlocal`: 256 / 64 / 64)."""
  opts = cross_scale.get_config(config_arg(quick, runlocal)).toyworld.to_dict()
  if quick and not runlocal:
    opts.update(common.TOYWORLD_QUICK)
  return opts


def cell_dir(work: str, name: str, budget: float, seed: int) -> str:
  """`work/NAME_BUDGET_sSEED`: where one cell trains, whatever the sweep's
  number of seeds (seed 0 of a one-seed sweep is seed 0 of a longer one).
  A one-seed sweep used to write `work/NAME_BUDGET`: that cell is reused
  as seed 0 while no `_s0` cell exists."""
  tag = f"{name}_{budget:.4f}"
  path = os.path.join(work, f"{tag}_s{seed}")
  legacy = os.path.join(work, tag)
  if seed == 0 and not os.path.exists(path) and os.path.exists(legacy):
    return legacy
  return path


def run_tradeoff(
    data_dir: str,
    *,
    methods=tuple(METHODS),
    budgets=BUDGETS,
    quick: bool = True,
    runlocal: bool = False,
    steps: int = 0,
    overrides: dict | None = None,
    work_dir: str | None = None,
    seeds: int = 1,
    first_seed: int = 0,
    split: str = "test",
) -> dict:
  """Trains every method at every budget and evaluates it once, at the end,
  on `split` ("test"; "val" while choosing designs and defaults).

  methods: names in METHODS, or a dict name -> flattened config overrides
  (a method with `model.predictor.lr_guidance=False` does not use LR).
  overrides: flattened config overrides applied to every run after
  `sweep_config(quick, data_dir, runlocal)` (e.g. smaller widths); `steps`
  (> 0) sets total_steps. Budget 0 and 1 of the LR-using methods are one
  LR-only and one dense-HR run, shared by those methods (a variant with
  overrides beyond SELECTION_KEYS gets its own, "lr_only_<name>"). Runs
  write into `work_dir` (a new temp dir if None). `seeds` > 1 trains every
  cell with seeds first_seed..first_seed+seeds-1 (init, data order,
  sampling noise; a later batch of seeds extends an earlier one) and
  reports means;
  "accuracy_seeds" / "accuracy_std" hold the spread.
  Returns {"dataset", "grid", "budgets", "seeds", "split", "metric"
  ("accuracy" for single-label data, else "mAP_macro"), "methods": {name:
  {"budget", "accuracy", "accuracy_std", "accuracy_seeds", "mAP",
  "hr_tiles", "hr_fraction", "drift", "mAP@10", "scene_AP@10"}}, "table":
  one row per (method, budget), "cells": {name: {budget: [run dirs]}},
  "paired_vs_ours": `paired_vs(cells, metric, split)`}. "mAP@10" is the
  paper's class-to-scene retrieval; "scene_AP@10" scene-to-scene (older
  runs: "AP@10").
  """
  if not isinstance(methods, dict):
    methods = {m: METHODS[m] for m in methods}
  budgets = tuple(budgets)
  manifest = shards.load_manifest(data_dir)
  n_tiles = manifest.grid**2
  work = work_dir or tempfile.mkdtemp(prefix="tradeoff_")
  cache: dict[tuple, dict] = {}
  cells: dict[str, dict[float, list[str]]] = {}

  def evaluate(method, budget):
    lr_using = methods[method].get("model.predictor.lr_guidance", True)
    if budget in (0.0, 1.0) and lr_using:
      # Shared by the methods that differ only in which tiles they buy; a
      # variant's other overrides (e.g. the head) get cells of their own.
      extra = {
          k: v for k, v in methods[method].items() if not selection_only(k, v)
      }
      base = "lr_only" if budget == 0.0 else "dense"
      key = (f"{base}_{method}" if extra else base, budget)
      method_overrides = {**extra, "model.policy": "uniform"}
    else:
      key, method_overrides = (method, budget), methods[method]
    dirs = [
        cell_dir(work, key[0], budget, seed)
        for seed in range(first_seed, first_seed + seeds)
    ]
    cells.setdefault(method, {})[budget] = dirs
    if key not in cache:
      runs = []
      for seed, d in zip(range(first_seed, first_seed + seeds), dirs):
        c = cell_config(
            sweep_config(quick, data_dir, runlocal),
            overrides, steps, method_overrides, budget, seed, split,
        )  # fmt: skip
        print(f"== {key[0]} @ budget {budget:.4g} seed {seed}", flush=True)
        runs.append(run_one(c, d, sweep_config(quick, data_dir, runlocal)))
      cache[key] = _mean_runs(runs)
    return cache[key]

  results = {}
  for m in methods:
    rows = [evaluate(m, b) for b in budgets]
    results[m] = {
        "budget": list(budgets),
        "accuracy": [r.get("accuracy") for r in rows],
        "accuracy_std": [r.get("accuracy_std") for r in rows],
        "accuracy_seeds": [r.get("accuracy_seeds") for r in rows],
        "mAP": [r["mAP_macro"] for r in rows],
        "hr_tiles": [r["hr_tiles"] for r in rows],
        "hr_fraction": [r["hr_tiles"] / n_tiles for r in rows],
        "drift": [r.get("drift") for r in rows],
        "mAP@10": [r.get("mAP@10") for r in rows],
        "scene_AP@10": [r.get("scene_AP@10", r.get("AP@10")) for r in rows],
    }
  metric = "accuracy" if manifest.task == "single_label" else "mAP_macro"
  return {
      "dataset": manifest.name,
      "grid": manifest.grid,
      "budgets": list(budgets),
      "seeds": seeds,
      "split": split,
      "metric": metric,
      "methods": results,
      "table": table_rows(results),
      "cells": cells,
      "paired_vs_ours": paired_vs(cells, metric, split),
  }


def _mean_runs(runs: list[dict]) -> dict:
  """Per-key mean of the final metrics of one cell's seeds (None stays
  None), plus "accuracy_seeds" and "accuracy_std" (population std)."""
  out = {}
  for k in runs[0]:
    vals = [r.get(k) for r in runs]
    out[k] = None if any(v is None for v in vals) else float(np.mean(vals))
  if out.get("accuracy") is not None:
    accs = [float(r["accuracy"]) for r in runs]
    out["accuracy_seeds"], out["accuracy_std"] = accs, float(np.std(accs))
  return out


TABLE_COLUMNS = [
    "method",
    "budget",
    "hr_tiles",
    "accuracy",
    "accuracy_std",
    "mAP",
    "drift",
    "mAP@10",
    "scene_AP@10",
]


def table_rows(methods: dict) -> list[dict]:
  """One row per (method, budget) of `run_tradeoff(...)["methods"]` (older
  JSONs: "AP@10" is read as "scene_AP@10", "mAP@10" is None)."""
  table = []
  for m, r in methods.items():
    none = [None] * len(r["budget"])
    scene_ap = r.get("scene_AP@10", r.get("AP@10", none))
    for i, b in enumerate(r["budget"]):
      table.append(
          {
              "method": m,
              "budget": b,
              "hr_tiles": r["hr_tiles"][i],
              "accuracy": r["accuracy"][i],
              "accuracy_std": (
                  r.get("accuracy_std") or [None] * len(r["budget"])
              )[i],
              "mAP": r["mAP"][i],
              "drift": r["drift"][i],
              "mAP@10": r.get("mAP@10", none)[i],
              "scene_AP@10": scene_ap[i],
          }
      )
  return table


PAIRED_COLUMNS = [
    "method",
    "budget",
    "metric",
    "seeds",
    "scenes",
    "diff_points",
    "low_points",
    "high_points",
    "verdict",
]


def paired_vs(
    cells: dict,
    metric: str,
    split: str = "test",
    ref: str = "ours",
    draws: int = 1000,
) -> list[dict]:
  """`ref` minus every other method at each budget strictly between 0 and 1,
  paired by seed and scene, with a 95% bootstrap interval over both
  (`crossscale.bootstrap.paired_difference`).

  cells: {method: {budget: [cell dirs, one per seed]}} (`run_tradeoff`'s
  "cells"); each dir holds the run's per-scene `train.PREDICTIONS` of
  `split`. Rows compare `ref`@b with every method trained at b, and with
  the shared LR-only (method "lr_only", budget 0) and dense-HR ("dense",
  budget 1) runs. metric: "accuracy" or "mAP_macro". One row per pair:
  {"method", "budget", "metric", "seeds", "scenes", "diff_points",
  "low_points", "high_points" (the interval), "verdict": ahead | tie |
  behind}. Pairs without per-scene predictions on both sides (runs from
  before they were written) or with unequal seeds are left out.
  """
  if ref not in cells:
    return []

  @functools.cache  # the shared LR-only / dense cells pair with every budget
  def load(dirs: tuple[str, ...]):
    out = []
    for d in dirs:
      path = os.path.join(d, train.PREDICTIONS.format(split))
      if not os.path.exists(path):
        return None
      with np.load(path) as z:
        out.append((z["logits"], z["labels"]))
    return out

  others = {
      (m, b): dirs
      for m, by_b in cells.items()
      if m != ref
      for b, dirs in by_b.items()
      if 0.0 < b < 1.0
  }
  for m, b in (("lr_only", 0.0), ("dense", 1.0)):
    if b in cells[ref]:
      others[(m, b)] = cells[ref][b]
  rows = []
  for b, ref_dirs in cells[ref].items():
    if not 0.0 < b < 1.0:
      continue
    a = load(tuple(ref_dirs))
    for (m, ob), dirs in others.items():
      if ob != b and m not in ("lr_only", "dense"):
        continue
      o = load(tuple(dirs)) if len(dirs) == len(ref_dirs) else None
      if a is None or o is None:
        continue
      d = bootstrap.paired_difference(a, o, metric, draws=draws)
      rows.append(
          {
              "method": m,
              "budget": b,
              "metric": metric,
              "seeds": d["seeds"],
              "scenes": d["scenes"],
              "diff_points": 100 * d["diff"],
              "low_points": 100 * d["low"],
              "high_points": 100 * d["high"],
              "verdict": bootstrap.verdict(d["low"], d["high"]),
          }
      )
  return rows


def plot(results: dict, path: str | None = None, title: str | None = None):
  """Accuracy (mAP for multi-label data) vs HR cost, one line per method.
  Saves to `path` when given; returns the figure."""
  methods = results["methods"]
  first = next(iter(methods.values()))
  metric = "accuracy" if first["accuracy"][0] is not None else "mAP"
  fig, ax = plt.subplots(figsize=(6, 4))
  for m, r in methods.items():
    std = r.get(f"{metric}_std")
    if std and all(v is not None for v in std) and any(std):
      ax.errorbar(
          r["hr_fraction"], r[metric], yerr=std, marker="o", capsize=3, label=m
      )
    else:
      ax.plot(r["hr_fraction"], r[metric], marker="o", label=m)
  ax.set_xscale("symlog", linthresh=1 / 16)
  ax.set_xlabel("HR cost (fraction of tiles acquired)")
  ax.set_ylabel(f"test {metric}")
  ax.set_title(title or f"{results['dataset']}: accuracy vs HR cost")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  if path:
    fig.savefig(path, dpi=120)
  return fig


def default_methods(data_dir: str) -> list[str]:
  """Every method of METHODS the dataset supports: the oracles only where
  the records carry the generator's object map (masks["objects"])."""
  has_objects = "objects" in shards.load_manifest(data_dir).mask_names
  return [m for m in METHODS if not m.startswith("oracle") or has_objects]


def parse_methods(names: str, variants: list[str]) -> dict:
  """ "ours,heuristic" and ["ours_cf:model.selection.counterfactual=True"]
  -> {name: flattened config overrides}. A variant is ours (the learned
  sampler) with its own overrides (repeat a NAME to add more); its cells
  train beside the named methods and are paired with ours by seed."""
  methods = {m: METHODS[m] for m in sweep_args.known_names(names, METHODS)}
  for item in variants:
    name, override = sweep_args.parse_variant(
        item, METHODS, "ours_cf:model.selection.counterfactual=True"
    )
    methods.setdefault(name, dict(METHODS["ours"]))
    methods[name].update(override)
  return methods


def time_steps(
    data_dir: str, overrides: dict, quick: bool, runlocal: bool = False
) -> dict:
  """Seconds per train step of ours at 1/8 vs dense HR (full-size model;
  the runlocal one under `runlocal`)."""
  c = sweep_config(False, data_dir, runlocal)
  c.update_from_flattened_dict({**overrides, "model.budget": 1 / 8})
  n = 2 if runlocal else 5 if quick else 20
  t_ours = step_time.time_train_step(c, data_dir, n)
  c.update_from_flattened_dict({"model.budget": 1.0})
  t_dense = step_time.time_train_step(c, data_dir, n)
  return {
      "ours_1_8_s_per_step": t_ours,
      "dense_s_per_step": t_dense,
      "speedup": t_dense / t_ours,
      "batch_size": c.batch_size,
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
      "--dataset",
      default="toyworld",
      help="a registered name (toyworld, rsscn7, ucmerced, ...: "
      "data/registry.py) or a records directory",
  )
  p.add_argument("--quick", action="store_true")
  p.add_argument(
      "--runlocal",
      action="store_true",
      help="smoke test: tiny model and toyworld, 20 steps (seconds)",
  )
  p.add_argument("--out", required=True)
  p.add_argument(
      "--name",
      default="",
      help="results file stem (default <dataset>_<schedule>_s<first>-<last>)",
  )
  p.add_argument("--steps", type=int, default=0, help="override total_steps")
  p.add_argument(
      "--methods",
      default=None,
      help=f"comma-separated, of {','.join(METHODS)} (default: all the data "
      "supports, the oracle only with masks['objects']; --runlocal: ours)",
  )
  p.add_argument(
      "--pretrain_steps",
      type=int,
      default=0,
      help="> 0: also 'ours_pretrained', ours initialised from a "
      "cross-scale pretraining run of N label-free steps on "
      "the train split (experiments/pretrain/benefit.py)",
  )
  p.add_argument(
      "--budgets",
      default=None,
      help="comma-separated budget ratios (default: 0,1/16,1/8,"
      "1/4,1/2,1 as decimals; --runlocal: 0.125)",
  )
  p.add_argument(
      "--seeds",
      type=int,
      default=None,
      help="train every cell with this many seeds (default 3; --runlocal: "
      "1). Fixed before the run: a difference that needs more seeds to "
      "clear its interval is a tie",
  )
  p.add_argument(
      "--split",
      default="test",
      choices=("test", "val"),
      help="the split every run is evaluated on, once, at the end: val "
      "while choosing designs and defaults, test for the result",
  )
  p.add_argument(
      "--first_seed",
      type=int,
      default=0,
      help="seeds are first_seed..first_seed+seeds-1",
  )
  p.add_argument(
      "--work_dir",
      default=None,
      help="where each cell trains (default: a new temp dir); "
      "relaunching with the same one skips finished cells",
  )
  p.add_argument(
      "--set",
      action="append",
      default=[],
      metavar="KEY=VALUE",
      help="config override for every run (repeatable), e.g. "
      "--set model.sampler_target.completion=1.0",
  )
  p.add_argument(
      "--variant",
      action="append",
      default=[],
      metavar="NAME:KEY=VALUE",
      help="another method: ours with this override (repeatable),"
      " e.g. --variant ours_cf:model.selection."
      "counterfactual=True",
  )
  p.add_argument(
      "--no_step_time",
      action="store_true",
      help="skip timing a step of ours@1/8 against dense HR "
      "(minutes on a CPU), e.g. when only adding seeds (--runlocal does)",
  )
  a = p.parse_args(argv)
  flags.FLAGS.mark_as_parsed()
  overrides = sweep_args.parse_overrides(a.set)
  opts = (
      toyworld_options(a.quick, a.runlocal) if a.dataset == "toyworld" else None
  )
  data_dir = registry.resolve(a.dataset, None, opts)
  if a.runlocal:  # one cell, no step timing: a smoke in seconds
    a.methods = a.methods or "ours"
    a.budgets = a.budgets or "0.125"
    a.no_step_time = True
  if a.seeds is None:
    a.seeds = 1 if a.runlocal else 3
  methods = parse_methods(
      a.methods or ",".join(default_methods(data_dir)), a.variant
  )
  if a.pretrain_steps:
    pc = pretrain.get_config(
        f"{config_arg(a.quick, a.runlocal)},steps={a.pretrain_steps}"
    )
    pc.data.path = data_dir
    pre_dir = os.path.join(tempfile.mkdtemp(prefix="tradeoff_pre_"), "pre")
    train.train_and_evaluate(pc, pre_dir)
    methods["ours_pretrained"] = {
        "model.policy": "learned",
        "model_init": pre_dir,
    }
  budgets = (
      tuple(float(b) for b in a.budgets.split(",")) if a.budgets else BUDGETS
  )
  res = run_tradeoff(
      data_dir,
      methods=methods,
      budgets=budgets,
      quick=a.quick,
      runlocal=a.runlocal,
      steps=a.steps,
      seeds=a.seeds,
      first_seed=a.first_seed,
      overrides=overrides,
      work_dir=a.work_dir,
      split=a.split,
  )
  results = res["methods"]

  speed = (
      None
      if a.no_step_time
      else time_steps(data_dir, overrides, a.quick, a.runlocal)
  )

  reporting.print_table(res["table"], TABLE_COLUMNS)
  paired = res["paired_vs_ours"]
  if paired:
    print(
        f"\nours minus each method on {a.split}, paired by seed and scene "
        f"({res['metric']} points, 95% bootstrap interval; a tie contains 0):"
    )
    reporting.print_table(paired, PAIRED_COLUMNS)
  if speed:
    print(
        f"train step: ours@1/8 {speed['ours_1_8_s_per_step'] * 1e3:.1f} ms,"
        f" dense {speed['dense_s_per_step'] * 1e3:.1f} ms -> "
        f"{speed['speedup']:.2f}x faster (batch {speed['batch_size']})"
    )
  schedule = reporting.schedule_name(a.quick, a.steps, a.runlocal)
  stem = a.name or reporting.results_name(
      a.dataset, schedule, a.first_seed, a.first_seed + a.seeds - 1
  ).removesuffix(".json") + ("_val" if a.split == "val" else "")
  reporting.write_json(
      a.out,
      f"{stem}.json",
      {
          "dataset": res["dataset"],
          "quick": a.quick,
          "schedule": schedule,
          "grid": res["grid"],
          "split": a.split,
          "metric": res["metric"],
          "methods": results,
          "paired_vs_ours": paired,
          "step_time": speed,
          "seeds": a.seeds,
          "first_seed": a.first_seed,
          "overrides": overrides,
          "pretrain_steps": a.pretrain_steps,
      },
      datasets={"data": data_dir},
  )
  path = os.path.join(a.out, f"{stem}.png")
  plot(res, path)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
