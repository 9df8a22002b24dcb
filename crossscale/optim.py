"""Optimizers and schedules from `config.optim`."""

from __future__ import annotations

import optax


def make_schedule(cfg, total_steps: int) -> optax.Schedule:
  warmup = int(cfg.get("warmup_steps", 0))
  kind = cfg.get("schedule", "cosine")
  if kind == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, warmup, max(total_steps, warmup + 1),
        end_value=cfg.lr * cfg.get("end_lr_factor", 0.0))
  if kind == "constant":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, max(warmup, 1)),
         optax.constant_schedule(cfg.lr)], [warmup])
  raise ValueError(f"unknown schedule {kind!r} (config.optim.schedule); "
                   "known: cosine, constant")


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
  """Gradient clipping + AdamW (or SGD with momentum) on a schedule."""
  schedule = make_schedule(cfg, total_steps)
  name = cfg.get("name", "adamw")
  if name == "adamw":
    opt = optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999),
                      weight_decay=cfg.get("weight_decay", 0.0))
  elif name == "sgd":
    opt = optax.sgd(schedule, momentum=cfg.get("momentum", 0.9))
  else:
    raise ValueError(f"unknown optimizer {name!r} (config.optim.name); "
                     "known: adamw, sgd")
  clip = cfg.get("grad_clip", 0.0)
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt
