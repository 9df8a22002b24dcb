"""Shared benchmark plumbing: machine description, table printing, JSON."""

from __future__ import annotations

import json
import os
import platform

import time

import jax


def machine() -> dict:
  return {"platform": platform.platform(), "processor": platform.machine(),
          "cpu_count": os.cpu_count(), "jax_backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()][:8],
          "device_count": jax.device_count()}


def print_table(rows: list[dict], columns: list[str]) -> None:
  widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
  print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
  print("  ".join("-" * w for w in widths))
  for r in rows:
    print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return "" if v is None else str(v)


def write_json(out_dir: str, name: str, payload: dict) -> str:
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, name)
  with open(path, "w") as f:
    json.dump(payload, f, indent=1)
  print(f"wrote {path}")
  return path


def time_train_step(config, data_dir: str, steps: int) -> float:
  """Seconds per jitted train step of `config` on one real batch (compute
  only: the batch is reused, compile excluded)."""
  from crossscale import input_pipeline, sharding, shards, train  # pylint: disable=g-import-not-at-top
  manifest = shards.load_manifest(data_dir)
  mesh = sharding.make_mesh(config.mesh)
  model = train.make_model(config, manifest)
  tx = train.make_tx(config)
  example = train.example_batch(manifest, config.data.fields, config.batch_size)
  state, state_sh = train.init_state(config, model, tx, example, mesh)
  step = train.jit_train_step(config, model, tx, mesh, state_sh)
  batch = next(iter(input_pipeline.train_dataset(
      data_dir, batch_size=config.batch_size, seed=0,
      fields=config.data.fields)))
  batch = sharding.put_batch(batch, mesh)
  key = jax.random.key_data(jax.random.key(0))
  state, m = step(state, batch, key)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, m = step(state, batch, key)
  jax.block_until_ready(m)
  return (time.perf_counter() - t0) / steps
