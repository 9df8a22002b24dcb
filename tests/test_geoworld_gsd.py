"""geoworld re-rendered at another GSD by its generator (data.geoworld_gsd),
gsd_shift's "generator" rendering, and the union labels of multi-label
zoom-outs (gsd_render.rescale_scene)."""

import numpy as np
import pytest

from crossscale import gsd_render, shards
from data import geoworld as gw
from data import geoworld_gsd, registry
from experiments.cross_scale import gsd_shift


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  opts = {"num_train": 2, "num_val": 1, "num_test": 3}
  root = str(tmp_path_factory.mktemp("gw"))
  d = registry.resolve("geoworld", root=root, options=opts)
  m = shards.load_manifest(d)
  return d, m, list(shards.iter_scenes(d, "test", False))


def test_factor_one_is_the_stored_scene(world):
  _, m, stored = world
  for i, s in enumerate(stored):
    r = geoworld_gsd.rendered_scene(m.builder, "test", i, 1.0)
    assert r.id == s.id
    np.testing.assert_array_equal(r.hr, s.hr)
    np.testing.assert_array_equal(r.labels, s.labels)
    np.testing.assert_array_equal(r.masks["objects"], s.masks["objects"])
    assert (r.lr_gsd, r.hr_gsd) == (s.lr_gsd, s.hr_gsd)


def test_zoom_out_shows_the_scene_in_its_corner_and_labels_every_cell(world):
  _, m, stored = world
  s = stored[1]
  r = geoworld_gsd.rendered_scene(m.builder, "test", 1, 2.0)
  assert r.hr.shape == s.hr.shape and r.lr.shape == s.lr.shape
  assert (r.lr_gsd, r.hr_gsd) == (2 * s.lr_gsd, 2 * s.hr_gsd)
  # The stored scene fills the top-left quarter, 2x2 area-averaged.
  quarter = s.hr.astype(float).reshape(80, 2, 80, 2, 3).mean(axis=(1, 3))
  np.testing.assert_array_equal(r.hr[:80, :80], np.rint(quarter))
  # Its labels are among the view's; the other cells add classes, every
  # object class in view is labelled.
  assert (r.labels >= s.labels).all() and r.labels.sum() > s.labels.sum()
  shown = np.unique(r.masks["objects"][r.masks["objects"] > 0]) - 1
  assert r.labels[shown].all()


def test_zoom_in_draws_each_pixel_k_times_and_keeps_the_crops_classes(world):
  _, m, stored = world
  for i, s in enumerate(stored):
    r = geoworld_gsd.rendered_scene(m.builder, "test", i, 0.5)
    assert (r.lr_gsd, r.hr_gsd) == (s.lr_gsd / 2, s.hr_gsd / 2)
    np.testing.assert_array_equal(
        r.hr, np.kron(s.hr[40:120, 40:120], np.ones((2, 2, 1), np.uint8))
    )
    objects = r.masks["objects"]
    n_lc = len(gw.LANDCOVER)
    want = np.zeros(len(gw.CLASSES), bool)
    want[np.unique(objects[objects > 0]) - 1] = True
    np.testing.assert_array_equal(r.labels[n_lc:] > 0, want[n_lc:])
    assert (r.labels <= s.labels).all() and r.labels[:n_lc].any()


def test_bad_factor_and_other_data_get_clear_errors(world, toyworld_small):
  _, m, _ = world
  with pytest.raises(ValueError, match="integer GSD factors"):
    geoworld_gsd.rendered_scene(m.builder, "test", 0, 1.5)
  with pytest.raises(ValueError, match="needs a geoworld dataset"):
    gsd_shift.render_split(
        toyworld_small, "test", 2.0, "/nonexistent", neighbours="generator"
    )
  tw = shards.load_manifest(toyworld_small)
  assert gsd_shift.default_neighbours(tw) == "random"
  assert gsd_shift.default_neighbours(m) == "generator"


def test_render_split_generator_writes_the_rendered_scenes(world, tmp_path):
  d, m, stored = world
  out = gsd_shift.render_split(
      d, "test", 4.0, str(tmp_path), neighbours="generator"
  )
  got = list(shards.iter_scenes(out, "test", False))
  assert [g.id for g in got] == [s.id for s in stored]
  for i, g in enumerate(got):
    want = geoworld_gsd.rendered_scene(m.builder, "test", i, 4.0)
    np.testing.assert_array_equal(g.hr, want.hr)
    np.testing.assert_array_equal(g.lr, want.lr)
    np.testing.assert_array_equal(g.labels, want.labels)
  assert shards.load_manifest(out).band_stats == m.band_stats


def test_multiscale_training_set(world, tmp_path):
  """Every train scene at each factor (the generator's rendering, ids
  suffixed), val and test as stored, the source's normalisation; GSDs in
  metres stay so."""
  d, m, stored = world
  out = str(tmp_path / "ms")
  got = geoworld_gsd.write_multiscale(d, ["0.5", "1", "2"], out)
  assert {k: v["num_records"] for k, v in got.splits.items()} == {
      "train": 6,
      "val": 1,
      "test": 3,
  }
  train = list(shards.iter_scenes(out, "train", False))
  assert [t.id for t in train[:3]] == [
      f"{train[0].id[:-5]}_x{f}" for f in ("0.5", "1", "2")
  ]
  for t, f in zip(train, [0.5, 1.0, 2.0] * 2):
    i = int(t.id.split("_")[2])
    want = geoworld_gsd.rendered_scene(m.builder, "train", i, f)
    np.testing.assert_array_equal(t.hr, want.hr)
    np.testing.assert_array_equal(t.labels, want.labels)
    assert t.hr_gsd == m.hr_gsd * f
  test = list(shards.iter_scenes(out, "test", False))
  for a, b in zip(test, stored):
    np.testing.assert_array_equal(a.lr, b.lr)
  ms = shards.load_manifest(out)
  assert ms.band_stats == m.band_stats and ms.gsd_known == m.gsd_known
  with pytest.raises(ValueError, match="integer GSD factors"):
    geoworld_gsd.write_multiscale(d, ["1.5"], out)


def test_union_labels_of_a_multi_label_zoom_out():
  def scene(c):
    labels = np.zeros(9, np.uint8)
    labels[c] = 1
    return {
        "lr": np.full((4, 4, 1), c, np.float32),
        "hr": np.full((16, 16, 1), c, np.float32),
        "labels": labels,
    }

  cells = [scene(c) for c in range(9)]
  centre, nb = cells[4], cells[:4] + cells[5:]
  plain = gsd_render.rescale_scene(centre, 2.0, nb)
  np.testing.assert_array_equal(plain["labels"], centre["labels"])
  # At 2x the window holds half of each edge neighbour (they count) and a
  # quarter of each corner one (they do not); at 3x all of every cell.
  union = gsd_render.rescale_scene(centre, 2.0, nb, union_labels=True)
  np.testing.assert_array_equal(
      np.flatnonzero(union["labels"]), [1, 3, 4, 5, 7]
  )
  whole = gsd_render.rescale_scene(centre, 3.0, nb, union_labels=True)
  np.testing.assert_array_equal(whole["labels"], np.ones(9, np.uint8))
  # A zoom-in shows no other scene: its labels stay the scene's.
  zin = gsd_render.rescale_scene(centre, 0.5, union_labels=True)
  np.testing.assert_array_equal(zin["labels"], centre["labels"])


def test_chance_map_is_the_mean_prevalence_of_present_classes():
  labels = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0]])
  assert gsd_shift.chance_map(labels) == pytest.approx((2 / 4 + 1 / 4) / 2)


def test_the_augmentation_labels_multi_label_zoom_outs_with_every_class(
    world,
):
  """On multi-label data the training pipeline's zoom-outs (factor 3: the
  whole 3x3 mosaic in view) carry every class of the split's 2 scenes."""
  from crossscale import input_pipeline  # pylint: disable=g-import-not-at-top

  d, _, _ = world
  train = list(shards.iter_scenes(d, "train", False))
  assert len(train) == 2 and (train[0].labels != train[1].labels).any()
  ds = input_pipeline.train_dataset(
      d,
      batch_size=2,
      seed=0,
      fields=("lr", "hr", "labels"),
      augment=False,
      gsd_augment=(3.0, 3.0),
  )
  batch = next(iter(ds))
  both = np.maximum(train[0].labels, train[1].labels)
  # Each 3x3 mosaic draws 8 neighbours from the 2 scenes (seeded: this
  # draw holds both scenes in every view).
  for labels in batch["labels"]:
    np.testing.assert_array_equal(labels, both)
  assert not all((s.labels == both).all() for s in train)
