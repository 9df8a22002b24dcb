"""data.image_folder: class folders of images -> records (RSSCN7, synthetic)."""

import os

import numpy as np
from PIL import Image
import pytest

from crossscale import records, shards
from data import image_folder

RSSCN7_CLASSES = [
    "aGrass",
    "bField",
    "cIndustry",
    "dRiverLake",
    "eForest",
    "fResident",
    "gParking",
]


@pytest.fixture(scope="module")
def rsscn7(shared_data):
  path = os.path.join(shared_data, "rsscn7")
  if not os.path.isdir(path):
    pytest.skip(f"RSSCN7 not found at {path}")
  return path


@pytest.fixture(scope="module")
def built(rsscn7, tmp_path_factory):
  """Three builds of 6 images per class: seed 0 twice, seed 1 once."""
  out = {}
  for key, seed in (("a", 0), ("b", 0), ("c", 1)):
    d = str(tmp_path_factory.mktemp(f"rsscn7_{key}"))
    m = image_folder.build(rsscn7, d, limit_per_class=6, seed=seed)
    out[key] = (d, m)
  return out


def _scenes(data_dir):
  m = shards.load_manifest(data_dir)
  return {s: list(shards.iter_scenes(data_dir, s)) for s in m.splits}


def _save(path, arr, **kw):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(arr).save(path, **kw)


def _rand_rgb(rng, h, w):
  return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rsscn7_manifest(built):
  _, m = built["a"]
  assert m.name == "rsscn7"
  assert m.class_names == RSSCN7_CLASSES
  assert m.hr_shape == [400, 400, 3] and m.lr_shape == [50, 50, 3]
  assert m.dtypes == {"lr": "|u1", "hr": "|u1"}
  assert m.hr_bands == ["R", "G", "B"] and m.lr_bands == ["R", "G", "B"]
  assert (m.hr_gsd, m.lr_gsd, m.grid) == (1.0, 8.0, 10)
  assert sum(m.num_records(s) for s in m.splits) == 7 * 6
  assert set(m.splits) == {"train", "val", "test"}


def test_rsscn7_scenes(built, rsscn7):
  d, _ = built["a"]
  scenes = _scenes(d)
  train_classes = set()
  for split, ss in scenes.items():
    for s in ss:
      assert s.hr.shape == (400, 400, 3) and s.hr.dtype == np.uint8
      assert s.lr.shape == (50, 50, 3) and s.lr.dtype == np.uint8
      assert s.labels.dtype == np.uint8 and s.labels.sum() == 1
      cls = RSSCN7_CLASSES[int(np.argmax(s.labels))]
      assert s.id.startswith(cls + "/")
      if split == "train":
        train_classes.add(cls)
  assert train_classes == set(RSSCN7_CLASSES)
  # HR is the image itself, unresampled.
  s = scenes["train"][0]
  cls, stem = s.id.split("/")
  with Image.open(os.path.join(rsscn7, cls, stem + ".jpg")) as im:
    np.testing.assert_array_equal(s.hr, np.asarray(im.convert("RGB")))


def test_rsscn7_deterministic(built):
  a, b = _scenes(built["a"][0]), _scenes(built["b"][0])
  assert a.keys() == b.keys()
  for split in a:
    assert [s.id for s in a[split]] == [s.id for s in b[split]]
    assert [s.lr.tobytes() for s in a[split]] == [
        s.lr.tobytes() for s in b[split]
    ]


def test_rsscn7_seed_changes_split(built):
  a, c = _scenes(built["a"][0]), _scenes(built["c"][0])
  assert {s.id for s in a["train"]} != {s.id for s in c["train"]}
  # Still stratified: every class is in every split.
  for split in c:
    assert np.stack([s.labels for s in c[split]]).sum(0).min() >= 1


def test_rsscn7_hr_size(rsscn7, tmp_path):
  m = image_folder.build(rsscn7, str(tmp_path), hr_size=320, limit_per_class=1)
  assert m.hr_shape == [320, 320, 3] and m.lr_shape == [40, 40, 3]
  s = next(shards.iter_scenes(str(tmp_path), "train"))
  assert s.hr.dtype == np.uint8 and s.hr.std() > 1.0


@pytest.mark.parametrize("n", [240, 257])  # UC Merced's sides: 242-257
def test_resize_is_bicubic_on_pixel_centres(n):
  """Hand-worked: bicubic reproduces a ramp v = x exactly away from the
  edges, and output pixel j samples input x = (j + 0.5) * n / 256 - 0.5."""
  ramp = np.tile(np.arange(n, dtype=np.float32), (n, 1))[..., None]
  x = (np.arange(256) + 0.5) * n / 256 - 0.5
  inner = (x >= 3) & (x <= n - 4)  # the kernel's support lies in the image
  out = image_folder.resize(ramp, 256)
  assert out.shape == (256, 256, 1) and out.dtype == np.float32
  np.testing.assert_allclose(
      out[:, inner, 0], np.tile(x[inner], (256, 1)), atol=1e-4
  )
  as_u8 = image_folder.resize(ramp.astype(np.uint8), 256)
  assert as_u8.dtype == np.uint8
  np.testing.assert_array_equal(
      as_u8[:, inner, 0], np.tile(np.rint(x[inner]), (256, 1))
  )
  assert image_folder.resize(out, 256) is out  # already 256: untouched


def test_hr_gsd_is_recorded(tmp_path):
  rng = np.random.default_rng(0)
  src = tmp_path / "src"
  for cls in ("a", "b"):
    _save(str(src / cls / "0.png"), _rand_rgb(rng, 40, 40))
  m = image_folder.build(str(src), str(tmp_path / "o1"), grid=5)
  assert (m.hr_gsd, m.lr_gsd, m.builder["hr_gsd"]) == (1.0, 8.0, None)
  m = image_folder.build(str(src), str(tmp_path / "o2"), grid=5, hr_gsd=0.5)
  assert (m.hr_gsd, m.lr_gsd, m.builder["gsd_note"]) == (0.5, 4.0, "metres")
  with pytest.raises(ValueError, match="--hr_gsd -1.*metres"):
    image_folder.build(str(src), str(tmp_path / "o3"), hr_gsd=-1)


def test_corrupt_image_names_file(tmp_path):
  rng = np.random.default_rng(0)
  src = tmp_path / "src"
  for cls in ("a", "b"):
    for i in range(3):
      _save(str(src / cls / f"{i}.png"), _rand_rgb(rng, 40, 40))
  good = src / "b" / "9.jpg"
  _save(str(good), _rand_rgb(rng, 40, 40), quality=90)
  data = good.read_bytes()
  bad = src / "b" / "bad.jpg"
  bad.write_bytes(data[: len(data) // 2])  # a truncated jpg
  with pytest.raises(records.DataError, match="bad.jpg.*remove or replace"):
    image_folder.build(str(src), str(tmp_path / "out"), grid=5)


def test_garbage_bytes_names_file(tmp_path):
  src = tmp_path / "src" / "a"
  src.mkdir(parents=True)
  (src / "x.jpg").write_bytes(b"not an image at all")
  with pytest.raises(records.DataError, match="x.jpg.*remove or replace"):
    image_folder.build(str(tmp_path / "src"), str(tmp_path / "out"))


def test_mixed_sizes_suggest_hr_size(tmp_path):
  rng = np.random.default_rng(0)
  src = tmp_path / "src"
  _save(str(src / "a" / "0.png"), _rand_rgb(rng, 80, 80))
  _save(str(src / "a" / "1.png"), _rand_rgb(rng, 40, 40))
  _save(str(src / "b" / "0.png"), _rand_rgb(rng, 80, 80))
  with pytest.raises(records.DataError, match=r"1\.png.*--hr_size"):
    image_folder.build(str(src), str(tmp_path / "out"), grid=5)
  m = image_folder.build(str(src), str(tmp_path / "out"), grid=5, hr_size=80)
  assert m.hr_shape == [80, 80, 3] and m.lr_shape == [10, 10, 3]


def test_size_not_divisible(tmp_path):
  rng = np.random.default_rng(0)
  src = tmp_path / "src"
  _save(str(src / "a" / "0.png"), _rand_rgb(rng, 64, 64))
  with pytest.raises(records.DataError, match=r"64x64.*grid 10.*--hr_size.*40"):
    image_folder.build(str(src), str(tmp_path / "out"), scale=8, grid=10)
  with pytest.raises(records.DataError, match="--hr_size 100.*LR scale 8"):
    image_folder.build(str(src), str(tmp_path / "out"), hr_size=100)


def test_empty_folders(tmp_path):
  with pytest.raises(records.DataError, match="no class folders"):
    image_folder.build(str(tmp_path), str(tmp_path / "out"))
  (tmp_path / "src" / "a").mkdir(parents=True)
  with pytest.raises(records.DataError, match="holds no images"):
    image_folder.build(str(tmp_path / "src"), str(tmp_path / "out"))


def test_flat_eurosat_samples_need_prefix_layout(tmp_path, shared_data):
  """eurosat_samples/ is flat <Class>_<n>_preview.png files: the default
  layout says how to fix it; layout="prefix" reads the class from the name."""
  flat = os.path.join(shared_data, "eurosat_samples")
  if not os.path.isdir(flat):
    pytest.skip(f"{flat} not found")
  with pytest.raises(records.DataError, match="no class folders"):
    image_folder.build(flat, str(tmp_path / "out"))
  m = image_folder.build(
      flat, str(tmp_path / "out2"), layout="prefix", scale=4, grid=4
  )
  names = sorted(f for f in os.listdir(flat) if f.endswith(".png"))
  assert m.class_names == sorted({f.split("_")[0] for f in names})
  assert sum(m.num_records(s) for s in ("train", "val", "test")) == len(names)
  assert m.hr_shape == [64, 64, 3] and m.lr_shape == [16, 16, 3]
  (tmp_path / "bad").mkdir()
  Image.new("RGB", (8, 8)).save(tmp_path / "bad" / "noclass.png")
  with pytest.raises(records.DataError, match="must start with '<class>_'"):
    image_folder.build(
        str(tmp_path / "bad"), str(tmp_path / "o3"), layout="prefix"
    )


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_image_modes_and_tiff(tmp_path):
  """Palette/L/RGBA png -> uint8 RGB; upper-case extensions; 4-band tif."""
  rasterio = pytest.importorskip("rasterio")
  rng = np.random.default_rng(0)
  src = tmp_path / "src"
  rgb = _rand_rgb(rng, 40, 40)
  (src / "a").mkdir(parents=True)
  Image.fromarray(rgb).convert("P").save(src / "a" / "p.PNG")
  Image.fromarray(rgb[..., 0]).save(src / "a" / "l.png")
  Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(src / "a" / "rgba.png")
  (src / "a" / "notes.txt").write_text("ignored")
  m = image_folder.build(
      str(src), str(tmp_path / "out"), grid=5, split_fractions=(1, 0, 0)
  )
  assert m.hr_shape == [40, 40, 3] and m.dtypes["hr"] == "|u1"
  ids = sorted(s.id for s in shards.iter_scenes(str(tmp_path / "out"), "train"))
  assert ids == ["a/l", "a/p", "a/rgba"]

  ms = rng.integers(0, 10000, (4, 40, 40), dtype=np.uint16)
  tdir = tmp_path / "tif" / "x"
  tdir.mkdir(parents=True)
  with rasterio.open(
      tdir / "0.TIF",
      "w",
      driver="GTiff",
      width=40,
      height=40,
      count=4,
      dtype="uint16",
  ) as dst:
    dst.write(ms)
  img, bands = image_folder.read_image(str(tdir / "0.TIF"))
  np.testing.assert_array_equal(img, np.moveaxis(ms, 0, -1))
  assert bands == ("B1", "B2", "B3", "B4")
  small = image_folder.resize(img, 20)
  assert small.shape == (20, 20, 4) and small.dtype == np.uint16
  m = image_folder.build(
      str(tmp_path / "tif"),
      str(tmp_path / "out2"),
      grid=5,
      split_fractions=(1, 0, 0),
  )
  assert m.hr_shape == [40, 40, 4] and m.lr_shape == [5, 5, 4]
  assert m.dtypes["lr"] == "<u2" and m.hr_bands == ["B1", "B2", "B3", "B4"]


def test_cli(tmp_path, capsys):
  rng = np.random.default_rng(0)
  src = tmp_path / "mydata"
  for cls in ("x", "y"):
    for i in range(4):
      _save(str(src / cls / f"{i}.png"), _rand_rgb(rng, 40, 40))
  image_folder.main(
      [
          "--src",
          str(src),
          "--out",
          str(tmp_path / "out"),
          "--grid",
          "5",
          "--hr_size",
          "80",
          "--seed",
          "3",
          "--hr_gsd",
          "0.25",
      ]
  )
  assert "mydata: 2 classes" in capsys.readouterr().out
  m = shards.load_manifest(str(tmp_path / "out"))
  assert m.hr_shape == [80, 80, 3] and m.builder["seed"] == 3
  assert (m.hr_gsd, m.lr_gsd) == (0.25, 2.0)
