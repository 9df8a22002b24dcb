r"""LR-only ViT classifier: the baseline that never buys an HR tile.

Trains on the embedded toyworld by default; `--dataset` takes a registered
name (toyworld, rsscn7) or a records directory written by a data/ builder.

  python launch.py --config experiments/configs/lr_vit.py --workdir runs/lr_vit
  python launch.py --config experiments/configs/lr_vit.py --workdir runs/rsscn7 \
      --dataset rsscn7
  python launch.py --config experiments/configs/lr_vit.py:runlocal --workdir /tmp/x

`runlocal` shrinks everything for a smoke test (seconds).
"""

import ml_collections

from crossscale import sharding


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  runlocal = arg == "runlocal"
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = "toyworld"   # registered name or records directory
  c.data_root = ""         # "" -> $CROSSSCALE_DATA or ~/.cache/crossscale/datasets
  c.toyworld = ml_collections.ConfigDict(dict(
      num_train=4000, num_val=500, num_test=500, hr_size=64, grid=8, scale=4))
  c.data = ml_collections.ConfigDict(dict(
      path="",             # filled in by launch.py from `dataset`
      fields=("lr", "labels"), augment=True, worker_count=0, num_threads=4,
      verify=True))
  c.task = "single_label"
  c.model = ml_collections.ConfigDict(dict(
      name="lr_vit",
      encoder=dict(width=96, depth=4, num_heads=4, mlp_dim=192, patch_size=0,
                   dropout=0.0)))
  c.batch_size = 64
  c.total_steps = 1200
  c.optim = ml_collections.ConfigDict(dict(
      name="adamw", lr=1e-3, warmup_steps=100, weight_decay=1e-4,
      grad_clip=1.0, schedule="cosine"))
  # Device mesh: data parallel over all devices by default; e.g.
  # --config.mesh='(("data",2),("fsdp",2),("model",2))' shards parameters
  # (FSDP over widths, tensor parallel over heads/MLP) by the rules below.
  c.mesh = (("data", -1), ("fsdp", 1), ("model", 1))
  c.sharding = ml_collections.ConfigDict(dict(rules=sharding.RULES))
  c.checkpoint = ml_collections.ConfigDict(dict(every=200, keep=3))
  c.log_every = 50
  c.eval_every = 400
  c.evals = ml_collections.ConfigDict(dict(
      val=dict(type="classification", split="val")))
  c.final_eval_split = "test"

  if runlocal:
    c.toyworld.update(num_train=256, num_val=64, num_test=64)
    c.model.encoder.update(width=32, depth=1, num_heads=2, mlp_dim=64)
    c.batch_size = 16
    c.total_steps = 20
    c.checkpoint.every = 10
    c.log_every = 5
    c.eval_every = 10
  return c
