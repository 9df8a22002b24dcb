"""A new user's first hour: a tile count from the command line, one-line
errors from launch.py, unlabelled records refused by classifiers, the LR
degradation recorded and rebuilt (issue 24)."""

import os
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import numpy as np
import pytest

from crossscale import (
    budgets,
    models,
    records,
    run_config,
    sensor,
    serving,
    shards,
    train,
)
from data import registry
from experiments.configs import cross_scale
from tests.conftest import ROOT

XS = os.path.join(ROOT, "experiments/configs/cross_scale.py")


def _manifest(classes=("a", "b"), grid=4) -> shards.Manifest:
  """A manifest (no shards): enough for make_model."""
  return shards.Manifest(
      name="m",
      schema_version=1,
      class_names=list(classes),
      lr_shape=[8, 8, 3],
      hr_shape=[32, 32, 3],
      lr_bands=["r", "g", "b"],
      hr_bands=["r", "g", "b"],
      lr_gsd=4.0,
      hr_gsd=1.0,
      grid=grid,
      dtypes={"lr": "|u1", "hr": "|u1"},
      band_stats={},
      splits={},
      multi_label=not classes,
  )


def test_a_tile_count_from_the_command_line_is_a_count():
  fv = flags.FlagValues()
  argv = ["x", f"--config={XS}:runlocal", "--config.model.budget_tiles=8"]
  config_flags.DEFINE_config_file("config", None, "", fv, sys_argv=argv)
  fv(argv)
  c = fv.config
  assert c.model.budget_tiles == 8 and isinstance(c.model.budget_tiles, int)
  assert train.make_model(c, _manifest(grid=8)).k() == 8
  c.model.budget_tiles = -1  # unset: the ratio
  c.model.budget = 0.25
  assert train.make_model(c, _manifest(grid=8)).k() == 16
  assert budgets.model_budget({"budget": 0.5, "budget_tiles": 0}) == 0


def test_budget_errors_name_the_key_and_the_fix():
  c = cross_scale.get_config("runlocal")
  c.model.budget = 8.0  # what --config.model.budget=8 gives
  with pytest.raises(
      run_config.ConfigError, match=r"--config\.model\.budget_tiles=8 instead"
  ):
    train.make_model(c, _manifest())
  c.model.budget, c.model.budget_tiles = 0.125, 17
  with pytest.raises(
      records.DataError, match=r"17 > 16 tiles .*config\.model\.budget_tiles"
  ):
    train.make_model(c, _manifest())


def test_unknown_config_keys_name_the_nearest():
  c = cross_scale.get_config("runlocal")
  argv = ["--config.model.budgte=8", "--config.total_steps=3", "--workdir=x"]
  assert run_config.unknown_keys(argv, c) == [
      "--config.model.budgte: the config has no key 'model.budgte'; did you "
      "mean --config.model.budget?"
  ]
  assert run_config.unknown_keys(["--config.model.selection=x"], c) == []


def test_unlabelled_records_refuse_classifiers_not_pretraining_or_sr():
  from experiments.configs import (  # pylint: disable=g-import-not-at-top
      lr_vit,
      pretrain,
      sr,
  )

  unlabelled = _manifest(classes=())
  for c in (cross_scale.get_config("runlocal"), lr_vit.get_config("runlocal")):
    with pytest.raises(records.DataError, match=r"no labels.*pretrain\.py"):
      train.make_model(c, unlabelled)
  for arg, labelled in (("runlocal", False), ("runlocal,text", True)):
    c = pretrain.get_config(arg)  # class prompts need labels
    fields = models.field_names(c.model.name)
    if labelled:
      with pytest.raises(records.DataError, match="no labels"):
        run_config.check_labelled(c, unlabelled, fields)
    else:
      run_config.check_labelled(c, unlabelled, fields)
  c = sr.get_config("runlocal")
  run_config.check_labelled(c, unlabelled, models.field_names(c.model.name))


def test_an_unknown_dataset_lists_the_registered_ones():
  with pytest.raises(records.DataError) as e:
    registry.resolve("toyworlds")
  msg = str(e.value)
  assert "Did you mean 'toyworld'?" in msg and "rsscn7" in msg
  assert "data.geotiff_pairs" in msg


# launch.py's flag parser and main, as `app.run(main, flags_parser=...)`
# calls them, in one process (one jax import): each prints what exits.
_LAUNCH = """
import sys
runs = sys.argv[1:]
sys.argv = ["launch.py"] + runs[0].split()  # config_flags reads it
import launch
for argv in runs:
  try:
    launch.main(launch.parse_flags(["launch.py"] + argv.split()))
  except SystemExit as e:
    print(repr(e.code))
  launch.FLAGS.unparse_flags()
"""


def test_launch_user_errors_are_one_line_and_exit_1(tmp_path):
  common = f"--workdir={tmp_path} --config={XS}:runlocal "
  done = subprocess.run(
      [
          sys.executable,
          "-c",
          _LAUNCH,
          common + "--dataset=toyworlds",
          common + "--config.model.budgte=8",
          f"--workdir={tmp_path}/none --export_to={tmp_path}/x",
      ],
      env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT},
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  codes = [eval(l) for l in done.stdout.strip().splitlines()]  # pylint: disable=eval-used
  assert len(codes) == 3 and all(isinstance(c, str) for c in codes), codes
  assert all(c.startswith("launch.py: error: ") for c in codes)
  assert all("\n" not in c for c in codes)  # one line each
  assert "Did you mean 'toyworld'?" in codes[0]
  assert codes[1].endswith("did you mean --config.model.budget?")
  assert "config.json not found" in codes[2] and "--config" in codes[2]


def test_lr_from_hr_matches_the_builders_degradation():
  rng = np.random.default_rng(0)
  hr = rng.integers(0, 255, (2, 32, 32, 3), np.uint8)
  card = {"degradation": sensor.degradation_record(4, 0.5, 0.01)}
  got = serving.lr_from_hr(hr, card, seed=3)
  r = np.random.default_rng(3)
  want = np.stack([sensor.degrade(x, 4, r, 0.5, 0.01) for x in hr])
  assert got.dtype == np.uint8 and got.shape == (2, 8, 8, 3)
  np.testing.assert_array_equal(got, want)
  raster = {"degradation": sensor.degradation_record(4, source="raster")}
  with pytest.raises(serving.ExportError, match="psf_sigma= and noise_std="):
    serving.lr_from_hr(hr[0], raster)
  one = serving.lr_from_hr(hr[0], raster, psf_sigma=0.5, noise_std=0.0)
  np.testing.assert_array_equal(one, sensor.degrade(hr[0], 4, None, 0.5, 0.0))


def test_check_raster_names_each_mismatch_and_the_fix():
  card = {
      "bands": {"lr": ["r", "g", "b"], "hr": ["r", "g", "b"]},
      "gsd_m": {"lr": 2.4, "hr": 0.3},
      "gsd_known": True,
      "image_size": {"lr": [32, 32], "hr": [256, 256]},
      "degradation": sensor.degradation_record(8, 0.5, 0.01),
  }
  assert (
      serving.check_raster(
          card, bands=["R", "G", "B"], gsd=2.41, shape=(512, 512, 3)
      )
      == []
  )
  got = serving.check_raster(
      card, bands=["r", "g", "b", "nir"], gsd=10.0, shape=(16, 64, 4)
  )
  assert len(got) == 4, got
  assert "the model takes 3 ['r', 'g', 'b']" in got[0]
  assert "gdalwarp -tr 2.4 2.4" in got[1] and "lr_from_hr" in got[1]
  assert "smaller than the model's 32x32" in got[3]
  assert "reorder" in serving.check_raster(card, bands=["b", "g", "r"])[0]
  assert "0.3 m" in serving.check_raster(card, gsd=0.6, side="hr")[0]
  unknown = {**card, "gsd_m": {"lr": None, "hr": None}, "gsd_known": False}
  assert serving.check_raster(unknown, gsd=10.0) == []
