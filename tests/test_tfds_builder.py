"""data.tfds_builder: records -> TFDS array_record, read back without TF."""

import dataclasses
import json
import os

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from crossscale import records, shards  # noqa: E402
from data import tfds_builder  # noqa: E402

CLASSES = ["c0", "c1", "c2"]


def _scene(rng, i, split, **kw):
  return records.Scene(
      id=f"scene_{i:02d}",
      lr=rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
      hr=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
      lr_bands=("R", "G", "B"),
      hr_bands=("R", "G", "B"),
      lr_gsd=4.0,
      hr_gsd=1.0,
      grid=4,
      labels=np.eye(3, dtype=np.uint8)[i % 3],
      split=split,
      **kw,
  )


@pytest.fixture(autouse=True)
def _quiet():
  tfds.disable_progress_bar()


@pytest.fixture
def tiny_records(tmp_path):
  rng = np.random.default_rng(0)
  scenes = [_scene(rng, i, "train" if i < 7 else "test") for i in range(10)]
  d = str(tmp_path / "records")
  shards.write_dataset(d, "tiny", scenes, CLASSES)
  return d


def _check_equal(records_dir, sources):
  m = shards.load_manifest(records_dir)
  assert set(sources) == set(m.splits)
  for split in m.splits:
    expected = list(shards.iter_scenes(records_dir, split))
    src = sources[split]
    assert len(src) == len(expected) == m.num_records(split)
    for i, s in enumerate(expected):
      ex = src[i]
      assert ex["id"].decode() == s.id
      for k in ("lr", "hr", "labels"):
        assert ex[k].dtype == getattr(s, k).dtype, k
        np.testing.assert_array_equal(ex[k], getattr(s, k), err_msg=k)
      for k, v in s.masks.items():
        assert ex[f"mask_{k}"].dtype == v.dtype
        np.testing.assert_array_equal(ex[f"mask_{k}"], v)
      assert ex["text"].decode() == (s.text or "")


def test_prepare_and_read_back(tiny_records, tmp_path):
  tdir = str(tmp_path / "tfds")
  builder = tfds_builder.prepare(tiny_records, tdir)
  assert builder.builder_config.name == "tiny"
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      "train": 7,
      "test": 3,
  }
  assert builder.info.metadata["class_names"] == CLASSES
  assert builder.info.metadata["grid"] == 4
  _check_equal(tiny_records, builder.as_data_source())
  # By name, from the prepared files alone.
  _check_equal(
      tiny_records, tfds.data_source("crossscale_scenes/tiny", data_dir=tdir)
  )


def test_other_dtypes_masks_text(tmp_path):
  rng = np.random.default_rng(1)
  scenes = []
  for i in range(4):
    s = _scene(
        rng,
        i,
        "train" if i < 3 else "val",
        text=f"caption {i}" if i % 2 else None,
        masks={
            "bld": rng.integers(0, 2, (32, 32)).astype(bool),
            "cls": rng.integers(-3, 3, (32, 32, 2), dtype=np.int16),
        },
    )
    scenes.append(
        dataclasses.replace(
            s,
            lr=rng.normal(size=(8, 8, 2)).astype(np.float32),
            hr=rng.integers(0, 60000, (32, 32, 4), dtype=np.uint16),
            lr_bands=("a", "b"),
            hr_bands=("a", "b", "c", "d"),
        )
    )
  rdir = str(tmp_path / "records")
  shards.write_dataset(rdir, "Odd-Name.v2", scenes, CLASSES)
  builder = tfds_builder.prepare(rdir, str(tmp_path / "tfds"))
  assert builder.builder_config.name == "odd_name_v2"
  _check_equal(rdir, builder.as_data_source())


def test_reuse_and_rebuild(tiny_records, tmp_path):
  tdir = str(tmp_path / "tfds")
  b = tfds_builder.prepare(tiny_records, tdir)
  info_path = os.path.join(b.data_dir, "dataset_info.json")
  mtime = os.stat(info_path).st_mtime_ns
  b = tfds_builder.prepare(tiny_records, tdir)
  assert os.stat(info_path).st_mtime_ns == mtime  # reused
  # Rebuilt records (new manifest) -> the TFDS copy is regenerated.
  rng = np.random.default_rng(5)
  shards.write_dataset(
      tiny_records, "tiny", [_scene(rng, i, "train") for i in range(4)], CLASSES
  )
  b = tfds_builder.prepare(tiny_records, tdir)
  with open(os.path.join(b.data_dir, "metadata.json")) as f:
    meta = json.load(f)
  assert meta["created"] == shards.load_manifest(tiny_records).created
  _check_equal(
      tiny_records, tfds.data_source("crossscale_scenes/tiny", data_dir=tdir)
  )


def test_needs_records_dir(tmp_path):
  with pytest.raises(records.DataError, match="manifest.json not found"):
    tfds_builder.CrossscaleScenes(
        records_dir=str(tmp_path), data_dir=str(tmp_path)
    )
  with pytest.raises(records.DataError, match="records directory"):
    tfds_builder.CrossscaleScenes(data_dir=str(tmp_path))


def test_cli(tiny_records, tmp_path, capsys):
  tfds_builder.main(
      ["--records", tiny_records, "--data_dir", str(tmp_path / "tfds")]
  )
  out = capsys.readouterr().out
  assert "crossscale_scenes/tiny" in out
  assert "train: 7 examples" in out and "test: 3 examples" in out
