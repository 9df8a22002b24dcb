"""Multi-process training on one machine: `launch.py --local_processes 2
--local_devices 4` (two JAX processes on localhost, gloo CPU collectives,
one global mesh of 8 devices) against one process of 8 devices; resume on
another process count; the fault guards (SIGTERM, a killed process, barrier
and coordinator timeouts, the save in flight on an error exit).

Every run is in real processes on toyworld_small, batches of 16: the
cross-scale `runlocal` config for training (6 steps) and resuming, the
cheaper lr_vit `runlocal` one for the fault guards (launch.py's and the
training loop's, the same for every model). Each launch costs seconds of
start-up, so runs are shared: the resume starts from a checkpoint of the
1-process reference and changes process count twice in one sequence.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from crossscale import checkpoint, input_pipeline, run_config
from tests import conftest, helpers

ROOT = conftest.ROOT
STEPS = 6
# The fault runs stop long before their end (lr_vit: a fraction of a second
# a step) and evaluate only there.
FAULT_STEPS = 40
TWO = ("--local_processes", "2", "--local_devices", "4")


def _cmd(
    data_dir,
    workdir,
    *extra,
    config="cross_scale",
    steps=STEPS,
    every=2,
    eval_every=3,
):
  return [
      sys.executable,
      os.path.join(ROOT, "launch.py"),
      "--config",
      os.path.join(ROOT, f"experiments/configs/{config}.py:runlocal"),
      "--workdir",
      str(workdir),
      "--dataset",
      data_dir,
      f"--config.total_steps={steps}",
      f"--config.checkpoint.every={every}",
      f"--config.eval_every={eval_every}",
      "--config.log_every=1",
      "--config.data.worker_count=0",
      *extra,
  ]


def _fault_cmd(data_dir, workdir, *extra, every=2):
  """A run for the fault guards: lr_vit (a third of cross_scale's start-up),
  FAULT_STEPS steps to spare, no periodic evaluation."""
  return _cmd(
      data_dir,
      workdir,
      *extra,
      config="lr_vit",
      steps=FAULT_STEPS,
      every=every,
      eval_every=FAULT_STEPS,
  )


def _env(devices=8):
  env = dict(os.environ)  # the suite's compilation cache and fast compiles
  env["XLA_FLAGS"] = conftest.xla_flags(devices=devices)
  env["PYTHONPATH"] = ROOT
  return env


def _run(cmd, devices=8, timeout=240):
  done = subprocess.run(
      cmd, env=_env(devices), capture_output=True, text=True, timeout=timeout
  )
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  return done.stdout


def _start(cmd, devices=8):
  return subprocess.Popen(
      cmd,
      env=_env(devices),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )


def _read_until(proc, text):
  """`proc`'s output up to its first line containing `text`."""
  lines = []
  while not lines or text not in lines[-1]:
    lines.append(proc.stdout.readline())
    assert lines[-1] or proc.poll() is None, "".join(lines)[-3000:]
  return "".join(lines)


def _wait_for(path, proc, timeout=180):
  deadline = time.time() + timeout
  while not os.path.exists(path):
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    assert time.time() < deadline, f"{path} did not appear"
    time.sleep(0.05)


def _params(workdir):
  return checkpoint.flatten_params(checkpoint.load_params(str(workdir), "w"))


def _data_position(workdir, step=STEPS):
  path = os.path.join(workdir, "checkpoints", str(step), "data")
  return ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(path)


def _metrics(workdir, split):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {
      r["step"]: {k: v for k, v in r.items() if k != "steps_per_sec"}
      for r in rows
      if r["split"] == split
  }


def _assert_close_params(a, b, atol=1e-5):
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], atol=atol, err_msg=k)


@pytest.fixture(scope="module")
def one_process(toyworld_small, tmp_path_factory):
  """The reference: one process of 8 devices, uninterrupted; its step 2
  is also where the resume starts."""
  workdir = tmp_path_factory.mktemp("one_process")
  _run(_cmd(toyworld_small, workdir))
  return str(workdir)


@pytest.fixture(scope="module")
def two_processes(toyworld_small, tmp_path_factory):
  """2 processes x 4 devices, uninterrupted (one save: the last)."""
  workdir = tmp_path_factory.mktemp("two_processes")
  out = _run(_cmd(toyworld_small, workdir, *TWO, every=STEPS))
  return str(workdir), out


def test_multiprocess_training_matches_one_process(one_process, two_processes):
  """2 processes x 4 devices == 1 process x 8 devices: the same losses at
  every step, evaluations (aggregated over both processes, per-scene
  predictions in record order) and final parameters, up to the float
  rounding of the cross-process reductions; one checkpoint written by
  both."""
  workdir, out = two_processes
  assert "2 processes" in out and "'data': 8" in out
  for split in ("train", "val", "final_test"):
    one, two = _metrics(one_process, split), _metrics(workdir, split)
    assert sorted(one) == sorted(two) and one, split
    for step in one:
      for k, v in one[step].items():
        if isinstance(v, float):
          np.testing.assert_allclose(two[step][k], v, rtol=1e-5, atol=1e-6)
  assert sorted(_metrics(workdir, "train")) == list(range(1, STEPS + 1))
  _assert_close_params(_params(workdir), _params(one_process))
  pred_one = np.load(os.path.join(one_process, "final_test_predictions.npz"))
  pred_two = np.load(os.path.join(workdir, "final_test_predictions.npz"))
  np.testing.assert_array_equal(pred_two["labels"], pred_one["labels"])
  np.testing.assert_allclose(pred_two["logits"], pred_one["logits"], atol=1e-5)
  state = os.path.join(workdir, "checkpoints", str(STEPS), "state")
  assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(os.listdir(state))
  assert _data_position(workdir) == {
      "iterator": {"next_index": STEPS},
      "batch_size": 16,
      "process_count": 2,
      "worker_count": 0,
  }


def test_multiprocess_hosts_read_their_own_slices_of_one_shard(tmp_path):
  """Each of 3 processes reads its own records (one shard file: fewer files
  than hosts), and their slices put together, in process order, are the
  1-process batches: training batches (augmented) and the padded eval."""
  helpers.tiny_dataset(tmp_path, n_train=24, n_val=8, shards=1)
  data = str(tmp_path)
  kw = dict(batch_size=6, seed=3, fields=("lr", "hr", "labels"))

  def train_batches(p, n):
    it = iter(input_pipeline.train_dataset(data, process_index=p, **kw, **n))
    return [next(it) for _ in range(5)]  # 5 x 6 > 24: crosses an epoch

  one = train_batches(0, dict(process_count=1))
  hosts = [train_batches(p, dict(process_count=3)) for p in range(3)]
  for step, ref in enumerate(one):
    for k in ref:
      got = np.concatenate([h[step][k] for h in hosts])
      np.testing.assert_array_equal(got, ref[k], err_msg=f"{step} {k}")

  def eval_batches(p, n):
    return list(
        input_pipeline.eval_dataset(
            data, "val", batch_size=3, process_index=p, process_count=n
        )
    )

  ref = np.concatenate([b["labels"][b["valid"]] for b in eval_batches(0, 1)])
  hosts = [eval_batches(p, 3) for p in range(3)]
  assert len({len(h) for h in hosts}) == 1  # every host runs as many batches
  got = np.concatenate(
      [
          b["labels"][b["valid"]]
          for step in zip(*hosts)  # global batch = host 0, 1, 2's parts
          for b in step
      ]
  )
  np.testing.assert_array_equal(got, ref)


def _sigterm(p, target=None):
  """SIGTERM to `target` (a pid; default launch.py, `p`): the run saves one
  step and stops before its end, exit 0. Returns `p`'s remaining output and
  the saved steps it prints (one per process)."""
  os.kill(target or p.pid, signal.SIGTERM)
  out = p.communicate(timeout=120)[0]
  assert p.returncode == 0, out[-3000:]
  saved = [int(s) for s in re.findall(r"SIGTERM: saved step (\d+)", out)]
  assert saved, out[-3000:]
  return out, saved


def test_multiprocess_resume_on_another_process_count_continues_exactly(
    toyworld_small, one_process, tmp_path
):
  """Resumed on the other process count, twice: the 1-process run's step 2
  (its checkpoint and config.json) on 2 processes, stopped there by SIGTERM
  to launch.py (forwarded to both, which save one step) after a step or
  two, then on 1 process to the end. Every step after step 2 has the
  uninterrupted run's loss, each save its process count, and the end has
  that run's parameters, optimizer state and data position."""
  shutil.copytree(
      os.path.join(one_process, "checkpoints", "2"),
      os.path.join(tmp_path, "checkpoints", "2"),
  )
  shutil.copy(os.path.join(one_process, run_config.CONFIG_FILE), tmp_path)
  ref_train = _metrics(one_process, "train")

  def check_steps(last):
    train = _metrics(tmp_path, "train")
    assert sorted(train) == list(range(3, last + 1))  # each step once
    for step in train:
      np.testing.assert_allclose(
          train[step]["loss"], ref_train[step]["loss"], rtol=1e-5
      )

  p = _start(_cmd(toyworld_small, tmp_path, *TWO))  # 2 processes
  out = _read_until(p, f"] 3/{STEPS}")  # its first step: then SIGTERM
  rest, saved = _sigterm(p)
  out += rest
  assert "resumed from" in out, out[-3000:]
  assert len(saved) == 2 and saved[0] == saved[1], out[-3000:]
  assert not os.path.exists(os.path.join(tmp_path, "final_metrics.json"))
  step = saved[0]
  assert step < STEPS
  check_steps(step)
  assert _data_position(tmp_path, step) == {
      "iterator": {"next_index": step},
      "batch_size": 16,
      "process_count": 2,
      "worker_count": 0,
  }

  out = _run(_cmd(toyworld_small, tmp_path))  # 1 process
  assert "resumed from" in out
  check_steps(STEPS)
  _assert_close_params(_params(tmp_path), _params(one_process))
  got, ref = _data_position(tmp_path), _data_position(one_process)
  assert got["iterator"] == ref["iterator"] == {"next_index": STEPS}
  assert got["process_count"] == 1


def test_multiprocess_sigterm_to_a_one_process_run_saves_and_stops(
    toyworld_small, tmp_path
):
  """SIGTERM to a 1-process run (no launch.py children): it saves one step
  and exits 0 before the end."""
  p = _start(_fault_cmd(toyworld_small, tmp_path))
  _wait_for(os.path.join(tmp_path, "checkpoints", "2"), p)
  out, saved = _sigterm(p)
  assert len(saved) == 1 and saved[0] < FAULT_STEPS, out[-3000:]
  assert not os.path.exists(os.path.join(tmp_path, "final_metrics.json"))


def test_multiprocess_resume_with_another_batch_size_stops_clearly():
  """The data position is global steps of one batch size: another batch
  size (or worker count) cannot continue it, and says what would change."""
  saved = input_pipeline.position(
      {"next_index": 7}, batch_size=16, process_count=2, worker_count=0
  )
  spec = dict(process_count=1, worker_count=0)
  assert input_pipeline.iterator_state(saved, batch_size=16, **spec) == {
      "next_index": 7
  }
  with pytest.raises(ValueError) as e:
    input_pipeline.iterator_state(saved, batch_size=32, **spec)
  msg = str(e.value)
  assert "config.batch_size=16" in msg and "has 32" in msg
  assert "--config.batch_size=16" in msg and "new --workdir" in msg
  old = {"next_index": 3}  # checkpoints written before positions
  assert input_pipeline.iterator_state(old, batch_size=8, **spec) == old


def test_multiprocess_killed_process_stops_the_other(toyworld_small, tmp_path):
  """SIGKILL of process 1: launch.py stops process 0 (blocked in a
  collective with the dead one) and exits non-zero naming process 1 and its
  exit code; no partial checkpoint is left for a resume to take."""
  p = _start(_fault_cmd(toyworld_small, tmp_path, *TWO))
  pids = _started_pids(p)
  _wait_for(os.path.join(tmp_path, "checkpoints", "2"), p)
  os.kill(pids[1], signal.SIGKILL)
  t0 = time.time()
  out = p.communicate(timeout=60)[0]
  assert p.returncode == 1, out[-3000:]
  assert time.time() - t0 < 30
  assert (
      f"process 1 (pid {pids[1]}) exited with code -9 (killed by SIGKILL)"
      in (out)
  )
  for pid in pids:  # both gone
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)
  mngr = ocp.CheckpointManager(os.path.join(tmp_path, "checkpoints"))
  steps = mngr.all_steps()
  assert steps and all(
      os.path.exists(
          os.path.join(tmp_path, "checkpoints", str(s), "commit_success.txt")
      )
      for s in steps
  )


def _started_pids(p):
  line = ""
  while "pids [" not in line:  # launch.py's first line names its children
    line = p.stdout.readline()
    assert line or p.poll() is None, "launch.py ended before starting them"
  return [int(x) for x in re.search(r"pids \[(.*?)\]", line)[1].split(",")]


def test_multiprocess_sigterm_to_one_process_stops_both_at_one_step(
    toyworld_small, tmp_path
):
  """SIGTERM reaching process 1 only (a preempted host): both processes
  agree on it at the next step, save that same step and exit 0."""
  p = _start(_fault_cmd(toyworld_small, tmp_path, *TWO))
  pids = _started_pids(p)
  _wait_for(os.path.join(tmp_path, "checkpoints", "2"), p)
  out, saved = _sigterm(p, pids[1])
  assert len(saved) == 2 and saved[0] == saved[1], out[-3000:]
  step = saved[0]
  assert step < FAULT_STEPS and _data_position(tmp_path, step)["iterator"] == {
      "next_index": step
  }


def test_multiprocess_killed_process_without_launcher_ends_the_other(
    toyworld_small, tmp_path
):
  """Plain hosts (no launch.py parent): SIGKILL of process 1 ends process 0
  (JAX's coordination service: no heartbeat within --heartbeat_timeout, or
  the failed collective) instead of leaving it waiting."""
  address = f"127.0.0.1:{_free_port()}"
  procs = []
  for i in range(2):
    env = _env(4)
    env.update(
        JAX_COORDINATOR_ADDRESS=address,
        JAX_NUM_PROCESSES="2",
        JAX_PROCESS_ID=str(i),
        JAX_PLATFORMS="cpu",
    )
    procs.append(
        subprocess.Popen(
            _fault_cmd(toyworld_small, tmp_path, "--heartbeat_timeout=5"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
  _wait_for(os.path.join(tmp_path, "checkpoints", "2"), procs[0])
  procs[1].kill()
  t0 = time.time()
  out = procs[0].communicate(timeout=60)[0]
  procs[1].communicate()
  assert procs[0].returncode != 0, out[-3000:]
  assert time.time() - t0 < 30
  # How it ends depends on the timing: the coordination service's verdict
  # ("unhealthy", a closed connection) or, when process 0 is inside a
  # collective with the dead peer, XLA aborting the process (seen once in a
  # clean-clone suite run: "Fatal Python error: Aborted" in a device_get).
  ends = (
      "unhealthy",
      "Connection closed by peer",
      "Fatal Python error: Aborted",
  )
  assert any(e in out for e in ends), out[:2000] + "\n...\n" + out[-2000:]


def test_multiprocess_error_exit_waits_for_the_save_in_flight(
    toyworld_small, tmp_path
):
  """An infinite learning rate: step 2's loss is NaN, found one step late,
  so both processes stop with the error right after step 2's asynchronous
  save began; it is committed (complete, with its data position) before
  they exit."""
  p = _start(
      _fault_cmd(
          toyworld_small,
          tmp_path,
          *TWO,
          "--config.optim.lr=inf",
          "--config.optim.grad_clip=0.0",
          every=1,
      )
  )
  out = p.communicate(timeout=180)[0]
  assert p.returncode == 1, out[-3000:]
  assert "loss is nan at step 2" in out, out[-3000:]
  assert "process 0 (pid" in out or "process 1 (pid" in out
  step = os.path.join(tmp_path, "checkpoints", "2")
  assert os.path.exists(os.path.join(step, "commit_success.txt"))
  assert _data_position(tmp_path, 2)["iterator"] == {"next_index": 2}


_BARRIER_SCRIPT = """
import sys, time
import jax
from crossscale import distributed
i = int(sys.argv[1])
distributed.initialize(sys.argv[2], 2, i, init_timeout_s=30)
jax.devices()  # both start their backends (a handshake), then 1 lags
if i == 1:
  time.sleep(6)
try:
  distributed.barrier("restore", timeout_s=2)
except distributed.BarrierTimeoutError as e:
  print("TIMEOUT", e, flush=True)
try:
  distributed.check_same(4 if i == 0 else -1, "the newest checkpoint")
except ValueError as e:
  print("DISAGREE", e, flush=True)
"""


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_multiprocess_barrier_timeout_names_the_missing_process():
  """A process late at a barrier: the one waiting fails after the timeout
  naming it. Processes that disagree on the checkpoints: all fail, naming
  each one's view."""
  address = f"127.0.0.1:{_free_port()}"
  procs = [
      subprocess.Popen(
          [sys.executable, "-c", _BARRIER_SCRIPT, str(i), address],
          env=_env(1),
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
          text=True,
      )
      for i in range(2)
  ]
  out = [p.communicate(timeout=60)[0] for p in procs]
  assert (
      "TIMEOUT barrier 'restore': process(es) [1] of 2 did not arrive within "
      "2 s (arrived: [0]; this is process 0)"
  ) in out[0], out[0][-3000:]
  for o in out:  # e.g. a --workdir that is not shared: both stop, clearly
    assert (
        "DISAGREE the processes disagree on the newest checkpoint: process "
        "0: 4, process 1: -1. --workdir must be one directory shared"
    ) in o, o[-3000:]


def test_multiprocess_coordinator_errors_are_one_clear_message(
    toyworld_small, tmp_path
):
  """A malformed or taken --coordinator, and a coordinator nobody serves,
  are one message naming the address and the fix (no traceback)."""
  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    for coordinator, expected in [
        ("localhost", "--coordinator='localhost' is not HOST:PORT"),
        (f"127.0.0.1:{port}", f"--coordinator=127.0.0.1:{port}: cannot listen"),
    ]:
      done = subprocess.run(
          _cmd(toyworld_small, tmp_path, *TWO, f"--coordinator={coordinator}"),
          env=_env(),
          capture_output=True,
          text=True,
          timeout=60,
      )
      assert done.returncode == 1 and expected in done.stderr, done.stderr
      assert "Traceback" not in done.stderr
  env = _env(1)
  env.update(
      JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}",
      JAX_NUM_PROCESSES="2",
      JAX_PROCESS_ID="1",
  )
  done = subprocess.run(
      _cmd(toyworld_small, tmp_path, "--init_timeout=2"),
      env=env,
      capture_output=True,
      text=True,
      timeout=60,
  )
  assert done.returncode == 1, done.stderr[-3000:]
  assert "process 1 could not reach the coordinator" in done.stderr
  assert "Traceback" not in done.stderr
