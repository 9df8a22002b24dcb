r"""Evaluates a trained run on any records dataset and split, without training.

  python -m crossscale.evaluate --workdir runs/xs --dataset RECORDS_DIR \
      --split test --out DIR [--step N] [--batch_size 64]
  python -m experiments.evaluate --workdir runs/xs --dataset rsscn7 ...

The run (any family) is restored as `crossscale.export` restores it (its
`WORKDIR/config.json`, newest or `--step` checkpoint, on this machine's
devices) and evaluated by the final-eval code path of training
(`evaluators.final_eval`, what `config.final_eval_split` runs), so `--out`
gets the same files as the end of training: `final_metrics.json`
({"final": metrics}, plus "evaluated": run, step, dataset, split, and a
provenance block) and `final_<split>_predictions.npz` (per-scene logits and
labels in record order).

`--dataset` is a records directory or the name of a dataset built beside
the run's records (crossscale imports nothing of data/, so it finds built
records by their manifest's name); `python -m experiments.evaluate` also
builds registered names (`rsscn7`, `ucmerced`, ...) through data.registry as
launch.py does and calls `main` here.

Classifiers (`config.final_eval_split` set) get the final eval and its
per-scene predictions; other families (SR, segmentation, referring) get the
run's own evaluator (`config.evals`: the one named like `--split`, else the
first) on `--split`, as `{split: metrics}`.

A dataset that does not fit the run is refused before anything runs, with
one message naming every mismatch (bands, LR/HR GSD ratio, grid, image sizes,
classes) and the fix. The dataset is standardised with its own band
statistics, as in training.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Sequence

import jax
import numpy as np

from crossscale import (
    evaluators,
    export,
    partitioning,
    records,
    reporting,
    shards,
    train,
)

METRICS_FILE = "final_metrics.json"


def fit_problems(
    run: shards.Manifest, data: shards.Manifest, fields: Sequence[str]
) -> list[str]:
  """What keeps the model trained on `run`'s records from reading `data`:
  one line per mismatch (empty: it fits). Only the sides in `fields`
  ("lr", "hr") are compared."""
  out = []
  for side in ("lr", "hr"):
    if side not in fields:
      continue
    rb, db = getattr(run, f"{side}_bands"), getattr(data, f"{side}_bands")
    if list(rb) != list(db):
      out.append(
          f"{side.upper()} bands {list(db)} != the run's {list(rb)} (build "
          f"the records with the run's bands in its order)"
      )
    rs, ds = getattr(run, f"{side}_shape"), getattr(data, f"{side}_shape")
    if list(rs) != list(ds):
      out.append(
          f"{side.upper()} image size {list(ds)} != the run's {list(rs)} "
          "(rebuild the records at the run's sizes)"
      )
  if "hr" in fields or "lr" in fields:
    r_scale, d_scale = run.lr_gsd / run.hr_gsd, data.lr_gsd / data.hr_gsd
    if not math.isclose(r_scale, d_scale, rel_tol=0.01):
      out.append(
          f"GSD ratio (scale) lr/hr = {d_scale:g} != the run's {r_scale:g} "
          f"(rebuild with --scale {r_scale:g})"
      )
  if "hr" in fields and run.grid != data.grid:
    out.append(
        f"grid {data.grid}x{data.grid} != the run's {run.grid}x{run.grid} "
        f"(rebuild with --grid {run.grid})"
    )
  if list(run.class_names) != list(data.class_names):
    missing = [c for c in run.class_names if c not in data.class_names]
    extra = [c for c in data.class_names if c not in run.class_names]
    detail = (
        f"missing {missing}, extra {extra}"
        if missing or extra
        else "same names in another order"
    )
    out.append(
        f"classes differ from the run's {len(run.class_names)} ({detail}): "
        "the logits index the run's classes; evaluate on records labelled "
        "with the run's class list in its order"
    )
  return out


def check_fits(run: shards.Manifest, data: shards.Manifest, fields, where):
  """Raises ValueError naming every mismatch of `fit_problems`."""
  problems = fit_problems(run, data, fields)
  if problems:
    raise ValueError(
        f"dataset {where} ({data.name!r}) does not fit the run trained on "
        f"{run.name!r}:\n  - "
        + "\n  - ".join(problems)
        + "\nEvaluate on records built like the run's (same bands, sizes, "
        "scale, grid and classes), or train a run on this dataset."
    )


def data_mesh(batch_size: int) -> jax.sharding.Mesh:
  """A data-parallel mesh over the most local devices dividing the batch:
  evaluation does not need the training mesh (nor its device count)."""
  n = jax.local_device_count()
  while batch_size % n:
    n -= 1
  return partitioning.make_mesh((("data", n),), jax.local_devices()[:n])


def run_manifest(config, data: shards.Manifest) -> shards.Manifest:
  """The manifest of the records the run trained on; `data` (with a note)
  when they are gone (then only the checkpoint's shapes are checked)."""
  path = config.data.get("path") or ""
  if path and os.path.exists(os.path.join(path, shards.MANIFEST)):
    return shards.load_manifest(path)
  print(
      f"note: the run's records ({path or 'unknown'}) are not here; bands "
      "and classes cannot be checked, only that the checkpoint's shapes fit.",
      flush=True,
  )
  return data


def evaluate_run(
    workdir: str,
    data_dir: str,
    split: str,
    out_dir: str,
    *,
    step: int | None = None,
    batch_size: int | None = None,
) -> dict:
  """Evaluates the run in `workdir` on `data_dir`'s `split`; writes
  `out_dir/final_metrics.json` and the predictions; returns the metrics."""
  config = export.load_config(workdir)
  data = shards.load_manifest(data_dir)
  data.split_info(split)  # a missing split: DataError naming the splits
  fields = tuple(config.data.fields)
  run = run_manifest(config, data)
  check_fits(run, data, fields, data_dir)
  # The model and checkpoint as trained (the run's manifest: classes, grid).
  params, step = export.restore_params(config, run, workdir, step)
  model = export.build_model(config, run)
  task = train.task_of(config, data)
  bs = batch_size or config.get("batch_size", 32)
  mesh = data_mesh(bs)
  os.makedirs(out_dir, exist_ok=True)
  if config.get("final_eval_split"):  # classifiers: the final eval
    metrics, outputs = evaluators.final_eval(
        model,
        params,
        data_dir=data_dir,
        split=split,
        batch_size=bs,
        task=task,
        mesh=mesh,
        fields=fields,
    )
    evaluators.save_predictions(
        os.path.join(out_dir, train.PREDICTIONS.format(split)), outputs
    )
    results = {"final": metrics}
  else:  # SR, segmentation, ...: the run's own evals (config.evals)
    evals = train.make_evals(
        config, model, data_dir=data_dir, task=task, mesh=mesh,
        fields=fields, split=split,
    )  # fmt: skip
    # The run's evaluator of that name (else its first), on `split` only.
    ev = evals.get(split) or next(iter(evals.values()))
    results = {split: ev.run(params)}
    metrics = {f"{n}/{k}": v for n, r in results.items() for k, v in r.items()}
  reporting.write_json(
      out_dir,
      METRICS_FILE,
      {
          **results,
          "evaluated": {
              "workdir": os.path.abspath(workdir),
              "step": int(step),
              "split": split,
              "model": config.model.name,
              "task": task,
          },
      },
      datasets={"eval": data_dir, "run": config.data.get("path") or ""},
  )
  return metrics


def find_records(name: str, workdir: str) -> str:
  """Records directory of dataset `name` built beside the run's records
  (the same data root): the run's own when it is `name`, else the one
  built directory whose manifest is named `name`. Names not built there
  are for `python -m experiments.evaluate`, which builds them."""
  path = export.load_config(workdir).data.get("path") or ""
  root = os.path.dirname(os.path.abspath(path)) if path else ""
  found = []
  if path and os.path.isdir(root):
    for d in sorted(os.listdir(root)):
      full = os.path.join(root, d)
      if not os.path.exists(os.path.join(full, shards.MANIFEST)):
        continue
      try:
        if shards.load_manifest(full).name == name:
          found.append(full)
      except records.DataError:  # another tool's or an older build's
        continue
  if os.path.abspath(path) in found:
    return os.path.abspath(path)
  if len(found) == 1:
    return found[0]
  if found:
    raise ValueError(
        f"--dataset {name!r}: {len(found)} builds in {root} ("
        + ", ".join(os.path.basename(f) for f in found)
        + "): give one directory as --dataset."
    )
  raise ValueError(
      f"--dataset {name!r} is neither a records directory nor built in "
      f"{root or 'the run data root'}. `python -m experiments.evaluate` "
      "builds registered datasets by name (same flags)."
  )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog="python -m crossscale.evaluate", description=__doc__.split("\n")[0]
  )
  p.add_argument("--workdir", required=True, help="the trained run")
  p.add_argument(
      "--dataset",
      required=True,
      help="records directory, or the name of one built beside the run's "
      "records (to build by name: python -m experiments.evaluate)",
  )
  p.add_argument("--split", default="test")
  p.add_argument("--out", required=True, help="directory for the metrics")
  p.add_argument("--step", type=int, default=None, help="default: newest")
  p.add_argument("--batch_size", type=int, default=None)
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
  """The command line; errors exit with one message (no traceback)."""
  args = parse_args(argv)
  t0 = time.perf_counter()
  try:
    data_dir = args.dataset
    if not os.path.isdir(data_dir):
      data_dir = find_records(args.dataset, args.workdir)
    metrics = evaluate_run(
        args.workdir,
        data_dir,
        args.split,
        args.out,
        step=args.step,
        batch_size=args.batch_size,
    )
  except (ValueError, FileNotFoundError) as e:
    raise SystemExit(f"crossscale.evaluate: {e}") from None
  print(
      f"eval {args.split} of {args.dataset} in {time.perf_counter() - t0:.1f}"
      " s: "
      + " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if np.isscalar(v)),
      flush=True,
  )
  return metrics


if __name__ == "__main__":
  main(sys.argv[1:])
