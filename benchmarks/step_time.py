r"""Seconds per jitted train step of a config on one real batch.

  python -m benchmarks.step_time --config experiments/configs/cross_scale.py \
      --dataset toyworld --steps 20
  python -m benchmarks.step_time \
      --config experiments/configs/lr_vit.py:runlocal \
      --steps 2 --out /tmp/smoke   # a smoke; --out writes step_time.json
"""

from __future__ import annotations

import time

import jax

from crossscale import input_pipeline, partitioning, shards, train


def time_train_step(config, data_dir: str, steps: int) -> float:
  """Seconds per jitted train step of `config` on one real batch (compute
  only: the batch is reused, compile excluded)."""
  manifest = shards.load_manifest(data_dir)
  mesh = partitioning.make_mesh(config.mesh)
  model = train.make_model(config, manifest)
  tx = train.make_tx(config)
  example = train.example_batch(manifest, config.data.fields, config.batch_size)
  state, state_sh = train.init_state(config, model, tx, example, mesh)
  step = train.jit_train_step(
      config, model, tx, mesh, state_sh, train.task_of(config, manifest)
  )
  batch = next(
      iter(
          input_pipeline.train_dataset(
              data_dir,
              batch_size=config.batch_size,
              seed=0,
              fields=config.data.fields,
          )
      )
  )
  batch = partitioning.put_batch(batch, mesh)
  key = jax.random.key_data(jax.random.key(0))
  state, m = step(state, batch, key)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, m = step(state, batch, key)
  jax.block_until_ready(m)
  return (time.perf_counter() - t0) / steps


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top

  from data import registry  # pylint: disable=g-import-not-at-top

  config = flags.FLAGS.config
  dataset = flags.FLAGS.dataset or config.dataset
  # config.toyworld holds toyworld's build options only (as in launch.py).
  toy = dataset == "toyworld" and "toyworld" in config
  config.data.path = registry.resolve(
      dataset,
      config.data_root or None,
      config.toyworld.to_dict() if toy else None,
  )
  seconds = time_train_step(config, config.data.path, flags.FLAGS.steps)
  print(
      f"{seconds * 1e3:.1f} ms per step (batch {config.batch_size}, "
      f"{jax.device_count()} {jax.default_backend()} devices)"
  )
  if flags.FLAGS.out:
    from crossscale import reporting  # pylint: disable=g-import-not-at-top

    reporting.write_json(
        flags.FLAGS.out,
        "step_time.json",
        {
            "s_per_step": seconds,
            "steps": flags.FLAGS.steps,
            "batch_size": config.batch_size,
            "model": config.model.name,
        },
        datasets={"data": config.data.path},
    )


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  config_flags.DEFINE_config_file(
      "config", None, "experiment config[:arg]", lock_config=False
  )
  flags.DEFINE_string("dataset", None, "a registered name or records dir")
  flags.DEFINE_integer("steps", 20, "timed steps after one compile step")
  flags.DEFINE_string("out", None, "a folder for step_time.json (optional)")
  flags.mark_flags_as_required(["config"])
  app.run(main)
