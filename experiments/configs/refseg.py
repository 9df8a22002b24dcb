r"""Referring segmentation with frozen dual encoders and dual adapters (S4ECA).

Trains on the referring set built from toyworld (data/referring.py) by
default; `--dataset` takes another referring set (spacenet_buildings_referring,
levircd_referring) or a records directory with `text` and masks["target"].

  python launch.py --config experiments/configs/refseg.py --workdir runs/refseg
  python launch.py --config experiments/configs/refseg.py:mode=full \
      --workdir runs/refseg_full
  python launch.py --config experiments/configs/refseg.py:runlocal --workdir /tmp/x

arg: comma-separated "runlocal" and/or "mode=adapters|decoder_only|full|
full_text" (which parameters train: crossscale.models.refseg.FROZEN).
Flips/rotations stay off: expressions name positions ("left of", "top").
"""

import ml_collections

from crossscale import sharding
from crossscale.models import refseg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = dict(a.split("=", 1) if "=" in a else (a, True)
              for a in (arg or "").split(",") if a)
  runlocal = bool(args.get("runlocal"))
  mode = args.get("mode", "adapters")
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = "toyworld_referring"
  c.data_root = ""
  c.toyworld = ml_collections.ConfigDict(dict(
      num_train=4000, num_val=500, num_test=500, hr_size=64, grid=8, scale=4))
  c.data = ml_collections.ConfigDict(dict(
      path="",
      fields=("hr", "text_ids", "text_mask", "mask_target"),
      augment=False,  # flips would contradict "left of", "top left", ...
      worker_count=0, num_threads=4, verify=True))
  c.task = "segmentation"
  c.model = ml_collections.ConfigDict(dict(
      name="refseg",
      backbone=dict(widths=(32, 64, 128, 256), depths=(1, 1, 2, 1)),
      adapter=dict(dim=64, num_queries=4, num_heads=4, depth=1,
                   bottleneck=16),
      text_encoder="minilm",      # "tiny": random small BERT, tests only
      backbone_init="",           # .npz / orbax checkpoint of ours; "" random
      train_text_encoder=mode == "full_text",
      minilm_path=""))
  c.aux_weights = ml_collections.ConfigDict(dict(bce=1.0, dice=1.0))
  c.batch_size = 32
  c.total_steps = 2000
  c.optim = ml_collections.ConfigDict(dict(
      name="adamw", lr=1e-3, warmup_steps=100, weight_decay=1e-4,
      grad_clip=1.0, schedule="cosine",
      frozen=refseg.frozen_patterns(mode)))
  c.mesh = (("data", -1), ("fsdp", 1), ("model", 1))
  c.sharding = ml_collections.ConfigDict(dict(rules=sharding.RULES))
  c.checkpoint = ml_collections.ConfigDict(dict(every=500, keep=2))
  c.log_every = 50
  c.eval_every = 500
  c.evals = ml_collections.ConfigDict(dict(
      val=dict(type="referring", split="val"),
      test=dict(type="referring", split="test")))
  c.final_eval_split = ""   # the classification final eval does not apply

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
  return c
