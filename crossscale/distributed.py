"""Many JAX processes as one run: start-up, barriers with timeouts, agreement.

`initialize(...)` joins the run (CPU collectives over gloo, so processes on
one machine, or CPU hosts, form one global mesh) with timeouts on the
coordinator and on heartbeats: a process that dies makes the others fail
within `heartbeat_timeout_s` instead of waiting for ever.

`check_same(value, what)` fails on every process when they disagree (e.g.
on the newest checkpoint of a --workdir that is not shared).
`barrier(name)` is the harness's barrier: it waits at most
`barrier_timeout_s` and then raises `BarrierTimeoutError` naming the
processes that did not arrive. `orbax_barrier` is the same barrier in the
form orbax's async checkpointer takes. `any_process(flag)` is True on every
process when it is True on one (e.g. SIGTERM reached one host).

With one process every function here is a no-op.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import socket
import threading
import time

import jax
from jax.experimental import multihost_utils
import numpy as np

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


class BarrierTimeoutError(RuntimeError):
  """Some process did not reach a barrier in time."""


class JoinError(RuntimeError):
  """This process could not join the run."""


@dataclasses.dataclass
class Settings:
  barrier_timeout_s: int = 600


SETTINGS = Settings()
# Uses of each barrier name so far: a barrier's key is (name, use), the
# same on every process (orbax's barriers run on background threads).
_USES: collections.Counter = collections.Counter()
_USES_LOCK = threading.Lock()


def parse_address(address: str, where: str) -> tuple[str, int]:
  """ "host:port" -> (host, port); anything else is an error naming `where`
  (the flag or variable that gave it)."""
  m = re.fullmatch(r"\[?([^\[\]\s]+?)\]?:(\d{1,5})", address or "")
  if not m or not 0 < int(m.group(2)) < 65536:
    raise ValueError(
        f"{where}={address!r} is not HOST:PORT (e.g. 127.0.0.1:12355, or "
        "host0:12355 for the host that runs process 0)."
    )
  return m.group(1), int(m.group(2))


def env_spec(env=None) -> tuple[str, int, int] | None:
  """(address, num_processes, process_id) from JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES and JAX_PROCESS_ID, or None when the address is unset.
  Missing or malformed values are an error naming the variable."""
  env = os.environ if env is None else env
  if not env.get(ENV_ADDRESS):
    return None
  parse_address(env[ENV_ADDRESS], ENV_ADDRESS)
  vals = {}
  for key in (ENV_NUM_PROCESSES, ENV_PROCESS_ID):
    try:
      vals[key] = int(env[key])
    except (KeyError, ValueError):
      raise ValueError(
          f"{ENV_ADDRESS} is set, so {key} must be an integer (got "
          f"{env.get(key)!r}): set {ENV_NUM_PROCESSES}=N and "
          f"{ENV_PROCESS_ID}=i (0..N-1) on every process."
      ) from None
  n, i = vals[ENV_NUM_PROCESSES], vals[ENV_PROCESS_ID]
  if n < 1 or not 0 <= i < n:
    raise ValueError(
        f"{ENV_PROCESS_ID}={i} with {ENV_NUM_PROCESSES}={n}: the id must be "
        "in 0..N-1."
    )
  return env[ENV_ADDRESS], n, i


def initialize(
    address: str | None,
    num_processes: int | None,
    process_id: int | None,
    *,
    init_timeout_s: int = 300,
    heartbeat_timeout_s: int = 100,
    barrier_timeout_s: int = 600,
) -> None:
  """Joins the run: `jax.distributed.initialize` with gloo CPU collectives
  and the timeouts given. `address` None: the cluster (SLURM, MPI, TPU)
  tells JAX. A coordinator port that is taken, or a coordinator that
  cannot be reached in `init_timeout_s`, is one error naming the address
  and the process. (A process that never starts makes JAX abort the others
  after `init_timeout_s` with DEADLINE_EXCEEDED: no Python error there.)"""
  SETTINGS.barrier_timeout_s = int(barrier_timeout_s)
  if address is not None:  # plain hosts: check what JAX would abort on
    host, port = parse_address(address, ENV_ADDRESS)
    if process_id == 0:
      _check_can_listen(port, address)
    else:
      _wait_reachable(host, port, init_timeout_s, process_id, address)
  # CPU devices of several processes talk over gloo (no effect on GPU/TPU).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
        address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=int(init_timeout_s),
        heartbeat_timeout_seconds=int(heartbeat_timeout_s),
    )
  except Exception as e:  # jaxlib raises its own runtime error types
    raise JoinError(
        f"process {process_id} of {num_processes} could not join the run at "
        f"coordinator {address} within {init_timeout_s} s "
        f"({type(e).__name__}: {str(e).splitlines()[0]}). Check that process "
        "0 runs and listens on that address (--coordinator HOST:PORT, the "
        "same on every host), that the port is free and reachable, and that "
        "every process was started; --init_timeout sets the wait."
    ) from e


def _check_can_listen(port: int, address: str) -> None:
  """Process 0 serves the coordinator on `port` of every interface."""
  try:
    with socket.socket() as sock:
      sock.bind(("", port))
  except OSError as e:
    raise JoinError(
        f"process 0 cannot serve the coordinator at {address}: port {port} "
        f"is taken ({e.strerror}). Give a free port (launch.py --coordinator "
        "HOST:PORT on every host; --local_processes takes a free one when "
        "--coordinator is omitted)."
    ) from None


def _wait_reachable(
    host: str, port: int, timeout_s: float, process_id: int, address: str
) -> None:
  """Waits until process 0's coordinator accepts connections; JAX itself
  would abort the process without a Python error."""
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      socket.create_connection((host, port), timeout=1).close()
      return
    except OSError as e:
      if time.monotonic() > deadline:
        raise JoinError(
            f"process {process_id} could not reach the coordinator at "
            f"{address} within {timeout_s:g} s ({e.strerror or e}): start "
            "process 0 with the same address (launch.py --coordinator "
            "HOST:PORT, or JAX_COORDINATOR_ADDRESS), check the host name "
            "and that the port is open; --init_timeout sets the wait."
        ) from None
      time.sleep(0.2)


def _client():
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top

  return jax_distributed.global_state.client


def barrier(name: str, timeout_s: float | None = None) -> None:
  """Waits until every process reaches the barrier `name`, at most
  `timeout_s` (default `SETTINGS.barrier_timeout_s`); then raises
  BarrierTimeoutError naming the processes that did not arrive. Every
  process must call the same barriers in the same order."""
  if jax.process_count() == 1:
    return
  timeout_s = SETTINGS.barrier_timeout_s if timeout_s is None else timeout_s
  with _USES_LOCK:
    _USES[name] += 1
    key = f"crossscale/{name}/{_USES[name]}"
  client = _client()
  client.key_value_set(f"{key}/arrived/{jax.process_index()}", "1")
  try:
    client.wait_at_barrier(key, int(timeout_s * 1000))
  except Exception as e:  # jaxlib's JaxRuntimeError (DEADLINE_EXCEEDED)
    arrived = _arrived(client, key)
    missing = sorted(set(range(jax.process_count())) - arrived)
    raise BarrierTimeoutError(
        f"barrier {name!r}: process(es) {missing or '?'} of "
        f"{jax.process_count()} did not arrive within {timeout_s:g} s "
        f"(arrived: {sorted(arrived)}; this is process "
        f"{jax.process_index()}). A process is stuck, slow or dead: read its "
        "log; launch.py --barrier_timeout sets the wait."
    ) from e


def _arrived(client, key: str) -> set[int]:
  try:
    entries = client.key_value_dir_get(f"{key}/arrived/")
  except Exception:  # the coordinator itself is gone
    return set()
  return {int(k.rstrip("/").rsplit("/", 1)[-1]) for k, _ in entries}


def orbax_barrier(*, key: str, timeout_ms: int) -> None:
  """`barrier` as orbax's BarrierSyncFn (async checkpoint finalisation);
  the harness's timeout caps orbax's."""
  timeout_s = min(timeout_ms / 1000, SETTINGS.barrier_timeout_s)
  barrier(f"orbax:{key}", timeout_s)


def any_process(flag: bool) -> bool:
  """True on every process if `flag` is True on any (a collective: every
  process must call it at the same point)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def check_same(value: int, what: str) -> None:
  """Raises on every process unless all hold the same `value` (an int, -1
  for none), naming each process's value (a collective)."""
  if jax.process_count() == 1:
    return
  vals = np.asarray(multihost_utils.process_allgather(np.int64(value)))
  if len(set(vals.tolist())) > 1:
    raise ValueError(
        f"the processes disagree on {what}: "
        + ", ".join(f"process {i}: {v}" for i, v in enumerate(vals.tolist()))
        + ". --workdir must be one directory shared by every process (a "
        "shared filesystem or GCS), not a local path on each host."
    )
