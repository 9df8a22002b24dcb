"""Loaders of the SR benchmarks on real data (../shared/data): the chip
records (data/sr_chips.py) of spacenet_roads and levircd, and
experiments/sr_bench/sr_real_pairs.py's real LR/HR pairs (shapes, binary
masks, band counts, spatially disjoint train/test windows), plus the
least-squares band map and the paired intervals vs bicubic_ls by hand, and
the model list (every sr_grid family)."""

import json
import re

import numpy as np
import pytest

from data import sr_chips
from experiments.configs import sr as sr_config
from experiments.sr_bench import (
    grid_data,
    grid_settings,
    sr_grid,
    sr_real_pairs,
)


def _rc(win_id):
  r, c = re.search(r"r(\d+)_c(\d+)$", win_id).groups()
  return int(r), int(c)


def _check_chips(d, chip, bands, scale=4):
  for split in ("train", "test"):
    s = d["splits"][split]
    n = len(s["hr"])
    assert s["hr"].shape == (n, chip, chip, bands)
    assert s["lr"].shape == (n, chip // scale, chip // scale, bands)
    assert s["seg"].shape == (n, chip, chip) and s["seg"].dtype == np.int32
    assert set(np.unique(s["seg"])) <= {0, 1}
    for k in ("hr", "lr"):
      assert s[k].dtype == np.float32
      assert 0.0 <= s[k].min() and s[k].max() <= 1.0
    assert len(d["windows"][split]) == n
    for w in d["windows"][split]:  # non-overlapping chip grid
      assert all(v % chip == 0 for v in _rc(w))
  train, test = (set(d["windows"][s]) for s in ("train", "test"))
  assert not train & test
  assert d["tasks"]["segmentation"]["num_classes"] == 2
  # Both classes occur in both splits.
  assert all(0 < d["splits"][s]["seg"].mean() < 0.5 for s in ("train", "test"))


def test_spacenet_roads_chips(shared_data, tmp_path):
  d = grid_data.load_dataset("spacenet_roads", "quick", data_root=str(tmp_path))
  _check_chips(d, 64, 1)
  assert d["bands"] == ["B1"] and d["scale"] == 4
  # 1300 px -> 20 x 20 chips; 70/15/15 seeded (val unused).
  n = sum(len(d["windows"][s]) for s in ("train", "test"))
  assert 300 < n < 400 and len(d["windows"]["train"]) > 4 * len(
      d["windows"]["test"]
  )


def test_levircd_chips(shared_data, tmp_path):
  d = grid_data.load_dataset("levircd", "quick", data_root=str(tmp_path))
  _check_chips(d, 64, 6)
  assert d["sr_groups"] == 2 and len(d["bands"]) == 6
  img = {
      s: {w.split("/")[0] for w in d["windows"][s]} for s in ("train", "test")
  }
  assert not img["train"] & img["test"]  # no image crosses splits
  assert len(img["test"]) == sr_chips.LEVIRCD_TEST
  assert len(d["windows"]["test"]) == 16 * sr_chips.LEVIRCD_TEST
  # A and B are different acquisitions: the 6 bands are not two copies.
  hr = d["splits"]["train"]["hr"]
  assert np.abs(hr[..., :3] - hr[..., 3:]).mean() > 0.02


def test_sr_groups_round_trip():
  g = sr_grid.Grid.__new__(sr_grid.Grid)
  g.groups = 2
  x = np.arange(2 * 3 * 3 * 6, dtype=np.float32).reshape(2, 3, 3, 6)
  y = g.to_groups(x)
  assert y.shape == (4, 3, 3, 3)
  np.testing.assert_array_equal(y[1], x[0, ..., 3:])  # image B of scene 0
  np.testing.assert_array_equal(g.from_groups(y), x)


def test_grouped_bicubic_equals_lr_up(tmp_path):
  """levircd's path: SR per 3-band group (bicubic) == bicubic on 6 bands."""
  rng = np.random.default_rng(0)
  split = lambda n: {
      "lr": rng.uniform(size=(n, 4, 4, 6)).astype(np.float32),
      "hr": rng.uniform(size=(n, 16, 16, 6)).astype(np.float32),
      "seg": np.zeros((n, 16, 16), np.int32),
  }
  data = {
      "name": "g",
      "scale": 4,
      "bands": list("abcdef"),
      "sr_groups": 2,
      "splits": {"train": split(4), "test": split(3)},
      "tasks": {"segmentation": {"num_classes": 2}},
      "notes": [],
  }
  g = sr_grid.Grid(
      data, sr_grid.settings("tiny"), str(tmp_path), log=lambda *_: 0
  )
  assert g.sr_spec("bicubic")["groups"] == 2
  sr01, fid = g.sr("bicubic")
  assert sr01.shape == (3, 16, 16, 6) and np.isfinite(fid["psnr"])
  np.testing.assert_allclose(sr01, g.lr_up(), atol=1e-5)


def _spacenet_rule(w):
  if w.startswith("pan3_"):
    return "test"
  return "val" if w.startswith("pan2_") and _rc(w)[0] >= 7 else "train"


def _col_rule(test_from, val_from):
  return lambda w: (
      "test"
      if _rc(w)[1] >= test_from
      else ("val" if _rc(w)[1] >= val_from else "train")
  )


def _naip_rule(w):
  c = _rc(w)[1]
  if c < 9:
    return "train"
  assert "_20200831_" in w  # evaluated places: the 2020 date only
  return "test" if c >= 11 else "val"


@pytest.mark.parametrize(
    "name,bands,hw,rule,ref",
    [
        ("spacenet_pan_ms", (4, 1), (32, 64), _spacenet_rule, "bicubic_ls"),
        ("landsat8_pan_ms", (3, 1), (8, 16), _col_rule(3, 2), "bicubic_ls"),
        ("worldstrat", (3, 3), (32, 64), _col_rule(9, 7), "bicubic_ls"),
        ("spacenet_pan_x4", (1, 1), (16, 64), _spacenet_rule, "bicubic"),
        ("naip_x4", (4, 4), (16, 64), _naip_rule, "bicubic"),
    ],
)
def test_real_pair_loader(shared_data, name, bands, hw, rule, ref):
  """Shapes, [0, 1], data in every window, and the spatial train / val /
  test rule of each window (val carved out of the train area: disjoint
  from test and from train)."""
  d = sr_real_pairs.load_pair(name)
  assert d["scale"] == hw[1] // hw[0] and d["reference"] == ref
  for split in ("train", "val", "test"):
    lr, hr = d[split]["lr"], d[split]["hr"]
    n = len(hr)
    assert n >= 5
    assert lr.shape == (n, hw[0], hw[0], bands[0])
    assert hr.shape == (n, hw[1], hw[1], bands[1])
    assert lr.dtype == hr.dtype == np.float32
    assert 0.0 <= lr.min() and hr.max() <= 1.0
    assert len(d["windows"][split]) == n
    # Every window holds data (zero fill without a nodata tag is dropped).
    assert (hr.reshape(n, -1).max(1) > 0).all()
    assert all(rule(w) == split for w in d["windows"][split])
  ids = {s: set(d["windows"][s]) for s in ("train", "val", "test")}
  assert not ids["train"] & ids["val"]
  assert not (ids["train"] | ids["val"]) & ids["test"]


def test_synthetic_pairs_are_degraded_hr(shared_data):
  """spacenet_pan_x4: the LR is the HR blurred, area-downsampled 4x and
  noised (sensor.degrade), on the same [0, 1] scale: close to the HR's 4x4
  block means, not equal to them, and bicubic is its fair reference."""
  d = sr_real_pairs.load_pair("spacenet_pan_x4")
  p = d["percentile_999"]
  assert p["lr"] == p["hr"]
  assert d["degradation"]["source"] == "sensor.degrade"
  assert d["degradation"]["scale"] == 4
  hr, lr = d["val"]["hr"], d["val"]["lr"]
  blocks = hr.reshape(len(hr), 16, 4, 16, 4, 1).mean((2, 4))
  err = np.abs(lr - blocks)[:, 2:-2, 2:-2]  # inside: the PSF's edge aside
  assert 0.002 < err.mean() < 0.05
  assert abs(lr.mean() - hr.mean()) < 0.01


def test_fit_band_map_by_hand():
  rng = np.random.default_rng(0)
  lr_up = rng.uniform(size=(3, 8, 8, 2)).astype(np.float32)
  hr = 0.5 * lr_up[..., :1] - 0.25 * lr_up[..., 1:] + 0.1
  w = sr_real_pairs.fit_band_map(lr_up, hr)
  np.testing.assert_allclose(w[:, 0], [0.5, -0.25, 0.1], atol=1e-6)
  np.testing.assert_allclose(
      sr_real_pairs.apply_band_map(lr_up, w), hr, atol=1e-6
  )


def test_paired_intervals_by_hand():
  """+1 dB on every window: [1, 1] whatever the draws (paired); a model
  that is +1 on half the windows and -1 on the rest: an interval holding
  0, a tie; -2 dB everywhere: below."""
  rng = np.random.default_rng(0)
  base = {"psnr": rng.uniform(20, 30, 12), "ssim": rng.uniform(0.5, 0.9, 12)}
  sign = np.tile([1.0, -1.0], 6)
  win = {
      "bicubic_ls": base,
      "plus1": {"psnr": base["psnr"] + 1, "ssim": base["ssim"] + 0.01},
      "mixed": {"psnr": base["psnr"] + sign, "ssim": base["ssim"] + sign / 50},
      "minus2": {"psnr": base["psnr"] - 2, "ssim": base["ssim"]},
  }
  iv = sr_real_pairs.paired_intervals(win, draws=500, seed=1)
  p = iv["plus1"]
  assert p["d_psnr"] == pytest.approx(1.0)
  np.testing.assert_allclose(p["d_psnr_interval"], [1.0, 1.0], atol=1e-9)
  np.testing.assert_allclose(p["d_ssim_interval"], [0.01, 0.01], atol=1e-9)
  assert p["vs"] == p["ssim_vs"] == "above"
  m = iv["mixed"]
  assert m["d_psnr"] == pytest.approx(0.0, abs=1e-9)
  lo, hi = m["d_psnr_interval"]
  assert -1 < lo < 0 < hi < 1 and m["vs"] == m["ssim_vs"] == "tie"
  assert "no finding" in m["verdict"]
  assert iv["minus2"]["vs"] == "below" and iv["minus2"]["ssim_vs"] == "tie"
  assert iv["bicubic_ls"]["vs"] == "baseline"
  # Seeded: the same draws give the same interval.
  again = sr_real_pairs.paired_intervals(win, draws=500, seed=1)
  assert again["mixed"]["d_psnr_interval"] == m["d_psnr_interval"]


def test_default_models_are_every_family():
  """Every SR family sr_grid trains (configs/sr.py FAMILIES) is in the
  default list, beside the least-squares band map; the GAN's schedule
  starts from its L1 stage, listed before it."""
  models = sr_real_pairs.MODELS
  assert set(sr_config.FAMILIES) | {"bicubic_ls"} == set(models)
  assert len(set(models)) == len(models)
  assert models.index("gan_psnr") < models.index("gan")
  for sched in sr_real_pairs.SCHEDULE_SETS.values():  # known keys
    grid_settings.with_schedule(
        grid_settings.settings("tiny"), sched["schedules"]
    )
  for f in sr_real_pairs.LEARNED:
    assert sr_config.model_config(f, 2, 1, "small")["out_bands"] == 1
  with pytest.raises(ValueError, match="unknown SR models"):
    sr_real_pairs.run("/nonexistent", "tiny", pairs=(), models=("srcnn",))


def test_pair_grid_standardises_each_side(tmp_path):
  """The Grid normalises by the HR stats; the LR it gets comes out of that
  standardised by its own (4 MS bands -> 1 pan band)."""
  rng = np.random.default_rng(0)
  split = lambda n: {
      "lr": rng.uniform(0.5, 0.9, (n, 4, 4, 4)).astype(np.float32),
      "hr": rng.uniform(0.0, 0.3, (n, 8, 8, 1)).astype(np.float32),
  }
  d = {"name": "p", "scale": 2, "hr_bands": ["pan"]}
  d.update(train=split(5), test=split(3))
  g = sr_real_pairs.pair_grid(d, "tiny", str(tmp_path), log=lambda *_: 0)
  m, s = grid_data.band_stats(d["train"]["lr"])
  for k in ("train", "test"):
    np.testing.assert_allclose(
        g.norm(g.data["splits"][k]["lr"]),
        (d[k]["lr"] - m) / s,
        atol=1e-4,
    )
  np.testing.assert_array_equal(g.test["hr"], d["test"]["hr"])
  spec = g.sr_spec("gan")
  assert spec["model"]["out_bands"] == 1 and spec["steps"] == 10
  assert spec["init"] == g.sr_key("gan_psnr") and spec["lr"] == 2e-4


def test_fit_crops():
  """UC Merced 4x's crops on other windows: >= the window -> whole windows
  (0), else down to a multiple of the scale; the rest untouched."""
  sched = sr_real_pairs.SCHEDULE_SETS["ucm4x"]
  assert sched["crop"] == 64
  assert sched["schedules"]["implicit"]["crop"] == 48
  small = sr_real_pairs.fit_crops(sched, 16, 2)  # Landsat: 16 px windows
  assert small["crop"] == 0
  assert all(v.get("crop", 0) == 0 for v in small["schedules"].values())
  big = sr_real_pairs.fit_crops(sched, 64, 2)  # SpaceNet / WorldStrat
  assert big["crop"] == 0 and big["schedules"]["implicit"]["crop"] == 48
  assert big["schedules"]["diffusion"]["crop"] == 32
  odd = sr_real_pairs.fit_crops({"crop": 50, "schedules": {}}, 96, 4)
  assert odd["crop"] == 48
  assert big["schedules"]["edsr"] == dict(steps=2000, lr=4e-3)
  assert sched["schedules"]["implicit"]["crop"] == 48  # not mutated
  long = sr_real_pairs.SCHEDULE_SETS["long"]["schedules"]
  for f, v in sched["schedules"].items():  # twice the steps from scratch
    assert long[f]["steps"] == v["steps"] * (1 if "init" in v else 2)
    assert {**long[f], "steps": v["steps"]} == v


def _fake_pair(rng, px=16, scale=2, n=(6, 3, 4)):
  split = lambda k: {
      "lr": rng.uniform(0.2, 0.8, (k, px // scale, px // scale, 3)).astype(
          np.float32
      ),
      "hr": rng.uniform(0.0, 1.0, (k, px, px, 1)).astype(np.float32),
  }
  d = {"name": "p", "scale": scale, "hr_bands": ["pan"]}
  d.update(zip(("train", "val", "test"), map(split, n)))
  return d


def test_pair_grid_schedules(tmp_path):
  """--schedule ucm4x: UC Merced 4x's per-family steps, lr, model and
  inference fields, crops fitted to the windows, capped at 10 steps under
  "tiny"; --schedule_json merges over it; the val grid scores the val
  windows with the same model keys as the test grid (the test run reuses
  the models the val run trained)."""
  rng = np.random.default_rng(0)
  d = _fake_pair(rng, px=64)
  log = lambda *_: 0
  g = sr_real_pairs.pair_grid(
      d, "quick", str(tmp_path), log=log, schedule="ucm4x"
  )
  assert g.sr_spec("edsr")["steps"] == 2000
  assert g.sr_spec("edsr")["lr"] == 4e-3 and "crop" not in g.sr_spec("edsr")
  assert g.sr_spec("implicit")["crop"] == 48
  dif = g.sr_spec("diffusion")
  assert dif["crop"] == 32 and tuple(dif["model"]["widths"]) == (16, 32)
  assert g.inference("diffusion") == {"sample_steps": 2}
  assert g.sr_spec("gan")["init"] == g.sr_key("gan_psnr")
  short = sr_real_pairs.pair_grid(d, "quick", str(tmp_path), log=log)
  assert short.sr_spec("edsr")["steps"] == 300
  assert short.sr_spec("edsr")["lr"] == 1e-3
  assert short.sr_key("edsr") != g.sr_key("edsr")
  extra = {"edsr": {"steps": 7}, "diffusion": {"sample_steps": 1}}
  x = sr_real_pairs.pair_grid(
      d, "quick", str(tmp_path), log=log, schedule="ucm4x", extra=extra
  )
  assert x.sr_spec("edsr")["steps"] == 7 and x.sr_spec("edsr")["lr"] == 4e-3
  assert x.inference("diffusion") == {"sample_steps": 1}
  tiny = {
      sp: sr_real_pairs.pair_grid(
          d, "tiny", str(tmp_path), log=log, schedule="ucm4x", split=sp
      )
      for sp in ("val", "test")
  }
  assert {tiny["val"].sr_spec(f)["steps"] for f in sr_real_pairs.LEARNED} == {
      10
  }
  np.testing.assert_array_equal(tiny["val"].test["hr"], d["val"]["hr"])
  np.testing.assert_array_equal(tiny["test"].test["hr"], d["test"]["hr"])
  for f in sr_real_pairs.LEARNED:
    assert tiny["val"].sr_key(f) == tiny["test"].sr_key(f)
  with pytest.raises(ValueError, match="unknown schedule"):
    sr_real_pairs.pair_grid(d, "tiny", str(tmp_path), log=log, schedule="x")
  with pytest.raises(ValueError, match="unknown keys"):
    sr_real_pairs.pair_grid(
        d, "tiny", str(tmp_path), log=log, extra={"edsr": {"stepz": 1}}
    )


def test_results_schedule_names():
  name = sr_real_pairs.results_schedule
  assert name("tiny", "short", {}, "test", None) == "runlocal"
  assert name("quick", "ucm4x", {}, "val", None) == "quick_ucm4x_val"
  assert name("quick", "short", {"naip_x4": "ucm4x"}, "test", None) == (
      "quick_chosen"
  )
  assert name("quick", "short", {}, "val", {"edsr": {}}) == "quick_custom_val"
  with pytest.raises(ValueError, match="PAIR=SCHEDULE"):
    sr_real_pairs._pair_schedule("nowhere=ucm4x")
  assert sr_real_pairs._pair_schedule("naip_x4=ucm4x,worldstrat=short") == {
      "naip_x4": "ucm4x",
      "worldstrat": "short",
  }


def test_run_writes_json(shared_data, tmp_path):
  """The benchmark end to end on the smallest pair: the baselines and one
  learned family (10 steps), intervals and provenance in the JSON."""
  res = sr_real_pairs.run(
      str(tmp_path),
      "tiny",
      pairs=("landsat8_pan_ms",),
      models=("bicubic", "bicubic_ls", "edsr"),
      log=lambda *_: 0,
      draws=200,
  )
  assert res["file"] == "real_pairs_runlocal_s0-0.json"
  assert (tmp_path / res["file"]).exists()
  assert (tmp_path / "real_pairs_runlocal_s0-0.png").stat().st_size > 5000
  assert [r["sr"] for r in res["rows"]] == ["bicubic", "bicubic_ls", "edsr"]
  p = res["pairs"]["landsat8_pan_ms"]
  assert len(p["windows"]["test"]) == 10 and len(p["windows"]["train"]) == 10
  assert len(p["windows"]["val"]) == 5 and p["reference"] == "bicubic_ls"
  # B2-B4 averaged is not the pan's radiometry; the fitted band map is.
  m = p["models"]
  assert m["bicubic_ls"]["psnr"] > m["bicubic"]["psnr"] + 5
  rows = {r["sr"]: r for r in res["rows"]}
  for r in rows.values():
    assert len(r["psnr_windows"]) == len(r["ssim_windows"]) == 10
    assert r["psnr"] == pytest.approx(np.mean(r["psnr_windows"]), abs=1e-3)
    lo, hi = r["d_psnr_vs_ref_interval"]
    assert lo <= r["d_psnr_vs_ref"] <= hi
    assert r["d_psnr_vs_ref"] == pytest.approx(
        r["psnr"] - rows["bicubic_ls"]["psnr"], abs=1e-4
    )
  assert rows["bicubic"]["vs_ref"] == "below"
  assert rows["bicubic_ls"]["vs_ref"] == "baseline"
  assert m["edsr"]["steps"] == 10 and m["edsr"]["model"]["name"] == "sr_edsr"
  written = json.loads((tmp_path / res["file"]).read_text())
  assert set(written["provenance"]) >= {"commit", "date", "machine", "command"}
  assert written["rows"][2]["psnr_windows"] == rows["edsr"]["psnr_windows"]


def test_run_val_then_test_reuses_models(shared_data, tmp_path):
  """The val run (ucm4x, tiny) scores the 5 val windows and trains the
  model; the test run on the same cache scores the 10 test windows with
  that model (same key and training time: nothing retrained)."""
  cache = str(tmp_path / "cache")
  kw = dict(
      pairs=("landsat8_pan_ms",),
      models=("bicubic_ls", "edsr"),
      log=lambda *_: 0,
      draws=100,
      cache=cache,
  )
  val = sr_real_pairs.run(
      str(tmp_path), "tiny", schedule="ucm4x", split="val", **kw
  )
  assert val["file"] == "real_pairs_runlocal_ucm4x_val_s0-0.json"
  assert val["split"] == "val" and val["rows"][1]["n_eval"] == 5
  vm = val["pairs"]["landsat8_pan_ms"]["models"]["edsr"]
  assert vm["lr"] == 4e-3 and vm["steps"] == 10 and vm["crop"] == 0
  test = sr_real_pairs.run(
      str(tmp_path),
      "tiny",
      pair_schedule={"landsat8_pan_ms": "ucm4x"},
      **kw,
  )
  assert test["file"] == "real_pairs_runlocal_chosen_s0-0.json"
  assert test["rows"][1]["n_eval"] == 10
  assert test["rows"][1]["schedule"] == "ucm4x"
  tm = test["pairs"]["landsat8_pan_ms"]["models"]["edsr"]
  assert tm["train_seconds"] == vm["train_seconds"]
  assert tm["psnr"] != vm["psnr"]  # other windows
  with pytest.raises(ValueError, match="score val or test"):
    sr_real_pairs.run(str(tmp_path), "tiny", split="train", **kw)
