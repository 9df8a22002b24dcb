r"""Does cross-scale pretraining help the cost-aware model at budget 1/8?

  python -m benchmarks.pretrain --dataset toyworld --quick --out /tmp/pre

1. Pretrains the LR and HR encoders (experiments/configs/pretrain.py:
   LR-region <-> HR-tile alignment + masked LR modelling, no labels) on the
   train split, with the encoder sizes of the tradeoff benchmark's model.
2. Trains the cross-scale model (learned sampler, budget 1/8) twice with the
   same schedule and seeds: from random init and from the pretrained
   encoders (`config.model_init`; `--lr_scale F` fine-tunes them at F times
   the learning rate), over `--seeds` seeds; `--labelled N`
   fine-tunes on N labelled scenes (pretraining used all, without labels).
3. Reports test accuracy / mAP / drift of both. Writes OUT/pretrain.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from absl import flags

from benchmarks import common as bench
from benchmarks import tradeoff
from crossscale import shards, train
from data import registry
from experiments.configs import pretrain


def pretrain_config(data_dir: str, quick: bool, steps: int):
  """The pretraining config with the tradeoff model's encoder sizes."""
  xs = tradeoff.base_config(quick, data_dir)
  c = pretrain.get_config()
  c.data.path = data_dir
  c.model.lr_encoder = xs.model.lr_encoder.to_dict()
  c.model.hr_encoder = xs.model.hr_encoder.to_dict()
  c.model.sampler = xs.model.sampler.to_dict()
  c.batch_size = xs.batch_size
  c.total_steps = steps
  c.optim.warmup_steps = max(1, steps // 10)
  c.checkpoint.every = steps
  c.eval_every = 10 ** 9
  c.log_every = 100
  c.evals = {"test": {"type": "classification", "split": "test"}}
  return c


def finetune_config(data_dir: str, quick: bool, steps: int, seed: int,
                    init: str, lr_scale: float = 1.0):
  c = tradeoff.base_config(quick, data_dir)
  c.model.budget = 1 / 8
  c.seed = seed
  if steps:
    c.total_steps = steps
  c.model_init = init
  c.model_init_lr_scale = lr_scale
  return c


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="toyworld")
  p.add_argument("--quick", action="store_true")
  p.add_argument("--out", required=True)
  p.add_argument("--pretrain_steps", type=int, default=0)
  p.add_argument("--steps", type=int, default=0, help="fine-tuning steps")
  p.add_argument("--seeds", type=int, default=2)
  p.add_argument("--labelled", type=int, default=0,
                 help="fine-tune on the first N train scenes only (toyworld; "
                      "pretraining still sees the whole train split)")
  p.add_argument("--lr_scale", type=float, default=1.0,
                 help="learning-rate factor of the pretrained parts when "
                      "fine-tuning (config.model_init_lr_scale)")
  a = p.parse_args(argv)
  flags.FLAGS.mark_as_parsed()
  opts = tradeoff.toyworld_options(a.quick) if a.dataset == "toyworld" else None
  data_dir = registry.resolve(a.dataset, None, opts)
  ft_dir = data_dir
  if a.labelled:
    if a.dataset != "toyworld":
      raise ValueError("--labelled needs --dataset toyworld (its scenes are "
                       "seeded per index, so N train scenes are a prefix).")
    ft_dir = registry.resolve(a.dataset, None, {**opts, "num_train":
                                                  a.labelled})
  work = tempfile.mkdtemp(prefix="pretrain_")
  pre_steps = a.pretrain_steps or (600 if a.quick else 3000)

  pre_dir = os.path.join(work, "pretrain")
  pre = train.train_and_evaluate(
      pretrain_config(data_dir, a.quick, pre_steps), pre_dir)
  print(f"pretraining ({pre_steps} steps): {pre['test']}", flush=True)

  runs = {"scratch": [], "pretrained": []}
  for seed in range(a.seeds):
    for name, init in (("scratch", ""), ("pretrained", pre_dir)):
      c = finetune_config(ft_dir, a.quick, a.steps, seed, init, a.lr_scale)
      final = train.train_and_evaluate(
          c, os.path.join(work, f"{name}_{seed}"))["final"]
      runs[name].append({k: final.get(k) for k in
                         ("accuracy", "mAP_macro", "drift", "hr_tiles")})
      print(f"== {name} seed {seed}: {runs[name][-1]}", flush=True)

  rows = []
  for name, rs in runs.items():
    acc = np.array([r["accuracy"] for r in rs])
    rows.append({"init": name, "accuracy": float(acc.mean()),
                 "accuracy_std": float(acc.std()),
                 "mAP": float(np.mean([r["mAP_macro"] for r in rs])),
                 "drift": float(np.mean([r["drift"] for r in rs])),
                 "seeds": len(rs)})
  bench.print_table(rows, ["init", "accuracy", "accuracy_std", "mAP", "drift",
                           "seeds"])
  gain = rows[1]["accuracy"] - rows[0]["accuracy"]
  print(f"pretrained - scratch accuracy at budget 1/8: {100 * gain:+.2f} "
        "points", flush=True)
  bench.write_json(a.out, "pretrain.json", {
      "dataset": a.dataset, "quick": a.quick, "budget": 1 / 8,
      "labelled_train_scenes": shards.load_manifest(ft_dir).num_records(
          "train"),
      "pretrain_steps": pre_steps, "pretrained_lr_scale": a.lr_scale,
      "finetune_steps": finetune_config(data_dir, a.quick, a.steps, 0,
                                        "").total_steps,
      "pretrain_eval": pre["test"], "runs": runs, "summary": rows,
      "accuracy_gain": gain, "machine": bench.machine()})


if __name__ == "__main__":
  main()
