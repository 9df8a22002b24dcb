"""Export: a trained run -> StableHLO + safetensors + manifest, run by the
jax+numpy loader (in-process and in a fresh process without flax) and checked
against the model's own `model.apply`; the loader's errors."""

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from crossscale import budgets, export, run_config, serving, shards, train
from crossscale.models import sr
from experiments.configs import cross_scale as cross_scale_config
from experiments.configs import lr_vit as lr_vit_config
from tests import conftest
from tests.conftest import ROOT

TOL = dict(rtol=1e-5, atol=1e-5)
BATCHES = (2, 5)  # two sizes through one export: the batch dim is symbolic
FORBIDDEN = (
    "flax",
    "optax",
    "orbax",
    "grain",
    "tensorflow",
    "crossscale.models",
    "crossscale.train",
    "crossscale.export",
)


def _tiny_run(config, data_dir, workdir):
  """A few real training steps (no evals) with checkpoints in workdir."""
  config.data.path = data_dir
  config.update_from_flattened_dict(
      {
          "total_steps": 2,
          "batch_size": 8,
          "checkpoint.every": 1,
          "final_eval_split": "",
          "log_every": 1,
      }
  )
  config.evals = {}
  train.train_and_evaluate(config, str(workdir))
  return config


def _inputs(manifest, b, seed=0):
  rng = np.random.default_rng([seed, b])
  return (
      rng.normal(size=(b, *manifest.lr_shape)).astype(np.float32),
      rng.normal(size=(b, *manifest.hr_shape)).astype(np.float32),
  )


def _env(devices=1):
  env = dict(os.environ)
  env["XLA_FLAGS"] = conftest.xla_flags(devices)  # + the fast compiles
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = ROOT
  return env


MESH = "(('data', 2), ('fsdp', 2), ('model', 2))"


@pytest.fixture(scope="module")
def xs(toyworld_small, tmp_path_factory):
  """cross_scale runlocal trained 2 steps with parameters sharded over 8
  devices (fsdp x model), exported by launch.py's export mode (1 device)
  with an explicit --config and --dataset."""
  workdir = tmp_path_factory.mktemp("xs_run")
  c = cross_scale_config.get_config("runlocal")
  c.mesh = eval(MESH)  # pylint: disable=eval-used
  c = _tiny_run(c, toyworld_small, workdir)
  out = tmp_path_factory.mktemp("xs_export")
  cmd = [
      sys.executable,
      os.path.join(ROOT, "launch.py"),
      "--workdir",
      str(workdir),
      "--export_to",
      str(out),
      "--dataset",
      toyworld_small,
      "--config",
      os.path.join(ROOT, "experiments/configs/cross_scale.py:" "runlocal"),
      "--config.total_steps=2",
      "--config.batch_size=8",
      f"--config.mesh={MESH}",
  ]
  done = subprocess.run(
      cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert "exported cross_scale step 2" in done.stdout
  manifest = shards.load_manifest(toyworld_small)
  params, step = export.restore_params(c, manifest, str(workdir))
  assert step == 2
  model = train.make_model(c, manifest)

  @jax.jit
  def reference(p, lr, hr):
    rngs = {"selection": jax.random.key(0)}
    out = model.apply(p, {"lr": lr, "hr": hr}, train=False, rngs=rngs)
    scores = model.apply(p, {"lr": lr}, False, rngs=rngs, method="scores")
    return out, scores

  return dict(
      config=c,
      manifest=manifest,
      params=params,
      out=str(out),
      workdir=workdir,
      model=model,
      reference=reference,
  )


def _xs_reference(xs, lr, hr):
  """In-process model.apply: logits, embedding, tile scores, indices."""
  model = xs["model"]
  out, scores = xs["reference"]({"params": xs["params"]}, lr, hr)
  k = budgets.k_from_budget(model.budget, model.grid**2)
  # Independent of the export's top-k: argsort, stable on -score.
  idx = np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k]
  return out, np.asarray(scores), idx


def test_cross_scale_export_matches_model_apply(xs):
  m = serving.load(xs["out"])
  assert set(m.functions) == {"predict", "sample"}
  man = m.manifest
  assert man["model"]["name"] == "cross_scale"
  assert man["class_names"] == xs["manifest"].class_names
  assert man["normalization"] == xs["manifest"].band_stats
  assert man["platforms"] == ["cpu", "cuda", "tpu"]
  assert man["source"]["step"] == 2
  lr_h = xs["manifest"].lr_shape
  pred = man["functions"]["predict"]
  assert pred["inputs"][0] == {
      "name": "lr",
      "shape": ["b", *lr_h],
      "dtype": "float32",
      "normalized_as": "lr",
  }
  k = man["model"]["tiles"]["k"]
  assert pred["outputs"]["tile_indices"] == {
      "shape": ["b", k],
      "dtype": "int32",
  }
  assert man["params"]["sha256"] == serving.sha256_file(
      os.path.join(xs["out"], serving.PARAMS)
  )
  # The exported parameters are the checkpoint's, bit for bit.
  flat = export.flatten_params(xs["params"])
  assert set(m.params) == set(flat) == set(man["params"]["keys"])
  for key, v in flat.items():
    np.testing.assert_array_equal(np.asarray(m.params[key]), v, err_msg=key)

  for b in BATCHES:
    lr, hr = _inputs(xs["manifest"], b)
    out = m.predict(lr, hr)
    ref, scores, idx = _xs_reference(xs, lr, hr)
    assert out["logits"].shape == (b, xs["manifest"].num_classes)
    np.testing.assert_allclose(out["logits"], ref["logits"], **TOL)
    np.testing.assert_allclose(out["embedding"], ref["embedding"], **TOL)
    np.testing.assert_array_equal(out["tile_indices"], idx)
    s = m.sample(lr=lr)
    np.testing.assert_allclose(s["tile_logits"], scores, **TOL)
    np.testing.assert_array_equal(s["tile_indices"], idx)
    assert out["tile_valid"].all() and s["tile_valid"].all()  # fixed k

  # normalize=True standardises raw pixels with the dataset's stats.
  stats = xs["manifest"].band_stats
  lr, hr = _inputs(xs["manifest"], 2, seed=1)
  raw_lr = lr * np.float32(stats["lr"]["std"]) + np.float32(stats["lr"]["mean"])
  raw_hr = hr * np.float32(stats["hr"]["std"]) + np.float32(stats["hr"]["mean"])
  np.testing.assert_allclose(
      m.predict(raw_lr, raw_hr, normalize=True)["logits"],
      m.predict(lr, hr)["logits"],
      rtol=1e-4,
      atol=1e-4,
  )
  with pytest.raises(serving.ExportError, match=r"input 'hr' has shape"):
    m.predict(lr, hr[:, :32])


def test_the_model_card_travels_with_the_export(xs, tmp_path):
  """manifest.json and the params file's metadata carry one card; an old
  export without a card still loads."""
  m, man = serving.load(xs["out"]), xs["manifest"]
  card = m.card
  assert card == m.manifest["model_card"]
  _, meta = serving.load_safetensors(os.path.join(xs["out"], serving.PARAMS))
  assert json.loads(meta["model_card"]) == card
  assert card["bands"] == {"lr": man.lr_bands, "hr": man.hr_bands}
  # toyworld's GSDs count HR pixels: no metres on the card, the ratio kept.
  assert card["gsd_m"] == {"lr": None, "hr": None} and not card["gsd_known"]
  assert card["scale"] == man.lr_gsd / man.hr_gsd
  assert card["class_names"] == man.class_names
  assert card["image_size"] == {"lr": man.lr_shape[:2], "hr": man.hr_shape[:2]}
  assert card["normalization"] == man.band_stats
  assert card["grid"] == man.grid == 8 and card["tile_px"] == 8
  assert card["multi_label"] is man.multi_label
  assert card["budget"] == {
      "policy": "learned",
      "num_tiles": 64,
      "k": 8,
      "selection": xs["config"].model.selection.to_dict(),
      "mode": "ratio",
      "ratio": 0.125,
  }
  cfg = man.builder["config"]  # toyworld's own LR: sensor.degrade
  assert card["degradation"] == {
      "source": "sensor.degrade",
      "scale": cfg["scale"],
      "psf_sigma": cfg["psf_sigma"],
      "noise_std": cfg["noise_std"],
  }
  m.check_raster(bands=man.lr_bands, gsd=man.lr_gsd, shape=man.lr_shape)
  with pytest.raises(serving.ExportError, match=r"lr shape"):
    m.check_raster(gsd=man.lr_gsd * 3, shape=[4, 4, 3])  # GSD unknown: kept
  metres = {**card, "gsd_m": {"lr": 4.0, "hr": 1.0}, "gsd_known": True}
  gsd, shape = serving.check_raster(metres, gsd=12.0, shape=[4, 4, 3])
  assert gsd.startswith("lr GSD") and shape.startswith("lr shape")
  # An export written before cards: no card in either place.
  old = tmp_path / "old"
  shutil.copytree(xs["out"], old)
  mpath = old / serving.MANIFEST
  stored = json.loads(mpath.read_text())
  del stored["model_card"]
  tensors, _ = serving.load_safetensors(str(old / serving.PARAMS))
  serving.save_safetensors(str(old / serving.PARAMS), tensors)
  stored["params"]["sha256"] = serving.sha256_file(str(old / serving.PARAMS))
  mpath.write_text(json.dumps(stored))
  m_old = serving.load(str(old))
  assert m_old.card is None and set(m_old.functions) == {"predict", "sample"}
  with pytest.raises(serving.ExportError, match="no model card"):
    m_old.check_raster(gsd=1.0)


def test_loader_runs_in_a_fresh_process_without_flax(xs, tmp_path):
  lr, hr = _inputs(xs["manifest"], BATCHES[0])
  np.savez(tmp_path / "in.npz", lr=lr, hr=hr)
  script = f"""
import json, sys
import numpy as np
from crossscale import serving
m = serving.load({xs['out']!r})
x = np.load({str(tmp_path / 'in.npz')!r})
s = m.sample(x['lr'])
np.savez({str(tmp_path / 'out.npz')!r}, **m.predict(x['lr'], x['hr']),
         tile_logits=s['tile_logits'], sample_indices=s['tile_indices'])
print(json.dumps(sorted(n for n in sys.modules
                        if n.split('.')[0] in {FORBIDDEN!r}
                        or n.startswith({FORBIDDEN!r}))))
"""
  done = subprocess.run(
      [sys.executable, "-c", script],
      env=_env(),
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert json.loads(done.stdout.strip().splitlines()[-1]) == []
  got = np.load(tmp_path / "out.npz")
  ref, scores, idx = _xs_reference(xs, lr, hr)
  np.testing.assert_allclose(got["logits"], ref["logits"], **TOL)
  np.testing.assert_allclose(got["embedding"], ref["embedding"], **TOL)
  np.testing.assert_allclose(got["tile_logits"], scores, **TOL)
  np.testing.assert_array_equal(got["tile_indices"], idx)
  np.testing.assert_array_equal(got["sample_indices"], idx)


def test_export_from_the_runs_saved_config(xs, tmp_path):
  """Without --config: WORKDIR/config.json, as train.py would write it."""
  with open(xs["workdir"] / run_config.CONFIG_FILE, "w") as f:
    f.write(xs["config"].to_json_best_effort(indent=1))
  out = export.export_run(
      str(xs["workdir"]), str(tmp_path), step=1, platforms=("cpu",)
  )
  assert out["source"]["step"] == 1 and out["platforms"] == ["cpu"]
  assert (
      out["params"]["keys"]
      == json.load(open(os.path.join(xs["out"], serving.MANIFEST)))["params"][
          "keys"
      ]
  )
  assert set(serving.load(str(tmp_path)).functions) == {"predict", "sample"}


@pytest.fixture(scope="module")
def vit(toyworld_small, tmp_path_factory):
  """lr_vit runlocal exported straight from (perturbed) initial parameters;
  the run/checkpoint path is covered by the cross_scale tests."""
  c = lr_vit_config.get_config("runlocal")
  manifest = shards.load_manifest(toyworld_small)
  model = train.make_model(c, manifest)
  lr, _ = _inputs(manifest, 1)

  @jax.jit
  def init(rng):
    params = model.init(rng, {"lr": lr}, train=False)["params"]
    # The head is zero-initialised: perturb every parameter so logits differ.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return jax.tree.unflatten(
        tree,
        [
            x + 0.05 * jax.random.normal(k, x.shape)
            for x, k in zip(leaves, keys)
        ],
    )

  params = jax.device_get(init(jax.random.key(0)))
  out = str(tmp_path_factory.mktemp("vit_export"))
  export.export_model(
      model,
      params,
      out,
      manifest=manifest,
      model_name="lr_vit",
      model_config=c.model.to_dict(),
      fields=c.data.fields,
      platforms=("cpu",),
  )
  return dict(config=c, manifest=manifest, params=params, out=out, model=model)


def test_lr_vit_export_matches_model_apply(vit):
  m = serving.load(vit["out"])
  assert set(m.functions) == {"predict"}
  assert [i["name"] for i in m.manifest["functions"]["predict"]["inputs"]] == [
      "lr"
  ]
  for b in BATCHES:
    lr, _ = _inputs(vit["manifest"], b)
    ref = jax.jit(vit["model"].apply, static_argnames="train")(
        {"params": vit["params"]}, {"lr": lr}, train=False
    )
    out = m.predict(lr)
    assert set(out) == {"logits"}
    np.testing.assert_allclose(out["logits"], ref["logits"], **TOL)


def test_sr_export_matches_model_apply(toyworld_small, tmp_path):
  # No SR experiment config exists yet: export straight from parameters.
  manifest = shards.load_manifest(toyworld_small)
  model = sr.EDSR(
      out_bands=manifest.hr_shape[-1], scale=4, features=8, num_blocks=1
  )
  lr, _ = _inputs(manifest, 1)
  params = jax.device_get(
      jax.jit(lambda r: model.init(r, lr, None, method="predict")["params"])(
          jax.random.key(0)
      )
  )
  export.export_model(
      model,
      params,
      str(tmp_path),
      manifest=manifest,
      model_name="sr_edsr",
      platforms=("cpu",),
  )
  m = serving.load(str(tmp_path))
  out_spec = m.manifest["functions"]["predict"]["outputs"]["sr"]
  assert out_spec["shape"] == ["b", *manifest.hr_shape]
  for b in BATCHES:
    lr, _ = _inputs(manifest, b)
    ref = jax.jit(
        lambda p, x: model.apply(
            {"params": p}, x, tuple(manifest.hr_shape[:2]), method="predict"
        )
    )(params, lr)
    np.testing.assert_allclose(m.predict(lr)["sr"], ref, **TOL)
  # normalize=True: raw LR in, SR in raw HR units out.
  st = manifest.band_stats
  raw = lr * np.float32(st["lr"]["std"]) + np.float32(st["lr"]["mean"])
  want = np.asarray(ref) * np.float32(st["hr"]["std"]) + np.float32(
      st["hr"]["mean"]
  )
  np.testing.assert_allclose(
      m.predict(raw, normalize=True)["sr"], want, rtol=1e-4, atol=1e-3
  )


# ------------------------------------------------------------------ errors


@pytest.fixture
def broken(vit, tmp_path):
  """A copy of the lr_vit export to break, its params and their path."""
  d = tmp_path / "export"
  shutil.copytree(vit["out"], d)
  path = str(d / serving.PARAMS)
  tensors, _ = serving.load_safetensors(path)
  return str(d), path, {k: np.array(v) for k, v in tensors.items()}


def test_missing_params_file(broken):
  d, path, _ = broken
  os.remove(path)
  with pytest.raises(
      serving.ExportError, match=r"params\.safetensors not found.*re-export"
  ):
    serving.load(d)


def test_missing_key(broken):
  d, path, tensors = broken
  key = sorted(tensors)[0]
  del tensors[key]
  serving.save_safetensors(path, tensors)
  with pytest.raises(
      serving.ExportError,
      match=rf"params\.safetensors has no parameter '{key}'",
  ):
    serving.load(d)


def test_mismatched_shape(broken):
  d, path, tensors = broken
  key = "head/kernel"
  tensors[key] = np.zeros((tensors[key].shape[0], 99), np.float32)
  serving.save_safetensors(path, tensors)
  with pytest.raises(
      serving.ExportError,
      match=rf"'{key}' is float32\[32, 99\] but the export "
      r"expects float32\[32, 6\]",
  ):
    serving.load(d)


def test_corrupted_params_file(broken):
  d, path, _ = broken
  with open(path, "r+b") as f:
    f.seek(-3, os.SEEK_END)
    b = f.read(1)
    f.seek(-3, os.SEEK_END)
    f.write(bytes([b[0] ^ 0xFF]))
  with pytest.raises(serving.ExportError, match=r"sha256 .* does not match"):
    serving.load(d)
  serving.load(d, verify_sha=False)  # the structure is intact


def test_run_errors_name_the_fix(xs, tmp_path):
  os.makedirs(tmp_path / "checkpoints")
  with pytest.raises(
      FileNotFoundError, match=r"config\.json not found.*" r"--config"
  ):
    export.export_run(str(tmp_path), str(tmp_path / "out"))
  with pytest.raises(ValueError, match=r"--step=7 .* has steps \[1, 2\]"):
    export.restore_params(xs["config"], xs["manifest"], str(xs["workdir"]), 7)


def test_the_library_takes_paths_and_names_launch_for_a_dataset_name(
    xs, toyworld_small, tmp_path
):
  """crossscale.export resolves no dataset names (the library imports no
  data/): a records directory passes, a name is an error naming launch.py."""
  c = cross_scale_config.get_config("runlocal")  # dataset "toyworld", no path
  assert export.records_dir(c, toyworld_small) == toyworld_small
  assert export.records_dir(xs["config"]) == toyworld_small  # data.path
  fix = r"python launch.py --workdir WORKDIR --export_to OUT --dataset toyworld"
  with pytest.raises(ValueError, match=fix):
    export.records_dir(c)
  with pytest.raises(ValueError, match=fix):
    export.export_run(str(xs["workdir"]), str(tmp_path), c, data_dir="toyworld")
  # The module's command line: one line naming the fix, no traceback.
  done = subprocess.run(
      [
          sys.executable,
          "-m",
          "crossscale.export",
          "--workdir",
          str(xs["workdir"]),
          "--out",
          str(tmp_path / "out"),
          "--config",
          os.path.join(ROOT, "experiments/configs/cross_scale.py:runlocal"),
      ],
      env=_env(),
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert done.returncode == 1
  assert "Traceback" not in done.stderr
  assert re.search(fix, done.stderr), done.stderr[-2000:]
  assert not os.path.exists(tmp_path / "out")


# ------------------------------------------------------------- safetensors


def test_safetensors_round_trip_and_format(tmp_path):
  rng = np.random.default_rng(0)
  tensors = {
      "a/b/kernel": rng.normal(size=(3, 4)).astype(np.float32),
      "a/bias": np.arange(5, dtype=np.int32),
      "flag": np.array([True, False]),
      "half": rng.normal(size=(2, 2)).astype(np.float16),
      "bf16": rng.normal(size=(3,)).astype(jax.numpy.bfloat16),
      "scalar": np.float32(2.5),
      "empty": np.zeros((0, 3), np.float32),
  }
  path = str(tmp_path / "t.safetensors")
  serving.save_safetensors(path, tensors, {"k": "v"})
  got, meta = serving.load_safetensors(path)
  assert meta == {"k": "v"} and set(got) == set(tensors)
  for k, v in tensors.items():
    assert got[k].dtype == np.asarray(v).dtype, k
    np.testing.assert_array_equal(got[k], v, err_msg=k)
  # The reference implementation reads ours and we read its files.
  st = pytest.importorskip("safetensors.numpy")
  plain = {k: np.asarray(v) for k, v in tensors.items() if k != "bf16"}
  serving.save_safetensors(path, plain)
  for k, v in st.load_file(path).items():
    np.testing.assert_array_equal(v, plain[k], err_msg=k)
  st.save_file(plain, str(tmp_path / "ref.safetensors"))
  for k, v in serving.load_safetensors(str(tmp_path / "ref.safetensors"))[
      0
  ].items():
    np.testing.assert_array_equal(v, plain[k], err_msg=k)
