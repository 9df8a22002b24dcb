"""Paired comparisons of trained sweep cells from any work dirs.

A sweep run later (more seeds, a new default for `ours`) is compared with
the cells of an earlier one without retraining: each cell dir holds its
run's per-scene predictions (`train.PREDICTIONS`), and `tradeoff.paired_vs`
pairs them by seed and scene.

  python -m experiments.cross_scale.pair_cells --metric mAP_macro \
    --seeds 0,1,2 --ours 0.125=RUNS_B/ours_0.1250_s{seed} \
    --cell lr_only:0=RUNS_A/lr_only_0.0000_s{seed} \
    --cell dense:1=RUNS_A/dense_1.0000_s{seed} \
    --cell random:0.125=RUNS_A/random_0.1250_s{seed} \
    --note "ours at commit X, baselines at Y" --out results/tradeoff/F.json

`{seed}` in a path stands for each of --seeds. Writes {"paired_vs_ours":
[rows as tradeoff.json's], "final": {method@budget: [the cell's final
metric per seed]}, "cells": {method: {budget: [dirs]}}, "note", ...} with
the provenance (commit, date, machine, command).
"""

from __future__ import annotations

import argparse
import json
import os

from absl import flags

from crossscale import reporting, train
from experiments.cross_scale import tradeoff


def parse_cell(spec: str, seeds: list[int]) -> tuple[str, float, list[str]]:
  """ "METHOD:BUDGET=PATH" -> (method, budget, one dir per seed)."""
  try:
    head, path = spec.split("=", 1)
    method, budget = head.split(":")
    b = float(budget)
  except ValueError:
    raise ValueError(
        f"--cell {spec!r}: expected METHOD:BUDGET=PATH, e.g. "
        "random:0.125=RUNS/random_0.1250_s{seed}"
    ) from None
  if len(seeds) > 1 and "{seed}" not in path:
    raise ValueError(
        f"--cell {spec!r}: {len(seeds)} seeds but the path has no {{seed}}"
    )
  return method, b, [path.format(seed=s) for s in seeds]


def build_cells(
    ours: list[str], others: list[str], seeds: list[int], split: str
) -> dict:
  """{method: {budget: [dirs]}} with lr_only / dense under "ours" at
  budgets 0 / 1 (tradeoff's layout); every dir checked for the split's
  predictions, naming the first that lacks them."""
  cells: dict = {}
  for spec in [f"ours:{s}" for s in ours] + list(others):
    method, b, dirs = parse_cell(spec, seeds)
    if method in ("lr_only", "dense"):
      method = "ours"  # paired_vs reads the references from ours' lists
    cells.setdefault(method, {})[b] = dirs
    for d in dirs:
      path = os.path.join(d, train.PREDICTIONS.format(split))
      if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: the cell {spec!r} has no per-scene "
            f"predictions on {split!r} (a run from before they were "
            "written, or not finished): evaluate it with `python -m "
            "crossscale.evaluate --workdir DIR`, or leave the cell out."
        )
  return cells


def final_metrics(cells: dict, metric: str) -> dict:
  """{"method@budget": [each seed's final `metric`]} from the trainer's
  final_metrics.json ({"final": {metric: value}}; None where a run did not
  write it)."""
  out = {}
  for m, by_b in cells.items():
    for b, dirs in by_b.items():
      name = {0.0: "lr_only", 1.0: "dense"}.get(b, m) if m == "ours" else m
      vals = []
      for d in dirs:
        path = os.path.join(d, "final_metrics.json")
        if os.path.exists(path):
          with open(path) as f:
            vals.append(json.load(f).get("final", {}).get(metric))
        else:
          vals.append(None)
      out[f"{name}@{b:g}"] = vals
  return out


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--metric", default="accuracy", help="accuracy | mAP_macro")
  p.add_argument("--split", default="test")
  p.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1,2")
  p.add_argument(
      "--ours", action="append", required=True, metavar="BUDGET=PATH"
  )
  p.add_argument(
      "--cell", action="append", default=[], metavar="METHOD:BUDGET=PATH"
  )
  p.add_argument("--note", default="")
  p.add_argument("--draws", type=int, default=1000)
  p.add_argument("--out", required=True, help="the JSON file to write")
  a = p.parse_args(argv)
  flags.FLAGS.mark_as_parsed()
  seeds = [int(s) for s in a.seeds.split(",")]
  cells = build_cells(a.ours, a.cell, seeds, a.split)
  rows = tradeoff.paired_vs(cells, a.metric, a.split, draws=a.draws)
  reporting.print_table(
      [
          {
              "method": r["method"],
              "budget": f"{r['budget']:g}",
              "ours minus [95%] (points)": f"{r['diff_points']:+.1f} "
              f"[{r['low_points']:+.1f}, {r['high_points']:+.1f}]",
              "verdict": r["verdict"],
          }
          for r in rows
      ],
      ["method", "budget", "ours minus [95%] (points)", "verdict"],
  )
  results = {
      "note": a.note,
      "metric": a.metric,
      "split": a.split,
      "seeds": seeds,
      "paired_vs_ours": rows,
      "final": final_metrics(cells, a.metric),
      "cells": {
          m: {str(b): d for b, d in by.items()} for m, by in cells.items()
      },
  }
  out_dir, name = os.path.split(os.path.abspath(a.out))
  reporting.write_json(out_dir, name, results)
  return results


if __name__ == "__main__":
  main()
