"""Georeferenced rasters of one LR/HR side: open, align, window, warp.

`open_side(paths, flag, stack)` opens one raster (or single-band rasters
stacked as bands, checked to share one grid) as a `Side`;
`footprint_overlap` and `lr_scale_of` relate an HR and an LR side;
`tile_windows` cuts the HR grid into windows, `read_hr` / `warp_lr` /
`warp_mask` read a window (the LR warped onto it); `side_time` and
`landsat_time` give acquisition times. Used by data.geotiff_pairs.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import math
import os
import re
from typing import Any, Sequence

import numpy as np
import rasterio
from rasterio import warp, windows
from rasterio.enums import Resampling

from crossscale import records

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
