"""The SR-benchmark chip builder (data/sr_chips.py): records written and
read back, the registry names, and clear errors for a missing or corrupt
source."""

import os
import shutil

import numpy as np
import pytest

from crossscale import records, shards
from data import registry, sr_chips


def test_hag_records_written_and_resolved(shared_data, tmp_path):
  """The registry builds hag_chips once under the data root; the records
  hold [0, 1] HR chips, their 4x LR and the height target in metres."""
  root = str(tmp_path / "root")
  path = registry.resolve("hag_chips", root, {"seed": 0})
  assert os.path.dirname(path) == root
  assert os.path.basename(path).startswith("hag_chips-")
  assert registry.resolve("hag_chips", root, {"seed": 0}) == path  # cached
  assert registry.resolve("hag_chips", root, {"seed": 1}) != path
  m = shards.load_manifest(path)
  assert m.builder["source"] == "hag" and m.builder["chip"] == 32
  assert m.builder["tasks"] == {"regression": {"unit": "m"}}
  assert m.hr_shape == [32, 32, 1] and m.lr_shape == [8, 8, 1]
  assert m.mask_names == ["target"] and m.num_classes == 0
  n = sum(m.num_records(s) for s in m.splits)
  scenes = list(shards.iter_scenes(path, "train"))
  assert len(scenes) == m.num_records("train") and 0 < len(scenes) < n
  ids = [s.id for s in scenes]
  assert len(set(ids)) == len(ids)
  for s in scenes:
    assert s.hr.dtype == s.lr.dtype == np.float32
    assert 0.0 <= s.hr.min() and s.hr.max() <= 1.0
    assert 0.0 <= s.lr.min() and s.lr.max() <= 1.0
    assert s.masks["target"].dtype == np.float32  # metres, not classes
    assert s.hr_gsd * 4 == pytest.approx(s.lr_gsd)
  # The target is the height above ground: some chips hold buildings.
  assert max(float(s.masks["target"].max()) for s in scenes) > 2.0


def test_chips_are_non_overlapping_windows_of_the_image(shared_data, tmp_path):
  s = sr_chips.read_source("hag", shared_data)
  scenes = list(sr_chips.chip_scenes("hag", s, seed=0))
  img = s.images[0]
  for sc in scenes[:5]:
    r, c = (int(v[1:]) for v in sc.id.split("/")[1].split("_"))
    np.testing.assert_array_equal(sc.hr, img[r : r + 32, c : c + 32])
    np.testing.assert_array_equal(
        sc.masks["target"], s.targets[0][r : r + 32, c : c + 32]
    )
  H, W = img.shape[:2]
  assert len(scenes) == (H // 32) * (W // 32)


def test_registry_knows_every_chip_dataset():
  for source in sr_chips.SOURCES:
    assert f"{source}_chips" in registry._BUILDERS  # pylint: disable=protected-access


def test_missing_source_names_the_path_and_the_fix(tmp_path):
  empty = str(tmp_path / "shared")
  os.makedirs(empty)
  with pytest.raises(records.DataError) as e:
    sr_chips.build("hag", str(tmp_path / "out"), src=empty)
  msg = str(e.value)
  assert os.path.join(empty, "geotiff", "elevation", "dsm.tif") in msg
  assert "CROSSSCALE_SHARED_DATA" in msg
  assert not os.path.exists(tmp_path / "out" / shards.MANIFEST)


def test_corrupt_source_names_the_path_and_the_fix(shared_data, tmp_path):
  src = tmp_path / "shared"
  elev = src / "geotiff" / "elevation"
  shutil.copytree(os.path.join(shared_data, "geotiff", "elevation"), elev)
  os.chmod(elev, 0o755)
  bad = elev / "hag.tif"
  os.chmod(bad, 0o644)
  bad.write_bytes(b"not a tiff")
  with pytest.raises(records.DataError) as e:
    sr_chips.build("hag", str(tmp_path / "out"), src=str(src))
  msg = str(e.value)
  assert str(bad) in msg and "hag" in msg
  assert "copy it again" in msg and "CROSSSCALE_SHARED_DATA" in msg


def test_unknown_source():
  with pytest.raises(ValueError, match="known: spacenet_buildings"):
    sr_chips.read_source("nope", "/nonexistent")
