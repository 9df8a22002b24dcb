"""data.referring.releases: RefSegRS and RRSIS-D layouts on tiny copies."""

import collections
import json
import os
import pickle

import numpy as np
from PIL import Image
import pytest

from crossscale import records, shards
from data.referring import releases


def _rgb(h, w, seed):
  return np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)


@pytest.fixture
def refsegrs(tmp_path):
  """4 images (image "1" is 33x32 vs a 32x32 mask), 6 expressions."""
  root = tmp_path / "RefSegRS"
  (root / "images").mkdir(parents=True)
  (root / "masks").mkdir()
  for i, key in enumerate(["0", "1", "2", "3"]):
    Image.fromarray(_rgb(33 if key == "1" else 32, 32, i)).save(
        root / "images" / f"{key}.tif"
    )
    m = np.zeros((32, 32), np.uint8)
    m[4 + i : 12 + i, 4:12] = 255
    m[0, 0] = 40  # below the loader's threshold 50
    Image.fromarray(m).save(root / "masks" / f"{key}.tif")
  (root / "output_phrase_train.txt").write_text(
      "0 the red roof on the left\n0 the house near the road\n\n"
      "1 a storage tank\n"
  )
  (root / "output_phrase_val.txt").write_text("2 the river\n")
  (root / "output_phrase_test.txt").write_text(
      "3 the bridge over the river\n3 vehicles on the bridge\n"
  )
  return str(root)


def _by_split(d, m):
  return {s: list(shards.iter_scenes(d, s)) for s in m.splits}


def test_refsegrs_keeps_every_expression_and_fixes_size(refsegrs, tmp_path):
  out = str(tmp_path / "out")
  m = releases.build("refsegrs", refsegrs, out)
  got = _by_split(out, m)
  assert {s: len(v) for s, v in got.items()} == {
      "train": 3,
      "val": 1,
      "test": 2,
  }
  st = m.builder["stats"]
  assert st["expressions"] == 6 and st["images"] == 4
  assert st["expressions_per_image"] == {"min": 1, "max": 2, "mean": 1.5}
  assert st["images_size_fixed"] == 1 and st["fixed_files"] == ["1.tif"]
  texts = collections.Counter(
      s.id.split("/")[0] for v in got.values() for s in v
  )
  assert texts == {"0": 2, "1": 1, "2": 1, "3": 2}
  s0 = got["train"][0]
  assert s0.text == "the red roof on the left"
  want = np.zeros((32, 32), np.uint8)
  want[4:12, 4:12] = 1  # the 40-valued pixel is background
  np.testing.assert_array_equal(s0.masks["target"], want)
  s1 = [s for s in got["train"] if s.id.startswith("1/")][0]
  src = np.asarray(Image.open(os.path.join(refsegrs, "images", "1.tif")))
  np.testing.assert_array_equal(s1.hr, src[:32])  # bottom row cropped
  assert s1.lr.shape == (8, 8, 3)


def test_refsegrs_size_mismatch_error_names_file(refsegrs, tmp_path):
  opt = releases.Options(on_size_mismatch="error")
  with pytest.raises(
      records.DataError,
      match=r"1\.tif is 33x32.*mask is " r"32x32.*--on_size_mismatch fix",
  ):
    releases.build("refsegrs", refsegrs, str(tmp_path / "o"), opt)


def test_refsegrs_bad_lines(refsegrs, tmp_path):
  with open(os.path.join(refsegrs, "output_phrase_val.txt"), "a") as f:
    f.write("9 a ghost\n")
  with pytest.raises(
      records.DataError, match=r"output_phrase_val.txt:2.*9.tif"
  ):
    releases.load_expressions("refsegrs", refsegrs)
  with open(os.path.join(refsegrs, "output_phrase_val.txt"), "w") as f:
    f.write("2\n")
  with pytest.raises(records.DataError, match="no expression"):
    releases.load_expressions("refsegrs", refsegrs)


def _rle_string(counts):
  """COCO's compressed RLE string, written from the format's description."""
  out = []
  for i, x in enumerate(counts):
    if i > 2:
      x -= counts[i - 2]
    more = True
    while more:
      c = x & 0x1F
      x >>= 5
      more = (x != -1) if (c & 0x10) else (x != 0)
      if more:
        c |= 0x20
      out.append(chr(c + 48))
  return "".join(out)


def test_rle_and_polygons_hand_worked():
  # 3x2 (h x w), column-major runs 1 zero, 2 ones, 3 zeros.
  np.testing.assert_array_equal(
      releases.rle_decode([1, 2, 3], 3, 2), [[0, 0], [1, 0], [1, 0]]
  )
  counts = [5, 3, 1000, 2, 40, 7000, 1, 1]
  assert releases.rle_counts_from_string(_rle_string(counts)) == counts
  sq = releases.polygons_to_mask([[2, 2, 10, 2, 10, 10, 2, 10]], 16, 16)
  assert sq.sum() == 81 and sq[2:11, 2:11].all()  # PIL fills edges
  with pytest.raises(records.DataError, match="corrupt"):
    releases.decode_segmentation({"counts": [1, 2], "size": [3, 2]}, 3, 2, "x")


@pytest.fixture
def rrsisd(tmp_path):
  """Two images (b.jpg 33x32, its annotation 32x32), 3 refs, 6 sentences."""
  root = tmp_path / "RRSIS-D"
  img_dir = root / "images" / "rrsisd" / "JPEGImages"
  img_dir.mkdir(parents=True)
  (root / "rrsisd").mkdir()
  Image.fromarray(_rgb(32, 32, 0)).save(img_dir / "a.jpg")
  Image.fromarray(_rgb(33, 32, 1)).save(img_dir / "b.jpg")
  m = np.zeros((32, 32), bool)
  m[3:9, 5:20] = True
  flat = m.T.ravel()  # column-major runs
  change = np.flatnonzero(np.diff(flat.astype(int))) + 1
  runs = np.diff(np.r_[0, change, flat.size]).tolist()
  inst = {
      "images": [
          {"id": 1, "file_name": "a.jpg", "height": 32, "width": 32},
          {"id": 2, "file_name": "b.jpg", "height": 32, "width": 32},
      ],
      "annotations": [
          {
              "id": 10,
              "image_id": 1,
              "category_id": 1,
              "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]],
          },
          {
              "id": 11,
              "image_id": 1,
              "category_id": 1,
              "segmentation": {"counts": runs, "size": [32, 32]},
          },
          {
              "id": 12,
              "image_id": 2,
              "category_id": 1,
              "segmentation": {"counts": _rle_string(runs), "size": [32, 32]},
          },
      ],
      "categories": [{"id": 1, "name": "vehicle"}],
  }
  sent = lambda t: {"raw": t, "sent": t.lower(), "sent_id": hash(t) % 1000}
  refs = [
      {
          "ref_id": 0,
          "ann_id": 10,
          "image_id": 1,
          "split": "train",
          "category_id": 1,
          "sentences": [sent("The vehicle on the left"), sent("a white car")],
      },
      {
          "ref_id": 1,
          "ann_id": 11,
          "image_id": 1,
          "split": "train",
          "category_id": 1,
          "sentences": [sent("the long truck")],
      },
      {
          "ref_id": 2,
          "ann_id": 12,
          "image_id": 2,
          "split": "test",
          "category_id": 1,
          "sentences": [
              sent("the truck"),
              sent("a lorry"),
              sent("the long vehicle at the top"),
          ],
      },
  ]
  (root / "rrsisd" / "instances.json").write_text(json.dumps(inst))
  with open(root / "rrsisd" / "refs(unc).p", "wb") as f:
    pickle.dump(refs, f)
  return str(root), m


def test_rrsisd_every_sentence_kept_masks_decoded(rrsisd, tmp_path):
  root, m = rrsisd
  out = str(tmp_path / "out")
  man = releases.build("rrsisd", root, out)
  got = _by_split(out, man)
  assert {s: len(v) for s, v in got.items()} == {"train": 3, "test": 3}
  st = man.builder["stats"]
  assert st["expressions"] == 6 and st["images"] == 2
  assert st["images_size_fixed"] == 1 and st["fixed_files"] == ["b.jpg"]
  by_text = {s.text: s for v in got.values() for s in v}
  assert set(by_text) == {
      "The vehicle on the left",
      "a white car",
      "the long truck",
      "the truck",
      "a lorry",
      "the long vehicle at the top",
  }
  assert by_text["The vehicle on the left"].masks["target"].sum() == 81
  np.testing.assert_array_equal(by_text["the long truck"].masks["target"], m)
  np.testing.assert_array_equal(by_text["a lorry"].masks["target"], m)
  assert by_text["a lorry"].hr.shape == (32, 32, 3)


def test_rrsisd_errors(rrsisd, tmp_path):
  root, _ = rrsisd
  with pytest.raises(records.DataError, match=r"b\.jpg is 33x32"):
    releases.build(
        "rrsisd",
        root,
        str(tmp_path / "o"),
        releases.Options(on_size_mismatch="error"),
    )
  os.remove(os.path.join(root, "rrsisd", "instances.json"))
  with pytest.raises(records.DataError, match=r"instances.json not found"):
    releases.load_expressions("rrsisd", root)
