"""The SR grid's SR-only / scale / crop / per-family schedule options
(experiments/sr_bench/grid_settings.py, grid_data.crop_pairs, sr_grid)."""

import dataclasses
import os

import numpy as np
import pytest

from crossscale import train
from experiments.sr_bench import grid_data, grid_plot, sr_grid
from experiments.sr_bench import grid_settings as gs


def test_crop_pairs_align_lr_and_hr():
  """Each HR crop is the HR over the LR crop's ground: with HR = LR
  repeated scale x scale, the HR crop's block means are the LR crop."""
  rng = np.random.default_rng(0)
  lr = rng.uniform(size=(5, 12, 10, 3)).astype(np.float32)
  hr = np.repeat(np.repeat(lr, 4, 1), 4, 2)  # [5, 48, 40, 3]
  batch = {"lr": lr, "hr": hr, "cls": np.arange(5)}
  out = grid_data.crop_pairs(batch, np.random.default_rng(1), 16, 4)
  assert out["lr"].shape == (5, 4, 4, 3) and out["hr"].shape == (5, 16, 16, 3)
  np.testing.assert_array_equal(out["cls"], batch["cls"])
  blocks = out["hr"].reshape(5, 4, 4, 4, 4, 3).mean((2, 4))
  np.testing.assert_allclose(blocks, out["lr"], rtol=1e-6)
  # offsets differ between examples (not one crop for the batch)
  where = [
      tuple(np.argwhere((lr[i] == out["lr"][i][0, 0]).all(-1))[0])
      for i in range(5)
  ]
  assert len(set(where)) > 1
  with pytest.raises(ValueError, match="multiple of the scale"):
    grid_data.crop_pairs(batch, np.random.default_rng(0), 18, 4)
  with pytest.raises(ValueError, match="exceeds"):
    grid_data.crop_pairs(batch, np.random.default_rng(0), 64, 4)


def test_fit_arrays_transform_sets_the_batch_shape():
  """fit_arrays trains on transform(batch) (crops), then flips."""
  from crossscale import models
  from experiments.configs import sr as sr_config

  cfg = sr_config.model_config("edsr", 2, 3, "tiny")
  kw = dict(cfg)
  model = models.get_model(kw.pop("name"), **kw)
  rng = np.random.default_rng(0)
  arrays = {
      "lr": rng.normal(size=(4, 8, 8, 3)).astype(np.float32),
      "hr": rng.normal(size=(4, 16, 16, 3)).astype(np.float32),
  }
  seen = []

  def crop(b, r):
    out = grid_data.crop_pairs(b, r, 8, 2)
    seen.append(out["hr"].shape)
    return out

  params = train.init_params(model, {k: v[:1] for k, v in arrays.items()}, 0)
  _, losses = train.fit_arrays(
      model,
      params,
      arrays,
      steps=2,
      batch_size=2,
      lr=1e-3,
      seed=0,
      transform=crop,
  )
  assert seen == [(2, 8, 8, 3)] * 2 and len(losses) == 2


def test_schedules_presets_and_names():
  s = gs.settings("quick")
  assert gs.family_schedule(s, "edsr") == {"steps": s.sr_steps, "lr": s.lr}
  assert gs.family_schedule(s, "bicubic")["steps"] == 0
  s2 = gs.with_schedule(
      s,
      {
          "gan": {"init": "gan_psnr", "steps": 5, "model": {"features": 4}},
          "edsr": {"lr": 2e-3},
      },
  )
  s2 = gs.with_schedule(s2, {"gan": {"model": {"growth": 2}}})
  assert s2.schedules["gan"]["model"] == {"features": 4, "growth": 2}
  gan = gs.family_schedule(s2, "gan")
  assert gan == {"steps": 5, "lr": s.lr, "init": "gan_psnr"}
  assert gs.family_schedule(s2, "edsr")["lr"] == 2e-3
  with pytest.raises(ValueError, match="unknown keys"):
    gs.with_schedule(s, {"edsr": {"step": 3}})
  q = gs.preset_table("quick", "ucmerced", 4)
  assert q["settings"]["task_steps"] == 300  # QUICK's, kept
  assert q["settings"]["crop"] == 64 and "gan" in q["sr_models"]
  assert gs.preset_table("quick", "ucmerced") == gs.QUICK["ucmerced"]
  r = gs.preset_table("quick", "rsscn7", 4)  # UC Merced 4x's SR schedule
  assert r["settings"]["task_steps"] == 200  # rsscn7's QUICK, kept
  assert r["settings"]["hr_size"] == 400 and r["settings"]["crop"] == 64
  assert r["settings"]["pretrain_steps"] == 0
  assert r["settings"]["schedules"] == q["settings"]["schedules"]
  assert r["sr_models"] == q["sr_models"]
  assert gs.preset_table("quick", "rsscn7") == gs.QUICK["rsscn7"]
  full = gs.preset_table("full", "ucmerced", 4)["settings"]
  assert full["schedules"]["gan"]["init"] == "gan_psnr"
  assert gs.preset_table("full", "ucmerced") == {}
  x4 = dataclasses.replace(s, scale=4, sr_only=True)
  assert gs.schedule_name("quick", s) == "quick"
  assert gs.schedule_name("quick", x4) == "quick_x4_sr"
  val = dataclasses.replace(x4, split="val")
  assert gs.schedule_name("quick", val) == "quick_x4_sr_val"
  assert gs.schedule_name("tiny", s) == "runlocal"
  metas = {
      "gan": {
          "spec": {"steps": 20, "init": "sr_gan_psnr-x", "lr": 1e-4},
          "train_seconds": 4.0,
          "final_loss": 0.5,
      },
      "swinir": None,
  }
  row = gs.training_summary(metas)["gan"]
  assert row["seconds_per_step"] == pytest.approx(0.2)
  assert "swinir" not in gs.training_summary(metas)


def test_sr_spec_keys_unchanged_without_the_new_options():
  """Old caches keep their keys: no crop / init / model keys in
  the spec unless set."""
  data = {
      "name": "g",
      "scale": 4,
      "bands": list("abc"),
      "splits": {
          "train": {
              "lr": np.zeros((2, 4, 4, 3), np.float32),
              "hr": np.zeros((2, 16, 16, 3), np.float32),
          },
          "test": {
              "lr": np.zeros((2, 4, 4, 3), np.float32),
              "hr": np.zeros((2, 16, 16, 3), np.float32),
          },
      },
      "tasks": {},
      "notes": [],
  }
  s = gs.settings("tiny")
  spec = sr_grid.Grid(data, s, "", log=lambda *_: 0).sr_spec("gan")
  assert set(spec) == {
      "data",
      "family",
      "model",
      "aux_weights",
      "steps",
      "batch",
      "lr",
      "seed",
  }
  s2 = gs.with_schedule(
      dataclasses.replace(s, crop=8),
      {
          "gan": {"init": "gan_psnr", "model": {"features": 4}},
          "gan_psnr": {"model": {"features": 4}},
      },
  )
  g2 = sr_grid.Grid(data, s2, "", log=lambda *_: 0)
  spec2 = g2.sr_spec("gan")
  assert spec2["crop"] == 8 and spec2["init"] == g2.sr_key("gan_psnr")
  assert spec2["model"]["features"] == 4
  assert "crop" not in g2.sr_spec("bicubic")  # nothing to train
  # Inference-only fields (DDIM steps) change the windows, not the model.
  g = sr_grid.Grid(data, s, "", log=lambda *_: 0)
  s3 = gs.with_schedule(s, {"diffusion": {"sample_steps": 1}})
  g3 = sr_grid.Grid(data, s3, "", log=lambda *_: 0)
  assert g3.inference("diffusion") == {"sample_steps": 1}
  assert g3.sr_key("diffusion") == g.sr_key("diffusion")
  assert g3.win_name("diffusion") != g.win_name("diffusion")
  assert g3.win_name("edsr") == g.win_name("edsr")
  with pytest.raises(ValueError, match="no 'val' split"):
    sr_grid.Grid(
        data, dataclasses.replace(s, split="val"), "", log=lambda *_: 0
    )


@pytest.mark.slow
def test_sr_only_val_then_test_reuses_models(toyworld_small, tmp_path):
  """--sr_only --split val trains (crops, the GAN from its L1 stage) and
  scores val; the test run trains nothing and scores test."""
  kw = dict(
      preset="tiny",
      max_train=32,
      max_test=16,
      sr_models=("bicubic", "edsr", "gan"),  # + gan_psnr, its init
      sr_only=True,
      crop=32,
      schedule={"gan": {"init": "gan_psnr", "steps": 2}},
      log=lambda *_: 0,
  )
  out = str(tmp_path / "g")
  val = sr_grid.run_grid(toyworld_small, out, split="val", **kw)
  assert val["file"] == "toyworld_small_runlocal_sr_val_s0-0.json" or (
      val["file"].endswith("_runlocal_sr_val_s0-0.json")
  )
  assert val["cells"] == [] and val["split"] == "val"
  assert len(val["run"]["trained"]) == 4  # bicubic, edsr, gan_psnr, gan
  assert val["sr_training"]["gan"]["init"] == val["run"]["trained"][2]
  assert "psnr_gain_interval" in val["sr_models"]["edsr"]
  test = sr_grid.run_grid(toyworld_small, out, **kw)
  assert test["run"]["trained"] == [] and test["split"] == "test"
  assert test["sr_models"]["edsr"]["psnr"] != val["sr_models"]["edsr"]["psnr"]
  png = grid_plot.plot_sr(test, str(tmp_path / "sr.png"))
  assert os.path.getsize(png) > 0
  grid_plot.print_results(test)
  with pytest.raises(ValueError, match="needs sr_only"):
    sr_grid.run_grid(
        toyworld_small, out, **{**kw, "sr_only": False, "split": "val"}
    )
