r"""One model across ground resolutions: accuracy under a GSD shift.

  python -m experiments.cross_scale.gsd_shift --dataset rsscn7 --quick \
      --out /tmp/gsd_shift
  python -m experiments.cross_scale.gsd_shift --runlocal --out /tmp/smoke

Trains every method at the data's native GSD with the tradeoff sweep's
schedule and training function (`tradeoff.sweep_config`, `tradeoff.run_one`:
cross_scale.py:quick, :sweep or :runlocal,sweep):
  lr_only     budget 0 (LR only), today's model;
  ours        budget 1/8 with issue 22's options on: GSD-aware positions,
              wavelength band embedding, GSD augmentation (0.5x-2x;
              on single-label data of the centre's class, `for_task`);
  dense       budget 1 (every HR tile), today's model;
  ours_plain  budget 1/8, options off (today's model);
  random      budget 1/8, ours' model (options on) buying random tiles,
then evaluates each trained run on the test split re-rendered at every
`--factors` multiple of its GSD (`render_split`, the augmentation's
`gsd_render.rescale_scene`): a factor f > 1 makes every LR and HR
pixel cover f times the ground, the scene becoming the centre of a mosaic
of test scenes drawn (seeded) around it, at random or, with `--neighbours
same_label`, from the centre's class (labels stay the centre scene's;
multi-label data: every class of the scenes at least half in view);
f < 1 crops the scene's centre and upsamples it. geoworld is re-rendered
by its generator instead (`--neighbours generator`, its default: exact
labels at every factor, `data.geoworld_gsd`). Factor 1 is the test split
as stored.
Writes OUT/gsd_shift.json ({"methods": {name: {"gsd_factor", "accuracy",
"mAP", "interval"}}}: means over seeds, accuracy None on multi-label data,
interval the 95% bootstrap interval over scenes and seeds of the data's
metric, accuracy or macro mAP; "chance_mAP" per factor on multi-label data;
"paired_vs_ours": ours (or `--reference NAME`, then in "reference") minus
each method per factor, paired by seed and scene) with provenance and
OUT/gsd_shift.png. Datasets whose records carry no true GSD (RSSCN7) are
flagged "true_gsd": false; the factors are relative either way.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from absl import flags
import jax
import matplotlib
import numpy as np

from crossscale import (
    bootstrap,
    evaluators,
    export,
    gsd_render,
    input_pipeline,
    partitioning,
    records,
    reporting,
    shards,
    train,
)
from data import geoworld, geoworld_gsd, registry
from experiments.cross_scale import sweep_args, tradeoff

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

FACTORS = (0.5, 1.0, 2.0, 4.0)
GSD_FIELDS = ("lr", "hr", "labels", *input_pipeline.GSD_FIELDS)
# Issue 22's options, all on.
OPTIONS_ON = {
    "model.gsd_positions": True,
    "model.band_embedding": "wavelength",
    "data.gsd_augment": (0.5, 2.0),
    "data.fields": GSD_FIELDS,
}
METHODS = {  # name -> (budget, config overrides)
    "lr_only": (0.0, {"model.policy": "uniform"}),
    "ours": (0.125, {"model.policy": "learned", **OPTIONS_ON}),
    "dense": (1.0, {"model.policy": "uniform"}),
    "ours_plain": (0.125, {"model.policy": "learned"}),
    # The same model as ours buying random tiles: does the sampler keep its
    # advantage at every GSD?
    "random": (0.125, {"model.policy": "random", **OPTIONS_ON}),
}


def for_task(methods: dict, task: str) -> dict:
  """`methods` with the augmentation's zoom-out mosaics made of scenes of
  the centre's class (`data.gsd_neighbours="same_label"`) on single-label
  data, where a method augments and does not say otherwise: chosen on
  RSSCN7's val split over random neighbours (native accuracy +11 points,
  experiments/cross_scale/ground_resolution.md)."""
  if task != "single_label":
    return methods
  out = {}
  for name, (budget, o) in methods.items():
    if o.get("data.gsd_augment") and "data.gsd_neighbours" not in o:
      o = {**o, "data.gsd_neighbours": "same_label"}
    out[name] = (budget, o)
  return out


def parse_methods(names: str, variants: list[str]) -> dict:
  """ "lr_only,ours" and ["ours_noaug:data.gsd_augment=()"] -> {name:
  (budget, overrides)}. A variant is `ours` (1/8, options on) with its
  own overrides (repeat a NAME to add more)."""
  methods = {m: METHODS[m] for m in sweep_args.known_names(names, METHODS)}
  for item in variants:
    name, override = sweep_args.parse_variant(
        item, METHODS, "ours_noaug:data.gsd_augment=()"
    )
    budget, base = methods.get(name, METHODS["ours"])
    methods[name] = (budget, {**base, **override})
  return methods


def neighbour_indices(i: int, n: int, count: int, seed: int) -> np.ndarray:
  """`count` scene indices in [0, n) other than `i`, drawn with a generator
  seeded by (seed, i): the same mosaic for every method and run."""
  rng = np.random.default_rng([seed, i])
  others = rng.integers(0, n - 1, count)
  return others + (others >= i)


def same_label_neighbours(
    i: int, classes: np.ndarray, count: int, seed: int
) -> np.ndarray:
  """`count` indices of other scenes with scene `i`'s class (`classes
  [n]`), drawn with a generator seeded by (seed, i)."""
  pool = np.flatnonzero(classes == classes[i])
  pool = pool[pool != i]
  if not len(pool):
    raise ValueError(f"scene {i} is the only one of its class")
  rng = np.random.default_rng([seed, i])
  return pool[rng.integers(0, len(pool), count)]


NEIGHBOURS = ("random", "same_label", "generator")


def default_neighbours(manifest: shards.Manifest) -> str:
  """ "generator" for geoworld (exact re-rendering and labels,
  `data.geoworld_gsd`), "random" mosaics for recorded data."""
  geo = manifest.builder.get("builder") == "geoworld"
  return "generator" if geo else "random"


def render_split(
    data_dir: str,
    split: str,
    factor: float,
    out_dir: str,
    seed: int = 0,
    neighbours: str = "random",
) -> str:
  """`split` of `data_dir` re-rendered at `factor` times its GSD
  (`gsd_render.rescale_scene`) as a records directory `out_dir` holding
  that split only, normalised with the source's band statistics; reused
  when `out_dir` holds this rendering already. Returns `out_dir`.

  neighbours: the mosaic's other scenes for f > 1: "random" scenes of the
  split (`neighbour_indices`), or "same_label" (single-label data: scenes
  of the centre's class, `same_label_neighbours`, so that the coarser view
  still shows its class, as RSSCN7's real coarser-scale photos do), or
  "generator" (geoworld: every factor drawn by its generator with exact
  labels, `data.geoworld_gsd`). Random mosaics of multi-label data are
  labelled with every class of the scenes at least half in view
  (`union_labels`)."""
  if neighbours not in NEIGHBOURS:
    raise ValueError(f"neighbours={neighbours!r}: one of {NEIGHBOURS}")
  manifest = shards.load_manifest(data_dir)
  if neighbours == "same_label" and manifest.task != "single_label":
    raise ValueError(
        f"{data_dir}: same-label mosaics need single-label data "
        f"(this is {manifest.task}): use neighbours='random'"
    )
  if neighbours == "generator":
    geoworld_gsd.config_of(manifest.builder)  # geoworld, else a clear error
    geoworld_gsd.check_factor(factor)
  spec = {
      "builder": "gsd_shift",
      "source": manifest.name,
      "source_created": manifest.created,
      "gsd_in_metres": manifest.gsd_known,
      "split": split,
      "factor": factor,
      "seed": seed,
      **({"neighbours": neighbours} if neighbours != "random" else {}),
  }
  path = os.path.join(out_dir, shards.MANIFEST)
  if os.path.exists(path) and shards.load_manifest(out_dir).builder == spec:
    return out_dir
  if neighbours == "generator":  # drawn by index: no stored record read
    regions = geoworld.make_regions(*geoworld_gsd.config_of(manifest.builder))
    scenes = (
        geoworld_gsd.rendered_scene(manifest.builder, split, i, factor, regions)
        for i in range(manifest.splits[split]["num_records"])
    )
  else:
    scenes = _mosaic_scenes(data_dir, split, factor, seed, neighbours)
  shards.write_dataset(
      out_dir,
      f"{manifest.name}_gsd{factor:g}",
      scenes,
      manifest.class_names,
      shards_per_split={split: 1},
      builder=spec,
      label_symmetries=manifest.label_symmetries,
  )
  shards.set_band_stats(out_dir, manifest.band_stats)  # as runs trained
  return out_dir


def _mosaic_scenes(data_dir, split, factor, seed, neighbours):
  """Scenes of `split` re-rendered at `factor` by `gsd_render.rescale_scene`
  (render_split's "random" / "same_label" mosaics): a generator, the
  split's size checked first."""
  manifest = shards.load_manifest(data_dir)
  fields = ("lr", "hr", "labels", *(f"mask_{m}" for m in manifest.mask_names))
  source = input_pipeline.SceneSource(data_dir, split, fields, verify=False)
  n, m = len(source), gsd_render.mosaic_cells(max(factor, 1.0))
  if factor > 1 and n < 2:
    raise ValueError(f"{data_dir} {split}: zoom-out needs >= 2 scenes")
  if neighbours == "same_label":
    classes = np.array(
        [
            np.argmax(s.labels)
            for s in shards.iter_scenes(data_dir, split, False)
        ]
    )
    draw = lambda i: same_label_neighbours(i, classes, m * m - 1, seed)
  else:
    draw = lambda i: neighbour_indices(i, n, m * m - 1, seed)
  multi = manifest.task == "multi_label"
  return (
      _mosaic_scene(scene, factor, [source[int(j)] for j in draw(i)], multi)
      for i, scene in enumerate(shards.iter_scenes(data_dir, split, False))
  )


def _mosaic_scene(scene, factor, nb, multi):
  """records.Scene `scene` at `factor`, mosaicked with scenes `nb` when
  coarser (`gsd_render.rescale_scene`)."""
  x = {"lr": scene.lr, "hr": scene.hr, "labels": scene.labels}
  x.update({f"mask_{k}": v for k, v in scene.masks.items()})
  y = gsd_render.rescale_scene(
      x,
      factor,
      nb,
      lr_gsd=scene.lr_gsd,
      hr_gsd=scene.hr_gsd,
      union_labels=multi,
  )
  return records.Scene(
      **{
          **{f: getattr(scene, f) for f in _SCENE_FIELDS},
          "lr": y["lr"],
          "hr": y["hr"],
          "labels": np.asarray(y["labels"], scene.labels.dtype),
          "lr_gsd": float(y["lr_gsd"]),
          "hr_gsd": float(y["hr_gsd"]),
          "masks": {k: y[f"mask_{k}"] for k in scene.masks},
      }
  )


_SCENE_FIELDS = (
    "id",
    "lr_bands",
    "hr_bands",
    "grid",
    "labels",
    "split",
    "text",
    "crs",
    "lr_time",
    "hr_time",
)


def evaluate_run(workdir: str, data_dirs: dict[float, str], split: str):
  """{factor: (logits [n, K], labels [n, K])} of the run in `workdir` on
  each re-rendered `data_dirs[factor]`, with the scenes' GSDs in the batch
  (the options-off models ignore them). One jitted evaluator per run."""
  config = export.load_config(workdir)
  manifest = shards.load_manifest(config.data.path)
  params, _ = export.restore_params(config, manifest, workdir)
  model = export.build_model(config, manifest).clone(select_impl="reference")
  fields = tuple(config.data.fields)
  fields += tuple(f for f in input_pipeline.GSD_FIELDS if f not in fields)
  mesh = partitioning.make_mesh((("data", -1),), jax.devices()[:1])
  ev = evaluators.ClassificationEvaluator(
      model,
      data_dir=config.data.path,
      split=split,
      batch_size=int(config.batch_size),
      task=train.task_of(config, manifest),
      mesh=mesh,
      fields=fields,
  )
  out = {}
  for factor, d in data_dirs.items():
    ev.data_dir = d  # same shapes: the jitted predict is reused
    o = ev.outputs(params)
    out[factor] = (o["logits"], o["labels"])
  return out


def run_gsd_shift(
    data_dir: str,
    *,
    methods: dict | None = None,
    factors=FACTORS,
    quick: bool = True,
    runlocal: bool = False,
    steps: int = 0,
    seeds: int = 3,
    overrides: dict | None = None,
    work_dir: str | None = None,
    split: str = "test",
    neighbours: str | None = None,
    reference: str = "ours",
) -> dict:
  """Trains `methods` ({name: (budget, overrides)}, default METHODS; see
  `parse_methods`) at native GSD, `seeds` seeds each,
  and evaluates every run on `split` re-rendered at each factor. Returns
  {"dataset", "split", "metric", "true_gsd", "factors", "methods": {name:
  {"budget", "gsd_factor", "accuracy", "mAP", "interval",
  "accuracy_seeds"}}, "cells": {name: [run dirs]}}."""
  work = work_dir or tempfile.mkdtemp(prefix="gsd_shift_")
  manifest = shards.load_manifest(data_dir)
  metric = "accuracy" if manifest.task == "single_label" else "mAP_macro"
  neighbours = neighbours or default_neighbours(manifest)
  factors = [float(f) for f in factors]
  rendered = {
      f: (
          data_dir
          if f == 1.0
          else render_split(
              data_dir,
              split,
              f,
              os.path.join(
                  work, "rendered", _rendered_name(split, f, neighbours)
              ),
              neighbours=_at_factor(neighbours, f),
          )
      )
      for f in factors
  }
  defaults = tradeoff.sweep_config(quick, data_dir, runlocal)
  results, cells, outputs = {}, {}, {}
  methods = for_task(methods or METHODS, manifest.task)
  for name, (budget, method_overrides) in methods.items():
    per_factor = outputs[name] = {f: [] for f in factors}
    cells[name] = []
    for seed in range(seeds):
      c = tradeoff.cell_config(
          tradeoff.sweep_config(quick, data_dir, runlocal),
          overrides, steps, method_overrides, budget, seed, split,
      )  # fmt: skip
      d = tradeoff.cell_dir(work, name, budget, seed)
      cells[name].append(d)
      print(f"== {name} @ budget {budget:.4g} seed {seed}", flush=True)
      tradeoff.run_one(c, d, defaults)
      for f, pair in evaluate_run(d, rendered, split).items():
        per_factor[f].append(pair)
    results[name] = summarize(per_factor, metric, budget)
  first = next(iter(outputs.values()), {})
  chance = [chance_map(first[f][0][1]) for f in factors] if first else []
  return {
      "dataset": manifest.name,
      "split": split,
      "neighbours": neighbours,
      "metric": metric,
      "true_gsd": manifest.gsd_known,
      "factors": factors,
      "methods": results,
      **({"chance_mAP": chance} if metric == "mAP_macro" else {}),
      "reference": reference,
      "paired_vs_ours": paired_vs_ours(outputs, metric, reference),
      "cells": cells,
      "method_overrides": {
          m: {"budget": b, **_relative_paths(o)}
          for m, (b, o) in methods.items()
      },
  }


def _relative_paths(overrides: dict) -> dict:
  """A method's overrides with its records path (a variant's `data.path`)
  relative to the data roots, as results record every path."""
  o = dict(overrides)
  if "data.path" in o:
    o["data.path"] = reporting.relative_path(o["data.path"])
  return o


def chance_map(labels) -> float:
  """Expected macro AP of random scores on `labels` [n, K]: the mean
  prevalence of the classes with positives (zoom-outs label more classes
  per view, which lifts every method's mAP: read each factor against it)."""
  prevalence = np.asarray(labels, np.float64).mean(0)
  return float(prevalence[prevalence > 0].mean())


def _rendered_name(split: str, factor: float, neighbours: str) -> str:
  """The folder of one rendering under WORK/rendered (test + random keep
  their first name, so earlier work dirs stay valid)."""
  name = f"f{factor:g}" if split == "test" else f"{split}_f{factor:g}"
  plain = _at_factor(neighbours, factor) == "random"
  return name if plain else f"{name}_{neighbours}"


def _at_factor(neighbours: str, factor: float) -> str:
  """The rendering a factor uses: zoom-ins crop (no neighbours), except
  the generator's."""
  return neighbours if factor > 1 or neighbours == "generator" else "random"


def paired_vs_ours(
    outputs: dict, metric: str, reference: str = "ours"
) -> list[dict]:
  """`reference` (ours) minus every other method at each factor, paired by
  seed and scene (`bootstrap.paired_difference`): one row per (method,
  factor) with "diff_points", "low_points", "high_points", "verdict"."""
  rows = []
  if reference not in outputs:
    return rows
  ref = outputs[reference]
  for name, per_factor in outputs.items():
    if name == reference:
      continue
    for f, pairs in per_factor.items():
      if len(pairs) != len(ref[f]):
        continue
      d = bootstrap.paired_difference(ref[f], pairs, metric)
      rows.append(
          {
              "method": name,
              "gsd_factor": f,
              "diff_points": 100 * d["diff"],
              "low_points": 100 * d["low"],
              "high_points": 100 * d["high"],
              "verdict": bootstrap.verdict(d["low"], d["high"]),
          }
      )
  return rows


def summarize(per_factor: dict, metric: str, budget: float) -> dict:
  """One method's row: per factor, seed means of accuracy (None on
  multi-label data) and macro mAP, and the interval of `metric`."""
  acc, ap, iv, acc_seeds = [], [], [], []
  for pairs in per_factor.values():
    a = [float(bootstrap.batched_metric("accuracy", lo[None], la[None])[0])
         for lo, la in pairs]  # fmt: skip
    m = [float(bootstrap.batched_metric("mAP_macro", lo[None], la[None])[0])
         for lo, la in pairs]  # fmt: skip
    acc.append(float(np.mean(a)) if metric == "accuracy" else None)
    acc_seeds.append(a if metric == "accuracy" else None)
    ap.append(float(np.mean(m)))
    iv.append(bootstrap.interval(pairs, metric))
  return {
      "budget": budget,
      "gsd_factor": list(per_factor),
      "accuracy": acc,
      "mAP": ap,
      "interval": iv,
      "accuracy_seeds": acc_seeds,
  }


def plot(res: dict, path: str | None = None):
  """The data's metric vs GSD factor (log x), one line per method with its
  interval as a band. Saves to `path` when given; returns the figure."""
  key = "accuracy" if res["metric"] == "accuracy" else "mAP"
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, r in res["methods"].items():
    x = r["gsd_factor"]
    ax.plot(x, r[key], marker="o", label=name)
    lo, hi = zip(*r["interval"])
    ax.fill_between(x, lo, hi, alpha=0.15)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("test GSD / training GSD")
  ax.set_ylabel(f"{res['split']} {res['metric']}")
  ax.set_title(f"{res['dataset']}: trained at native GSD")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  if path:
    fig.savefig(path, dpi=120)
  return fig


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="toyworld")
  p.add_argument("--quick", action="store_true")
  p.add_argument(
      "--runlocal",
      action="store_true",
      help="smoke: tiny model, tiny toyworld, 20 steps, one seed",
  )
  p.add_argument("--out", required=True)
  p.add_argument("--steps", type=int, default=0, help="override total_steps")
  p.add_argument("--seeds", type=int, default=None, help="default 3")
  p.add_argument(
      "--factors",
      default=None,
      help="comma-separated GSD factors (default 0.5,1,2,4)",
  )
  p.add_argument(
      "--methods",
      default=",".join(METHODS),
      help=f"comma-separated, of {','.join(METHODS)}",
  )
  p.add_argument(
      "--work_dir",
      default=None,
      help="where runs train and test sets are re-rendered (default: a "
      "temp dir); relaunching with the same one skips finished runs",
  )
  p.add_argument(
      "--split",
      default="test",
      choices=("test", "val"),
      help="the split re-rendered and evaluated (val while choosing)",
  )
  p.add_argument(
      "--neighbours",
      default=None,
      choices=NEIGHBOURS,
      help="zoom-out mosaics of random scenes of the split, or of scenes "
      "of the centre's class (single-label data), or geoworld's generator "
      "(exact labels; the default on geoworld, random otherwise)",
  )
  p.add_argument(
      "--variant",
      action="append",
      default=[],
      metavar="NAME:KEY=VALUE",
      help="another method: ours (options on) with this override "
      "(repeatable), e.g. ours_noaug:data.gsd_augment=()",
  )
  p.add_argument(
      "--reference",
      default="ours",
      help="the method every other is paired against (default ours)",
  )
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  a = p.parse_args(argv)
  flags.FLAGS.mark_as_parsed()
  try:
    methods = parse_methods(a.methods, a.variant)
  except ValueError as e:
    raise SystemExit(str(e)) from None
  if a.reference not in methods:
    raise SystemExit(
        f"--reference {a.reference}: not among the methods "
        f"({', '.join(methods)}); add it to --methods or a --variant"
    )
  opts = (
      tradeoff.toyworld_options(a.quick, a.runlocal)
      if a.dataset == "toyworld"
      else None
  )
  data_dir = registry.resolve(a.dataset, None, opts)
  seeds = a.seeds or (1 if a.runlocal else 3)
  factors = (
      tuple(float(f) for f in a.factors.split(",")) if a.factors else FACTORS
  )
  res = run_gsd_shift(
      data_dir,
      methods=methods,
      factors=factors,
      quick=a.quick,
      runlocal=a.runlocal,
      steps=a.steps,
      seeds=seeds,
      overrides=sweep_args.parse_overrides(a.set),
      work_dir=a.work_dir,
      split=a.split,
      neighbours=a.neighbours,
      reference=a.reference,
  )
  rows = [
      {"method": m, "gsd_factor": f, res["metric"]: v, "interval": iv}
      for m, r in res["methods"].items()
      for f, v, iv in zip(
          r["gsd_factor"],
          r["accuracy" if res["metric"] == "accuracy" else "mAP"],
          r["interval"],
      )
  ]
  reporting.print_table(rows, ["method", "gsd_factor", res["metric"]])
  print(
      f"{a.reference} minus each method, paired by seed and scene "
      "(points, 95%):"
  )
  reporting.print_table(
      res["paired_vs_ours"],
      ["method", "gsd_factor", "diff_points", "low_points", "high_points",
       "verdict"],
  )  # fmt: skip
  reporting.write_json(
      a.out,
      "gsd_shift.json",
      {
          **{k: v for k, v in res.items() if k != "cells"},
          "quick": a.quick,
          "schedule": reporting.schedule_name(a.quick, a.steps, a.runlocal),
          "seeds": seeds,
          "overrides": sweep_args.parse_overrides(a.set),
      },
      datasets={
          "data": data_dir,
          **{
              f"{m}_data": o["data.path"]
              for m, (_, o) in methods.items()
              if "data.path" in o
          },
      },
  )
  path = os.path.join(a.out, "gsd_shift.png")
  plot(res, path)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
