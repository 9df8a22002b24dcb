"""`--dataset ucmerced`: data/registry.py builds UC Merced with
data/image_folder.py (256 px, 0.3 m HR, LR 8x coarser, an 8x8 grid).

The builds use 4 copied images of each class (plus two that are not
256x256) in a temporary shared-data folder; one test reads the real
folder's listing and one image.
"""

import os
import shutil

import numpy as np
from PIL import Image
import pytest

from crossscale import records, shards
from data import common, image_folder, registry

UCM_CLASSES = [
    "agricultural",
    "airplane",
    "baseballdiamond",
    "beach",
    "buildings",
    "chaparral",
    "denseresidential",
    "forest",
    "freeway",
    "golfcourse",
    "harbor",
    "intersection",
    "mediumresidential",
    "mobilehomepark",
    "overpass",
    "parkinglot",
    "river",
    "runway",
    "sparseresidential",
    "storagetanks",
    "tenniscourt",
]
PER_CLASS = 4
# Not 256x256 in the real set: 247x247 and 242 wide x 256 high.
ODD = ("overpass/overpass64.jpg", "sparseresidential/sparseresidential45.jpg")


@pytest.fixture(scope="module")
def ucm_src(shared_data):
  path = os.path.join(shared_data, "ucmerced")
  if not os.path.isdir(path):
    pytest.skip(f"UC Merced not found at {path}")
  return path


@pytest.fixture(scope="module")
def fake_shared(ucm_src, tmp_path_factory):
  """A shared-data folder whose ucmerced/ holds a few copied images."""
  root = tmp_path_factory.mktemp("shared")
  for c in UCM_CLASSES:
    os.makedirs(root / "ucmerced" / c)
    for f in sorted(os.listdir(os.path.join(ucm_src, c)))[:PER_CLASS]:
      shutil.copy(os.path.join(ucm_src, c, f), root / "ucmerced" / c / f)
  for rel in ODD:  # Replace each class's last copy: still 4 a class.
    c = rel.split("/")[0]
    os.remove(
        root / "ucmerced" / c / sorted(os.listdir(root / "ucmerced" / c))[-1]
    )
    shutil.copy(os.path.join(ucm_src, rel), root / "ucmerced" / rel)
  return str(root)


@pytest.fixture(scope="module")
def built(fake_shared, tmp_path_factory):
  """Two registry builds of the copied images (same options)."""
  out = []
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(common, "SHARED_DATA", fake_shared)
    for key in ("a", "b"):
      root = str(tmp_path_factory.mktemp(f"ucm_{key}"))
      out.append(registry.resolve("ucmerced", root))
  return out


def _scenes(d):
  return {
      s: list(shards.iter_scenes(d, s)) for s in shards.load_manifest(d).splits
  }


def test_registry_resolves_ucmerced(built, fake_shared):
  d = built[0]
  assert os.path.basename(d).startswith("ucmerced-")
  m = shards.load_manifest(d)
  assert m.name == "ucmerced"
  assert m.builder["src"] == os.path.join(fake_shared, "ucmerced")
  assert (m.builder["hr_size"], m.builder["scale"], m.builder["grid"]) == (
      256,
      8,
      8,
  )
  # Same name and options: the built copy is reused, not rebuilt.
  assert registry.resolve("ucmerced", os.path.dirname(d)) == d


def test_records_shapes_gsd_symmetries(built):
  m = shards.load_manifest(built[0])
  assert m.hr_shape == [256, 256, 3] and m.lr_shape == [32, 32, 3]
  assert m.grid == 8 and m.hr_shape[0] // m.grid == 32  # 32 px HR tiles
  assert m.hr_gsd == pytest.approx(0.3) and m.lr_gsd == pytest.approx(2.4)
  assert m.hr_bands == ["R", "G", "B"] and m.dtypes["hr"] == "|u1"
  # Aerial scenes: flips and quarter turns keep the class (as RSSCN7).
  assert m.label_symmetries == ["flip", "rot90"]
  for ss in _scenes(built[0]).values():
    for s in ss:
      assert s.hr.shape == (256, 256, 3) and s.lr.shape == (32, 32, 3)
      assert s.grid == 8 and s.scale == pytest.approx(8.0)


def test_classes_are_sorted_folder_names(built, fake_shared):
  m = shards.load_manifest(built[0])
  listed = sorted(os.listdir(os.path.join(fake_shared, "ucmerced")))
  assert m.class_names == UCM_CLASSES == listed
  for ss in _scenes(built[0]).values():
    for s in ss:
      assert s.labels.sum() == 1
      assert s.id.split("/")[0] == UCM_CLASSES[int(np.argmax(s.labels))]


def test_resize_to_256(built, fake_shared):
  """256x256 images are kept as they are; the others are stretched to 256."""
  scenes = {s.id: s for ss in _scenes(built[0]).values() for s in ss}
  src = os.path.join(fake_shared, "ucmerced")
  for rel in ODD:
    path = os.path.join(src, rel)
    img, _ = image_folder.read_image(path)
    assert img.shape[:2] != (256, 256)
    hr = scenes[os.path.splitext(rel)[0]].hr
    np.testing.assert_array_equal(hr, image_folder.resize(img, 256))
    # Stretching keeps the image: its mean colour within 1 level.
    np.testing.assert_allclose(hr.mean((0, 1)), img.mean((0, 1)), atol=1.0)
  with Image.open(os.path.join(src, "airplane", "airplane00.jpg")) as im:
    np.testing.assert_array_equal(
        scenes["airplane/airplane00"].hr, np.asarray(im.convert("RGB"))
    )


def test_splits_disjoint_stratified_deterministic(built):
  a, b = _scenes(built[0]), _scenes(built[1])
  ids = {k: [s.id for s in v] for k, v in a.items()}
  every = [i for v in ids.values() for i in v]
  assert len(every) == len(set(every)) == len(UCM_CLASSES) * PER_CLASS
  # 4 a class at 70/15/15: round(0.6) = 1 val, 1 test, 2 train.
  assert {k: len(v) for k, v in ids.items()} == {
      "train": 42,
      "val": 21,
      "test": 21,
  }
  for ss in a.values():
    assert (np.stack([s.labels for s in ss]).sum(0) >= 1).all()
  assert ids == {k: [s.id for s in v] for k, v in b.items()}
  for k in a:
    assert [s.lr.tobytes() for s in a[k]] == [s.lr.tobytes() for s in b[k]]


def test_missing_folder_says_how_to_fix(tmp_path, monkeypatch):
  monkeypatch.setattr(common, "SHARED_DATA", str(tmp_path / "nowhere"))
  with pytest.raises(
      records.DataError, match="ucmerced not found at .*CROSSSCALE_SHARED_DATA"
  ):
    registry.resolve("ucmerced", str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")


def test_real_folder_listing_and_one_image(ucm_src):
  classes, items = image_folder.scan(ucm_src)
  assert classes == UCM_CLASSES
  assert len(items) == 21 * 80  # images 00-79 of each class
  path = os.path.join(ucm_src, ODD[1])
  assert (path, UCM_CLASSES.index("sparseresidential")) in items
  hr, bands = image_folder.load_hr(path, 256)
  assert hr.shape == (256, 256, 3) and hr.dtype == np.uint8
  assert bands == ("R", "G", "B")
