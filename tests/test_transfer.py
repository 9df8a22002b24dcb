"""experiments/pretrain/transfer.py pieces: band matching, target views, probes."""

import numpy as np
import pytest

from crossscale import records
from data import registry
from experiments.pretrain import transfer


def test_band_indices_by_name_and_sentinel2_alias():
  assert transfer.band_indices(
      ("B02", "B03", "B04", "B08"), ("R", "G", "B"), "x"
  ) == [2, 1, 0]
  assert transfer.band_indices(("R", "G", "B"), ("R", "G", "B"), "x") == [
      0,
      1,
      2,
  ]
  with pytest.raises(records.DataError, match=r"bigearthnet lr.*'R'"):
    transfer.band_indices(("B05", "B06"), ("R", "G", "B"), "bigearthnet lr")


def test_bigearthnet_target_as_rgb_lr_view(shared_data, tmp_path):
  """The real S2 patches: RGB from the 10 m bands (B04, B03, B02), resized
  to the source's LR size; labels are the 43-class multi-hot."""
  d = registry.resolve("bigearthnet", str(tmp_path))
  x, y = transfer.source_view(d, "train", [50, 50, 3], ["R", "G", "B"])
  assert x.shape == (4, 50, 50, 3) and y.shape == (4, 43)
  assert np.isfinite(x).all() and (y.sum(1) >= 1).all()
  with pytest.raises(records.DataError, match="no band for 'SWIR'"):
    transfer.source_view(d, "train", [50, 50, 1], ["SWIR"])


def test_linear_probe_protocols():
  rng = np.random.default_rng(0)
  y = np.eye(3)[rng.integers(0, 3, 160)]
  f = y @ rng.normal(size=(3, 8)) * 3 + rng.normal(size=(160, 8)) * 0.1
  feats = {"train": f[:120], "val": f[120:130], "test": f[130:]}
  labels = {"train": y[:120], "val": y[120:130], "test": y[130:]}
  res = transfer.linear_probe(feats, labels, multi=False)
  assert res == {"accuracy": 1.0, "protocol": "train->test"}
  small = {k: v[:10] for k, v in feats.items()}
  small_y = {k: v[:10] for k, v in labels.items()}
  res = transfer.linear_probe(small, small_y, multi=False)
  assert res["protocol"] == "5-fold CV over 30 records"
  assert res["accuracy"] > 0.9
  # Multi-label with a label constant in train: scored, no crash.
  ym = np.concatenate([y, np.zeros((160, 1))], 1)
  res = transfer.linear_probe(
      feats,
      {"train": ym[:120], "val": ym[120:130], "test": ym[130:]},
      multi=True,
  )
  assert res["mAP"] == pytest.approx(1.0)
