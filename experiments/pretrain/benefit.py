r"""Does cross-scale pretraining help the cost-aware model at budget 1/8?

  python -m experiments.pretrain.benefit --dataset toyworld --quick \
      --out /tmp/pre
  python -m experiments.pretrain.benefit --runlocal --out /tmp/smoke

1. Pretrains the LR and HR encoders (experiments/configs/pretrain.py:
   LR-region <-> HR-tile alignment + masked LR modelling, no labels) on the
   train split, with the encoder sizes of the tradeoff sweep's model
   (pretrain.py:quick,steps=N; :sweep without --quick).
2. Trains the cross-scale model (learned sampler, budget 1/8) twice with the
   same schedule and seeds: from random init and from the pretrained
   encoders (`config.model_init`; `--lr_scale F` fine-tunes them at F times
   the learning rate), over `--seeds` seeds; `--labelled N`
   fine-tunes on N labelled scenes (pretraining used all, without labels).
3. Reports test accuracy / mAP / drift of both. `--steps 100,200,400` repeats
   2. for each fine-tuning length (each a complete schedule) and plots
   accuracy vs steps. `--probe` also trains with the pretrained parts
   frozen, from random and from pretrained weights (what the label-free
   features alone carry). Writes OUT/<dataset>_<schedule>_s0-<seeds-1>.json
   (and .png for a curve). `--runlocal`: a seconds-long smoke.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from absl import flags
import matplotlib
import numpy as np

from crossscale import optim, reporting, shards, train
from data import registry
from experiments.configs import _common as common
from experiments.configs import cross_scale, pretrain

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position


def config_arg(quick: bool, runlocal: bool = False) -> str:
  """The config arg of the sweep's runs (cross_scale.py, pretrain.py)."""
  if runlocal:
    return "runlocal,sweep"
  return "quick" if quick else "sweep"


def finetune_config(
    data_dir: str,
    quick: bool,
    steps: int,
    seed: int,
    init: str,
    lr_scale: float = 1.0,
    init_keys: tuple[str, ...] = (),
    runlocal: bool = False,
):
  """cross_scale.py:quick (or :sweep) at budget 1/8, from `init`."""
  c = cross_scale.get_config(config_arg(quick, runlocal))
  c.data.path = data_dir
  c.model.budget = 1 / 8
  c.seed = seed
  if steps:
    c.total_steps = steps
  c.model_init = init
  c.model_init_lr_scale = lr_scale
  if init_keys:
    c.model_init_keys = tuple(init_keys)
  return c


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="toyworld")
  p.add_argument("--quick", action="store_true")
  p.add_argument(
      "--runlocal",
      action="store_true",
      help="smoke test: tiny models and toyworld (seconds)",
  )
  p.add_argument("--out", required=True)
  p.add_argument(
      "--name",
      default="",
      help="results file stem (default <dataset>_<schedule>_s0-<seeds-1>)",
  )
  p.add_argument("--pretrain_steps", type=int, default=0)
  p.add_argument(
      "--steps",
      default="",
      help="fine-tuning steps; a comma list (e.g. 100,200,400) "
      "gives accuracy vs steps (pretrain.png)",
  )
  p.add_argument("--seeds", type=int, default=2)
  p.add_argument(
      "--labelled",
      type=int,
      default=0,
      help="fine-tune on the first N train scenes only (toyworld; "
      "pretraining still sees the whole train split)",
  )
  p.add_argument(
      "--init_keys",
      default="",
      help="comma list of the parts taken from the pretraining "
      "run (default: config.model_init_keys: lr_encoder, "
      "hr_encoder, sampler)",
  )
  p.add_argument(
      "--contrast_tiles",
      type=int,
      default=0,
      help="HR tiles per scene in the pretraining's tile "
      "contrast (config.model.contrast_tiles; 0: off)",
  )
  p.add_argument(
      "--probe",
      action="store_true",
      help="also train with the pretrained parts frozen, from "
      "random and from pretrained weights",
  )
  p.add_argument(
      "--lr_scale",
      type=float,
      default=1.0,
      help="learning-rate factor of the pretrained parts when "
      "fine-tuning (config.model_init_lr_scale)",
  )
  a = p.parse_args(argv)
  flags.FLAGS.mark_as_parsed()
  opts = None
  if a.dataset == "toyworld":
    opts = cross_scale.get_config(config_arg(a.quick, a.runlocal)).toyworld
    opts = opts.to_dict()
    if a.quick and not a.runlocal:
      opts.update(common.TOYWORLD_QUICK)
  data_dir = registry.resolve(a.dataset, None, opts)
  ft_dir = data_dir
  if a.labelled:
    if a.dataset != "toyworld":
      raise ValueError(
          "--labelled needs --dataset toyworld (its scenes are "
          "seeded per index, so N train scenes are a prefix)."
      )
    ft_dir = registry.resolve(
        a.dataset, None, {**opts, "num_train": a.labelled}
    )
  work = tempfile.mkdtemp(prefix="pretrain_")
  pre_steps = a.pretrain_steps or (
      20 if a.runlocal else 600 if a.quick else 3000
  )

  steps_list = [int(v) for v in a.steps.split(",")] if a.steps else [0]
  init_keys = tuple(k for k in a.init_keys.split(",") if k)
  pre_dir = os.path.join(work, "pretrain")
  pc = pretrain.get_config(
      f"{config_arg(a.quick, a.runlocal)},steps={pre_steps}"
  )
  pc.data.path = data_dir
  pc.model.contrast_tiles = a.contrast_tiles
  pre = train.train_and_evaluate(pc, pre_dir)
  print(f"pretraining ({pre_steps} steps): {pre['test']}", flush=True)

  curve = []
  for steps in steps_list:
    curve.append(
        compare(
            ft_dir,
            a.quick,
            steps,
            a.seeds,
            pre_dir,
            a.lr_scale,
            os.path.join(work, f"ft{steps}"),
            init_keys,
            a.probe,
            a.runlocal,
        )
    )
  for point in curve:
    print(
        f"\nfine-tuning {point['finetune_steps']} steps, budget 1/8, "
        f"{a.seeds} seeds:"
    )
    reporting.print_table(
        point["summary"],
        ["init", "accuracy", "accuracy_std", "mAP", "drift", "seeds"],
    )
    print(
        f"pretrained - scratch accuracy: "
        f"{100 * point['accuracy_gain']:+.2f} points; pretrained ahead on "
        f"{point['seeds_ahead']} of {a.seeds} seeds",
        flush=True,
    )
    if "frozen_gain" in point:
      print(
          f"frozen parts, pretrained - random: "
          f"{100 * point['frozen_gain']:+.2f} points",
          flush=True,
      )
  schedule = reporting.schedule_name(a.quick, runlocal=a.runlocal)
  stem = a.name or reporting.results_name(
      a.dataset, schedule, 0, a.seeds - 1
  ).removesuffix(".json")
  reporting.write_json(
      a.out,
      f"{stem}.json",
      {
          "dataset": a.dataset,
          "quick": a.quick,
          "schedule": schedule,
          "budget": 1 / 8,
          "labelled_train_scenes": shards.load_manifest(ft_dir).num_records(
              "train"
          ),
          "pretrain_steps": pre_steps,
          "pretrained_lr_scale": a.lr_scale,
          "contrast_tiles": a.contrast_tiles,
          "init_keys": list(
              init_keys
              or finetune_config(data_dir, a.quick, 0, 0, "").model_init_keys
          ),
          "pretrain_eval": pre["test"],
          "curve": curve,
      },
      datasets={"data": data_dir, "finetune": ft_dir},
  )
  if len(curve) > 1:
    _plot(curve, os.path.join(a.out, f"{stem}.png"), pre_steps)


def compare(
    data_dir: str,
    quick: bool,
    steps: int,
    seeds: int,
    pre_dir: str,
    lr_scale: float,
    work: str,
    init_keys: tuple[str, ...] = (),
    probe: bool = False,
    runlocal: bool = False,
) -> dict:
  """Fine-tunes from scratch and from `pre_dir` for `steps` steps over
  `seeds` seeds (same seeds for both); per-seed finals and a summary.
  `probe` adds two arms with the `init_keys` parts frozen (random vs
  pretrained): how much the label-free features alone carry."""
  arms = [("scratch", "", False), ("pretrained", pre_dir, False)]
  if probe:
    arms += [("scratch_frozen", "", True), ("pretrained_frozen", pre_dir, True)]
  runs = {name: [] for name, _, _ in arms}
  for seed in range(seeds):
    for name, init, frozen in arms:
      c = finetune_config(
          data_dir, quick, steps, seed, init, lr_scale, init_keys, runlocal
      )
      if frozen:
        c.optim.frozen = tuple(
            optim.subtree_regex(k) for k in c.model_init_keys
        )
      final = train.train_and_evaluate(c, os.path.join(work, f"{name}_{seed}"))[
          "final"
      ]
      runs[name].append(
          {
              k: final.get(k)
              for k in ("accuracy", "mAP_macro", "drift", "hr_tiles")
          }
      )
      print(
          f"== {steps} steps, {name} seed {seed}: {runs[name][-1]}", flush=True
      )
  rows = []
  for name, rs in runs.items():
    acc = np.array([r["accuracy"] for r in rs])
    rows.append(
        {
            "init": name,
            "accuracy": float(acc.mean()),
            "accuracy_std": float(acc.std()),
            "mAP": float(np.mean([r["mAP_macro"] for r in rs])),
            "drift": float(np.mean([r["drift"] for r in rs])),
            "seeds": len(rs),
        }
    )
  ahead = sum(
      p["accuracy"] > s["accuracy"]
      for s, p in zip(runs["scratch"], runs["pretrained"])
  )
  out = {
      "finetune_steps": finetune_config(
          data_dir, quick, steps, 0, "", runlocal=runlocal
      ).total_steps,
      "runs": runs,
      "summary": rows,
      "seeds_ahead": int(ahead),
      "accuracy_gain": rows[1]["accuracy"] - rows[0]["accuracy"],
  }
  if probe:
    out["frozen_gain"] = rows[3]["accuracy"] - rows[2]["accuracy"]
  return out


def _plot(curve: list[dict], path: str, pre_steps: int) -> None:
  fig, ax = plt.subplots(figsize=(5.5, 4))
  x = [p["finetune_steps"] for p in curve]
  for i, name in enumerate(("scratch", "pretrained")):
    y = [p["summary"][i]["accuracy"] for p in curve]
    e = [p["summary"][i]["accuracy_std"] for p in curve]
    ax.errorbar(
        x,
        y,
        yerr=e,
        marker="o",
        capsize=3,
        label=name
        if name == "scratch"
        else f"pretrained ({pre_steps} label-free steps)",
    )
  ax.set_xlabel("fine-tuning steps (each a full schedule)")
  ax.set_ylabel("test accuracy at budget 1/8")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
