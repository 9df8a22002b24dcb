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
joins the run first (crossscale.distributed); run the same command on every
host (docs/multihost.md). --local_processes N runs N processes of the run on
this machine (CPU, gloo collectives), e.g. 2 processes of 4 fake devices:

  python launch.py --config experiments/configs/cross_scale.py:runlocal \
      --workdir /tmp/xs2 --local_processes 2 --local_devices 4

SIGTERM and Ctrl-C reach them as SIGTERM (all save one step and stop); when
one fails it stops the others and exits naming the process and its exit
code. --coordinator HOST:PORT (default: a free local port) and the
--init_timeout, --heartbeat_timeout and --barrier_timeout guards apply to
every multi-process run.

User errors (a misspelled --config key, an unknown dataset, a budget out of
range, unlabelled records given to a classifier: `records.DataError` and
its subclass `run_config.ConfigError`) print one line naming the fix and
exit 1, without a traceback.
"""

import importlib.util
import logging as std_logging
import os
import signal
import socket
import subprocess
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
flags.DEFINE_integer(
    "local_processes",
    0,
    "run N processes of the run on this machine (CPU, gloo collectives)",
)
flags.DEFINE_integer(
    "local_devices",
    0,
    "with --local_processes: fake CPU devices per process (0: XLA_FLAGS')",
)
flags.DEFINE_string(
    "coordinator",
    None,
    "HOST:PORT of process 0's coordinator (default: JAX_COORDINATOR_ADDRESS;"
    " with --local_processes a free port on 127.0.0.1)",
)
flags.DEFINE_integer(
    "init_timeout", 300, "seconds to wait for every process to join the run"
)
flags.DEFINE_integer(
    "heartbeat_timeout",
    100,
    "seconds without a heartbeat after which a process counts as dead and "
    "the others stop",
)
flags.DEFINE_integer(
    "barrier_timeout",
    600,
    "seconds a process waits at a barrier (resume, end, checkpoint commit) "
    "for the others",
)
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS
# Flags of the parent of --local_processes only: its children do not get them.
_LAUNCHER_FLAGS = ("local_processes", "local_devices", "coordinator")


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


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def _check_port_free(host: str, port: int) -> None:
  """A local coordinator port that is taken is an error naming it."""
  try:
    with socket.socket() as sock:
      sock.bind((host, port))
  except OSError as e:
    sys.exit(
        f"launch.py: --coordinator={host}:{port}: cannot listen there "
        f"({e.strerror}); give another port, or omit --coordinator to take "
        "a free one."
    )


def _child_argv(argv: list[str]) -> list[str]:
  """`argv` without the launcher's own flags (--f=v and --f v forms)."""
  out, skip = [], False
  names = tuple(f"--{n}" for n in _LAUNCHER_FLAGS)
  for a in argv:
    if skip:
      skip = False
    elif a in names:
      skip = True
    elif not a.startswith(tuple(n + "=" for n in names)):
      out.append(a)
  return out


def _child_env(address: str, n: int, i: int, devices: int) -> dict:
  env = dict(os.environ)
  env.update(
      JAX_COORDINATOR_ADDRESS=address,
      JAX_NUM_PROCESSES=str(n),
      JAX_PROCESS_ID=str(i),
  )
  env.setdefault("JAX_PLATFORMS", "cpu")
  if devices:
    xla = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if "host_platform_device_count" not in f
    ]
    xla.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(xla)
  return env


def _describe_exit(code: int) -> str:
  if code < 0:
    return f"code {code} (killed by {signal.Signals(-code).name})"
  return f"code {code}"


def run_local_processes(n: int) -> int:
  """Runs this command as processes 0..n-1 of one run on this machine and
  waits for them. SIGTERM and SIGINT reach them as SIGTERM (all save the
  same step and stop: crossscale.train); when one exits non-zero
  the others are stopped (SIGTERM, then SIGKILL after 5 s: they cannot go
  on without it) and the error names it. Returns the exit code."""
  if FLAGS.coordinator:
    from crossscale import distributed  # pylint: disable=g-import-not-at-top

    try:
      host, port = distributed.parse_address(FLAGS.coordinator, "--coordinator")
    except ValueError as e:
      sys.exit(f"launch.py: {e}")
    _check_port_free(host, port)
    address = FLAGS.coordinator
  else:
    address = f"127.0.0.1:{_free_port()}"
  argv = [sys.executable, os.path.abspath(sys.argv[0])]
  argv += _child_argv(sys.argv[1:])
  procs = [  # own sessions: a terminal's Ctrl-C reaches them only via us
      subprocess.Popen(
          argv,
          env=_child_env(address, n, i, FLAGS.local_devices),
          start_new_session=True,
      )
      for i in range(n)
  ]
  print(
      f"launch.py: {n} processes (pids {[p.pid for p in procs]}), "
      f"coordinator {address}",
      flush=True,
  )

  def forward(*_):  # SIGTERM or Ctrl-C: every process saves and stops
    for p in procs:
      if p.poll() is None:
        p.send_signal(signal.SIGTERM)

  signal.signal(signal.SIGTERM, forward)
  signal.signal(signal.SIGINT, forward)
  while True:
    codes = [p.poll() for p in procs]
    failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
    if failed:
      break
    if all(c == 0 for c in codes):
      return 0
    time.sleep(0.1)
  i = failed[0]
  others = [j for j, p in enumerate(procs) if p.poll() is None]
  for j in others:
    procs[j].terminate()
  deadline = time.time() + 5
  for j in others:
    try:
      procs[j].wait(max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      procs[j].kill()
      procs[j].wait()
  print(
      f"launch.py: process {i} (pid {procs[i].pid}) exited with "
      f"{_describe_exit(procs[i].returncode)}; stopped the other processes "
      f"{others or '(none left)'}. Its output above says why; relaunching "
      "the same command resumes from the newest complete checkpoint.",
      file=sys.stderr,
      flush=True,
  )
  return 1


def join_run() -> None:
  """Joins a multi-process run when the environment describes one."""
  from crossscale import distributed  # pylint: disable=g-import-not-at-top

  env = dict(os.environ)
  try:
    if FLAGS.coordinator:  # overrides JAX_COORDINATOR_ADDRESS
      distributed.parse_address(FLAGS.coordinator, "--coordinator")
      env[distributed.ENV_ADDRESS] = FLAGS.coordinator
    spec = distributed.env_spec(env)
  except ValueError as e:
    sys.exit(f"launch.py: {e}")
  if spec is None and not _is_multihost():
    return
  address, n, i = spec or (None, None, None)  # else SLURM / MPI / TPU
  try:
    distributed.initialize(
        address,
        n,
        i,
        init_timeout_s=FLAGS.init_timeout,
        heartbeat_timeout_s=FLAGS.heartbeat_timeout,
        barrier_timeout_s=FLAGS.barrier_timeout,
    )
  except distributed.JoinError as e:
    sys.exit(f"launch.py: {e}")


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
  from crossscale import records  # pylint: disable=g-import-not-at-top

  t0 = time.perf_counter()
  try:
    config = export_lib.load_config(FLAGS.workdir, config)
  except FileNotFoundError as e:  # no config.json and no --config: the user's
    raise records.DataError(str(e)) from None
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


def _config_arg(argv: list[str]) -> str | None:
  """The value of --config in `argv` (--config=V or --config V)."""
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _load_config(spec: str):
  """get_config([arg]) of a config file `path[:arg]`, as config_flags
  loads it (to name the keys an override may set)."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _flag_error(e: Exception) -> str:
  """A flag error in one line: its first and its last line."""
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  if len(lines) <= 1:
    return lines[0] if lines else repr(e)
  return f"{lines[0]} {lines[-1]}"


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; an error is one line (a misspelled --config key
  names the nearest key) and exit 1."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as e:
    unknown = []
    spec = _config_arg(argv)
    if spec and any(a.startswith("--config.") for a in argv):
      from crossscale import run_config  # pylint: disable=g-import-not-at-top

      try:
        unknown = run_config.unknown_keys(argv, _load_config(spec))
      except Exception:  # pylint: disable=broad-exception-caught
        pass  # the config itself fails to load: absl's message says why
    sys.exit(f"launch.py: error: {'; '.join(unknown) or _flag_error(e)}")


def main(argv):
  """Runs `_main`; a user error is its message alone and exit 1."""
  from crossscale import records  # pylint: disable=g-import-not-at-top

  try:
    _main(argv)
  except records.DataError as e:  # also run_config.ConfigError
    sys.exit(f"launch.py: error: {e}")


def _main(argv):
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
  if FLAGS.local_processes:
    if FLAGS.local_processes < 1:
      sys.exit("launch.py: --local_processes must be 1 or more (0: off)")
    sys.exit(run_local_processes(FLAGS.local_processes))
  join_run()
  from crossscale import train  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  resolve_dataset(config)
  train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
