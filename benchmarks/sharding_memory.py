r"""Per-device parameter + optimizer memory of the cross-scale model on
(data, fsdp, model) meshes, and the compiled train step's memory analysis.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python -m benchmarks.sharding_memory --out DIR [--quick | --runlocal]

Nothing is materialised: shapes come from `jax.eval_shape` of the init,
shardings from the logical-axis rules (`config.sharding.rules`), bytes per
device from each leaf's shard shape. The train step is lowered and compiled
against those shardings and `compiled.memory_analysis()` (where the backend
provides it) gives argument / output / temporary bytes per device, with and
without activation rematerialisation. Configs: the default (toyworld
shapes) and a large one (widths 512, depth 8, MLP 2048). Writes
DIR/sharding_memory.json. `--runlocal`: a smoke test (cross_scale.py:runlocal
on the runlocal toyworld, one mesh, no remat, no large config).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import ml_collections  # pylint: disable=g-import-not-at-top

from crossscale import (
    partitioning,  # pylint: disable=g-import-not-at-top
    reporting,  # pylint: disable=g-import-not-at-top
    shards,
    train,
)
from data import registry  # pylint: disable=g-import-not-at-top
from experiments.configs import cross_scale  # pylint: disable=g-import-not-at-top

MESHES = [(8, 1, 1), (4, 2, 1), (2, 2, 2), (1, 4, 2), (1, 8, 1)]


def large(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  c.model.lr_encoder = dict(width=512, depth=8, num_heads=8, mlp_dim=2048)
  c.model.hr_encoder = dict(
      kind="vit", width=512, depth=8, num_heads=8, mlp_dim=2048, target_side=4
  )
  c.model.sampler = dict(width=256, depth=2, num_heads=8)
  c.model.predictor = dict(
      width=512, depth=8, num_heads=8, mlp_dim=2048, lr_guidance=True
  )
  return c


def measure(config, manifest, mesh_sizes, compile_step: bool) -> dict:
  mesh = partitioning.make_mesh(
      tuple(zip(("data", "fsdp", "model"), mesh_sizes))
  )
  model = train.make_model(config, manifest)
  tx = train.make_tx(config)
  batch = train.example_batch(manifest, config.data.fields, config.batch_size)
  abstract, state_sh = abstract_state(config, model, tx, batch, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(abstract.params))
  row = {
      "mesh": "x".join(map(str, mesh_sizes)),
      "params_m": n_params / 1e6,
      "params_mb_per_device": partitioning.per_device_bytes(
          abstract.params, state_sh.params
      )
      / 2**20,
      "opt_mb_per_device": partitioning.per_device_bytes(
          abstract.opt_state, state_sh.opt_state
      )
      / 2**20,
  }
  if compile_step:
    step = train.jit_train_step(
        config, model, tx, mesh, state_sh, train.task_of(config, manifest)
    )
    abstract_batch = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(
            x.shape, x.dtype, sharding=partitioning.batch_sharding(mesh)
        ),
        batch,
    )
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32)
    compiled = step.lower(abstract, abstract_batch, rng).compile()
    ma = compiled.memory_analysis()
    if ma is not None:
      row["temp_mb_per_device"] = ma.temp_size_in_bytes / 2**20
      row["args_mb_per_device"] = ma.argument_size_in_bytes / 2**20
  return row


def abstract_state(config, model, tx, batch, mesh):
  """(state shapes, state shardings) without materialising anything, as
  `train.init_state` derives them."""

  def boxed_init(rng):
    params = model.init({"params": rng}, batch, train=False)["params"]
    return train.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jnp.zeros((2,), jnp.uint32),
    )

  boxed = jax.eval_shape(boxed_init, jax.random.key(0))
  shardings = partitioning.tree_shardings(
      boxed, mesh, train.sharding_rules(config)
  )
  return nn.meta.unbox(boxed), shardings


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--runlocal", action="store_true", help="smoke test")
  ap.add_argument("--out", required=True)
  args = ap.parse_args(argv)
  arg = "runlocal" if args.runlocal else None
  small = cross_scale.get_config(arg).toyworld.to_dict()
  data_dir = registry.resolve("toyworld", None, small if arg else None)
  manifest = shards.load_manifest(data_dir)
  rows = []
  configs = (("default", lambda c: c), ("large", large))
  meshes = MESHES[:3] if args.quick else MESHES
  if args.runlocal:
    configs, meshes = configs[:1], MESHES[:1]
  for name, make in configs:
    for remat in (False,) if args.runlocal else (False, True):
      if remat and args.quick and name == "default":
        continue
      c = make(cross_scale.get_config(arg))
      c.data.path = data_dir
      c.model.remat = remat
      for sizes in meshes:
        row = measure(c, manifest, sizes, compile_step=True)
        rows.append({"config": name, "remat": remat, **row})
        print(rows[-1], flush=True)
  reporting.print_table(
      rows,
      [
          "config",
          "remat",
          "mesh",
          "params_m",
          "params_mb_per_device",
          "opt_mb_per_device",
          "args_mb_per_device",
          "temp_mb_per_device",
      ],
  )
  payload = {
      "quick": args.quick,
      "runlocal": args.runlocal,
      "batch_size": c.batch_size,
      "rows": rows,
  }
  reporting.write_json(
      args.out, "sharding_memory.json", payload, datasets={"data": data_dir}
  )
  return payload


if __name__ == "__main__":
  main()
