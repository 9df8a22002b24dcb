r"""LR-only ViT classifier: the baseline that never buys an HR tile.

Trains on the embedded toyworld by default; `--dataset` takes a registered
name (toyworld, rsscn7) or a records directory written by a data/ builder.

  python launch.py --config experiments/configs/lr_vit.py --workdir runs/lr_vit
  python launch.py --config experiments/configs/lr_vit.py \
      --workdir runs/rsscn7 --dataset rsscn7
  python launch.py --config experiments/configs/lr_vit.py:runlocal \
      --workdir /tmp/x

`runlocal` shrinks everything for a smoke test (seconds).
"""

import ml_collections

from experiments.configs import _common as common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = common.parse_arg(arg, ("runlocal",), "lr_vit.py")
  runlocal = bool(args.get("runlocal"))
  c = common.base(
      fields=("lr", "labels"),
      task="auto",  # single- or multi-label, from the data's labels
      batch_size=64,
      total_steps=1200,
      checkpoint_every=200,
      checkpoint_keep=3,
      eval_every=400,
  )
  c.model = ml_collections.ConfigDict(
      dict(
          name="lr_vit",
          encoder=dict(
              width=96,
              depth=4,
              num_heads=4,
              mlp_dim=192,
              patch_size=0,
              dropout=0.0,
          ),
      )
  )
  c.evals = ml_collections.ConfigDict(
      dict(val=dict(type="classification", split="val"))
  )
  c.final_eval_split = "test"

  if runlocal:
    c.toyworld.update(common.TOYWORLD_RUNLOCAL)
    c.model.encoder.update(width=32, depth=1, num_heads=2, mlp_dim=64)
    c.batch_size = 16
    c.total_steps = 20
    c.checkpoint.every = 10
    c.log_every = 5
    c.eval_every = 10
  return c
