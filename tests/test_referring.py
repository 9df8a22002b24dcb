"""data.referring: instances, templated expressions, builds from real masks."""

import collections
import dataclasses
import os

import numpy as np
import pytest
from skimage import measure

from crossscale import records, shards
from data import referring as ref
from data.referring import sources


def _box(shape, r0, r1, c0, c1):
  m = np.zeros(shape, bool)
  m[r0:r1, c0:c1] = True
  return m


def test_instances_match_skimage_components():
  rng = np.random.default_rng(0)
  cm = (rng.uniform(size=(40, 40)) < 0.3).astype(np.uint8)
  cm[rng.uniform(size=(40, 40)) < 0.1] = 2
  insts, small = ref.instances_from_class_mask(cm, {1: "a", 2: "b"}, min_area=3)
  want_small = 0
  for v, name in ((1, "a"), (2, "b")):
    lab = measure.label(cm == v, connectivity=2)
    areas = sorted(int((lab == k).sum()) for k in range(1, lab.max() + 1))
    got = sorted(i.area for i in insts if i.cls == name)
    assert got == [a for a in areas if a >= 3]
    want_small += sum(a < 3 for a in areas)
  assert small == want_small


def test_merge_gap_joins_stripes():
  cm = np.zeros((10, 10), np.uint8)
  cm[1:7:2, 1:7] = 1  # three stripes
  assert len(ref.instances_from_class_mask(cm, {1: "x"})[0]) == 3
  insts, _ = ref.instances_from_class_mask(cm, {1: "x"}, merge_gap=1)
  assert len(insts) == 1 and insts[0].area == 18  # pixels not grown


def test_attributes_hand_worked():
  assert ref.position_word((5, 5), (90, 90)) == "top left"
  assert ref.position_word((45, 45), (90, 90)) == "center"
  assert ref.position_word((45, 80), (90, 90)) == "right"
  assert ref.position_word((89, 45), (90, 90)) == "bottom"
  assert ref.relation((10, 10), (10, 50)) == "left of"
  assert ref.relation((80, 12), (10, 10)) == "below"
  a = ref.Instance("b", _box((30, 30), 0, 10, 0, 10))  # area 100
  b = ref.Instance("b", _box((30, 30), 20, 24, 20, 24))  # 16
  c = ref.Instance("b", _box((30, 30), 0, 5, 20, 26))  # 30
  # median 30: 100 >= 60 large; 16 <= 15? no -> None; 30 -> None
  assert ref.size_words([a, b, c]) == ["large", None, None]
  assert ref.size_words([a]) == [None]


def _layout():
  """60x60: a large building at the top, a small one at the bottom, a road
  across the middle (centroid (29.5, 29.5))."""
  s = (60, 60)
  return [
      ref.Instance("building", _box(s, 2, 16, 22, 36)),  # 196 px,
      #                                   centre (8.5, 28.5): above road
      ref.Instance("building", _box(s, 50, 55, 28, 33)),  # 25 px,
      #                                   centre (52, 30): below road
      ref.Instance("road", _box(s, 28, 32, 0, 60)),
  ]


def test_expressions_hand_worked_layout():
  insts = _layout()
  exprs, stats = ref.referring_expressions(insts, (60, 60))
  texts = collections.defaultdict(set)
  for text, i in exprs:
    texts[i].add(text)
  assert "the road" in texts[2]
  assert "the building at the top of the image" in texts[0]
  assert "the building at the bottom of the image" in texts[1]
  assert "the largest building" in texts[0]
  assert "the smallest building" in texts[1]
  assert "the building above the road" in texts[0]
  assert "the building below the road" in texts[1]
  assert "the building" not in texts[0] | texts[1]  # ambiguous: not made
  assert stats["kept"] == len(exprs)
  # Every expression is unique in its image: no text names two targets.
  assert len({t for t, _ in exprs}) == len(exprs)


def test_ambiguous_twins_get_qualified_or_dropped():
  s = (60, 60)
  twins = [
      ref.Instance("car", _box(s, 2, 6, 2, 6)),
      ref.Instance("car", _box(s, 2, 6, 10, 14)),
  ]  # same size, same cell
  exprs, stats = ref.referring_expressions(twins, s)
  texts = {t: i for t, i in exprs}
  # Both lie in the top-left cell: "in the top left corner" alone is
  # ambiguous, a superlative makes it unique.
  assert texts["the leftmost car in the top left corner of the image"] == 0
  assert texts["the rightmost car in the top left corner of the image"] == 1
  assert stats["qualified"] >= 2
  # Identical twins (same centre row, same area): topmost/largest tie.
  same = [
      ref.Instance("car", _box(s, 2, 6, 2, 6)),
      ref.Instance("car", _box(s, 2, 6, 2, 6)),
  ]
  exprs, stats = ref.referring_expressions(same, s)
  assert exprs == [] and stats["dropped_ambiguous"] > 0


def test_toyworld_referring_build(tmp_path):
  m = ref.build(
      "toyworld", str(tmp_path), counts={"train": 6, "val": 2, "test": 2}
  )
  st = m.builder["stats"]
  assert st["kept"] == sum(m.num_records(s) for s in m.splits) > 0
  assert m.mask_names == ["target"]
  for split in m.splits:
    by_image = collections.defaultdict(list)
    for s in shards.iter_scenes(str(tmp_path), split):
      assert s.masks["target"].any()
      assert s.text.startswith("the ")
      assert s.labels.sum() == 1
      by_image[s.id.rsplit("/", 1)[0]].append(s.text)
    for texts in by_image.values():
      assert len(set(texts)) == len(texts)


def _check_real(out, m, src_split=None):
  n = 0
  for split in m.splits:
    for s in shards.iter_scenes(out, split):
      records.validate(s)
      assert s.masks["target"].any() and s.text
      n += 1
  assert n == m.builder["stats"]["kept"] > 0
  return n


@pytest.mark.parametrize(
    "source,chip",
    [
        ("levircd", 256),
        ("spacenet_buildings", 256),
        ("spacenet_roads", 256),
        ("elevation", 128),
    ],
)
def test_real_sources(shared_data, tmp_path, source, chip):
  opt = ref.Options(chip=chip)
  m = ref.build(source, str(tmp_path), opt, src=shared_data)
  n = _check_real(str(tmp_path), m)
  print(f"{source}: {n} expressions, stats {m.builder['stats']}")
  if source == "levircd":  # the release's own split from the file names
    assert set(m.splits) <= {"train", "val", "test"}
    test_ids = {
        s.id.split("/")[0] for s in shards.iter_scenes(str(tmp_path), "test")
    }
    assert all(i.startswith("test_") for i in test_ids)


def test_seeded_chip_splits_are_reproducible(shared_data, tmp_path):
  a = ref.build("spacenet_buildings", str(tmp_path / "a"), src=shared_data)
  b = ref.build("spacenet_buildings", str(tmp_path / "b"), src=shared_data)
  ids = lambda d, m: {
      s: [x.id for x in shards.iter_scenes(d, s)] for s in m.splits
  }
  assert ids(str(tmp_path / "a"), a) == ids(str(tmp_path / "b"), b)
  # No chip lands in two splits.
  chip_split = {}
  for s, lst in ids(str(tmp_path / "a"), a).items():
    for i in lst:
      assert chip_split.setdefault(i.rsplit("/", 1)[0], s) == s


def test_missing_source_error_names_path(tmp_path):
  with pytest.raises(records.DataError, match="sample_geotiff.tif not found"):
    ref.build("spacenet_buildings", str(tmp_path / "o"), src=str(tmp_path))


def test_chip_bounds_match_rasterio_windows(shared_data, tmp_path):
  import rasterio
  from rasterio import windows

  m = ref.build("spacenet_buildings", str(tmp_path), src=shared_data)
  path = os.path.join(shared_data, "spacenet", "sample_geotiff.tif")
  with rasterio.open(path) as src:
    full = src.read(1)
    for s in shards.iter_scenes(str(tmp_path), "train"):
      r, c = _window(s.id)
      want = windows.bounds(windows.Window(c, r, 256, 256), src.transform)
      np.testing.assert_allclose(s.bounds, want)
      np.testing.assert_array_equal(
          s.hr[..., 0], full[r : r + 256, c : c + 256]
      )
  assert m.builder["stats"]["images"] == 9  # 900 px -> 3 x 3 chips


def _window(scene_id: str) -> tuple[int, int]:
  r, c = (int(x[1:]) for x in scene_id.split("/")[1].split("_"))
  return r, c


def test_shifted_train_chips_stay_inside_train_chips(shared_data, tmp_path):
  """--train_stride adds overlapping train windows made only of train
  chips: val/test are the same as without it and share no pixel with any
  training window; the windows hold the raster's own pixels."""
  import rasterio

  base = ref.Options(chip=64, max_per_image=8)
  m0 = ref.build(
      "spacenet_buildings", str(tmp_path / "a"), base, src=shared_data
  )
  m1 = ref.build(
      "spacenet_buildings",
      str(tmp_path / "b"),
      dataclasses.replace(base, train_stride=16),
      src=shared_data,
  )
  ids = lambda d, s: [x.id for x in shards.iter_scenes(str(tmp_path / d), s)]
  for split in ("val", "test"):
    assert ids("a", split) == ids("b", split)
  assert (
      m1.splits["train"]["num_records"] > 3 * m0.splits["train"]["num_records"]
  )
  assert m1.builder["stats"]["shifted_train_chips"] > 0
  held = {_window(i) for s in ("val", "test") for i in ids("b", s)}
  with rasterio.open(
      os.path.join(shared_data, "spacenet", "sample_geotiff.tif")
  ) as src:
    full = src.read(1)
  shifted = 0
  for s in shards.iter_scenes(str(tmp_path / "b"), "train"):
    r, c = _window(s.id)
    shifted += r % 64 > 0 or c % 64 > 0
    for hr, hc in held:  # no overlap with any val/test chip
      assert r + 64 <= hr or hr + 64 <= r or c + 64 <= hc or hc + 64 <= c
    np.testing.assert_array_equal(s.hr[..., 0], full[r : r + 64, c : c + 64])
  assert shifted > 0


def test_train_stride_must_divide_chip():
  item = ref.LabelledImage(
      id="x",
      image=np.zeros((8, 8, 1)),
      bands=("PAN",),
      gsd=1.0,
      labels=np.zeros((8, 8), np.uint8),
      kind="class",
      names={1: "building"},
  )
  with pytest.raises(ValueError, match="divisor of --chip 4"):
    list(ref.shifted_train_chips(item, 4, 3, lambda r, c: True))


def _edge_energy_by_shift(
    image: np.ndarray, mask: np.ndarray, s: int
) -> np.ndarray:
  """`[2s+1, 2s+1]`: mean image gradient magnitude along the mask's boundary
  moved by (dy, dx) in [-s, s]^2."""
  from scipy import ndimage as ndi

  sm = ndi.gaussian_filter(image.astype(np.float64), 1.0)
  grad = np.hypot(ndi.sobel(sm, 0), ndi.sobel(sm, 1))
  ys, xs = np.nonzero(mask & ~ndi.binary_erosion(mask))
  H, W = mask.shape
  out = np.zeros((2 * s + 1, 2 * s + 1))
  for dy in range(-s, s + 1):
    for dx in range(-s, s + 1):
      y, x = ys + dy, xs + dx
      k = (y >= 0) & (y < H) & (x >= 0) & (x < W)
      out[dy + s, dx + s] = grad[y[k], x[k]].mean()
  return out


def test_spacenet_building_footprints_lie_on_roof_edges(shared_data):
  """The footprints are the image's own: the image's edges peak on their
  outlines (within 2 px of no shift), far above the median shift."""
  item = ref.source_spacenet_buildings(shared_data)[0]
  assert item.kind == "instance" and item.labels.max() == 43
  e = _edge_energy_by_shift(item.image[..., 0], item.labels > 0, 12)
  peak = np.unravel_index(e.argmax(), e.shape)
  assert max(abs(peak[0] - 12), abs(peak[1] - 12)) <= 2
  assert e[12, 12] > 1.15 * np.median(e)


def test_mask_without_the_image_georeference_is_rejected(shared_data):
  """sample_fp_mask.tif has no georeference (and is another scene's): it
  cannot be paired with the georeferenced image."""
  with pytest.raises(records.DataError, match="rasterise the vector labels"):
    sources._spacenet(
        shared_data,
        "sample_geotiff.tif",
        "sample_fp_mask.tif",  # pylint: disable=protected-access
        "building",
        "PAN",
    )
  # The roads raster mask shares its image's grid and is accepted.
  assert ref.source_spacenet_roads(shared_data)[0].labels.any()
