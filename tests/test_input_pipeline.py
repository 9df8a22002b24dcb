"""Grain pipeline: determinism across restarts, host sharding, alignment."""

import numpy as np
import pytest

from crossscale import input_pipeline as ip
from crossscale import records, sensor
from tests import helpers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  d = tmp_path_factory.mktemp("tiny")
  helpers.tiny_dataset(d, n_train=24, n_val=10, classes=3)
  return str(d)


def _take(it, n):
  return [next(it) for _ in range(n)]


def _equal(a, b):
  return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_batches_have_fixed_shapes_and_normalised_values(tiny):
  it = iter(
      ip.train_dataset(
          tiny, batch_size=4, seed=0, fields=("lr", "hr", "labels")
      )
  )
  b = next(it)
  assert b["lr"].shape == (4, 8, 8, 3) and b["lr"].dtype == np.float32
  assert b["hr"].shape == (4, 32, 32, 3) and b["labels"].shape == (4, 3)
  assert abs(float(b["hr"].mean())) < 1.0


def test_order_is_seeded_and_reshuffled_each_epoch(tiny):
  def epoch_ids(seed, epochs=2):
    it = iter(
        ip.train_dataset(
            tiny, batch_size=24, seed=seed, fields=("lr",), augment=False
        )
    )
    return [next(it)["lr"][:, 0, 0, 0].tolist() for _ in range(epochs)]

  a, b = epoch_ids(0), epoch_ids(0)
  assert a == b
  assert a[0] != a[1] and sorted(a[0]) == sorted(a[1])  # new order, same set
  assert epoch_ids(1)[0] != a[0]


@pytest.mark.parametrize("worker_count", [0, 2])
def test_iterator_state_resumes_exactly_in_a_new_iterator(tiny, worker_count):
  def make():
    return iter(
        ip.train_dataset(
            tiny,
            batch_size=4,
            seed=3,
            fields=("lr", "hr", "labels"),
            worker_count=worker_count,
        )
    )

  it = make()
  _take(it, 5)  # crosses an epoch boundary (24 / 4 = 6 batches) soon
  state = it.get_state()
  expected = _take(it, 4)
  fresh = make()
  fresh.set_state(state)
  assert _equal(_take(fresh, 4), expected)


def test_hosts_read_disjoint_slices_that_cover_an_epoch(tiny):
  seen = []
  for p in range(3):
    it = iter(
        ip.train_dataset(
            tiny,
            batch_size=6,
            seed=0,
            fields=("lr",),
            augment=False,
            process_index=p,
            process_count=3,
        )
    )
    seen += [tuple(x.ravel()[:8]) for b in _take(it, 4) for x in b["lr"]]
  assert len(seen) == 24 and len(set(seen)) == 24
  with pytest.raises(ValueError, match="multiple of the host count"):
    ip.train_dataset(tiny, batch_size=4, seed=0, process_count=3)


def test_flips_and_rotations_keep_lr_hr_and_masks_aligned():
  rng = np.random.default_rng(0)
  hr = rng.uniform(size=(16, 16, 2)).astype(np.float32)
  x = {
      "hr": hr,
      "lr": sensor.area_downsample(hr, 4).astype(np.float32),
      "mask_m": (hr[..., 0] > 0.5).astype(np.uint8),
  }
  aug = ip.FlipRotate()
  changed = 0
  for s in range(16):
    y = aug.random_map(x, np.random.default_rng(s))
    np.testing.assert_allclose(
        y["lr"], sensor.area_downsample(y["hr"], 4), rtol=1e-6
    )
    np.testing.assert_array_equal(y["mask_m"], y["hr"][..., 0] > 0.5)
    changed += not np.array_equal(y["hr"], hr)
  assert changed >= 8


def test_flip_rotate_applies_only_the_transforms_it_is_given():
  x = {"hr": np.arange(16.0).reshape(4, 4, 1)}
  seen = {name: set() for name in ("flip", "rot", "none")}
  for s in range(32):
    rng = np.random.default_rng(s)
    seen["flip"].add(
        ip.FlipRotate(rot90=False).random_map(x, rng)["hr"].tobytes()
    )
    seen["rot"].add(
        ip.FlipRotate(flips=False)
        .random_map(x, np.random.default_rng(s))["hr"]
        .tobytes()
    )
    seen["none"].add(
        ip.FlipRotate(False, False)
        .random_map(x, np.random.default_rng(s))["hr"]
        .tobytes()
    )
  hr = x["hr"]
  assert seen["flip"] == {
      a.tobytes() for a in (hr, hr[::-1], hr[:, ::-1], hr[::-1, ::-1])
  }
  assert seen["rot"] == {np.rot90(hr, k).tobytes() for k in range(4)}
  assert seen["none"] == {hr.tobytes()}


def test_labelled_batches_augment_only_with_label_symmetries(
    toyworld_small, tiny
):
  from crossscale import shards
  from data import toyworld

  toy = shards.load_manifest(toyworld_small)
  assert toy.label_symmetries == [] == list(toyworld.LABEL_SYMMETRIES)
  assert ip.augmentations(toy, ("lr", "hr", "labels")) == ()
  assert ip.augmentations(toy, ("hr", "mask_objects")) == ()
  assert ip.augmentations(toy, ("lr", "hr")) == ("flip", "rot90")
  assert ip.augmentations(shards.load_manifest(tiny), ("lr", "labels")) == (
      "flip",
      "rot90",
  )

  def batches(fields, augment):
    return _take(
        iter(
            ip.train_dataset(
                toyworld_small,
                batch_size=8,
                seed=3,
                fields=fields,
                augment=augment,
            )
        ),
        3,
    )

  labelled = ("lr", "hr", "labels")
  assert _equal(batches(labelled, True), batches(labelled, False))
  assert not _equal(batches(("lr", "hr"), True), batches(("lr", "hr"), False))


def test_toyworld_classes_are_not_flip_or_rot90_symmetric():
  """Why toyworld declares no label symmetries: rot90 maps hstripes onto
  vstripes (up to phase) and a flip maps diagonal onto antidiagonal."""
  from data import toyworld

  shapes = toyworld.SHAPES

  def same_texture(a, b):  # equal up to a shift (every period divides 4)
    big = np.tile(b[:4, :4], (3, 3))
    return any(
        np.array_equal(a, big[i : i + 6, j : j + 6])
        for i in range(4)
        for j in range(4)
    )

  assert same_texture(np.rot90(shapes["hstripes"]), shapes["vstripes"])
  assert same_texture(shapes["diagonal"][:, ::-1], shapes["antidiagonal"])
  assert not same_texture(shapes["diagonal"], shapes["antidiagonal"])
  assert not same_texture(shapes["hstripes"], shapes["vstripes"])


def test_eval_pads_the_last_batch_and_marks_it(tiny):
  batches = list(
      ip.eval_dataset(tiny, "val", batch_size=4, fields=("lr", "labels"))
  )
  assert len(batches) == 3
  assert [int(b["valid"].sum()) for b in batches] == [4, 4, 2]
  assert all(b["lr"].shape == (4, 8, 8, 3) for b in batches)
  # Uneven hosts run the same number of batches.
  counts = [
      len(
          list(
              ip.eval_dataset(
                  tiny,
                  "val",
                  batch_size=3,
                  fields=("lr",),
                  process_index=p,
                  process_count=3,
              )
          )
      )
      for p in range(3)
  ]
  assert counts == [4, 4, 4]  # ceil(10 / 3) records, local batch 1
  total = sum(
      int(b["valid"].sum())
      for p in range(3)
      for b in ip.eval_dataset(
          tiny,
          "val",
          batch_size=3,
          fields=("lr",),
          process_index=p,
          process_count=3,
      )
  )
  assert total == 10


def test_missing_field_and_corrupt_record_are_named(tiny, tmp_path):
  with pytest.raises(records.DataError, match="no \\['mask_roads'\\]"):
    next(
        iter(
            ip.train_dataset(
                tiny, batch_size=4, seed=0, fields=("lr", "mask_roads")
            )
        )
    )
  # A record whose bytes are garbage but whose shard checksum matches (e.g.
  # written by a buggy tool): the error names the shard and record.
  from array_record.python import array_record_module as arm

  from crossscale import shards

  m = helpers.tiny_dataset(tmp_path, n_train=4, n_val=2, shards=1)
  path = str(tmp_path / m.splits["train"]["shards"][0]["file"])
  w = arm.ArrayRecordWriter(path, "group_size:1")
  for _ in range(4):
    w.write(b"\x93not a scene")
  w.close()
  with pytest.raises(records.DataError, match=r"array_record\[record \d+\]"):
    next(
        iter(
            ip.train_dataset(
                str(tmp_path),
                batch_size=2,
                seed=0,
                verify=False,
                fields=("lr",),
            )
        )
    )
  del shards
