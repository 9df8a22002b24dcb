r"""Referring segmentation with frozen dual encoders and dual adapters (S4ECA).

Trains on the referring set built from toyworld (data/referring/) by
default; `--dataset` takes another referring set (spacenet_buildings_referring,
levircd_referring) or a records directory with `text` and masks["target"].

  python launch.py --config experiments/configs/refseg.py --workdir runs/refseg
  python launch.py --config experiments/configs/refseg.py:mode=full \
      --workdir runs/refseg_full
  python launch.py --config experiments/configs/refseg.py:runlocal \
      --workdir /tmp/x

arg: comma-separated "runlocal", "mode=adapters|decoder_only|full|full_text"
(which parameters train: crossscale.models.refseg.FROZEN), "quick" (the
CPU-sized schedule of experiments.refseg.rrsis --quick; implies "sweep"),
"sweep" (the final test eval only).
"""

import ml_collections

from crossscale.models import refseg
from experiments.configs import _common as common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_arg(
      arg, ("runlocal", "mode", "quick", "sweep"), "refseg.py"
  )
  runlocal = bool(args.get("runlocal"))
  mode = args.get("mode", "adapters")
  c = common.base(
      fields=("hr", "text_ids", "text_mask", "mask_target"),
      augment=False,  # flips would contradict "left of", "top left", ...
      task="segmentation",
      dataset="toyworld_referring",
      total_steps=2000,
      frozen=refseg.frozen_patterns(mode),
  )
  c.model = ml_collections.ConfigDict(
      dict(
          name="refseg",
          backbone=dict(widths=(32, 64, 128, 256), depths=(1, 1, 2, 1)),
          adapter=dict(
              dim=64, num_queries=4, num_heads=4, depth=1, bottleneck=16
          ),
          text_encoder="minilm",  # "tiny": random small BERT, tests only
          backbone_init="",  # .npz / orbax checkpoint of ours; "" random
          train_text_encoder=mode == "full_text",
          minilm_path="",
      )
  )
  c.aux_weights = ml_collections.ConfigDict(dict(bce=1.0, dice=1.0))
  c.evals = ml_collections.ConfigDict(
      dict(
          val=dict(type="referring", split="val"),
          test=dict(type="referring", split="test"),
      )
  )
  c.final_eval_split = ""  # the classification final eval does not apply

  if runlocal:
    c.model.backbone = dict(widths=(16, 32, 64), depths=(1, 1, 1))
    c.model.adapter.update(dim=16, num_queries=2, num_heads=2, bottleneck=8)
    c.model.text_encoder = "tiny"
    c.batch_size = 16
    c.total_steps = 10
    c.checkpoint.every = 5
    c.log_every = 5
    c.eval_every = 5
    c.evals.val.limit = 32
    c.evals.test.limit = 32
  if "quick" in args or "sweep" in args:
    common.for_sweep(c, {"test": dict(type="referring", split="test")})
    if runlocal:
      c.evals.test.limit = 32
  if "quick" in args:
    c.batch_size = 16
    c.total_steps = 150  # about 2 s/step on 2 shared CPU cores
    c.optim.warmup_steps = 15
  return c
