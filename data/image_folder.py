"""Builder: a folder of class sub-folders of images -> crossscale records.

Input layout (RSSCN7, EuroSAT, UC Merced and most scene-classification sets):

  SRC/
    <class_a>/img001.jpg ...
    <class_b>/img001.png ...

or, with layout="prefix" (--layout prefix), a flat folder of
<class>_<anything>.<ext> files (the EuroSAT samples in ../shared/data).

Class names are the sorted sub-folder names (hidden folders are ignored);
images are the files directly inside each class folder whose extension is
jpg/jpeg/png/tif/tiff (any case), in sorted order, so a build is
deterministic. Other files (Thumbs.db, .DS_Store, ...) are ignored.

Each image becomes one scene:
  HR: the image `[H, W, C]` (with `hr_size`, every image not already
      hr_size x hr_size is resized to it, PIL bicubic per band, aspect not
      kept: UC Merced's 242-257 px sides stretch by <= 6%; without it every
      image must have one size).
  LR: `crossscale.sensor.degrade(HR, scale)` `[H/scale, W/scale, C]`, with an
      RNG seeded per image from (seed, index in the sorted file list).
  labels: one-hot over the classes; split: seeded, stratified by class;
  id: "<class>/<filename stem>".

Pixels: jpg/png are read with PIL and converted to 8-bit RGB (palette,
grayscale and alpha images included; alpha is dropped; bands R, G, B). 16-bit /
float PIL images (modes I, I;16, F) keep their dtype as one band "B1". tif/tiff
are read with rasterio and keep their dtype and all bands: a 3-band uint8 tif
with RGB colour interpretation gets bands R, G, B, a palette tif is expanded to
RGB, other tifs use the band descriptions when every band has one, else B1..Bn.

Ground sample distance: `hr_gsd` (metres per HR pixel after any resize,
e.g. 0.3 for UC Merced at 256 px) is recorded when given, with lr_gsd =
hr_gsd * scale. Without it (RSSCN7: unknown) hr_gsd = 1.0 means "one HR
pixel" and lr_gsd = scale in the same unit; only the ratio is meaningful.

Usage:
  python -m data.image_folder --src ../shared/data/rsscn7 --out /tmp/rsscn7
"""

from __future__ import annotations

import argparse
import collections
import math
import os
from typing import Iterator, Sequence
import warnings

import numpy as np
from PIL import Image

from crossscale import records, sensor, shards
from data import common

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
TIFF_EXTS = (".tif", ".tiff")
RGB = ("R", "G", "B")
# PIL modes whose pixels are not 8-bit colour: read as one band, dtype kept.
_PIL_SCALAR_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def list_classes(src_dir: str) -> list[str]:
  """Sorted class sub-folder names of `src_dir` (hidden folders skipped)."""
  if not os.path.isdir(src_dir):
    raise records.DataError(
        f"{src_dir} is not a directory: pass --src a folder holding one "
        "sub-folder of images per class."
    )
  names = sorted(
      d
      for d in os.listdir(src_dir)
      if not d.startswith(".") and os.path.isdir(os.path.join(src_dir, d))
  )
  if not names:
    raise records.DataError(
        f"{src_dir} has no class folders: expected SRC/<class>/<image> "
        "(one sub-folder of images per class). Flat folders of images are "
        "not supported: move each image into a folder named after its class."
    )
  return names


def list_images(class_dir: str) -> list[str]:
  """Sorted file names in `class_dir` with an image extension."""
  names = sorted(
      f
      for f in os.listdir(class_dir)
      if not f.startswith(".")
      and f.lower().endswith(IMAGE_EXTS)
      and os.path.isfile(os.path.join(class_dir, f))
  )
  if not names:
    raise records.DataError(
        f"class folder {class_dir} holds no images ({'/'.join(IMAGE_EXTS)}): "
        "add images to it or remove the folder."
    )
  return names


def scan_prefix(
    src_dir: str, limit_per_class: int | None = None
) -> tuple[list[str], list[tuple[str, int]]]:
  """layout="prefix": a flat folder whose file names start with the class
  ("Forest_145.png" -> "Forest", as the EuroSAT samples are named)."""
  if not os.path.isdir(src_dir):
    raise records.DataError(
        f"{src_dir} is not a directory: pass --src a "
        "folder of <class>_<n>.<ext> images."
    )
  files = list_images(src_dir)
  bad = [f for f in files if "_" not in f]
  if bad:
    raise records.DataError(
        f"{os.path.join(src_dir, bad[0])}: with --layout prefix every file "
        "name must start with '<class>_'; rename it or use class folders."
    )
  by_class: dict[str, list[str]] = collections.defaultdict(list)
  for f in files:
    by_class[f.split("_", 1)[0]].append(f)
  classes = sorted(by_class)
  items = [
      (os.path.join(src_dir, f), ci)
      for ci, c in enumerate(classes)
      for f in by_class[c][:limit_per_class]
  ]
  return classes, items


def scan(
    src_dir: str, limit_per_class: int | None = None, layout: str = "folders"
) -> tuple[list[str], list[tuple[str, int]]]:
  """Class names and (path, class index) of every image, in sorted order.
  layout: "folders" (SRC/<class>/<image>) or "prefix" (`scan_prefix`)."""
  if layout == "prefix":
    return scan_prefix(src_dir, limit_per_class)
  if layout != "folders":
    raise ValueError(f"unknown layout {layout!r}; known: folders, prefix")
  classes = list_classes(src_dir)
  items = []
  for ci, cname in enumerate(classes):
    class_dir = os.path.join(src_dir, cname)
    names = list_images(class_dir)
    if limit_per_class is not None:
      names = names[:limit_per_class]
    seen = {}
    for f in names:
      stem = os.path.splitext(f)[0]
      if stem in seen:
        raise records.DataError(
            f"{os.path.join(class_dir, f)} and {seen[stem]} have the same "
            f"name stem, so both would get the id {cname}/{stem}: rename or "
            "remove one of them."
        )
      seen[stem] = os.path.join(class_dir, f)
      items.append((os.path.join(class_dir, f), ci))
  return classes, items


def _read_pil(path: str) -> tuple[np.ndarray, tuple[str, ...]]:
  """PIL image -> `[H, W, 3]` uint8 RGB, or `[H, W, 1]` for 16-bit/float."""
  with Image.open(path) as im:
    im.load()
    if im.mode in _PIL_SCALAR_MODES:
      return np.asarray(im)[..., None].copy(), ("B1",)
    if im.mode == "P" and "transparency" in im.info:
      im = im.convert("RGBA")  # PIL warns when palette alpha goes to RGB.
    if im.mode != "RGB":
      im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy(), RGB


def _read_tiff(path: str) -> tuple[np.ndarray, tuple[str, ...]]:
  """Any-band tif via rasterio -> `[H, W, C]` in its own dtype."""
  import rasterio  # pylint: disable=import-outside-toplevel

  ColorInterp = rasterio.enums.ColorInterp  # pylint: disable=invalid-name
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
    with rasterio.open(path) as src:
      img = np.moveaxis(src.read(), 0, -1)
      interp = tuple(src.colorinterp)
      desc = tuple(src.descriptions)
      cmap = (
          src.colormap(1)
          if src.count == 1 and interp[0] == ColorInterp.palette
          else None
      )
  if cmap is not None:
    lut = np.zeros((max(256, max(cmap) + 1), 3), np.uint8)
    for k, v in cmap.items():
      lut[k] = v[:3]
    return lut[img[..., 0]], RGB
  if (
      img.shape[-1] == 3
      and img.dtype == np.uint8
      and interp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
  ):
    return img, RGB
  if all(desc) and len(set(desc)) == len(desc):
    return img, tuple(desc)
  return img, tuple(f"B{i + 1}" for i in range(img.shape[-1]))


def read_image(path: str) -> tuple[np.ndarray, tuple[str, ...]]:
  """Reads one image -> (`[H, W, C]` pixels, band names).

  Raises DataError naming the file when it cannot be decoded.
  """
  try:
    if path.lower().endswith(TIFF_EXTS):
      return _read_tiff(path)
    return _read_pil(path)
  except Exception as e:  # PIL/rasterio raise many unrelated types.
    raise records.DataError(
        f"{path} could not be read as an image ({type(e).__name__}: {e}): it "
        "is corrupt or truncated; remove or replace it."
    ) from e


def resize(img: np.ndarray, size: int) -> np.ndarray:
  """Bicubic resize `[H, W, C]` -> `[size, size, C]`, dtype kept.

  Each band is resized as a float32 PIL image (works for any band count and
  dtype); integer results are rounded and clipped to the dtype's range.
  """
  if img.shape[:2] == (size, size):
    return img
  bands = [
      np.asarray(
          Image.fromarray(img[..., c].astype(np.float32), "F").resize(
              (size, size), Image.Resampling.BICUBIC
          )
      )
      for c in range(img.shape[-1])
  ]
  out = np.stack(bands, axis=-1)
  if np.issubdtype(img.dtype, np.integer):
    info = np.iinfo(img.dtype)
    out = np.clip(np.rint(out), info.min, info.max)
  return out.astype(img.dtype)


def _suggest_size(n: int, step: int) -> str:
  """Multiples of `step` nearest to `n`, as text."""
  lo = n // step * step
  return f"{lo} or {lo + step}" if lo else f"{step}"


def check_hr_size(H: int, W: int, scale: int, grid: int, where: str) -> None:
  """HR must be divisible by the LR scale and the tile grid."""
  for what, k in (("LR scale", scale), ("tile grid", grid)):
    if H % k or W % k:
      step = math.lcm(scale, grid)
      raise records.DataError(
          f"{where}: HR size {H}x{W} is not divisible by the {what} {k} "
          f"(scale={scale}, grid={grid}). Pass --hr_size with a multiple of "
          f"{step} (e.g. {_suggest_size(max(H, W), step)}), or change "
          "--scale/--grid."
      )


def load_hr(
    path: str, hr_size: int | None
) -> tuple[np.ndarray, tuple[str, ...]]:
  """The HR image of one file: `[H, W, C]`, resized when `hr_size` is set."""
  img, bands = read_image(path)
  if hr_size is not None:
    img = resize(img, hr_size)
  return img, bands


def one_hot(index: int, num_classes: int) -> np.ndarray:
  """`[num_classes]` uint8 with a single 1."""
  v = np.zeros((num_classes,), np.uint8)
  v[index] = 1
  return v


def make_scenes(
    items: Sequence[tuple[str, int]],
    splits: Sequence[str],
    classes: Sequence[str],
    *,
    hr_size: int | None,
    scale: int,
    grid: int,
    seed: int,
    psf_sigma: float,
    noise_std: float,
    hr_gsd: float | None = None,
) -> Iterator[records.Scene]:
  """Yields one Scene per (path, class index), in `items` order."""
  first: tuple[str, tuple[int, ...]] | None = None
  gsd = 1.0 if hr_gsd is None else float(hr_gsd)
  for index, ((path, ci), split) in enumerate(zip(items, splits)):
    hr, bands = load_hr(path, hr_size)
    if first is None:
      first = (path, hr.shape[:2])
      check_hr_size(hr.shape[0], hr.shape[1], scale, grid, path)
    elif hr.shape[:2] != first[1]:
      raise records.DataError(
          f"{path} is {hr.shape[0]}x{hr.shape[1]} (HxW) but {first[0]} is "
          f"{first[1][0]}x{first[1][1]}: images differ in size. Pass "
          "--hr_size N to resize every image to N x N."
      )
    rng = np.random.default_rng([seed, index])
    lr = sensor.degrade(
        hr, scale, rng, psf_sigma=psf_sigma, noise_std=noise_std
    )
    stem = os.path.splitext(os.path.basename(path))[0]
    yield records.Scene(
        id=f"{classes[ci]}/{stem}",
        lr=lr,
        hr=hr,
        lr_bands=bands,
        hr_bands=bands,
        lr_gsd=gsd * scale,
        hr_gsd=gsd,
        grid=grid,
        labels=one_hot(ci, len(classes)),
        split=split,
    )


def build(
    src_dir: str,
    out_dir: str,
    *,
    name: str | None = None,
    hr_size: int | None = None,
    scale: int = 8,
    grid: int = 10,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    psf_sigma: float = 0.5,
    noise_std: float = 0.01,
    limit_per_class: int | None = None,
    layout: str = "folders",
    hr_gsd: float | None = None,
    records_per_shard: int = 512,
) -> shards.Manifest:
  """Builds a records dataset in `out_dir` from the class folders in `src_dir`.

  `limit_per_class` keeps the first N images (sorted) of each class. The
  split is seeded and stratified by class (data.common.assign_splits).
  """
  if hr_size is not None:
    check_hr_size(hr_size, hr_size, scale, grid, f"--hr_size {hr_size}")
  if hr_gsd is not None and not hr_gsd > 0:
    raise ValueError(f"--hr_gsd {hr_gsd}: give metres per HR pixel (> 0).")
  src_dir = os.path.abspath(src_dir)
  name = name or os.path.basename(os.path.normpath(src_dir))
  classes, items = scan(src_dir, limit_per_class, layout)
  splits = common.assign_splits(
      len(items), split_fractions, seed, strata=[ci for _, ci in items]
  )
  scenes = make_scenes(
      items,
      splits,
      classes,
      hr_size=hr_size,
      scale=scale,
      grid=grid,
      seed=seed,
      psf_sigma=psf_sigma,
      noise_std=noise_std,
      hr_gsd=hr_gsd,
  )
  builder = {
      "builder": "image_folder",
      "src": src_dir,
      "hr_size": hr_size,
      "scale": scale,
      "grid": grid,
      "split_fractions": list(split_fractions),
      "seed": seed,
      "psf_sigma": psf_sigma,
      "noise_std": noise_std,
      "degradation": sensor.degradation_record(scale, psf_sigma, noise_std),
      "limit_per_class": limit_per_class,
      "layout": layout,
      "hr_gsd": hr_gsd,
      "gsd_note": (
          "hr_gsd=1.0 is one HR pixel (true GSD unknown); "
          "lr_gsd=scale in the same unit"
          if hr_gsd is None
          else "metres"
      ),
  }
  return shards.write_dataset(
      out_dir,
      name,
      scenes,
      classes,
      records_per_shard=records_per_shard,
      builder=builder,
      expected_per_split=dict(collections.Counter(splits)),
  )


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(
      description="Build crossscale records from a folder of class folders."
  )
  p.add_argument(
      "--src",
      required=True,
      help="folder with one sub-folder of images per class",
  )
  p.add_argument(
      "--name", default=None, help="dataset name (default: basename of --src)"
  )
  p.add_argument(
      "--hr_size",
      type=int,
      default=None,
      help="resize every image to N x N (bicubic); required when "
      "images differ in size",
  )
  p.add_argument("--scale", type=int, default=8, help="LR downsampling factor")
  p.add_argument("--grid", type=int, default=10, help="HR tile grid size G")
  p.add_argument(
      "--limit_per_class",
      type=int,
      default=None,
      help="keep the first N images of each class",
  )
  p.add_argument(
      "--layout",
      default="folders",
      choices=("folders", "prefix"),
      help="folders: SRC/<class>/<image>; prefix: a flat folder "
      "of <class>_<n>.<ext> (EuroSAT samples)",
  )
  p.add_argument(
      "--hr_gsd",
      type=float,
      default=None,
      help="metres per HR pixel (after --hr_size); default: unknown, "
      "recorded as 1.0 = one pixel",
  )
  p.add_argument("--psf_sigma", type=float, default=0.5)
  p.add_argument("--noise_std", type=float, default=0.01)
  common.add_common_flags(p)
  args = p.parse_args(argv)
  common.run_build(
      lambda: build(
          args.src,
          args.out,
          name=args.name,
          hr_size=args.hr_size,
          scale=args.scale,
          grid=args.grid,
          seed=args.seed,
          psf_sigma=args.psf_sigma,
          noise_std=args.noise_std,
          limit_per_class=args.limit_per_class,
          layout=args.layout,
          hr_gsd=args.hr_gsd,
          records_per_shard=args.records_per_shard,
      ),
      args.out,
  )


if __name__ == "__main__":
  main()
