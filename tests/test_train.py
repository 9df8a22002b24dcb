"""Training harness: sharded step == 1-device step, exact resume after a
kill or SIGTERM, NaN stop, and the main config end to end (runlocal)."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from crossscale import optim, partitioning, shards, train
from experiments.configs import lr_vit
from tests import conftest, helpers
from tests.conftest import ROOT


def _config(data_dir, **overrides):
  c = lr_vit.get_config("runlocal")
  c.data.path = data_dir
  c.update_from_flattened_dict(overrides)
  return c


def test_sharded_step_equals_single_device_step(toyworld_small):
  assert jax.device_count() == 8, "run with 8 fake CPU devices"
  c = _config(toyworld_small, batch_size=16)
  manifest = shards.load_manifest(toyworld_small)
  model = train.make_model(c, manifest)
  tx = optim.make_optimizer(c.optim, c.total_steps)
  rng = np.random.default_rng(0)
  batch = {
      "lr": rng.normal(size=(16, 16, 16, 3)).astype(np.float32),
      "labels": np.eye(6, dtype=np.float32)[rng.integers(0, 6, 16)],
  }
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = partitioning.make_mesh(c.mesh, devices)
    example = train.example_batch(manifest, c.data.fields, c.batch_size)
    state, state_sh = train.init_state(c, model, tx, example, mesh)
    step = train.jit_train_step(
        c, model, tx, mesh, state_sh, train.task_of(c, manifest)
    )
    gbatch = partitioning.put_batch(batch, mesh)
    assert len(gbatch["lr"].sharding.device_set) == len(devices)
    for i in range(3):
      state, m = step(state, gbatch, jax.random.key_data(jax.random.key(i)))
    results.append((jax.device_get(state.params), float(m["loss"])))
  (p1, l1), (p8, l8) = results
  assert l1 == pytest.approx(l8, rel=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4),
      p1,
      p8,
  )


CONFIGS = sorted(
    os.path.splitext(f)[0]
    for f in os.listdir(os.path.join(ROOT, "experiments", "configs"))
    if f.endswith(".py") and not f.startswith("_")
)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_trains_a_few_steps_and_reports(name, request, tmp_path):
  module = importlib.import_module(f"experiments.configs.{name}")
  c = module.get_config("runlocal")
  # Configs reading referring expressions train on a referring set.
  text = any(f.startswith("text_") for f in c.data.fields)
  c.data.path = request.getfixturevalue(
      "referring_small" if text else "toyworld_small"
  )
  final = train.train_and_evaluate(c, str(tmp_path))
  if c.final_eval_split:  # classification: the trainer's final test eval
    assert final["final"]["num_examples"] == 64
    # The accuracy of the final parameters, computed here on one device.
    model = train.make_model(c, shards.load_manifest(c.data.path))
    params = helpers.checkpoint_params(str(tmp_path), c.total_steps)
    assert final["final"]["accuracy"] == helpers.accuracy_by_hand(
        model, params, c.data.path, c.data.fields
    )
  else:  # other families (SR, segmentation): their own "test" evaluator
    n_test = shards.load_manifest(c.data.path).splits["test"]["num_records"]
    assert final["test"]["num_examples"] == min(
        n_test, c.evals.test.get("limit") or n_test
    )
    assert all(np.isfinite(v) for v in final["test"].values())
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert any(r["split"] == "train" and np.isfinite(r["loss"]) for r in rows)
  assert any(
      r["split"] == ("final_test" if c.final_eval_split else "test")
      for r in rows
  )
  assert any(
      f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb")
  )
  assert os.path.isdir(tmp_path / "checkpoints" / str(c.total_steps))
  if name in ("cross_scale", "sr"):  # a classifier and another family
    from crossscale import evaluate  # pylint: disable=g-import-not-at-top

    got = evaluate.evaluate_run(
        str(tmp_path), c.data.path, "test", str(tmp_path / "eval")
    )
    want = final["final"] if c.final_eval_split else {
        f"test/{k}": v for k, v in final["test"].items()
    }  # fmt: skip
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_non_finite_loss_stops_with_the_step(toyworld_small, tmp_path):
  c = _config(
      toyworld_small, **{"optim.lr": float("inf"), "optim.grad_clip": 0.0}
  )
  with pytest.raises(FloatingPointError, match=r"at step \d+"):
    train.train_and_evaluate(c, str(tmp_path))


# --- Exact resume: real processes, killed and relaunched. ---


def _launch_cmd(data_dir, workdir, steps=40):
  return [
      sys.executable,
      os.path.join(ROOT, "launch.py"),
      "--config",
      os.path.join(ROOT, "experiments/configs/lr_vit.py:runlocal"),
      "--workdir",
      str(workdir),
      "--dataset",
      data_dir,
      f"--config.total_steps={steps}",
      "--config.checkpoint.every=5",
      "--config.eval_every=1000",
      "--config.data.worker_count=0",
  ]


def _env():
  env = dict(os.environ)  # the suite's compilation cache and fast compiles
  env["XLA_FLAGS"] = conftest.xla_flags(devices=1)
  env["PYTHONPATH"] = ROOT
  return env


def _final_params(workdir, step=40):
  mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  out = mngr.restore(
      step,
      args=ocp.args.Composite(
          state=ocp.args.StandardRestore(), data=ocp.args.JsonRestore()
      ),
  )
  return out["state"]["params"], out["data"]


def _run_and_interrupt(data_dir, workdir, sig, after_step=10):
  p = subprocess.Popen(
      _launch_cmd(data_dir, workdir),
      env=_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
  )
  ckpt = os.path.join(workdir, "checkpoints", str(after_step))
  deadline = time.time() + 120
  while not os.path.exists(ckpt) and p.poll() is None:
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.02)
  p.send_signal(sig)
  out = p.communicate(timeout=120)[0].decode()
  return p.returncode, out


@pytest.fixture(scope="module")
def reference_run(toyworld_small, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  subprocess.run(
      _launch_cmd(toyworld_small, workdir),
      env=_env(),
      check=True,
      capture_output=True,
  )
  return _final_params(str(workdir))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_exactly(
    toyworld_small, reference_run, tmp_path, sig
):
  code, out = _run_and_interrupt(toyworld_small, tmp_path, sig)
  assert not os.path.exists(tmp_path / "final_metrics.json"), "ran to the end"
  if sig == signal.SIGTERM:
    assert code == 0 and "SIGTERM: saved step" in out, out[-2000:]
  else:
    assert code == -signal.SIGKILL
  done = subprocess.run(
      _launch_cmd(toyworld_small, tmp_path),
      env=_env(),
      capture_output=True,
      text=True,
  )
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert "resumed from" in done.stdout
  params, data_state = _final_params(str(tmp_path))
  ref_params, ref_data = reference_run
  assert data_state == ref_data  # same data position
  jax.tree.map(np.testing.assert_array_equal, params, ref_params)


def test_resuming_with_a_config_that_no_longer_fits_names_what_changed(
    toyworld_small, tmp_path, capsys
):
  """A workdir resumed with a wider encoder (checkpoints of another shape):
  a clear error naming the key, its values and the launch.py flag that sets
  it back; the workdir's config.json still describes its checkpoints. A
  change that fits (more total_steps) resumes, with a note listing it."""
  import ml_collections

  def config(**overrides):
    c = _config(
        toyworld_small,
        **{
            "final_eval_split": "",
            "total_steps": 1,
            "checkpoint.every": 1,
            "data.worker_count": 0,
            **overrides,
        },
    )
    c.evals = ml_collections.ConfigDict()  # no eval: the test is resume
    return c

  train.train_and_evaluate(config(), str(tmp_path))
  with pytest.raises(ValueError) as e:
    train.train_and_evaluate(
        config(**{"model.encoder.width": 48}), str(tmp_path)
    )
  msg = str(e.value)
  assert str(tmp_path / "checkpoints") in msg
  assert "model.encoder.width: 32 -> 48" in msg
  assert "--config.model.encoder.width=32" in msg and "new --workdir" in msg
  stored = json.loads((tmp_path / "config.json").read_text())
  assert stored["model"]["encoder"]["width"] == 32
  capsys.readouterr()
  train.train_and_evaluate(config(total_steps=2), str(tmp_path))
  out = capsys.readouterr().out
  assert "resumed from" in out and "total_steps: 1 -> 2" in out
  assert json.loads((tmp_path / "config.json").read_text())["total_steps"] == 2
  assert os.path.isdir(tmp_path / "checkpoints" / "2")


def test_task_auto_is_the_datas_and_single_label_on_multi_label_is_refused(
    toyworld_small,
):
  import dataclasses

  manifest = shards.load_manifest(toyworld_small)
  assert manifest.task == "single_label"  # one label per scene
  c = lr_vit.get_config("runlocal")
  assert c.task == "auto"
  assert train.task_of(c, manifest) == "single_label"
  multi = dataclasses.replace(manifest, multi_label=True)
  assert train.task_of(c, multi) == "multi_label"
  c.task = "single_label"
  with pytest.raises(ValueError, match="multi-label .* set config.task"):
    train.task_of(c, multi)
  with pytest.raises(ValueError, match="pass task=train.task_of"):
    train.jit_train_step(lr_vit.get_config(), None, None, None, None)
  # The cross-scale head follows the labels too (head_type "auto").
  from experiments.configs import cross_scale

  xs = cross_scale.get_config("runlocal")
  assert xs.model.head_type == "auto"
  assert train.make_model(xs, manifest).head_type == "map"
  assert train.make_model(xs, multi).head_type == "mil"
  # ... and the sampler's completion target (-1: on for multi-label only).
  assert xs.model.sampler_target.completion == -1.0
  assert train.make_model(xs, manifest).sampler_target["completion"] == 0.0
  assert train.make_model(xs, multi).sampler_target["completion"] == 1.0
  xs.model.sampler_target.completion = 0.5  # an explicit weight is kept
  assert train.make_model(xs, multi).sampler_target["completion"] == 0.5
