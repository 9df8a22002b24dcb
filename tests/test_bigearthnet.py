"""data.bigearthnet on the 6 real BigEarthNet-S2 example patches."""

import json
import os
import shutil

import numpy as np
import pytest
import rasterio

from crossscale import records, shards
from data import bigearthnet

S2 = "bigearthnet/BigEarthNet-S2-Example"
PATCH = "S2A_MSIL2A_20170613T101031_87_48"


@pytest.fixture()
def src(shared_data):
  path = os.path.join(shared_data, S2)
  if not os.path.isdir(path):
    pytest.skip(f"{path} not found")
  return path


def _json(src, patch):
  with open(os.path.join(src, patch, f"{patch}_labels_metadata.json")) as f:
    return json.load(f)


def _all_scenes(out):
  m = shards.load_manifest(str(out))
  return m, [
      s for split in m.splits for s in shards.iter_scenes(str(out), split)
  ]


def _copy_patch(src, dst_root, patch=PATCH):
  dst = dst_root / "src"
  shutil.copytree(os.path.join(src, patch), dst / patch)
  for f in os.listdir(dst / patch):
    os.chmod(dst / patch / f, 0o644)  # The shared copies are read-only.
  return dst


def test_build_all_patches(src, tmp_path):
  m = bigearthnet.build(src, tmp_path, seed=1)
  assert m.class_names == list(bigearthnet.LABELS_43)
  assert len(m.class_names) == 43 == len(set(m.class_names))
  assert m.hr_shape == [120, 120, 4] and m.lr_shape == [60, 60, 6]
  assert m.hr_bands == ["B02", "B03", "B04", "B08"]
  assert m.lr_bands == ["B05", "B06", "B07", "B8A", "B11", "B12"]
  assert (m.hr_gsd, m.lr_gsd, m.grid) == (10.0, 20.0, 4)
  assert m.dtypes == {"hr": "<u2", "lr": "<u2"}
  _, scenes = _all_scenes(tmp_path)
  patches = sorted(os.listdir(src))
  assert len(patches) == 6 and sorted(s.id for s in scenes) == patches
  for s in scenes:
    meta = _json(src, s.id)
    got = [m.class_names[i] for i in np.flatnonzero(s.labels)]
    assert sorted(got) == sorted(meta["labels"]) and s.labels.dtype == np.uint8
    assert s.hr_time == s.lr_time == meta["acquisition_date"].replace(" ", "T")
    # Pixels and georeference agree with the band files themselves.
    for i, band in enumerate(s.hr_bands):
      with rasterio.open(os.path.join(src, s.id, f"{s.id}_{band}.tif")) as ds:
        np.testing.assert_array_equal(s.hr[..., i], ds.read(1))
        assert s.crs == ds.crs.to_string()
        assert s.bounds == pytest.approx(tuple(ds.bounds))
    with rasterio.open(os.path.join(src, s.id, f"{s.id}_B12.tif")) as ds:
      np.testing.assert_array_equal(s.lr[..., 5], ds.read(1))


def test_nomenclature_19(src, tmp_path):
  groups = {
      "Non-irrigated arable land": "Arable land",
      "Pastures": "Pastures",
      "Complex cultivation patterns": "Complex cultivation patterns",
      bigearthnet.LABELS_43[20]: bigearthnet.LABELS_19[6],
      "Broad-leaved forest": "Broad-leaved forest",
      "Transitional woodland/shrub": "Transitional woodland, shrub",
      "Coniferous forest": "Coniferous forest",
      "Mixed forest": "Mixed forest",
      "Peatbogs": "Inland wetlands",
      "Water bodies": "Inland waters",
  }
  bigearthnet.main(
      ["--src", src, "--out", str(tmp_path), "--nomenclature", "19"]
  )
  m, scenes = _all_scenes(tmp_path)
  assert m.class_names == list(bigearthnet.LABELS_19) and m.num_classes == 19
  assert len(scenes) == 6
  for s in scenes:
    want = {groups[name] for name in _json(src, s.id)["labels"]}
    assert {m.class_names[i] for i in np.flatnonzero(s.labels)} == want
  # The grouping uses each 43-class label at most once; 11 have no group.
  used = [i for g in bigearthnet.GROUPS_19 for i in g]
  assert len(used) == len(set(used)) == 32


def test_missing_band(src, tmp_path):
  dst = _copy_patch(src, tmp_path)
  os.remove(dst / PATCH / f"{PATCH}_B8A.tif")
  with pytest.raises(
      records.DataError, match=r"patch .* band B8A is missing"
  ) as e:
    bigearthnet.build(str(dst), tmp_path / "out")
  assert PATCH in str(e.value) and "Re-extract" in str(e.value)
  assert not os.path.exists(tmp_path / "out" / shards.MANIFEST)


def test_band_of_wrong_size(src, tmp_path):
  dst = _copy_patch(src, tmp_path)
  patch = dst / PATCH
  shutil.copy(patch / f"{PATCH}_B02.tif", patch / f"{PATCH}_B05.tif")
  with pytest.raises(
      records.DataError,
      match=r"band B05 .* 120x120 px, expected 1 band of 60x60",
  ):
    bigearthnet.build(str(dst), tmp_path / "out")


def test_unknown_label(src, tmp_path):
  dst = _copy_patch(src, tmp_path)
  path = dst / PATCH / f"{PATCH}_labels_metadata.json"
  meta = json.loads(path.read_text())
  meta["labels"].append("Lunar regolith")
  path.write_text(json.dumps(meta))
  with pytest.raises(records.DataError, match="Lunar regolith") as e:
    bigearthnet.build(str(dst), tmp_path / "out")
  assert str(path) in str(e.value)


def test_sentinel1_folder_is_explained(shared_data, tmp_path):
  s1 = os.path.join(shared_data, "bigearthnet/BigEarthNet-S1-Example")
  if not os.path.isdir(s1):
    pytest.skip(f"{s1} not found")
  with pytest.raises(records.DataError, match="BigEarthNet-S1"):
    bigearthnet.build(s1, tmp_path)
