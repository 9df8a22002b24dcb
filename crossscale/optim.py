"""Optimizers and schedules from `config.optim`."""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax


def make_schedule(cfg, total_steps: int) -> optax.Schedule:
  warmup = int(cfg.get("warmup_steps", 0))
  kind = cfg.get("schedule", "cosine")
  if kind == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0,
        cfg.lr,
        warmup,
        max(total_steps, warmup + 1),
        end_value=cfg.lr * cfg.get("end_lr_factor", 0.0),
    )
  if kind == "constant":
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, cfg.lr, max(warmup, 1)),
            optax.constant_schedule(cfg.lr),
        ],
        [warmup],
    )
  raise ValueError(
      f"unknown schedule {kind!r} (config.optim.schedule); "
      "known: cosine, constant"
  )


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
  """Gradient clipping + AdamW (or SGD with momentum) on a schedule.

  `cfg.lr_scale`: optional ((regex, factor), ...): the learning rate (and
  so the decoupled weight decay) of parameters whose path matches the first
  regex that does (re.search) is multiplied by `factor`, e.g. gentler
  fine-tuning of pretrained encoders. `cfg.frozen`: regexes of parameters
  that never update (no optimizer state either). `cfg.frozen_for`:
  optional ((regex, fraction), ...): parameters matching a regex keep their
  initial values for the first fraction of `total_steps` (their optimizer
  state still follows the gradients), e.g. a sampler held at its prior
  while the encoders learn."""
  schedule = make_schedule(cfg, total_steps)
  name = cfg.get("name", "adamw")
  if name == "adamw":
    opt = optax.adamw(
        schedule,
        b1=cfg.get("b1", 0.9),
        b2=cfg.get("b2", 0.999),
        weight_decay=cfg.get("weight_decay", 0.0),
    )
  elif name == "sgd":
    opt = optax.sgd(schedule, momentum=cfg.get("momentum", 0.9))
  else:
    raise ValueError(
        f"unknown optimizer {name!r} (config.optim.name); " "known: adamw, sgd"
    )
  scales = tuple(tuple(r) for r in (cfg.get("lr_scale", ()) or ()))
  if scales:
    opt = optax.chain(opt, scale_by_path(scales))
  clip = cfg.get("grad_clip", 0.0)
  opt = optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt
  held = tuple(tuple(r) for r in (cfg.get("frozen_for", ()) or ()))
  if held:
    opt = optax.chain(opt, hold_until(held, total_steps))
  frozen = tuple(cfg.get("frozen", ()) or ())
  if not frozen:
    return opt
  # Frozen parameters get no update and the optimizer holds no state for them.
  return optax.multi_transform(
      {"train": opt, "frozen": optax.set_to_zero()},
      lambda params: param_labels(params, frozen),
  )


def path_factors(tree: Any, scales: Sequence[tuple[str, float]]) -> Any:
  """Per-leaf factor: that of the first (regex, factor) in `scales` whose
  regex matches the leaf's path (re.search), else 1.0."""
  pats = []
  for item in scales:
    if len(item) != 2:
      raise ValueError(
          f"config.optim.lr_scale entry {item!r} is not a "
          "(regex, factor) pair"
      )
    pats.append((re.compile(item[0]), float(item[1])))

  def factor(path, _):
    name = param_path(path)
    return next((f for p, f in pats if p.search(name)), 1.0)

  return jax.tree_util.tree_map_with_path(factor, tree)


def scale_by_path(
    scales: Sequence[tuple[str, float]],
) -> optax.GradientTransformation:
  """Multiplies each update by its `path_factors` factor (stateless)."""

  def update(updates, state, params=None):
    del params
    factors = path_factors(updates, scales)
    return (
        jax.tree.map(lambda u, f: u if f == 1.0 else u * f, updates, factors),
        state,
    )

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


class HoldState(NamedTuple):
  count: jax.Array  # [] int32: updates seen


def hold_until(
    rules: Sequence[tuple[str, float]], total_steps: int
) -> optax.GradientTransformation:
  """Zeroes the updates of parameters whose path matches a rule's regex
  (first match, re.search) until `fraction * total_steps` updates passed."""
  steps = []
  for item in rules:
    if len(item) != 2 or not 0.0 <= float(item[1]) <= 1.0:
      raise ValueError(
          f"config.optim.frozen_for entry {item!r}: expected a (regex, "
          "fraction of total_steps in [0, 1]) pair, e.g. ('^sampler/', 0.5)"
      )
    steps.append((re.compile(item[0]), round(float(item[1]) * total_steps)))

  def until(path, _):
    name = param_path(path)
    return next((n for p, n in steps if p.search(name)), 0)

  def init(params):
    del params
    return HoldState(count=jnp.zeros((), jnp.int32))

  def update(updates, state, params=None):
    del params
    starts = jax.tree_util.tree_map_with_path(until, updates)
    updates = jax.tree.map(
        lambda u, n: u if n == 0 else jnp.where(state.count >= n, u, 0),
        updates,
        starts,
    )
    return updates, HoldState(count=state.count + 1)

  return optax.GradientTransformation(init, update)


def param_path(path) -> str:
  """ "a/b/kernel" from a pytree key path (dict keys only; boxes skipped)."""
  return "/".join(str(k.key) for k in path if hasattr(k, "key"))


def subtree_regex(key: str) -> str:
  """The `lr_scale` / `frozen` regex of every parameter under the top-level
  subtree `key` (e.g. "hr_encoder")."""
  return f"^{re.escape(key)}/"


def param_labels(params: Any, frozen: Sequence[str]) -> Any:
  """ "frozen" where a regex of `config.optim.frozen` matches (re.search) the
  parameter's path, else "train"."""
  pats = [re.compile(p) for p in frozen]
  return jax.tree_util.tree_map_with_path(
      lambda path, _: "frozen"
      if any(p.search(param_path(path)) for p in pats)
      else "train",
      params,
  )


def trainable_fraction(params: Any, frozen: Sequence[str]) -> tuple[int, int]:
  """(trainable, total) parameter counts under `frozen`."""
  labels = jax.tree.leaves(param_labels(params, frozen))
  sizes = [x.size for x in jax.tree.leaves(params)]
  return sum(n for n, l in zip(sizes, labels) if l == "train"), sum(sizes)
