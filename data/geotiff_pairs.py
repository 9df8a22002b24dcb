"""Builder: georeferenced rasters -> aligned LR/HR scene records.

Two modes:
  real pairs:  --hr FILE... --lr FILE...  an HR raster and an LR raster of the
               same place (any CRS each, e.g. a 0.5 m pan band with a 1 m
               multispectral image, or Landsat 15 m B8 with 30 m B2,B3,B4).
  synthetic:   --hr FILE... --lr_scale S  LR = crossscale.sensor.degrade(HR, S).

Each side is one multi-band raster, or several single-band rasters stacked as
bands in the order given (all on one grid and CRS). Band names are the raster
band descriptions, else the file stem's Landsat/Sentinel band suffix ("B4"
from "LC08_..._B4.TIF"), else the file stem (with "_1".."_n" for several
bands).

Geometry:
  * The LR footprint is transformed to the HR CRS (rasterio.warp
    .transform_bounds, densified edges) and intersected with the HR one; no
    intersection (checked in both CRSs) is a DataError.
  * scale = round(lr_gsd / hr_gsd), with the LR pixel size measured after
    reprojecting the LR to the HR CRS. scene_px must be divisible by scale and
    by grid.
  * The overlap is tiled into non-overlapping scene_px x scene_px windows of the
    HR pixel grid (row-major from the top-left of the overlap). The HR window is
    read as is; the LR window is the LR source(s) warped onto the window's
    bounds at hr_gsd * scale in the HR CRS (Resampling.average), so an LR
    window is `[scene_px / scale, scene_px / scale, C_lr]` whatever the LR's
    native grid or CRS. lr_gsd = hr_gsd * scale exactly.
  * A pixel is nodata when any band equals its raster's nodata value, is
    non-finite, or (LR) falls outside the LR raster. Windows whose HR or LR
    nodata fraction exceeds max_nodata_frac are dropped; the remaining nodata
    pixels are set to 0 (all bands).
  * Pixels keep their dtype (LR integer averages are rounded and clipped) except
    floats, which are stored as float32.
  * Ground sample distances are in metres (the HR CRS must be projected; its
    linear unit is converted to metres).

Labels: without masks, class_names = [] (labels `[0]`). With masks
(--mask NAME=FILE, resampled nearest onto each HR window into
Scene.masks[NAME], `[H, W]`, nodata/outside -> 0), class_names = the mask
names (sorted) and labels[i] = 1 when mask i has a non-zero pixel in the
window.

Splits: seeded (data.common.assign_splits) over the kept windows. Windows are
adjacent tiles of one image, so splits are not spatially independent.

Scene ids: "<first HR file stem>_r{row}_c{col}" (window row/column index).
Times: --hr_time / --lr_time (ISO-8601), else, for Landsat files, DATE_ACQUIRED
(+ SCENE_CENTER_TIME) of the *_MTL.txt beside the first file of the side.

Usage:
  python -m data.geotiff_pairs --out /tmp/pan_ms \\
      --hr ../shared/data/spacenet/preproc_tutorial/pan1.tif \\
      --lr ../shared/data/spacenet/preproc_tutorial/ms1.tif --scene_px 128
  python -m data.geotiff_pairs --out /tmp/naip --lr_scale 4 \\
      --hr ../shared/data/geotiff/naip/m_4709963_se_14_1_20150926.tif
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import math
import os
import re
from typing import Any, Mapping, Sequence

import numpy as np
import rasterio
from rasterio import warp, windows
from rasterio.enums import Resampling

from crossscale import records, sensor, shards
from data import common

DEFAULT_SCENE_PX = 256
DEFAULT_GRID = 4
LR_RESAMPLING = Resampling.average
# "..._B4", "..._B8A", "..._B6_VCID_1": the band suffix of Landsat/S2 files.
_BAND_SUFFIX = re.compile(r"_(B\d+[A-Z]?(?:_VCID_\d)?)$", re.IGNORECASE)
# Relative tolerance when comparing grids/transforms of files of one side.
_GRID_RTOL = 1e-6


@dataclasses.dataclass
class Side:
  """The open rasters of one side ("HR" or "LR"), all on one grid.

  Attributes:
    flag: "--hr" or "--lr" (for messages).
    paths: the files, in band order.
    datasets: open rasterio datasets, one per path.
    bands: band names, one per stacked band.
    dtype: numpy dtype of the stacked bands (before float -> float32).
  """

  flag: str
  paths: list[str]
  datasets: list[Any]
  bands: tuple[str, ...]
  dtype: np.dtype

  @property
  def first(self):
    return self.datasets[0]

  @property
  def crs(self):
    return self.first.crs

  @property
  def transform(self):
    return self.first.transform

  @property
  def bounds(self) -> tuple[float, float, float, float]:
    return tuple(self.first.bounds)

  @property
  def shape(self) -> tuple[int, int]:
    return self.first.height, self.first.width

  @property
  def stem(self) -> str:
    return file_stem(self.paths[0])


def file_stem(path: str) -> str:
  """ "dir/LC08_..._B4.TIF" -> "LC08_..._B4"."""
  return os.path.splitext(os.path.basename(path))[0]


def band_names(path: str, descriptions: Sequence[str | None]) -> list[str]:
  """Names of a file's bands: descriptions, else band suffix / stem."""
  stem = file_stem(path)
  m = _BAND_SUFFIX.search(stem)
  base = m.group(1).upper() if m else stem
  if len(descriptions) == 1:
    return [descriptions[0] or base]
  return [d or f"{base}_{i + 1}" for i, d in enumerate(descriptions)]


def out_dtype(dtype: np.dtype) -> np.dtype:
  """Stored dtype: floats become float32, integers are kept."""
  dtype = np.dtype(dtype)
  if np.issubdtype(dtype, np.floating):
    return np.dtype(np.float32)
  if not np.issubdtype(dtype, np.integer):
    raise records.DataError(
        f"pixel dtype {dtype} is not supported: convert "
        "the raster to an integer or float type."
    )
  return dtype


def cast(img: np.ndarray, dtype: np.dtype) -> np.ndarray:
  """Finite `img` -> `dtype` (integers rounded and clipped to the range)."""
  dtype = np.dtype(dtype)
  if np.issubdtype(dtype, np.integer):
    info = np.iinfo(dtype)
    img = np.clip(np.rint(img), info.min, info.max)
  return img.astype(dtype)


def _same_grid(a, b) -> bool:
  """True when datasets `a` and `b` share CRS, shape and transform."""
  if a.crs != b.crs or (a.height, a.width) != (b.height, b.width):
    return False
  tol = _GRID_RTOL * max(abs(a.transform.a), abs(a.transform.e))
  return all(
      math.isclose(x, y, rel_tol=0.0, abs_tol=tol)
      for x, y in zip(a.transform[:6], b.transform[:6])
  )


def open_side(
    paths: Sequence[str], flag: str, stack: contextlib.ExitStack
) -> Side:
  """Opens the files of one side and checks they stack onto one grid."""
  if not paths:
    raise records.DataError(f"{flag}: no files given.")
  datasets, bands = [], []
  for path in paths:
    if not os.path.isfile(path):
      raise records.DataError(f"{flag} {path}: file not found; check the path.")
    try:
      ds = stack.enter_context(rasterio.open(path))
    except rasterio.errors.RasterioIOError as e:
      raise records.DataError(
          f"{flag} {path} could not be opened as a raster ({e}): it is "
          "corrupt or not a GeoTIFF; replace it."
      ) from e
    if ds.crs is None:
      raise records.DataError(
          f"{flag} {path} has no CRS: it is not georeferenced. Assign one "
          "(e.g. gdal_edit.py -a_srs EPSG:XXXX) or use a georeferenced copy."
      )
    if len(paths) > 1 and ds.count != 1:
      raise records.DataError(
          f"{flag} {path} has {ds.count} bands, but several {flag} files are "
          "stacked as one band each: pass a single multi-band raster alone, or "
          "only single-band rasters."
      )
    if datasets and not _same_grid(datasets[0], ds):
      d0 = datasets[0]
      raise records.DataError(
          f"{flag} {path} is not on the grid of {paths[0]}: {ds.width}x"
          f"{ds.height} px, {ds.res} res, {ds.crs} vs {d0.width}x{d0.height}"
          f" px, {d0.res} res, {d0.crs}. All {flag} files must share grid and "
          "CRS: pass bands of one resolution only (e.g. Landsat B2,B3,B4 but "
          "not the 15 m B8), or resample them first."
      )
    datasets.append(ds)
    bands.extend(band_names(path, ds.descriptions))
  if len(set(bands)) != len(bands):
    dup = sorted(b for b, n in collections.Counter(bands).items() if n > 1)
    raise records.DataError(
        f"{flag} {list(paths)}: band names {dup} repeat (a file passed twice? "
        "or files with the same name): pass each band once."
    )
  dtype = np.result_type(*[np.dtype(t) for ds in datasets for t in ds.dtypes])
  return Side(flag, list(paths), datasets, tuple(bands), np.dtype(dtype))


def hr_gsd_metres(hr: Side) -> float:
  """HR pixel size in metres; the HR must be north-up, square, projected."""
  t = hr.transform
  if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
    raise records.DataError(
        f"--hr {hr.paths[0]} is rotated or not north-up (transform {t[:6]}): "
        "warp it to a north-up grid first (gdalwarp)."
    )
  if not math.isclose(t.a, -t.e, rel_tol=0.01):
    raise records.DataError(
        f"--hr {hr.paths[0]} has non-square pixels ({t.a} x {-t.e}): warp it "
        "to square pixels first (gdalwarp -tr X X)."
    )
  if not hr.crs.is_projected:
    raise records.DataError(
        f"--hr {hr.paths[0]} is in a geographic CRS ({hr.crs}): pixel sizes "
        "are in degrees. Warp the HR to a projected CRS (e.g. its UTM zone) "
        "first; the LR may stay in any CRS."
    )
  return t.a * hr.crs.linear_units_factor[1]


def _intersect(a, b):
  """Intersection of two (minx, miny, maxx, maxy) boxes, or None."""
  box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
  return box if box[0] < box[2] and box[1] < box[3] else None


def _to_crs(src_crs, dst_crs, bounds):
  """`bounds` in dst_crs (densified), or None when not transformable."""
  try:
    out = warp.transform_bounds(src_crs, dst_crs, *bounds, densify_pts=21)
  except Exception:  # pylint: disable=broad-except  (PROJ errors vary)
    return None
  return out if all(np.isfinite(out)) else None


def footprint_overlap(hr: Side, lr: Side) -> tuple[float, ...]:
  """The LR/HR overlap in HR CRS coordinates; DataError when disjoint.

  The boxes are checked in both CRSs: a transformed box contains the true
  footprint, so an empty intersection in either CRS means no overlap.
  """
  lr_in_hr = _to_crs(lr.crs, hr.crs, lr.bounds)
  hr_in_lr = _to_crs(hr.crs, lr.crs, hr.bounds)
  box = _intersect(hr.bounds, lr_in_hr) if lr_in_hr else None
  if box is None or hr_in_lr is None or not _intersect(hr_in_lr, lr.bounds):
    raise records.DataError(
        f"footprints do not overlap: --hr {hr.paths[0]} covers {hr.bounds} in "
        f"{hr.crs}, --lr {lr.paths[0]} covers {lr.bounds} in {lr.crs} "
        f"({lr_in_hr} in {hr.crs}). Check you paired the right rasters/CRS."
    )
  return box


def lr_scale_of(hr: Side, lr: Side) -> tuple[int, float]:
  """(round(lr_gsd / hr_gsd), the exact ratio), LR measured in the HR CRS."""
  t, _, _ = warp.calculate_default_transform(
      lr.crs, hr.crs, lr.shape[1], lr.shape[0], *lr.bounds
  )
  ratio = math.sqrt(abs(t.a * t.e)) / hr.transform.a
  return int(round(ratio)), ratio


def check_sizes(scene_px: int, grid: int, scale: int, where: str) -> None:
  """scene_px must be a positive multiple of grid and of scale."""
  step = math.lcm(max(grid, 1), max(scale, 1))
  lo = max(scene_px // step * step, step)
  hint = (
      f"Pick --scene_px as a multiple of {step} (e.g. {lo} or "
      f"{lo + step}), or change --grid."
  )
  if grid < 1 or scale < 1 or scene_px < 1:
    raise records.DataError(
        f"{where}: scene_px={scene_px}, grid={grid} and "
        f"scale={scale} must be >= 1."
    )
  if scene_px % grid:
    raise records.DataError(
        f"{where}: scene_px={scene_px} is not divisible by "
        f"the tile grid {grid}. {hint}"
    )
  if scene_px % scale:
    raise records.DataError(
        f"{where}: scene_px={scene_px} is not divisible by "
        f"the LR scale {scale}. {hint}"
    )


def tile_windows(
    transform, shape: tuple[int, int], box: Sequence[float], scene_px: int
) -> list[tuple[int, int, windows.Window]]:
  """Non-overlapping scene_px windows of the HR pixel grid inside `box`.

  Args:
    transform: the HR affine transform (north-up: no rotation, e < 0).
    shape: HR (height, width) in pixels.
    box: (minx, miny, maxx, maxy) in HR CRS coordinates.
  Returns:
    [(row, col, Window)] in row-major order; rows/cols are window indices.
  """
  t = transform
  c0, r0 = (box[0] - t.c) / t.a, (box[3] - t.f) / t.e
  c1, r1 = (box[2] - t.c) / t.a, (box[1] - t.f) / t.e
  eps = 1e-6
  r0, c0 = max(0, math.ceil(r0 - eps)), max(0, math.ceil(c0 - eps))
  r1 = min(shape[0], math.floor(r1 + eps))
  c1 = min(shape[1], math.floor(c1 + eps))
  n_rows, n_cols = max(0, r1 - r0) // scene_px, max(0, c1 - c0) // scene_px
  return [
      (
          i,
          j,
          windows.Window(
              c0 + j * scene_px, r0 + i * scene_px, scene_px, scene_px
          ),
      )
      for i in range(n_rows)
      for j in range(n_cols)
  ]


def window_transform(window: windows.Window, transform) -> rasterio.Affine:
  """Affine transform of `window` on a north-up grid."""
  t = transform
  return rasterio.Affine(
      t.a, 0.0, t.c + window.col_off * t.a, 0.0, t.e, t.f + window.row_off * t.e
  )


def window_bounds(
    window: windows.Window, transform
) -> tuple[float, float, float, float]:
  """(minx, miny, maxx, maxy) of `window` on a north-up grid."""
  t = window_transform(window, transform)
  return (
      float(t.c),
      float(t.f + window.height * t.e),
      float(t.c + window.width * t.a),
      float(t.f),
  )


def _nodata_mask(a: np.ndarray, nodata: float | None) -> np.ndarray:
  """`[C, H, W]` pixels -> `[H, W]` bool, True where any band is nodata."""
  bad = np.zeros(a.shape[1:], bool)
  if np.issubdtype(a.dtype, np.floating):
    bad |= ~np.isfinite(a).all(0)
  if nodata is not None:
    bad |= (np.isnan(a) if np.isnan(nodata) else a == nodata).any(0)
  return bad


def read_hr(hr: Side, window: windows.Window) -> tuple[np.ndarray, np.ndarray]:
  """HR window -> (`[S, S, C_hr]` in hr.dtype, `[S, S]` nodata mask)."""
  parts, bad = [], None
  for ds in hr.datasets:
    a = ds.read(window=window)
    m = _nodata_mask(a, ds.nodata)
    bad = m if bad is None else bad | m
    parts.append(a.astype(hr.dtype, copy=False))
  return np.concatenate(parts, 0).transpose(1, 2, 0), bad


def warp_lr(
    lr: Side, dst_transform, dst_crs, size: int
) -> tuple[np.ndarray, np.ndarray]:
  """LR sources warped onto a `size`^2 grid -> (`[size, size, C_lr]` float64,
  `[size, size]` nodata mask); nodata/outside pixels are NaN before masking."""
  parts = []
  for ds in lr.datasets:
    dst = np.full((ds.count, size, size), np.nan, np.float64)
    warp.reproject(
        source=rasterio.band(ds, list(range(1, ds.count + 1))),
        destination=dst,
        src_nodata=ds.nodata,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        dst_nodata=np.nan,
        resampling=LR_RESAMPLING,
    )
    parts.append(dst)
  a = np.concatenate(parts, 0)
  return a.transpose(1, 2, 0), _nodata_mask(a, None)


def warp_mask(path: str, ds, dst_transform, dst_crs, size: int) -> np.ndarray:
  """Band 1 of a mask raster resampled (nearest) onto a `[size, size]` grid.

  Nodata and pixels outside the mask raster become 0; floats -> float32.
  """
  if ds.crs is None:
    raise records.DataError(f"mask {path} has no CRS: georeference it.")
  dtype = out_dtype(ds.dtypes[0])
  dst = np.full((size, size), np.nan, np.float64)
  warp.reproject(
      source=rasterio.band(ds, 1),
      destination=dst,
      src_nodata=ds.nodata,
      dst_transform=dst_transform,
      dst_crs=dst_crs,
      dst_nodata=np.nan,
      resampling=Resampling.nearest,
  )
  return cast(np.nan_to_num(dst, nan=0.0, posinf=0.0, neginf=0.0), dtype)


def parse_time(value: str, flag: str) -> str:
  """Checks an ISO-8601 time string; returns it unchanged."""
  try:
    datetime.datetime.fromisoformat(value)
  except ValueError as e:
    raise records.DataError(
        f"{flag} {value!r} is not an ISO-8601 time: use e.g. 2020-08-31 or "
        "2020-08-31T10:15:00Z."
    ) from e
  return value


def landsat_time(path: str) -> str | None:
  """Acquisition time from the Landsat *_MTL.txt beside `path`, if any.

  "<date>T<scene centre time>Z" (microseconds at most), or "<date>" when the
  MTL has no SCENE_CENTER_TIME; None when no MTL file matches the file name.
  """
  folder, stem = os.path.dirname(os.path.abspath(path)), file_stem(path)
  for f in sorted(os.listdir(folder)):
    if not f.upper().endswith("_MTL.TXT"):
      continue
    if stem.upper().startswith(f[: -len("_MTL.txt")].upper()):
      mtl = os.path.join(folder, f)
      with open(mtl, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
      date = re.search(r"DATE_ACQUIRED\s*=\s*\"?(\d{4}-\d\d-\d\d)", text)
      if not date:
        return None
      t = re.search(
          r"SCENE_CENTER_TIME\s*=\s*\"?(\d\d:\d\d:\d\d)(\.\d+)?", text
      )
      if not t:
        return date.group(1)
      frac = (t.group(2) or "")[:7]
      return f"{date.group(1)}T{t.group(1)}{frac}Z"
  return None


def side_time(side: Side | None, explicit: str | None, flag: str) -> str | None:
  """An explicit --hr_time/--lr_time, else the Landsat MTL time, else None."""
  if explicit:
    return parse_time(explicit, flag)
  return landsat_time(side.paths[0]) if side is not None else None


def _window_scene(
    hr: Side,
    lr: Side | None,
    masks: Mapping[str, tuple[str, Any]],
    window: windows.Window,
    scale: int,
    scene_px: int,
    max_nodata_frac: float,
    rng: np.random.Generator,
    degrade_kw: Mapping[str, float],
) -> dict[str, Any] | None:
  """Arrays of one window, or None when it has too much nodata."""
  hr_img, hr_bad = read_hr(hr, window)
  if hr_bad.mean() > max_nodata_frac:
    return None
  win_t = window_transform(window, hr.transform)
  hr_img = hr_img.copy()
  hr_img[hr_bad] = 0
  hr_img = cast(hr_img, out_dtype(hr.dtype))
  if lr is None:
    lr_img = sensor.degrade(hr_img, scale, rng, **degrade_kw)
  else:
    lr_t = rasterio.Affine(
        win_t.a * scale, 0.0, win_t.c, 0.0, win_t.e * scale, win_t.f
    )
    lr_img, lr_bad = warp_lr(lr, lr_t, hr.crs, scene_px // scale)
    if lr_bad.mean() > max_nodata_frac:
      return None
    lr_img[lr_bad] = 0.0
    lr_img = cast(lr_img, out_dtype(lr.dtype))
  out_masks = {
      name: warp_mask(path, ds, win_t, hr.crs, scene_px)
      for name, (path, ds) in masks.items()
  }
  return {
      "hr": hr_img,
      "lr": lr_img,
      "masks": out_masks,
      "bounds": window_bounds(window, hr.transform),
  }


def build(
    out_dir: str,
    hr_paths: Sequence[str],
    lr_paths: Sequence[str] | None = None,
    *,
    name: str = "geotiff_pairs",
    scene_px: int = DEFAULT_SCENE_PX,
    grid: int = DEFAULT_GRID,
    lr_scale: int | None = None,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    max_nodata_frac: float = 0.05,
    mask_paths: Mapping[str, str] | None = None,
    hr_time: str | None = None,
    lr_time: str | None = None,
    psf_sigma: float = 0.5,
    noise_std: float = 0.01,
    records_per_shard: int = 512,
) -> shards.Manifest:
  """Tiles an HR raster and its LR counterpart into scenes in `out_dir`.

  See the module docstring for the geometry. Without `lr_paths` the LR is
  synthesised with sensor.degrade at `lr_scale` (then required; with
  `lr_paths`, `lr_scale` if given must equal the measured scale) with an RNG
  seeded per window from (seed, row, col); `psf_sigma`/`noise_std` go to
  sensor.degrade (its noise is relative to the dtype range: 255 for uint8,
  65535 for uint16, so lower `noise_std` for 11/12-bit data in uint16).
  """
  hr_paths = [str(p) for p in hr_paths]
  lr_paths = [str(p) for p in lr_paths] if lr_paths else None
  mask_paths = dict(mask_paths or {})
  if not lr_paths and lr_scale is None:
    raise records.DataError(
        "no --lr rasters and no --lr_scale: pass the LR raster(s) with --lr, "
        "or --lr_scale S to synthesise the LR from the HR (sensor.degrade)."
    )
  if not 0.0 <= max_nodata_frac <= 1.0:
    raise records.DataError(
        f"max_nodata_frac={max_nodata_frac} must be in " "[0, 1]."
    )
  check_sizes(scene_px, grid, 1, "--scene_px/--grid")
  degrade_kw = {"psf_sigma": psf_sigma, "noise_std": noise_std}
  with contextlib.ExitStack() as stack:
    hr = open_side(hr_paths, "--hr", stack)
    hr_gsd = hr_gsd_metres(hr)
    lr = open_side(lr_paths, "--lr", stack) if lr_paths else None
    if lr is not None:
      box = footprint_overlap(hr, lr)
      scale, ratio = lr_scale_of(hr, lr)
      if scale < 1:
        raise records.DataError(
            f"--lr {lr.paths[0]} is finer than --hr {hr.paths[0]} (pixel size "
            f"ratio {ratio:.3f}): swap --hr and --lr."
        )
      if lr_scale is not None and lr_scale != scale:
        raise records.DataError(
            f"--lr_scale {lr_scale} but --lr {lr.paths[0]} is {ratio:.3f}x "
            f"coarser than --hr {hr.paths[0]} (scale {scale}): drop "
            "--lr_scale (it is measured from the rasters when --lr is given)."
        )
    else:
      box, scale, ratio = hr.bounds, int(lr_scale), float(lr_scale)
    check_sizes(scene_px, grid, scale, f"--hr {hr.paths[0]}")
    masks = {}
    for mname in sorted(mask_paths):
      path = mask_paths[mname]
      if not os.path.isfile(path):
        raise records.DataError(f"mask {mname!r}: {path} not found.")
      masks[mname] = (path, stack.enter_context(rasterio.open(path)))
    tiles = tile_windows(hr.transform, hr.shape, box, scene_px)
    if not tiles:
      raise records.DataError(
          f"--hr {hr.paths[0]}: the LR/HR overlap {box} holds no "
          f"{scene_px}x{scene_px} HR window: pass a smaller --scene_px."
      )
    kept = []
    for row, col, window in tiles:
      rng = np.random.default_rng([seed, row, col])
      arrays = _window_scene(
          hr,
          lr,
          masks,
          window,
          scale,
          scene_px,
          max_nodata_frac,
          rng,
          degrade_kw,
      )
      if arrays is not None:
        kept.append((row, col, arrays))
    times = [
        side_time(hr, hr_time, "--hr_time"),
        side_time(lr, lr_time, "--lr_time"),
    ]
    if lr is None and times[1] is None:
      times[1] = times[0]  # The synthetic LR is the HR acquisition.
    crs = hr.crs.to_string()
    hr_bands, lr_bands = hr.bands, (lr.bands if lr is not None else hr.bands)
    hr_stem = hr.stem
  if not kept:
    raise records.DataError(
        f"--hr {hr_paths[0]}: all {len(tiles)} windows have more than "
        f"{max_nodata_frac:.0%} nodata (HR or LR): check the nodata values / "
        "overlap, or raise --max_nodata_frac."
    )
  class_names = sorted(masks)
  splits = common.assign_splits(len(kept), split_fractions, seed)

  def scenes():
    for (row, col, a), split in zip(kept, splits):
      labels = np.array(
          [int(np.any(a["masks"][m] != 0)) for m in class_names], np.uint8
      )
      yield records.Scene(
          id=f"{hr_stem}_r{row}_c{col}",
          lr=a["lr"],
          hr=a["hr"],
          lr_bands=lr_bands,
          hr_bands=hr_bands,
          lr_gsd=hr_gsd * scale,
          hr_gsd=hr_gsd,
          grid=grid,
          labels=labels,
          split=split,
          masks=a["masks"],
          crs=crs,
          bounds=a["bounds"],
          hr_time=times[0],
          lr_time=times[1],
      )

  builder = {
      "builder": "geotiff_pairs",
      "hr_paths": [os.path.abspath(p) for p in hr_paths],
      "lr_paths": [os.path.abspath(p) for p in lr_paths] if lr_paths else None,
      "lr_source": "raster" if lr_paths else "sensor.degrade",
      "mask_paths": {k: os.path.abspath(v) for k, v in mask_paths.items()},
      "scale": scale,
      "gsd_ratio": ratio,
      "scene_px": scene_px,
      "grid": grid,
      "lr_resampling": LR_RESAMPLING.name if lr_paths else None,
      "degrade": None if lr_paths else degrade_kw,
      "max_nodata_frac": max_nodata_frac,
      "windows": len(tiles),
      "windows_dropped_nodata": len(tiles) - len(kept),
      "split_fractions": list(split_fractions),
      "seed": seed,
  }
  return shards.write_dataset(
      out_dir,
      name,
      scenes(),
      class_names,
      records_per_shard=records_per_shard,
      builder=builder,
      expected_per_split=dict(collections.Counter(splits)),
  )


def _parse_masks(items: Sequence[str] | None) -> dict[str, str]:
  """["water=w.tif", ...] -> {"water": "w.tif"}."""
  out = {}
  for item in items or ():
    mname, sep, path = item.partition("=")
    if not sep or not mname or not path:
      raise records.DataError(f"--mask {item!r}: expected NAME=FILE.")
    out[mname] = path
  return out


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(
      description="Build aligned LR/HR scene records from GeoTIFFs."
  )
  p.add_argument(
      "--hr",
      nargs="+",
      required=True,
      help="HR raster, or single-band rasters stacked as bands",
  )
  p.add_argument(
      "--lr",
      nargs="+",
      default=None,
      help="LR raster(s), any CRS; omit to synthesise with " "--lr_scale",
  )
  p.add_argument(
      "--lr_scale",
      type=int,
      default=None,
      help="synthetic LR downsampling factor (without --lr)",
  )
  p.add_argument(
      "--psf_sigma",
      type=float,
      default=0.5,
      help="synthetic LR blur (sensor.degrade)",
  )
  p.add_argument(
      "--noise_std",
      type=float,
      default=0.01,
      help="synthetic LR noise, fraction of the dtype range",
  )
  p.add_argument("--name", default="geotiff_pairs")
  p.add_argument(
      "--scene_px",
      type=int,
      default=DEFAULT_SCENE_PX,
      help="HR window size in pixels",
  )
  p.add_argument(
      "--grid", type=int, default=DEFAULT_GRID, help="HR tile grid size G"
  )
  p.add_argument(
      "--split_fractions",
      type=float,
      nargs=3,
      default=(0.7, 0.15, 0.15),
      metavar=("TRAIN", "VAL", "TEST"),
  )
  p.add_argument("--max_nodata_frac", type=float, default=0.05)
  p.add_argument(
      "--mask",
      action="append",
      default=None,
      metavar="NAME=FILE",
      help="mask raster resampled onto each HR window (repeatable)",
  )
  p.add_argument("--hr_time", default=None, help="ISO-8601 HR time")
  p.add_argument("--lr_time", default=None, help="ISO-8601 LR time")
  common.add_common_flags(p)
  args = p.parse_args(argv)
  m = common.run_build(
      lambda: build(
          args.out,
          args.hr,
          args.lr,
          name=args.name,
          scene_px=args.scene_px,
          grid=args.grid,
          lr_scale=args.lr_scale,
          split_fractions=args.split_fractions,
          seed=args.seed,
          max_nodata_frac=args.max_nodata_frac,
          mask_paths=_parse_masks(args.mask),
          hr_time=args.hr_time,
          lr_time=args.lr_time,
          psf_sigma=args.psf_sigma,
          noise_std=args.noise_std,
          records_per_shard=args.records_per_shard,
      ),
      args.out,
      summary=False,
  )
  counts = {s: m.num_records(s) for s in m.splits}
  print(
      f"{m.name}: hr {m.hr_shape} @ {m.hr_gsd:.3g} m, lr {m.lr_shape} @ "
      f"{m.lr_gsd:.3g} m, {m.builder['windows_dropped_nodata']} of "
      f"{m.builder['windows']} windows dropped (nodata), splits {counts} "
      f"-> {args.out}"
  )


if __name__ == "__main__":
  main()
