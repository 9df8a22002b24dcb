"""data.geoworld: the GL-10M-shaped procedural world (a handful of scenes)."""

import json
import os

import numpy as np
import pytest

from crossscale import records, shards
from data import geoworld as gw
from data import registry

CFG = gw.GeoworldConfig()
NOISE_DN = CFG.noise_std * 255


def _plans(n=6, seed=0):
  regions = gw.make_regions(CFG, seed)
  train = gw.split_regions(CFG, seed)["train"]
  for i in range(n):
    rng = np.random.default_rng([seed, 0, i])
    yield gw.plan_scene(CFG, rng, regions, train[i % len(train)])


def test_lr_band_response_by_hand():
  hr = np.zeros((160, 160, 3), np.uint8)
  hr[...] = (200, 100, 0)
  lr = gw.lr_view(CFG, hr, None)
  assert lr.shape == (20, 20, 3)
  # L1 = 0.6 R + 0.3 G + 0.1 B, etc.: a flat image stays flat under the PSF.
  np.testing.assert_allclose(lr[3, 7], [150.0, 100.0, 50.0], atol=1e-9)


def test_templates_zero_mean_and_distinct_up_to_orientation():
  tpl = gw.object_templates()
  assert len(tpl) == len(gw.OBJECTS) == 16 and len(gw.CLASSES) >= 20
  assert {t.shape[0] for t in tpl} == {3, 5, 8}  # several sizes
  for t in tpl:
    np.testing.assert_allclose(t.sum((0, 1)), 0.0, atol=1e-12)
  for a in range(len(tpl)):
    for b in range(a + 1, len(tpl)):
      if tpl[a].shape != tpl[b].shape:
        continue
      for k in range(4):
        r = np.rot90(tpl[a], k)
        for v in (r, r[:, ::-1]):
          assert not np.allclose(v, tpl[b]), (gw.OBJECTS[a], gw.OBJECTS[b])


def test_objects_invisible_at_lr_but_strong_at_hr():
  for plan in _plans():
    with_obj, mask = gw.render(CFG, plan)
    without = gw.render(CFG, plan, with_objects=False)[0]
    hr_diff = np.abs(with_obj.astype(int) - without).max(-1)
    assert hr_diff.max() >= 20  # a real texture at HR ...
    assert not (hr_diff[mask == 0]).any()  # only on the object map's pixels
    lr_diff = np.abs(
        gw.lr_view(CFG, with_obj, None) - gw.lr_view(CFG, without, None)
    )
    assert lr_diff.max() < NOISE_DN  # ... below the LR noise.
    # And decoys change LR far above it.
    if plan.decoys:
      no_dec = gw.render(CFG, plan, with_decoys=False)[0]
      d = np.abs(
          gw.lr_view(CFG, with_obj, None) - gw.lr_view(CFG, no_dec, None)
      )
      assert d.max() > 10 * NOISE_DN


def test_labels_object_map_and_tiles():
  n_labels = []
  for plan in _plans(8):
    hr, mask = gw.render(CFG, plan)
    labels = plan.labels
    n_labels.append(int(labels.sum()))
    nl = len(gw.LANDCOVER)
    assert set(np.flatnonzero(labels[nl:]) + nl) == set(np.unique(mask)[1:] - 1)
    frac = np.bincount(plan.landcover.ravel(), minlength=nl) / mask.size
    assert set(np.flatnonzero(labels[:nl])) == set(np.flatnonzero(frac))
    assert frac[frac > 0].min() >= CFG.min_cover
    # object_tiles against a loop over the 16-px tiles.
    tiles = gw.object_tiles(mask, CFG.grid)
    by_hand = [
        mask[r * 16 : r * 16 + 16, c * 16 : c * 16 + 16].any()
        for r in range(10)
        for c in range(10)
    ]
    np.testing.assert_array_equal(tiles, by_hand)
    assert 1 <= tiles.sum() <= CFG.max_object_tiles == 12
  assert min(n_labels) >= 2 and max(n_labels) <= 8


def test_properties_decoys_outshine_objects():
  p = gw.properties(CFG, n=6)
  assert p["object_lr_max_dn"] < p["lr_noise_dn"]
  d = p["lr_detail_median"]
  # Decoys far above object tiles, whose pads' edges are seen at LR.
  assert d["decoy"] > 3 * d["object"] and d["object"] > 3 * d["other"]
  assert 2 <= p["labels_per_scene"][0] <= p["labels_per_scene"][1] <= 8
  recall = p["object_tile_recall_at_1_8"]
  assert recall["random"] == 13 / 100 and 0 <= recall["heuristic"] <= 1


def test_regions_disjoint_deterministic_and_ids():
  by_split = gw.split_regions(CFG, 0)
  all_r = [r for s in by_split.values() for r in s]
  assert sorted(all_r) == list(range(CFG.num_regions))
  assert [len(by_split[s]) for s in ("train", "val", "test")] == [8, 2, 2]
  counts = {"train": 3, "val": 2, "test": 2}
  a = list(gw.generate(CFG, counts, seed=0))
  b = list(gw.generate(CFG, counts, seed=0))
  c = list(gw.generate(CFG, counts, seed=1))
  assert [records.encode(s) for s in a] == [records.encode(s) for s in b]
  assert records.encode(a[0]) != records.encode(c[0])
  for s in a:
    assert gw.region_of(s.id) in by_split[s.split]
    assert s.lr.shape == (20, 20, 3) and s.hr.shape == (160, 160, 3)
    assert s.lr_bands == gw.LR_BANDS and s.scale == 8
  with pytest.raises(ValueError, match="not a geoworld scene id"):
    gw.region_of("train_000001")


def test_registry_builds_and_keys_on_version(tmp_path, monkeypatch):
  opts = {"num_train": 3, "num_val": 1, "num_test": 1}
  out = registry.resolve("geoworld", root=str(tmp_path), options=opts)
  m = shards.load_manifest(out)
  assert m.class_names == list(gw.CLASSES)
  assert m.lr_shape == [20, 20, 3] and m.hr_shape == [160, 160, 3]
  assert m.task == "multi_label" and m.mask_names == ["objects"]
  assert {s: m.num_records(s) for s in m.splits} == {
      "train": 3,
      "val": 1,
      "test": 1,
  }
  with open(os.path.join(out, shards.MANIFEST)) as f:
    builder = json.load(f)["builder"]
  assert builder["version"] == gw.GEOWORLD_VERSION
  assert builder["regions"] == gw.split_regions(CFG, 0)
  monkeypatch.setattr(gw, "GEOWORLD_VERSION", gw.GEOWORLD_VERSION + 1)
  # A new version keys a new directory (its builder stubbed: no build).
  monkeypatch.setattr(registry, "_BUILDERS", {"geoworld": lambda o, p: None})
  assert registry.resolve("geoworld", str(tmp_path), opts) != out
  monkeypatch.undo()
  with pytest.raises(ValueError, match="unknown"):
    registry.resolve("geoworld", str(tmp_path), {"hr_sise": 64})
