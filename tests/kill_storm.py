"""Exact resume of real `launch.py` runs: start one, stop it (SIGTERM at a
step, or SIGKILL at random moments, some while a checkpoint is being
written), relaunch the same command until it ends, and compare it with an
uninterrupted run of the same command.

  run = kill_storm.Launch(CONFIG, data_dir, workdir, FLAGS)
  report = kill_storm.storm(run, kills=10, total_steps=30, seed=0)
  kill_storm.assert_same_run(workdir, reference_workdir, total_steps)

"The same run" (`assert_same_run`): bit-identical parameters and data
position in the final checkpoint, the same logged metrics (metrics.jsonl,
`steps_per_sec` aside) and no orbax temporary directory left in
`checkpoints/`. A relaunch appends to metrics.jsonl and logs again the steps
after its checkpoint; the log's row of a (split, step) is its newest
(`logged`), and rows logged twice must agree.

Used by tests/test_kill_storm.py (cross-scale model); the LR-only ViT's
exact-resume tests (tests/test_train.py) predate it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import orbax.checkpoint as ocp

from crossscale import checkpoint
from tests import conftest

ROOT = conftest.ROOT
# Name part of orbax's uncommitted saves: `<step>.orbax-checkpoint-tmp` in
# checkpoints/ (and `<item>.orbax-checkpoint-tmp` inside it), renamed to
# `<step>` once committed.
TMP_MARK = checkpoint.TMP_MARK
_PROGRESS = re.compile(r"\] (\d+)/(\d+) ")  # train progress line: "] 7/20 "


@dataclasses.dataclass
class Launch:
  """`launch.py --config CONFIG --workdir WORKDIR --dataset DATA FLAGS` in a
  process of `devices` fake CPU devices (the suite's XLA flags and
  compilation cache)."""

  config: str  # e.g. "experiments/configs/cross_scale.py:runlocal"
  data_dir: str
  workdir: str
  flags: tuple[str, ...] = ()
  devices: int = 1

  def cmd(self) -> list[str]:
    return [
        sys.executable,
        os.path.join(ROOT, "launch.py"),
        "--config",
        os.path.join(ROOT, self.config),
        "--workdir",
        str(self.workdir),
        "--dataset",
        str(self.data_dir),
        *self.flags,
    ]

  def env(self) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = conftest.xla_flags(devices=self.devices)
    env["PYTHONPATH"] = ROOT
    return env

  def start(self) -> "Watched":
    return Watched(
        subprocess.Popen(
            self.cmd(),
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )

  def run(self, timeout: float = 300) -> str:
    """Runs to the end; returns the output (asserts exit code 0)."""
    done = subprocess.run(
        self.cmd(),
        env=self.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    return out


class Watched:
  """A started launch.py whose output is read by a thread, which keeps the
  newest train step it reported (`step`; 0 before the first)."""

  def __init__(self, proc: subprocess.Popen):
    self.proc, self.step, self._lines = proc, 0, []
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self) -> None:
    for line in self.proc.stdout:
      self._lines.append(line)
      if m := _PROGRESS.search(line):
        self.step = int(m[1])

  def alive(self) -> bool:
    return self.proc.poll() is None

  def wait_for_step(self, step: int, timeout: float = 180) -> bool:
    """Waits until step >= `step` was reported; False if the run ended."""
    deadline = time.time() + timeout
    while self.step < step:
      if not self.alive():
        return False
      if time.time() > deadline:
        self.proc.kill()  # no process outlives a failed test
        raise AssertionError(f"step {step} not reached:\n{self.out}")
      time.sleep(0.005)
    return True

  def finish(self, timeout: float = 180) -> int:
    """Waits for the exit; returns the exit code."""
    try:
      code = self.proc.wait(timeout)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      raise
    self._reader.join(timeout)
    return code

  @property
  def out(self) -> str:
    return "".join(self._lines)[-4000:]


# --- Reading a run's workdir --------------------------------------------------


def committed_steps(workdir: str) -> list[int]:
  """Steps of the committed checkpoints (their directories are named by the
  step alone), ascending."""
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def orphans(workdir: str) -> list[str]:
  """Uncommitted (temporary) checkpoint directories in `checkpoints/`."""
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(n for n in os.listdir(d) if TMP_MARK in n)


def final_state(workdir: str, step: int) -> tuple[dict, dict]:
  """({"a/b/kernel": array} parameters, data position) of the checkpoint of
  `step`, restored by orbax directly (not through the trainer)."""
  mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  try:
    out = mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), data=ocp.args.JsonRestore()
        ),
    )
  finally:
    mngr.close()
  return checkpoint.flatten_params(out["state"]["params"]), dict(out["data"])


def log_rows(workdir: str) -> dict[tuple[str, int], list[dict]]:
  """Every row of metrics.jsonl by (split, step), in the order written,
  without `steps_per_sec` (a wall-clock figure)."""
  rows: dict[tuple[str, int], list[dict]] = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      r = json.loads(line)
      r.pop("steps_per_sec", None)
      rows.setdefault((r["split"], r["step"]), []).append(r)
  return rows


def logged(workdir: str) -> dict[tuple[str, int], dict]:
  """The log as it reads: the newest row of each (split, step)."""
  return {k: v[-1] for k, v in log_rows(workdir).items()}


def assert_same_run(workdir: str, reference: str, total_steps: int) -> None:
  """`workdir` (stopped and relaunched) ended as `reference` (never
  stopped): bit-identical parameters and data position at `total_steps`,
  the same log (every train step, each row logged twice equal to its
  first), no temporary checkpoint directory left and every checkpoint
  whole."""
  params, data = final_state(workdir, total_steps)
  ref_params, ref_data = final_state(reference, total_steps)
  assert sorted(params) == sorted(ref_params)
  differ = {
      k: float(np.max(np.abs(params[k] - ref_params[k])))
      for k in params
      if not np.array_equal(params[k], ref_params[k])
  }
  assert not differ, f"{len(differ)} of {len(params)} leaves differ: {differ}"
  assert data == ref_data
  rows, ref = log_rows(workdir), logged(reference)
  twice = {k: v for k, v in rows.items() if any(r != v[0] for r in v)}
  assert not twice, f"rows logged again differ from the first: {twice}"
  train = sorted(s for split, s in ref if split == "train")
  assert train == list(range(1, total_steps + 1)), train
  assert logged(workdir) == ref
  assert not orphans(workdir), orphans(workdir)
  d = os.path.join(workdir, "checkpoints")
  for step in committed_steps(workdir):  # none half-deleted (max_to_keep)
    have = set(os.listdir(os.path.join(d, str(step))))
    assert {"commit_success.txt", "state", "data"} <= have, (step, have)


# --- Stopping runs ------------------------------------------------------------


def stop_with_sigterm(run: Launch, at_step: int) -> int:
  """Starts `run`, sends SIGTERM once it reported `at_step`; returns the
  step it saved (asserting the clean stop: exit 0, "SIGTERM: saved")."""
  w = run.start()
  assert w.wait_for_step(at_step), f"ended before step {at_step}:\n{w.out}"
  w.proc.send_signal(signal.SIGTERM)
  code = w.finish()
  saved = re.findall(r"SIGTERM: saved step (\d+)", w.out)
  assert code == 0 and saved, f"exit {code}:\n{w.out}"
  return int(saved[0])


def kill_sigterm_save(run: Launch, at_step: int) -> str:
  """Starts `run`, sends SIGTERM once it reported `at_step`, and SIGKILLs it
  as soon as the save that SIGTERM forces (a step after 1) is being written,
  as launch.py does to a process that has not stopped 5 s after a SIGTERM;
  returns the temporary directory the save left."""
  w = run.start()
  assert w.wait_for_step(at_step), f"ended before step {at_step}:\n{w.out}"
  w.proc.send_signal(signal.SIGTERM)
  while not (left := [n for n in orphans(run.workdir) if n[:2] != "1."]):
    assert w.alive(), f"it stopped before the save was killed:\n{w.out}"
    time.sleep(0.001)
  w.proc.kill()
  assert w.finish() == -signal.SIGKILL
  return left[0]


@dataclasses.dataclass
class Kill:
  kind: str  # "step": after a step (+ a delay); "write": mid-save
  target_step: int  # killed once this step (or a later one) was reported
  delay_s: float  # after target_step ("step"), after a save began ("write")
  resumed_from: int  # the newest committed step when it was launched
  killed: bool  # False: the run ended before the kill
  reported_step: int  # the newest train step it reported
  # Temporary checkpoint dirs this launch made and left (killed mid-write).
  left_tmp: tuple[str, ...]


@dataclasses.dataclass
class Storm:
  kills: list[Kill]
  launches: int
  wall_s: float
  last_out: str  # the output of the launch that ran to the end

  @property
  def during_write(self) -> int:
    """Kills that left a checkpoint save uncommitted."""
    return sum(bool(k.left_tmp) for k in self.kills if k.killed)


def storm(
    run: Launch,
    kills: int,
    total_steps: int,
    seed: int,
    write_share: float = 0.5,
    max_delay_s: float = 0.5,
) -> Storm:
  """Launches `run` and SIGKILLs it `kills` times, then lets the last launch
  run to the end. The moments come from `seed`: sorted random steps in
  [1, total_steps), one per kill (launch i is killed once it reported step
  i's target or a later one, so the kills spread over the run), killed
  either a random 0..`max_delay_s` s later (mid-step, mid-save, mid-log...)
  or, for a share `write_share` of them (at least one), mid-write: a random
  0..`max_delay_s`/4 s after a save's temporary directory appeared, if it is
  still uncommitted then (else at the next save). Returns what each kill
  did; asserts the final launch's exit code 0."""
  rng = np.random.default_rng(seed)
  targets = np.sort(rng.choice(np.arange(1, total_steps), kills, replace=False))
  n_write = min(kills, max(1, round(kills * write_share)))
  kinds = rng.permutation(["write"] * n_write + ["step"] * (kills - n_write))
  delays = rng.uniform(0, max_delay_s, kills)
  delays = np.where(kinds == "write", delays / 4, delays)  # saves: ~0.5 s
  t0, report = time.time(), []
  for kind, target, delay in zip(kinds, targets, delays):
    resumed_from = (committed_steps(run.workdir) or [0])[-1]
    started_ns = time.time_ns()
    w = run.start()
    killed = w.wait_for_step(int(target)) and _kill_when(
        w, run.workdir, str(kind), float(delay), started_ns
    )
    code = w.finish()
    assert killed or code == 0, f"exit {code}:\n{w.out}"
    report.append(
        Kill(
            kind=str(kind),
            target_step=int(target),
            delay_s=float(delay),
            resumed_from=resumed_from,
            killed=killed,
            reported_step=w.step,
            left_tmp=_tmp_since(run.workdir, started_ns) if killed else (),
        )
    )
  last = run.run()
  return Storm(report, len(report) + 1, time.time() - t0, last)


def _kill_when(
    w: Watched, workdir: str, kind: str, delay: float, started_ns: int
) -> bool:
  """SIGKILLs `w` `delay` s later ("step"), or `delay` s after a temporary
  checkpoint directory it made (since `started_ns`) appeared, if one is
  still there then, else at the next ("write"); False if it ended first."""
  if kind == "step":
    time.sleep(delay)
  else:
    while True:
      while not _tmp_since(workdir, started_ns):
        if not w.alive():
          return False
        time.sleep(0.001)
      time.sleep(delay)
      if _tmp_since(workdir, started_ns):
        break
  if not w.alive():
    return False
  w.proc.kill()
  return True


def _tmp_since(workdir: str, t_ns: int) -> tuple[str, ...]:
  """Temporary checkpoint dirs made (status changed) since `t_ns`: not
  those a launch before left, untouched since."""
  d, out = os.path.join(workdir, "checkpoints"), []
  for n in orphans(workdir):
    try:
      if os.stat(os.path.join(d, n)).st_ctime_ns >= t_ns:
        out.append(n)
    except FileNotFoundError:  # committed or removed meanwhile
      pass
  return tuple(out)
