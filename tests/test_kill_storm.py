"""Exact resume of the cross-scale model (`cross_scale.py:runlocal`, real
`launch.py` processes of 1 device): stopped by SIGTERM at a step, or
SIGKILLed at random moments (some mid-checkpoint-write) and relaunched, it
ends as the uninterrupted run: bit-identical parameters and data position,
the same logged losses, no orphan temporary checkpoint directory
(tests/kill_storm.py). The 3- and 10-kill storms are `slow` (`pytest -m
slow`) to keep the default suite within its 8 minutes."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crossscale import checkpoint
from tests import kill_storm

CONFIG = "experiments/configs/cross_scale.py:runlocal"


def _flags(total_steps, every):
  return (
      f"--config.total_steps={total_steps}",
      f"--config.checkpoint.every={every}",
      "--config.eval_every=1000",  # evals at the end only
      "--config.log_every=1",  # every step's losses in metrics.jsonl
  )


STEPS, EVERY = 8, 2  # the default suite's runs
FLAGS = _flags(STEPS, EVERY)


@pytest.fixture(scope="module")
def reference(toyworld_small, tmp_path_factory):
  """The uninterrupted run."""
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  kill_storm.Launch(CONFIG, toyworld_small, workdir, FLAGS).run()
  return workdir


def test_sigterm_stop_and_relaunch_ends_bit_identical(
    toyworld_small, reference, tmp_path
):
  run = kill_storm.Launch(CONFIG, toyworld_small, str(tmp_path), FLAGS)
  saved = kill_storm.stop_with_sigterm(run, at_step=3)
  assert 3 <= saved < STEPS
  out = run.run()
  assert f"resumed from {tmp_path / 'checkpoints'} at step {saved}" in out
  kill_storm.assert_same_run(str(tmp_path), reference, STEPS)


# ~40 s; the default suite keeps the SIGTERM and the mid-write kill.
@pytest.mark.slow
def test_three_sigkills_and_relaunches_end_bit_identical(
    toyworld_small, reference, tmp_path
):
  run = kill_storm.Launch(CONFIG, toyworld_small, str(tmp_path), FLAGS)
  report = kill_storm.storm(run, kills=3, total_steps=STEPS, seed=0)
  assert all(k.killed for k in report.kills), report.kills
  assert report.during_write >= 1, report.kills
  kill_storm.assert_same_run(str(tmp_path), reference, STEPS)


@pytest.mark.slow
def test_ten_sigkills_and_relaunches_end_bit_identical(
    toyworld_small, tmp_path
):
  """Issue 23, item 4: 10 SIGKILLs (half as a checkpoint write starts) over
  30 steps, checkpoints every 3."""
  steps, flags = 30, _flags(30, 3)
  ref = str(tmp_path / "uninterrupted")
  kill_storm.Launch(CONFIG, toyworld_small, ref, flags).run()
  workdir = str(tmp_path / "stormed")
  run = kill_storm.Launch(CONFIG, toyworld_small, workdir, flags)
  report = kill_storm.storm(run, kills=10, total_steps=steps, seed=23)
  for k in report.kills:
    print(k)
  print(f"{report.launches} launches, {report.wall_s:.0f} s")
  assert all(k.killed for k in report.kills), report.kills
  assert report.during_write >= 3, report.kills
  kill_storm.assert_same_run(workdir, ref, steps)


def test_a_sigterm_save_killed_mid_write_leaves_no_orphan(
    toyworld_small, reference, tmp_path
):
  """SIGTERM saves the current step, off the checkpoint interval: killed
  while writing it, it leaves `<step>.orbax-checkpoint-tmp`, which no later
  save replaces (the step is not saved again). The relaunch removes it,
  resumes from the newest committed step and ends as the uninterrupted run
  (checkpointed every 2 steps: the cadence changes nothing)."""
  flags = tuple(f for f in FLAGS if "checkpoint.every" not in f)
  run = kill_storm.Launch(
      CONFIG,
      toyworld_small,
      str(tmp_path),
      (*flags, "--config.checkpoint.every=1000"),  # saves 1 and the last
  )
  left = kill_storm.kill_sigterm_save(run, at_step=3)
  assert kill_storm.orphans(str(tmp_path)) == [left]
  assert kill_storm.committed_steps(str(tmp_path)) == [1]
  out = run.run()
  kill_storm.assert_same_run(str(tmp_path), reference, STEPS)  # no orphan
  assert "removed 1 uncommitted checkpoint save(s) of a killed run" in out
  assert left in out
  assert f"resumed from {tmp_path / 'checkpoints'} at step 1" in out


def test_uncommitted_saves_are_removed_at_start_and_committed_ones_kept(
    tmp_path,
):
  """A save killed mid-write leaves `<step>.orbax-checkpoint-tmp` that no
  later save of that step replaces (e.g. a SIGTERM save at a step off the
  interval, SIGKILLed by launch.py 5 s later): the next Checkpointer removes
  it before anything restores or saves; committed steps stay whole."""
  state = {"w": jnp.arange(4.0)}
  ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1)
  ckpt.save(2, state, {"next_index": 2})
  ckpt.close()
  for name in ("5.orbax-checkpoint-tmp", "3.orbax-checkpoint-tmp-17"):
    os.makedirs(tmp_path / name / "state.orbax-checkpoint-tmp")
    (tmp_path / name / "_CHECKPOINT_METADATA").write_text("{}")
  ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1)
  assert sorted(os.listdir(tmp_path)) == ["2"]
  assert ckpt.latest_step() == 2
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state
  )
  restored, data = ckpt.restore(abstract)
  ckpt.close()
  np.testing.assert_array_equal(restored["w"], np.arange(4.0))
  assert data == {"next_index": 2}
