r"""Does the choice of tiles matter? Cross-evaluates trained cross-scale runs
with each other's tile selections.

  python -m experiments.cross_scale.tradeoff --dataset rsscn7 --quick \
      --methods ours,heuristic --budgets 0.25 --seeds 3 --work_dir RUNS \
      --out /tmp/t
  python -m experiments.cross_scale.selection_swap --work_dir RUNS \
      --budget 0.25 --out /tmp/swap
  python -m experiments.cross_scale.selection_swap \
      --runs ours=DIR1,heuristic=DIR2 --out /tmp/swap

Every run (a training workdir: its config.json and checkpoints, same
dataset and budget) is evaluated on the test split with the tiles chosen
by every selection source: each run's learned sampler (its `sampler`
parameters grafted in) and the fixed policies heuristic, uniform and
random. `--work_dir` (repeatable) names tradeoff sweeps (`experiments.
cross_scale.tradeoff --work_dir`): their finished cells at `--budget` are
grouped by seed, each seed cross-evaluated, and the tables averaged over
seeds (`--seeds 8,9,10` keeps only those). Prints and writes
(OUT/<dataset>_steps<N>_s<first>-<last>.json, with "per_seed"):
  accuracy[run][source]: the run's predictor and head fed `source`'s tiles
    (the diagonal entry of a run under its own policy is its test accuracy);
  overlap[a][b]: the mean fraction of the k tiles that sources a and b both
    buy in a scene (1 = the same tiles);
  object_recall[source] (records with the generator's object map,
    `mask_objects`, e.g. geoworld): the share of the split's object tiles
    (any object pixel) that the source buys, pooled over scenes;
  target_recall["detail"]: the same for the k tiles of most HR detail, the
    ceiling of a sampler that learned its default "detail" target exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from typing import Any

from absl import flags
import jax
import numpy as np

from crossscale import (
    evaluators,
    export,
    input_pipeline,
    partitioning,
    reporting,
    shards,
    tile_grid,
    train,
)

FIXED_POLICIES = ("heuristic", "uniform", "random")


@dataclasses.dataclass
class Run:
  """A trained cross-scale run: its config, model, host params and task
  (`train.task_of`: "single_label" or "multi_label")."""

  name: str
  workdir: str
  config: Any
  model: Any
  params: Any
  task: str


def load_run(name: str, workdir: str) -> Run:
  config = export.load_config(workdir)
  manifest = shards.load_manifest(config.data.path)
  params, _ = export.restore_params(config, manifest, workdir)
  model = export.build_model(config, manifest).clone(select_impl="reference")
  task = train.task_of(config, manifest)
  return Run(name, workdir, config, model, params, task)


@dataclasses.dataclass
class Source:
  """Where a run's tiles come from: a policy, and for a learned sampler
  grafted from another run its parameters and module config."""

  policy: str
  sampler_params: Any = None
  sampler_config: Any = None


def sources(runs: list[Run]) -> dict[str, Source]:
  """Selection sources by name: each run with a learned sampler, then the
  fixed policies."""
  out = {
      r.name: Source("learned", r.params["sampler"], r.model.sampler)
      for r in runs
      if r.config.model.policy == "learned"
  }
  out.update({p: Source(p) for p in FIXED_POLICIES})
  return out


def with_source(run: Run, source: Source) -> tuple[Any, Any]:
  """(model, params) of `run`'s predictor and head selecting by `source`
  (a learned sampler's parameters grafted in with its own config, which may
  differ from `run`'s, e.g. model.sampler.prior)."""
  params, model = dict(run.params), run.model.clone(policy=source.policy)
  if source.sampler_params is not None:
    params["sampler"] = source.sampler_params
    model = model.clone(sampler=source.sampler_config)
  return model, params


def selections(
    model, params, data_dir: str, split: str, batch_size: int
) -> np.ndarray:
  """`[S, k]` tile indices `model` buys for each scene of `split` (bought
  slots only matter for fixed budgets: all k are)."""
  plan = jax.jit(
      lambda p, lr: model.apply(
          {"params": p},
          {"lr": lr},
          rngs={"selection": jax.random.key(0)},
          method="plan",
      )["tile_indices"]
  )
  out = []
  for batch in input_pipeline.eval_dataset(
      data_dir, split, batch_size=batch_size, fields=("lr",)
  ):
    idx = np.asarray(plan(params, batch["lr"]))
    out.append(idx[np.asarray(batch["valid"]).astype(bool)])
  return np.concatenate(out)


def object_tiles(data_dir: str, split: str, grid: int, batch_size: int):
  """`[S, N]` bool: tiles holding any pixel of the records' object map
  (`mask_objects`), or None when the records carry none."""
  if "objects" not in shards.load_manifest(data_dir).mask_names:
    return None
  out = []
  for batch in input_pipeline.eval_dataset(
      data_dir, split, batch_size=batch_size, fields=("mask_objects",)
  ):
    frac = np.asarray(tile_grid.mask_fraction(batch["mask_objects"], grid))
    out.append(frac[np.asarray(batch["valid"]).astype(bool)] > 0)
  return np.concatenate(out)


def detail_target_tiles(
    data_dir: str, split: str, grid: int, k: int, batch_size: int
) -> np.ndarray:
  """`[S, k]` the k tiles of each scene with the most sub-LR-pixel HR
  detail (`tile_grid.hr_detail`, what the sampler's default "detail" target
  regresses): what a sampler that learned that target perfectly buys. Not
  a policy (it reads every HR tile): the target's ceiling."""
  out = []
  for batch in input_pipeline.eval_dataset(
      data_dir, split, batch_size=batch_size, fields=("lr", "hr")
  ):
    hr, lr = batch["hr"], batch["lr"]
    energy = tile_grid.hr_detail(
        tile_grid.to_tiles(hr, grid), hr.shape[1] // lr.shape[1]
    )  # [B, N]
    top = np.argsort(-np.asarray(energy), axis=1, kind="stable")[:, :k]
    out.append(top[np.asarray(batch["valid"]).astype(bool)])
  return np.concatenate(out)


def object_recall(idx: np.ndarray, objects: np.ndarray) -> float:
  """Share of the object tiles `objects` `[S, N]` that the tile indices
  `idx` `[S, k]` buy, pooled over scenes (nan without object tiles)."""
  bought = np.take_along_axis(objects, idx, axis=1).sum()
  total = objects.sum()
  return float(bought / total) if total else float("nan")


def overlap(idx_a: np.ndarray, idx_b: np.ndarray) -> float:
  """Mean over scenes of |A & B| / k for tile index sets `[S, k]`."""
  k = idx_a.shape[1]
  if k == 0:
    return 1.0
  return float(
      np.mean(
          [
              len(set(a) & set(b)) / k
              for a, b in zip(idx_a.tolist(), idx_b.tolist())
          ]
      )
  )


def swap(runs: list[Run], split: str = "test") -> dict:
  """{"accuracy": {run: {source: value of "metric"}}, "metric": accuracy
  (single-label) or mAP_macro (multi-label), "overlap": {a: {b: frac}},
  "k": tiles per scene, "sources": [...]} (module docstring)."""
  ref = runs[0]
  data_dir = ref.config.data.path
  ks = {r.name: r.model.k() for r in runs}
  if len(set(ks.values())) != 1 or len({r.config.data.path for r in runs}) != 1:
    raise ValueError(
        f"runs differ in budget (k per run: {ks}) or dataset "
        f"({[r.config.data.path for r in runs]}): cross-"
        "evaluate runs of one tradeoff cell (same --budgets)."
    )
  srcs = sources(runs)
  bs = int(ref.config.batch_size)
  chosen = {}
  for s, src in srcs.items():
    model, params = with_source(ref, src)
    chosen[s] = selections(model, params, data_dir, split, bs)
  mesh = partitioning.make_mesh((("data", -1),), jax.devices()[:1])
  # Multi-label data has no accuracy: its tables hold macro mAP.
  metric = "accuracy" if ref.task == "single_label" else "mAP_macro"
  acc, evs = {}, {}
  for r in runs:
    acc[r.name] = {}
    for s, src in srcs.items():
      model, params = with_source(r, src)
      # Runs of one cell differ in policy (and sampler config) only: once
      # re-pointed at a source they are the same module, so its jitted
      # evaluator is built once.
      key = json.dumps(
          {
              **r.config.model.to_dict(),
              "policy": src.policy,
              "sampler": model.sampler,
          },
          sort_keys=True,
          default=str,
      )
      if key not in evs:
        evs[key] = evaluators.ClassificationEvaluator(
            model,
            data_dir=data_dir,
            split=split,
            batch_size=bs,
            task=r.task,
            mesh=mesh,
            fields=tuple(r.config.data.fields),
        )
      acc[r.name][s] = evs[key].run(params)[metric]
  ov = {a: {b: overlap(chosen[a], chosen[b]) for b in srcs} for a in srcs}
  objects = object_tiles(data_dir, split, ref.model.grid, bs)
  recall, target = {}, {}
  if objects is not None:
    recall = {s: object_recall(chosen[s], objects) for s in srcs}
    top = detail_target_tiles(data_dir, split, ref.model.grid, ks[ref.name], bs)
    target = {"detail": object_recall(top, objects)}
  return {
      "accuracy": acc,
      "metric": metric,
      "overlap": ov,
      "object_recall": recall,
      "target_recall": target,
      "k": ks[ref.name],
      "sources": list(srcs),
      "split": split,
  }


CELL = re.compile(r"^(?P<method>.+)_(?P<budget>\d\.\d{4})(?:_s(?P<seed>\d+))?$")


def find_cells(
    work_dirs, budget: float, seeds=None
) -> dict[int, dict[str, str]]:
  """{seed: {method: workdir}} of the finished cells (final_metrics.json) at
  `budget` in tradeoff sweep directories (cells named as
  `experiments.cross_scale.tradeoff` names them; no seed suffix = seed 0).
  `seeds`: keep only these (each must have a finished cell), e.g. fresh
  seeds held out to confirm what the earlier ones suggested."""
  cells: dict[int, dict[str, str]] = {}
  for work in work_dirs:
    for name in sorted(os.listdir(work)):
      m = CELL.match(name)
      path = os.path.join(work, name)
      if not m or not os.path.exists(os.path.join(path, "final_metrics.json")):
        continue
      if abs(float(m["budget"]) - budget) > 5e-5:
        continue
      seed = int(m["seed"] or 0)
      if m["method"] in cells.get(seed, {}):
        raise ValueError(
            f"two cells for {m['method']} seed {seed} at budget "
            f"{budget}: {cells[seed][m['method']]} and {path}"
        )
      cells.setdefault(seed, {})[m["method"]] = path
  if seeds is not None:
    missing = sorted(set(seeds) - set(cells))
    if missing:
      raise FileNotFoundError(
          f"no finished cell for seeds {missing} at budget {budget:.4f} in "
          f"{list(work_dirs)}: train them with "
          "experiments.cross_scale.tradeoff --first_seed/--seeds and the same "
          "--work_dir"
      )
    cells = {s: cells[s] for s in seeds}
  if not cells:
    raise FileNotFoundError(
        f"no finished cell at budget {budget:.4f} in "
        f"{list(work_dirs)} (named METHOD_{budget:.4f}"
        "[_sSEED] by experiments.cross_scale.tradeoff --work_dir)"
    )
  return cells


def parse_runs(spec: str) -> dict[str, str]:
  """--runs "ours=DIR1,heuristic=DIR2" -> {name: workdir}."""
  runs = {}
  for item in spec.split(","):
    name, sep, workdir = item.partition("=")
    if not sep or not name:
      raise ValueError(f"--runs item {item!r}: expected NAME=WORKDIR")
    runs[name] = workdir
  return runs


def mean_tables(per_seed: list[dict]) -> dict:
  """Element-wise mean of swap(...) results over seeds (entries present in
  every seed)."""
  out = {k: per_seed[0].get(k) for k in ("k", "split", "sources", "metric")}
  for key in ("object_recall", "target_recall"):
    out[key] = {
        s: float(np.mean([r[key][s] for r in per_seed]))
        for s in per_seed[0].get(key, {})
    }
  for key in ("accuracy", "overlap"):
    rows = set.intersection(*(set(r[key]) for r in per_seed))
    out[key] = {
        a: {
            b: float(np.mean([r[key][a][b] for r in per_seed]))
            for b in per_seed[0][key][a]
        }
        for a in per_seed[0][key]
        if a in rows
    }
  return out


def add_run_flags(p: argparse.ArgumentParser, budget: float) -> None:
  """The flags that name trained runs (`runs_by_seed`): --runs, or a
  tradeoff sweep's --work_dir with --budget and --seeds; and --split."""
  p.add_argument(
      "--runs", default="", help="comma-separated NAME=WORKDIR of trained runs"
  )
  p.add_argument(
      "--work_dir",
      action="append",
      default=[],
      help="a tradeoff sweep's --work_dir (repeatable)",
  )
  p.add_argument(
      "--budget",
      type=float,
      default=budget,
      help="with --work_dir: the budget whose cells to use",
  )
  p.add_argument(
      "--seeds",
      default="",
      help="with --work_dir: comma-separated seeds to keep "
      "(default: every seed with finished cells)",
  )
  p.add_argument("--split", default="test")
  p.add_argument(
      "--name",
      default="",
      help="results file stem (default <dataset>_steps<N>_s<first>-<last>)",
  )


def runs_by_seed(a) -> dict[int, dict[str, str]]:
  """{seed: {name: workdir}} from the parsed `add_run_flags` (--runs is
  seed 0)."""
  if bool(a.runs) == bool(a.work_dir):
    raise ValueError(
        "give either --runs NAME=DIR,... or --work_dir (a "
        "tradeoff sweep) with --budget"
    )
  if a.runs:
    return {0: parse_runs(a.runs)}
  seeds = [int(x) for x in a.seeds.split(",")] if a.seeds else None
  return find_cells(a.work_dir, a.budget, seeds)


def results_stem(a, config, seeds) -> str:
  """--name, or `<dataset>_steps<N>_s<first>-<last>` of the runs' config
  (its data directory's dataset name and total_steps)."""
  if a.name:
    return a.name
  dataset = shards.load_manifest(config.data.path).name
  schedule = reporting.schedule_name(True, int(config.total_steps))
  name = reporting.results_name(dataset, schedule, min(seeds), max(seeds))
  return name.removesuffix(".json")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_run_flags(p, budget=0.25)
  p.add_argument("--out", required=True)
  a = p.parse_args(argv)
  flags.FLAGS.mark_as_parsed()
  names = runs_by_seed(a)
  per_seed, config = {}, None
  for seed, by_method in sorted(names.items()):
    print(f"== seed {seed}: {sorted(by_method)}", flush=True)
    runs = [load_run(m, d) for m, d in by_method.items()]
    config = runs[0].config
    per_seed[seed] = swap(runs, a.split)
  res = mean_tables(list(per_seed.values()))
  if len(per_seed) > 1:
    print(f"means over seeds {sorted(per_seed)}")
  srcs = res["sources"]
  print(
      f"{a.split} {res['metric']}: run (rows) fed each source's tiles "
      f"(columns), k={res['k']}"
  )
  reporting.print_table(
      [{"run": r, **v} for r, v in res["accuracy"].items()], ["run", *srcs]
  )
  print("\nmean fraction of tiles both sources buy")
  reporting.print_table(
      [{"source": s, **v} for s, v in res["overlap"].items()], ["source", *srcs]
  )
  if res["object_recall"]:
    print("\nshare of the object tiles each source buys")
    reporting.print_table([res["object_recall"]], srcs)
    print(f"the detail target's ceiling: {res['target_recall']['detail']:.3f}")
  reporting.write_json(
      a.out,
      results_stem(a, config, list(per_seed)) + ".json",
      {
          **res,
          "seeds": sorted(per_seed),
          "per_seed": {str(s): r for s, r in per_seed.items()},
          "runs": {str(s): n for s, n in names.items()},
      },
      datasets={"data": config.data.path},
  )


if __name__ == "__main__":
  main()
