"""Scene records and shards: round trip, manifest, and every bad input."""

import json
import os

import numpy as np
import pytest

from crossscale import records, shards
from tests import helpers


def test_scene_round_trip_keeps_every_field():
  s = helpers.random_scene(
      3,
      "val",
      dtype=np.float32,
      text="a red roof",
      masks={"roads": np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)},
      crs="EPSG:32631",
      bounds=(1.0, 2.0, 3.0, 4.0),
      lr_time="2020-01-01T00:00:00",
      hr_time="2020-01-02T00:00:00",
  )
  back = records.decode(records.encode(s))
  for f in (
      "id",
      "lr_bands",
      "hr_bands",
      "lr_gsd",
      "hr_gsd",
      "grid",
      "split",
      "text",
      "crs",
      "bounds",
      "lr_time",
      "hr_time",
  ):
    assert getattr(back, f) == getattr(s, f), f
  for f in ("lr", "hr", "labels"):
    np.testing.assert_array_equal(getattr(back, f), getattr(s, f))
    assert getattr(back, f).dtype == getattr(s, f).dtype
  np.testing.assert_array_equal(back.masks["roads"], s.masks["roads"])
  assert back.scale == 4.0


def test_uint16_and_many_bands_round_trip():
  s = helpers.random_scene(
      0, hr=24, scale=3, grid=3, bands=12, dtype=np.float32
  )
  s = records.Scene(**{**s.__dict__, "hr": (s.hr * 60000).astype(np.uint16)})
  back = records.decode(records.encode(s))
  assert back.hr.dtype == np.uint16 and back.hr.shape == (24, 24, 12)
  np.testing.assert_array_equal(back.hr, s.hr)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(hr=np.full((32, 32, 3), np.nan, np.float32)), "non-finite"),
        (dict(lr_bands=("R", "G")), "band names"),
        (dict(grid=5), "not divisible by the tile grid"),
        (dict(lr=np.zeros((6, 8, 3), np.uint8)), "footprints differ"),
        (dict(masks={"m": np.zeros((31, 32), np.uint8)}), "HR grid"),
        (dict(lr=np.zeros((8, 8), np.uint8)), "height, width, bands"),
    ],
)
def test_validate_names_the_problem(change, message):
  s = helpers.random_scene(0)
  bad = records.Scene(**{**s.__dict__, **change})
  with pytest.raises(records.DataError, match=message) as e:
    records.validate(bad, "source.tif")
  assert "source.tif" in str(e.value) and "'s0'" in str(e.value)


def test_wrong_schema_version_is_refused():
  data = records.encode(helpers.random_scene(0))
  import msgpack

  d = msgpack.unpackb(data)
  d["schema_version"] = 99
  with pytest.raises(records.DataError, match="schema version 99.*Rebuild"):
    records.decode(msgpack.packb(d, use_bin_type=True), "x.array_record[0]")
  with pytest.raises(records.DataError, match="not a valid scene record"):
    records.decode(b"\xc1garbage", "x.array_record[0]")


def test_dataset_manifest_and_round_trip(tmp_path):
  m = helpers.tiny_dataset(tmp_path, n_train=10, n_val=4, shards=3)
  assert m.splits["train"]["num_records"] == 10
  assert len(m.splits["train"]["shards"]) == 3
  assert m.lr_shape == [8, 8, 3] and m.hr_shape == [32, 32, 3]
  assert m.class_names == ["c0", "c1", "c2"]
  # Band statistics are the train split's, computed independently here.
  train = list(shards.iter_scenes(str(tmp_path), "train"))
  hr = np.stack([s.hr for s in train]).reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(m.band_stats["hr"]["mean"], hr.mean(0), rtol=1e-9)
  np.testing.assert_allclose(m.band_stats["hr"]["std"], hr.std(0), rtol=1e-6)
  ids = sorted(s.id for s in train)
  assert ids == sorted(f"s{i}" for i in range(10))
  loaded = shards.load_manifest(str(tmp_path))
  assert loaded == m


def test_inconsistent_scenes_are_rejected(tmp_path):
  a = helpers.random_scene(0)
  b = helpers.random_scene(1, hr=64, scale=8)
  with pytest.raises(records.DataError, match="one size"):
    shards.write_dataset(str(tmp_path), "x", [a, b], ["c0", "c1", "c2"])
  with pytest.raises(records.DataError, match="2 classes"):
    shards.write_dataset(str(tmp_path), "x", [a], ["c0", "c1"])


def test_interrupted_build_leaves_no_valid_dataset(tmp_path):
  helpers.tiny_dataset(tmp_path)

  def crashing():
    yield helpers.random_scene(0)
    raise KeyboardInterrupt  # the builder dies mid-way

  with pytest.raises(KeyboardInterrupt):
    shards.write_dataset(str(tmp_path), "x", crashing(), ["c0", "c1", "c2"])
  # The old manifest is gone and no half shard looks valid.
  assert not any(f.endswith(".array_record") for f in os.listdir(tmp_path))
  with pytest.raises(records.DataError, match="not a finished"):
    shards.load_manifest(str(tmp_path))


def _first_shard(tmp_path):
  m = shards.load_manifest(str(tmp_path))
  return os.path.join(tmp_path, m.splits["train"]["shards"][0]["file"])


def test_truncated_shard_is_named(tmp_path):
  helpers.tiny_dataset(tmp_path)
  path = _first_shard(tmp_path)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  with pytest.raises(records.DataError, match="truncated") as e:
    list(shards.iter_scenes(str(tmp_path), "train"))
  assert path in str(e.value) and "Rebuild" in str(e.value)


def test_corrupt_shard_fails_its_checksum(tmp_path):
  helpers.tiny_dataset(tmp_path)
  path = _first_shard(tmp_path)
  with open(path, "r+b") as f:
    f.seek(200)
    byte = f.read(1)
    f.seek(200)
    f.write(bytes([byte[0] ^ 0xFF]))
  with pytest.raises(records.DataError, match="checksum") as e:
    list(shards.iter_scenes(str(tmp_path), "train"))
  assert path in str(e.value)


def test_manifest_schema_version_checked(tmp_path):
  helpers.tiny_dataset(tmp_path)
  p = os.path.join(tmp_path, shards.MANIFEST)
  d = json.load(open(p))
  d["schema_version"] = 0
  json.dump(d, open(p, "w"))
  with pytest.raises(records.DataError, match="schema version 0"):
    shards.load_manifest(str(tmp_path))


def test_missing_split_is_named(tmp_path):
  m = helpers.tiny_dataset(tmp_path)
  with pytest.raises(records.DataError, match="no split 'test'"):
    m.num_records("test")
