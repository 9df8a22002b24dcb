r"""Runs an experiment config: the single entry point for every model family.

  python launch.py --config experiments/configs/lr_vit.py --workdir runs/lr_vit
  python launch.py --config experiments/configs/lr_vit.py:runlocal \
      --workdir /tmp/smoke --config.total_steps=50 --dataset rsscn7
  python launch.py --workdir runs/lr_vit --export_to exports/lr_vit

Relaunching the same command resumes from the newest checkpoint in --workdir.
--export_to exports the run in --workdir (crossscale.export) instead of
training: its config is WORKDIR/config.json unless --config is given, and
--dataset (a name or records directory) resolves as for training.
On a multi-host cluster (TPU pod slices, SLURM, Open MPI, or plain hosts
with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set) it
calls jax.distributed.initialize() first; run the same command on every host
(docs/multihost.md).
"""

import logging as std_logging
import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

config_flags.DEFINE_config_file(
    "config", None, "experiment config file[:arg]", lock_config=False
)
flags.DEFINE_string("workdir", None, "where checkpoints and metrics go")
flags.DEFINE_string(
    "dataset",
    None,
    "shorthand for --config.dataset: a registered name "
    "(toyworld, rsscn7) or a records directory",
)
flags.DEFINE_string(
    "export_to", None, "export the run in --workdir here instead of training"
)
flags.DEFINE_integer("export_step", None, "checkpoint to export (newest)")
flags.DEFINE_string(
    "export_platforms", "cpu,cuda,tpu", "platforms to export for, a,b,c"
)
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def _is_multihost() -> bool:
  """True in a multi-process environment jax.distributed can discover."""
  env = os.environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return True
  if int(env.get("SLURM_NTASKS", "1")) > 1:
    return True
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return True
  return "," in env.get("TPU_WORKER_HOSTNAMES", "")


def resolve_dataset(config) -> None:
  """Sets `config.data.path` from --dataset or `config.dataset` (a
  registered name, built on first use, or a records directory)."""
  from data import registry  # pylint: disable=g-import-not-at-top

  if FLAGS.dataset:
    config.dataset = FLAGS.dataset
  options = config.toyworld.to_dict() if config.dataset == "toyworld" else None
  config.data.path = registry.resolve(
      config.dataset, config.get("data_root") or None, options
  )


def export(config) -> None:
  """--export_to: the run in --workdir, exported by crossscale.export."""
  from crossscale import export as export_lib  # pylint: disable=g-import-not-at-top

  t0 = time.perf_counter()
  config = export_lib.load_config(FLAGS.workdir, config)
  if FLAGS.dataset or not config.data.get("path"):
    resolve_dataset(config)
  out = export_lib.export_run(
      FLAGS.workdir,
      FLAGS.export_to,
      config,
      step=FLAGS.export_step,
      platforms=tuple(p for p in FLAGS.export_platforms.split(",") if p),
  )
  print(
      export_lib.summary(out, FLAGS.export_to, time.perf_counter() - t0),
      flush=True,
  )


def main(argv):
  del argv
  if not any(a.startswith(("-v", "--v")) for a in sys.argv[1:]):
    # orbax/jax INFO lines (python loggers under absl's handler) are noise.
    logging.set_verbosity("warning")
    std_logging.getLogger().setLevel(std_logging.WARNING)
  if FLAGS.export_to:
    export(FLAGS.config)
    return
  if FLAGS.config is None:
    raise app.UsageError("--config is required to train (or give --export_to)")
  import jax  # pylint: disable=g-import-not-at-top

  if _is_multihost():
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS") and "JAX_NUM_PROCESSES" in env:
      # Plain hosts (no SLURM / MPI / TPU metadata to discover from).
      jax.distributed.initialize(
          env["JAX_COORDINATOR_ADDRESS"],
          num_processes=int(env["JAX_NUM_PROCESSES"]),
          process_id=int(env["JAX_PROCESS_ID"]),
      )
    else:
      jax.distributed.initialize()
  from crossscale import train  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  resolve_dataset(config)
  train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
