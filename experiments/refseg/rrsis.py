r"""Referring segmentation: dual adapters vs decoder-only vs full fine-tuning.

  python -m experiments.refseg.rrsis --dataset toyworld --quick --out /tmp/rrsis
  python -m experiments.refseg.rrsis --dataset spacenet_buildings --quick \
      --out /tmp/rrsis_sn
  python -m experiments.refseg.rrsis --runlocal --out /tmp/smoke

Trains and evaluates (test split, masks thresholded at logit 0) the refseg
model (experiments/configs/refseg.py) in three modes with the same schedule
and seed through the shared trainer: "adapters" (ours: text/visual adapters,
decoder and backbone norms train), "decoder_only" and "full" (backbone,
adapters and decoder train; the MiniLM text encoder stays frozen in every
mode). Reports trainable / total parameters and the optimizer-state bytes
with and without freezing. `--dataset`: toyworld, spacenet_buildings or
levircd (their referring sets, data/referring/) or a records directory.

The backbone is frozen in "adapters", so it should be a pretrained one:
`--pretrain_steps N` (default: 150 quick, 1500 full) first pretrains it
through the same trainer and every mode starts from that checkpoint
(`backbone_init`). `--pretrain`:
  classifier   a scene classifier on toyworld (a different task and set:
               scene labels, not referring masks); RGB sets only.
  cross_scale  label-free, on the referring set's own train images:
               experiments/configs/pretrain.py:backbone (the backbone's
               pooled features aligned with the LR regions, no masks, no
               expressions); any band count (spacenet PAN, levircd's 6).
  auto         (default) classifier for toyworld, cross_scale otherwise.
  none         a random frozen backbone.
The JSON records which.

Runs are experiments/configs/refseg.py:mode=M,quick (or ,sweep; --runlocal:
runlocal,sweep on 48 toyworld expressions, no pretraining, seconds).
Writes OUT/<dataset>_<schedule>_s<seed>-<seed>.json and .png; prints a table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import flax.linen as nn
import jax
import matplotlib
import ml_collections
import numpy as np

from crossscale import metrics, optim, reporting, shards, train
from data import registry
from experiments.configs import lr_vit
from experiments.configs import pretrain as pretrain_config
from experiments.configs import refseg as refseg_config

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

MODES = ("adapters", "decoder_only", "full")
REFERRING = {
    "toyworld": "toyworld_referring",
    "spacenet_buildings": "spacenet_buildings_referring",
    "levircd": "levircd_referring",
}
RUNLOCAL_SET = {"num_train": 32, "num_val": 8, "num_test": 8}  # toyworld


def sweep_config(
    quick: bool, data_dir: str, mode: str, runlocal: bool = False
) -> ml_collections.ConfigDict:
  """refseg.py:mode=MODE,quick (or ,sweep; ,runlocal,sweep) on `data_dir`."""
  arg = "runlocal,sweep" if runlocal else "quick" if quick else "sweep"
  c = refseg_config.get_config(f"mode={mode},{arg}")
  c.data.path = data_dir
  return c


def _pretrain_run(
    c: ml_collections.ConfigDict, steps: int, workdir: str, seed: int = 0
) -> tuple[str, dict]:
  """Trains `c` for `steps` (batch 32, a val eval at the end only);
  returns (its final checkpoint dir, for backbone_init; final metrics)."""
  c.seed = seed
  c.batch_size = 32
  c.total_steps = steps
  c.optim.warmup_steps = min(50, steps // 10)
  c.checkpoint.every = 10**9
  c.eval_every = 10**9
  c.log_every = 100
  c.evals = ml_collections.ConfigDict(
      dict(val=dict(type="classification", split="val"))
  )
  c.final_eval_split = ""
  final = train.train_and_evaluate(c, workdir)
  return os.path.join(workdir, "checkpoints", str(steps)), final


def pretrain_backbone(
    quick: bool, steps: int, workdir: str, backbone: dict, seed: int = 0
) -> tuple[str, dict]:
  """Trains the refseg backbone as a toyworld scene classifier."""
  c = lr_vit.get_config()
  opts = dict(c.toyworld.to_dict(), num_train=2000 if quick else 4000)
  c.data.path = registry.resolve("toyworld", None, opts)
  c.data.fields = ("hr", "labels")
  c.model = ml_collections.ConfigDict(
      dict(name="refseg_backbone_cls", backbone=backbone)
  )
  ckpt, final = _pretrain_run(c, steps, workdir, seed)
  print(
      f"pretrained backbone: toyworld val accuracy "
      f"{final['val']['accuracy']:.3f}",
      flush=True,
  )
  return ckpt, final


def pretrain_backbone_cross_scale(
    steps: int, workdir: str, backbone: dict, data_dir: str, seed: int = 0
) -> tuple[str, dict]:
  """Label-free cross-scale pretraining (LR/HR alignment, masked LR
  modelling, the backbone aligned to the LR regions) on `data_dir`'s train
  split."""
  c = pretrain_config.get_config("backbone")
  c.data.path = data_dir
  c.model.backbone = backbone
  c.model.sampler = None  # only the backbone is used downstream
  ckpt, final = _pretrain_run(c, steps, workdir, seed)
  print(
      f"pretrained backbone (cross-scale, label-free): val " f"{final['val']}",
      flush=True,
  )
  return ckpt, final


def _table_row(
    method: str,
    res: dict,
    trainable_fraction: float = 0.0,
    trainable: int = 0,
    opt_bytes: int = 0,
    opt_bytes_unfrozen: int = 0,
    seconds: float = 0.0,
) -> dict:
  """One printed row from refseg metrics `res` ("oIoU", "Prec@0.5", ...)."""
  return {
      "method": method,
      "trainable_%": 100 * trainable_fraction,
      "trainable": trainable,
      "opt_MB": opt_bytes / 2**20,
      "opt_MB_unfrozen": opt_bytes_unfrozen / 2**20,
      "oIoU": 100 * res["oIoU"],
      "mIoU": 100 * res["mIoU"],
      **{f"P@{x}": 100 * res[f"Prec@{x}"] for x in ("0.5", "0.7", "0.9")},
      "sec": seconds,
  }


def all_foreground(data_dir: str, split: str = "test") -> dict[str, float]:
  """Referring metrics of the trivial method that masks the whole image for
  every expression: a method below it has learned nothing of the set."""
  true = [s.masks["target"] > 0 for s in shards.iter_scenes(data_dir, split)]
  return metrics.refseg_metrics([np.ones_like(t) for t in true], true)


def optimizer_bytes(config, data_dir: str) -> tuple[int, int, int, int]:
  """(trainable, total params, optimizer-state bytes with the config's
  freezing, without any) from shapes only (nothing is allocated)."""
  manifest = shards.load_manifest(data_dir)
  model = train.make_model(config, manifest)
  batch = train.example_batch(manifest, config.data.fields, 2)
  params = jax.eval_shape(
      lambda: nn.meta.unbox(model.init(jax.random.key(0), batch)["params"])
  )
  nbytes = lambda t: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(t))
  with_f = jax.eval_shape(optim.make_optimizer(config.optim, 10).init, params)
  cfg = config.optim.to_dict()
  cfg["frozen"] = ()
  without = jax.eval_shape(
      optim.make_optimizer(ml_collections.ConfigDict(cfg), 10).init, params
  )
  tr, tot = optim.trainable_fraction(params, config.optim.frozen)
  return tr, tot, nbytes(with_f), nbytes(without)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="toyworld")
  p.add_argument("--quick", action="store_true")
  p.add_argument(
      "--runlocal",
      action="store_true",
      help="smoke test: tiny model and referring set (seconds)",
  )
  p.add_argument("--out", required=True)
  p.add_argument(
      "--name",
      default="",
      help="results file stem (default <dataset>_<schedule>_s<seed>-<seed>)",
  )
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--pretrain_steps", type=int, default=None)
  p.add_argument(
      "--pretrain",
      default="auto",
      choices=("auto", "classifier", "cross_scale", "none"),
  )
  p.add_argument(
      "--modes",
      default=None,
      help=f"comma-separated (default {','.join(MODES)}; --runlocal: adapters)",
  )
  p.add_argument("--data_root", default=None)
  p.add_argument(
      "--seed",
      type=int,
      default=0,
      help="seed of the backbone pretraining and of every mode",
  )
  a = p.parse_args(argv)
  opts = RUNLOCAL_SET if a.runlocal and a.dataset == "toyworld" else None
  data_dir = registry.resolve(
      REFERRING.get(a.dataset, a.dataset), a.data_root, opts
  )
  manifest = shards.load_manifest(data_dir)
  pre_steps = (
      a.pretrain_steps
      if a.pretrain_steps is not None
      else (0 if a.runlocal else 150 if a.quick else 1500)
  )
  tmp = tempfile.mkdtemp(prefix="rrsis_")
  backbone_init, pretrain = "", None
  probe = sweep_config(a.quick, data_dir, MODES[0], a.runlocal)
  kind = a.pretrain if pre_steps > 0 else "none"
  if kind == "auto":
    kind = "classifier" if a.dataset == "toyworld" else "cross_scale"
  if kind == "classifier" and manifest.hr_shape[-1] != 3:
    raise ValueError(
        f"--pretrain classifier trains on RGB toyworld; "
        f"{data_dir} has {manifest.hr_shape[-1]} HR bands: use "
        "--pretrain cross_scale (label-free, any bands)."
    )
  t0 = time.time()
  if kind == "classifier":
    backbone_init, final = pretrain_backbone(
        a.quick,
        pre_steps,
        os.path.join(tmp, "pretrain"),
        probe.model.backbone.to_dict(),
        a.seed,
    )
    pretrain = {
        "steps": pre_steps,
        "task": "toyworld scene classification",
        "val_accuracy": final["val"]["accuracy"],
    }
  elif kind == "cross_scale":
    backbone_init, final = pretrain_backbone_cross_scale(
        pre_steps,
        os.path.join(tmp, "pretrain"),
        probe.model.backbone.to_dict(),
        data_dir,
        a.seed,
    )
    pretrain = {
        "steps": pre_steps,
        "task": "label-free cross-scale "
        "alignment on the set's train images (pretrain.py:backbone)",
        "val": final["val"],
    }
  if pretrain:
    pretrain["seconds"] = round(time.time() - t0, 1)
  methods, rows = {}, []
  modes = a.modes or ("adapters" if a.runlocal else ",".join(MODES))
  for mode in modes.split(","):
    c = sweep_config(a.quick, data_dir, mode, a.runlocal)
    c.model.backbone_init = backbone_init
    c.seed = a.seed
    if a.steps:
      c.total_steps = a.steps
    tr, tot, ob_f, ob_all = optimizer_bytes(c, data_dir)
    t0 = time.time()
    final = train.train_and_evaluate(c, os.path.join(tmp, mode))
    res = final["test"]
    methods[mode] = {
        "trainable_fraction": tr / tot,
        "trainable_params": tr,
        "total_params": tot,
        "optimizer_state_bytes": ob_f,
        "optimizer_state_bytes_unfrozen": ob_all,
        "oIoU": res["oIoU"],
        "mIoU": res["mIoU"],
        "prec": {
            k.removeprefix("Prec@"): v
            for k, v in res.items()
            if k.startswith("Prec@")
        },
        "test_loss": res["loss"],
        "num_test": res["num_examples"],
        "train_seconds": round(time.time() - t0, 1),
        "steps_per_sec": final["steps_per_sec"],
    }
    rows.append(
        _table_row(
            mode,
            res,
            tr / tot,
            tr,
            ob_f,
            ob_all,
            methods[mode]["train_seconds"],
        )
    )
  print(
      f"\nreferring segmentation, {manifest.name} ({data_dir}), test split, "
      f"{c.total_steps} steps x batch {c.batch_size}, seed {c.seed}"
  )
  trivial = all_foreground(data_dir)
  rows.append(_table_row("(whole image)", trivial))
  reporting.print_table(rows, list(rows[0]))
  gap = None
  if "adapters" in methods and "full" in methods:
    gap = 100 * (methods["full"]["mIoU"] - methods["adapters"]["mIoU"])
    print(
        f"mIoU gap full - adapters: {gap:+.2f} points (target <= 2 with "
        f"< 3% trainable: adapters train "
        f"{100 * methods['adapters']['trainable_fraction']:.2f}%)"
    )
  schedule = reporting.schedule_name(a.quick, a.steps or 0, a.runlocal)
  stem = a.name or reporting.results_name(
      a.dataset, schedule, a.seed, a.seed
  ).removesuffix(".json")
  reporting.write_json(
      a.out,
      f"{stem}.json",
      {
          "dataset": manifest.name,
          "quick": a.quick,
          "schedule": schedule,
          "steps": c.total_steps,
          "batch_size": c.batch_size,
          "seed": c.seed,
          "backbone_init": pretrain["task"]
          if backbone_init
          else "random (frozen in adapters/decoder_only)",
          "pretrain": pretrain,
          "text_encoder": c.model.text_encoder,
          "methods": methods,
          "miou_gap_full_minus_adapters": gap,
          "whole_image_reference": trivial,
      },
      datasets={"data": data_dir},
  )
  _plot(methods, os.path.join(a.out, f"{stem}.png"), manifest.name)


def _plot(methods: dict, path: str, name: str) -> None:
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for mode, m in methods.items():
    x = 100 * m["trainable_fraction"]
    ax.scatter([x], [100 * m["mIoU"]], s=60, label=f"{mode} mIoU")
    ax.scatter([x], [100 * m["oIoU"]], s=60, marker="x", label=f"{mode} oIoU")
  ax.set_xscale("log")
  ax.set_xlabel("trainable parameters (% of total, log)")
  ax.set_ylabel("IoU on test (%)")
  ax.set_title(f"referring segmentation: {name}")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
