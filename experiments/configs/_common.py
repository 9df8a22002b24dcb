"""What every experiment config shares: the config-arg parser and the
skeleton (data, optimizer, mesh, sharding, checkpoints, logging) that each
`get_config` fills in with its model, task and schedule.

Every block here is overridable from the command line like any other field,
e.g. --config.mesh='(("data",2),("fsdp",2),("model",2))' or
--config.optim.lr=3e-4.
"""

from __future__ import annotations

from typing import Any, Sequence

import ml_collections

from crossscale import partitioning

# Toyworld sizes: the embedded default, `runlocal` smoke tests, and the
# world the sweeps' `quick` schedule builds (2000 train, 500 test scenes).
TOYWORLD = dict(
    num_train=4000, num_val=500, num_test=500, hr_size=64, grid=8, scale=4
)
TOYWORLD_RUNLOCAL = dict(num_train=256, num_val=64, num_test=64)
TOYWORLD_QUICK = dict(num_train=2000, num_val=64, num_test=500)


def parse_arg(
    arg: str | None, known: Sequence[str], config: str
) -> dict[str, Any]:
  """The config arg "a,b=v,..." -> {"a": True, "b": "v"}.

  `known`: the accepted names; anything else is a clear error naming
  `config` (the config file), so a typo never silently runs the default."""
  args = dict(
      a.split("=", 1) if "=" in a else (a, True)
      for a in (arg or "").split(",")
      if a
  )
  unknown = sorted(set(args) - set(known))
  if unknown:
    raise ValueError(
        f"unknown config arg {', '.join(unknown)} for {config}; "
        f"known: {', '.join(known)} (comma-separated names and "
        "name=value pairs after the ':')"
    )
  return args


def for_sweep(c: ml_collections.ConfigDict, evals=None) -> None:
  """A sweep's run: no periodic checkpoints or evals, only the final one
  (`evals`: {name: evaluator config}; the last checkpoint is always saved)."""
  c.checkpoint.every = 10**9
  c.eval_every = 10**9
  c.log_every = 100
  c.evals = ml_collections.ConfigDict(evals or {})


def set_steps(c: ml_collections.ConfigDict, steps: int) -> None:
  """A `steps=N` arg: N steps, 10% warmup, one checkpoint at the end."""
  c.total_steps = steps
  c.optim.warmup_steps = max(1, steps // 10)
  c.checkpoint.every = steps


def base(
    *,
    fields: Sequence[str],
    task: str,
    augment: bool = True,
    dataset: str = "toyworld",
    batch_size: int = 32,
    total_steps: int = 3000,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    frozen: Sequence[str] = (),
    checkpoint_every: int = 500,
    checkpoint_keep: int = 2,
    eval_every: int = 500,
) -> ml_collections.ConfigDict:
  """The shared skeleton; the caller adds `model`, `evals` (and
  `aux_weights`, `final_eval_split` where they apply)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = dataset  # registered name or records directory
  c.data_root = ""  # "" -> $CROSSSCALE_DATA or ~/.cache/crossscale/datasets
  c.toyworld = ml_collections.ConfigDict(dict(TOYWORLD))
  c.data = ml_collections.ConfigDict(
      dict(
          path="",  # filled in by launch.py from `dataset`
          fields=tuple(fields),
          augment=augment,
          worker_count=0,
          num_threads=4,
          verify=True,
      )
  )
  c.task = task
  c.batch_size = batch_size
  c.total_steps = total_steps
  # `lr_scale` ((regex, factor), ...), `frozen` (regexes) and `frozen_for`
  # ((regex, fraction of total_steps), ...): per-parameter learning rates,
  # frozen parameters and parameters held at init for a while
  # (crossscale.optim.make_optimizer).
  c.optim = ml_collections.ConfigDict(
      dict(
          name="adamw",
          lr=lr,
          warmup_steps=100,
          weight_decay=weight_decay,
          grad_clip=1.0,
          schedule="cosine",
          frozen=tuple(frozen),
          frozen_for=(),
          lr_scale=(),
      )
  )
  # Device mesh: data parallel over all devices by default; e.g.
  # --config.mesh='(("data",2),("fsdp",2),("model",2))' shards parameters
  # (FSDP over widths, tensor parallel over heads/MLP) by the rules below.
  c.mesh = (("data", -1), ("fsdp", 1), ("model", 1))
  c.sharding = ml_collections.ConfigDict(dict(rules=partitioning.RULES))
  c.checkpoint = ml_collections.ConfigDict(
      dict(every=checkpoint_every, keep=checkpoint_keep)
  )
  c.log_every = 50
  c.eval_every = eval_every
  return c
