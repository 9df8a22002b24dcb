"""experiments/pretrain/transfer.py: band matching, target views, probes."""

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


def test_quick_source_config_is_the_old_quick_pretraining():
  """source_config(quick) is what pretrain_source(quick) built at 8b9d2da:
  pretrain.py:text with CPU-sized encoders, the then-default 32-wide
  sampler, a 64-d embedding, 800 steps; the full schedule is pretrain.py's
  default (the CPU-sized model since the main job moved to geoworld)."""
  from crossscale import run_config
  from experiments.configs import pretrain

  old = pretrain.get_config("text")
  old.data.path = "D"
  old.batch_size = 32
  old.model.lr_encoder.update(width=32, depth=1, num_heads=2, mlp_dim=64)
  old.model.hr_encoder.update(width=32, depth=2)
  old.model.embed_dim = 64
  old.model.sampler.width = 32
  old.total_steps = 800
  old.optim.warmup_steps = 80
  old.checkpoint.every = 800
  old.eval_every = 10**9
  old.log_every = 100
  old.evals = {"test": {"type": "classification", "split": "test"}}
  got = transfer.source_config("D", quick=True, steps=0)
  assert run_config.as_flat(got) == run_config.as_flat(old)
  old.model.lr_encoder = pretrain.get_config().model.lr_encoder
  old.model.hr_encoder = pretrain.get_config().model.hr_encoder
  old.model.sampler = pretrain.get_config().model.sampler
  old.model.embed_dim = 128
  old.total_steps = old.checkpoint.every = 300
  old.optim.warmup_steps = 30
  got = transfer.source_config("D", quick=False, steps=300)
  assert run_config.as_flat(got) == run_config.as_flat(old)
