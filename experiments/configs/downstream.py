r"""Downstream models on HR imagery (crossscale/models/dense_backbones.py): a
dense backbone (U-Net, SegFormer-like, Swin-like) with a segmentation,
regression or scene-classification head, trained on true HR.

  python launch.py --workdir runs/ds_unet_seg --config \
      experiments/configs/downstream.py:backbone=unet,task=segmentation
  python launch.py --workdir /tmp/x --config \
      experiments/configs/downstream.py:task=classification,runlocal

arg: comma-separated "backbone=unet|segformer|swin" (default unet),
"task=segmentation|classification" (default segmentation; "regression"
needs a records set with a continuous mask, set config.model.target_key),
"size=tiny|small|base" (default small) and at most one of "quick" (small
widths, 400 steps, batch 16, a 1000-scene toyworld: the SR grid's --quick)
and "runlocal" (tiny widths, a few steps: smoke test). The SR grid
(experiments/sr_bench/sr_grid.py) builds its downstream models from
`model_config` below, sized by this config's `size`, `total_steps` and
`batch_size`.

On toyworld the segmentation target is the "objects" mask (0 = background,
k + 1 = class k's texture), so num_classes = 7.
"""

import ml_collections

from experiments.configs import _common as common
from experiments.configs import sr

BACKBONES = ("unet", "segformer", "swin")
TASKS = ("segmentation", "regression", "classification")

# Backbone fields per size. "tiny" is for tests and notebooks (seconds on a
# CPU), "small" for --quick benchmarks, "base" a GPU-sized default.
SIZES = {
    "unet": {
        "tiny": dict(widths=(4, 8)),
        "small": dict(widths=(8, 16, 32)),
        "base": dict(widths=(32, 64, 128, 256)),
    },
    "segformer": {
        "tiny": dict(
            widths=(8, 16),
            depths=(1, 1),
            num_heads=(1, 1),
            sr_ratios=(2, 1),
            decoder_dim=8,
        ),
        "small": dict(
            widths=(8, 16, 32),
            depths=(1, 1, 1),
            num_heads=(1, 1, 2),
            sr_ratios=(4, 2, 1),
            decoder_dim=16,
        ),
        "base": dict(
            widths=(32, 64, 160, 256),
            depths=(2, 2, 2, 2),
            num_heads=(1, 2, 5, 8),
            sr_ratios=(8, 4, 2, 1),
            decoder_dim=256,
        ),
    },
    "swin": {
        "tiny": dict(
            patch=4, widths=(8,), depths=(2,), num_heads=(1,), decoder_dim=8
        ),
        "small": dict(
            patch=4,
            widths=(16, 32),
            depths=(2, 2),
            num_heads=(2, 2),
            decoder_dim=16,
        ),
        "base": dict(
            patch=4,
            widths=(96, 192, 384),
            depths=(2, 2, 6),
            num_heads=(3, 6, 12),
            window_size=7,
            decoder_dim=128,
        ),
    },
}


def model_config(
    backbone: str,
    task: str,
    num_classes: int,
    size: str = "small",
    target_key: str = "mask_objects",
    regression_loss: str = "l1",
    seg_loss: str = "balanced_ce+dice",
) -> dict:
  """config.model for `backbone` x `task` at `size`.

  seg_loss (segmentation only; crossscale.models.dense_backbones.SEG_LOSSES):
  the default "balanced_ce+dice" is cross-entropy weighted by the batch's
  inverse class frequencies plus soft Dice. With plain "ce" every backbone
  collapses to all-background on toyworld (objects are ~1% of the pixels;
  mIoU = background IoU / 7 = 0.1415)."""
  if backbone not in SIZES:
    raise ValueError(
        f"unknown downstream backbone {backbone!r} in the config "
        f"arg 'backbone=...'; known: {', '.join(BACKBONES)}"
    )
  if task not in TASKS:
    raise ValueError(
        f"unknown downstream task {task!r} in the config arg "
        f"'task=...'; known: {', '.join(TASKS)}"
    )
  if size not in SIZES[backbone]:
    raise ValueError(f"unknown size {size!r}; known: {sorted(SIZES[backbone])}")
  return dict(
      name="downstream",
      task=task,
      backbone=backbone,
      num_classes=num_classes,
      backbone_kwargs=dict(SIZES[backbone][size]),
      input_key="hr",
      target_key="labels" if task == "classification" else target_key,
      regression_loss=regression_loss,
      seg_loss=seg_loss if task == "segmentation" else "ce",
  )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_arg(
      arg, ("backbone", "task", "size", "quick", "runlocal"), "downstream.py"
  )
  runlocal, quick = bool(args.get("runlocal")), bool(args.get("quick"))
  if runlocal and quick:
    raise ValueError(
        "downstream.py: pass at most one of 'quick' and 'runlocal'."
    )
  backbone = args.get("backbone", "unet")
  task = args.get("task", "segmentation")
  size = args.get("size", "tiny" if runlocal else "small")
  target = "labels" if task == "classification" else "mask_objects"
  # Classification: the trainer's softmax CE on "logits"; dense tasks bring
  # their loss in aux_losses ("ce", "dice", "l1"/"l2").
  c = common.base(
      fields=("hr", target),
      task="single_label" if task == "classification" else task,
  )
  c.size = size
  # toyworld: 6 scene classes; its objects mask has 6 + background.
  c.model = ml_collections.ConfigDict(
      model_config(
          backbone,
          task,
          6 if task == "classification" else 7,
          size,
          target_key=target,
      )
  )
  c.aux_weights = ml_collections.ConfigDict(
      dict(ce=1.0, dice=1.0, l1=1.0, l2=1.0)
  )
  # crossscale.evaluators.DownstreamEvaluator: segmentation pixel_accuracy,
  # mIoU, mean_f1; regression mae, rmse; classification accuracy.
  c.evals = ml_collections.ConfigDict(
      dict(
          val=dict(type="downstream", split="val", limit=256),
          test=dict(type="downstream", split="test"),
      )
  )
  c.final_eval_split = ""  # the "test" evaluator above reports the task

  if quick:
    c.toyworld.update(sr.TOYWORLD_QUICK)
    c.batch_size = 16
    c.total_steps = 400
  if runlocal:
    c.toyworld.update(common.TOYWORLD_RUNLOCAL)
    c.batch_size = 16
    c.total_steps = 4
    c.checkpoint.every = 2
    c.log_every = 2
    c.eval_every = 1000
    c.evals.val.limit = 16
    c.evals.test.limit = 32
  return c
