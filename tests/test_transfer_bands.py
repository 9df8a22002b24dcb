"""experiments/pretrain/transfer.py --wavelength: band transfer (issue 22)."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from crossscale import models, records
from experiments.pretrain import transfer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S2_ALL = ("B04", "B03", "B02", "B08", "B05", "B06", "B07", "B8A", "B11", "B12")


def _fake_dataset(monkeypatch, hr_bands, lr_bands, n=3):
  """band_views on a dataset in memory: HR 8x8, LR 4x4, pixel values
  encode (field, band) so the test can tell where each channel came from."""
  manifest = types.SimpleNamespace(
      lr_bands=list(lr_bands),
      hr_bands=list(hr_bands),
      lr_shape=[4, 4, len(lr_bands)],
      hr_shape=[8, 8, len(hr_bands)],
  )
  data = {
      "hr": np.broadcast_to(
          np.arange(len(hr_bands), dtype=np.float32), (n, 8, 8, len(hr_bands))
      ).copy(),
      "lr": np.broadcast_to(
          100 + np.arange(len(lr_bands), dtype=np.float32),
          (n, 4, 4, len(lr_bands)),
      ).copy(),
      "labels": np.eye(n, dtype=np.float32),
  }
  monkeypatch.setattr(transfer.shards, "load_manifest", lambda d: manifest)
  monkeypatch.setattr(transfer, "load_split", lambda d, s: data)


def test_all_bands_view_is_the_rgb_view_plus_every_other_band(monkeypatch):
  """S2-named HR (B02, B03, B04, B08) and LR (B05, B8A, B11): the RGB view
  is B04/B03/B02 from HR; all = it + B08 + the LR bands, each at the source
  LR size; a name in both fields is read once."""
  _fake_dataset(
      monkeypatch, ("B02", "B03", "B04", "B08"), ("B05", "B8A", "B11", "B02")
  )
  v = transfer.band_views("D", "test", [4, 4, 3], ["R", "G", "B"], True)
  assert v["rgb_bands"] == ("B04", "B03", "B02")
  assert v["all_bands"] == ("B04", "B03", "B02", "B08", "B05", "B8A", "B11")
  assert v["rgb"].shape == (3, 4, 4, 3) and v["all"].shape == (3, 4, 4, 7)
  np.testing.assert_array_equal(v["all"][..., :3], v["rgb"])
  # Channel values say where each came from: HR 2, 1, 0, 3; LR 100..102.
  np.testing.assert_allclose(
      v["all"][0, 0, 0], [2, 1, 0, 3, 100, 101, 102], atol=1e-5
  )
  assert "all" not in transfer.band_views(
      "D", "test", [4, 4, 3], ("R", "G", "B")
  )


def test_unknown_band_name_is_a_clear_error(monkeypatch):
  _fake_dataset(monkeypatch, ("R", "G", "B"), ("R", "G", "B", "SWIR9"))
  # The RGB view alone never reads the unknown band ...
  assert transfer.band_views("D", "test", [4, 4, 3], ("R", "G", "B"))[
      "rgb"
  ].size
  # ... reading all bands names it, the field and the table.
  with pytest.raises(
      records.DataError, match=r"D lr bands: unknown band 'SWIR9'.*bands.py"
  ):
    transfer.band_views("D", "test", [4, 4, 3], ("R", "G", "B"), all_bands=True)


def test_wavelength_source_config_and_target_bands():
  """source_config(wavelength_bands) makes the LR encoder read by
  wavelength (detected in a run's config, e.g. a --checkpoint's);
  with_bands changes only the LR encoder's band names (the parameters
  do not depend on them: tests/test_bands.py; end to end: the slow smoke)."""
  c = transfer.source_config("D", False, 0, True, ("R", "G", "B"))
  assert transfer.wavelength_encoder(c)
  assert c.model.lr_encoder.bands == ("R", "G", "B")
  plain = transfer.source_config("D", False, 0, True)
  assert not transfer.wavelength_encoder(plain)
  assert "band_embedding" not in plain.model.lr_encoder
  kw = {k: v for k, v in c.model.to_dict().items() if k != "name"}
  model = models.get_model(
      "xs_pretrain", **kw, grid=2, num_classes=2, class_names=("a", "b")
  )
  m = transfer.with_bands(model, list(S2_ALL))
  assert m.lr_encoder == {**model.lr_encoder, "bands": S2_ALL}
  assert model.lr_encoder["bands"] == ("R", "G", "B")  # unchanged
  assert (m.hr_encoder, m.sampler, m.text) == (
      model.hr_encoder,
      model.sampler,
      model.text,
  )


def test_all_minus_rgb_is_paired_and_says_tie_or_ahead():
  rng = np.random.default_rng(0)
  y = np.eye(4)[rng.integers(0, 4, 80)]
  noise = rng.normal(size=y.shape)
  same = transfer.all_minus_rgb((noise, y), (noise, y), multi=False)
  assert same["diff"] == 0 and same["verdict"] == "tie"
  better = transfer.all_minus_rgb((y + 0.1 * noise, y), (noise, y), False)
  assert better["diff"] > 0.5 and better["verdict"] == "ahead"
  assert better["scenes"] == 80
  # Multi-label: classes absent from the records are left out (as in the
  # table's mAP), so the difference is finite.
  ym = np.concatenate([y, np.zeros((80, 2))], 1)
  s = rng.normal(size=ym.shape)
  res = transfer.all_minus_rgb((ym + s, ym), (s, ym), multi=True)
  assert np.isfinite([res["diff"], res["low"], res["high"]]).all()
  assert res["diff"] > 0 and res["low"] <= res["diff"] <= res["high"]


@pytest.mark.slow
def test_runlocal_wavelength_smoke_on_the_real_bigearthnet(
    shared_data, tmp_path
):
  """`--runlocal --wavelength` (~1 min): toyworld RGB source, the 6 real
  BigEarthNet patches read as RGB and with all 10 bands."""
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.pretrain.transfer", "--runlocal"]
      + ["--wavelength", "--out", str(out)],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=600,
      check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out / "toyworld_runlocal_s0-0_wavelength.json") as f:
    res = json.load(f)
  assert res["band_embedding"] == "wavelength"
  ben = res["targets"]["bigearthnet"]
  assert ben["bands"] == {"rgb": list(S2_ALL[:3]), "all": list(S2_ALL)}
  for enc in ("pretrained", "random_init"):
    for key in ("rgb", "all"):
      assert 0 <= ben[enc][key]["linear_probe"]["mAP"] <= 1
    for e in ("zero_shot", "linear_probe"):
      d = ben[enc]["all_minus_rgb"][e]
      assert d["scenes"] == 6 and d["low"] <= d["high"]
  assert [(r["encoder"], r["bands"]) for r in res["table"]] == [
      ("pretrained", "rgb"),
      ("pretrained", "all"),
      ("random_init", "rgb"),
      ("random_init", "all"),
  ]
  assert len(res["all_minus_rgb"]) == 4 and "provenance" in res
