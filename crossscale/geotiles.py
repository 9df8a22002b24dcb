"""A large LR raster cut into a model's scenes and HR tile grid.

Used by `crossscale.plan` (which tiles to buy) and `crossscale.predict` (run
the model on the tiles bought). Plain rasterio + numpy + pyproj.

- `open_lr` opens a georeferenced raster and picks the model's bands by name:
  band descriptions, else colour interpretation (red/green/blue), else a
  sensor name table (`SENSORS`: NAIP is recognised by its file name), else
  `--band_names`; numeric `--bands 1,2,3` pick by position.
- `make_grid` lays the scene grid over it (`PlanGrid`): scenes of the run's
  LR size `h x w` at the planning GSD, each a G x G grid of HR tiles, all in
  the raster's CRS, from its top-left corner (edge strips narrower than a
  scene are not planned).
- `read_scenes` reads a row of scenes through one window (resampled with a
  WarpedVRT when the planning GSD is not the raster's), so memory depends
  on the batch, not on the raster.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Sequence

import numpy as np
import pyproj
import rasterio
from rasterio import vrt, warp, windows
from rasterio.enums import Resampling

# Raster band names of known sensors, in file band order.
SENSORS = {
    "naip": ("R", "G", "B", "NIR"),
    "sentinel2": (
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
        "B09", "B10", "B11", "B12",
    ),  # fmt: skip
    "landsat8": tuple(f"B{i}" for i in range(1, 12)),
    "landsat7": ("B1", "B2", "B3", "B4", "B5", "B6", "B7"),
    "spacenet_ms": ("B", "G", "R", "NIR"),
}
# Colour names each sensor band also answers to.
_COLOURS = {
    "sentinel2": {"B02": "B", "B03": "G", "B04": "R", "B08": "NIR"},
    "landsat8": {"B2": "B", "B3": "G", "B4": "R", "B5": "NIR", "B6": "SWIR1"},
    "landsat7": {"B1": "B", "B2": "G", "B3": "R", "B4": "NIR", "B5": "SWIR1"},
}
_ALIASES = {
    "red": "R",
    "green": "G",
    "blue": "B",
    "nir": "NIR",
    "near-infrared": "NIR",
    "swir1": "SWIR1",
}
# NAIP quarter-quad file names: m_4709963_se_14_1_20200831.tif
_NAIP_NAME = re.compile(r"^m_\d{7}_(ne|nw|se|sw)_\d+_", re.IGNORECASE)


def canonical(name: str) -> str:
  """'red' / 'Red' / 'R' -> 'R'; other names upper-cased."""
  return _ALIASES.get(name.strip().lower(), name.strip().upper())


@dataclasses.dataclass
class LRRaster:
  """An open raster and the bands the model reads.

  Attributes:
    path: the file.
    ds: the open rasterio dataset.
    bands: 1-based band indexes, in the model's band order.
    names: every band's names (`[count]` tuples) as resolved.
    gsd_m: (x, y) pixel size in metres at the raster's centre.
  """

  path: str
  ds: rasterio.io.DatasetReader
  bands: list[int]
  names: list[tuple[str, ...]]
  gsd_m: tuple[float, float]

  @property
  def nodata(self):
    return self.ds.nodata


def band_names(
    ds, path: str, sensor: str | None, given: Sequence[str] | None
) -> tuple[list[tuple[str, ...]], str]:
  """Every band's names and where they came from."""
  n = ds.count
  if given:
    if len(given) != n:
      raise ValueError(
          f"{path}: --band_names names {len(given)} bands but the raster has "
          f"{n}; give one name per band."
      )
    return [(canonical(g),) for g in given], "--band_names"
  if sensor is None and _NAIP_NAME.match(os.path.basename(path)) and n == 4:
    sensor = "naip"
  if sensor:
    if sensor not in SENSORS:
      raise ValueError(f"--sensor {sensor!r} unknown; known: {list(SENSORS)}")
    table = SENSORS[sensor]
    if len(table) != n:
      raise ValueError(
          f"{path} has {n} bands but a {sensor} raster has {len(table)} "
          f"({','.join(table)}); name them with --band_names."
      )
    colours = _COLOURS.get(sensor, {})
    return [
        (b, colours[b]) if b in colours else (b,) for b in table
    ], f"the {sensor} band table"
  if any(ds.descriptions):
    return [
        (canonical(d),) if d else (f"BAND{i + 1}",)
        for i, d in enumerate(ds.descriptions)
    ], "band descriptions"
  interp = [c.name for c in ds.colorinterp]
  if {"red", "green", "blue"} <= set(interp):
    return [
        (canonical(c),) if c in ("red", "green", "blue") else (f"BAND{i + 1}",)
        for i, c in enumerate(interp)
    ], "colour interpretation"
  return [(f"BAND{i + 1}",) for i in range(n)], "nothing (unnamed bands)"


def pick_bands(
    names: list[tuple[str, ...]], want: Sequence[str], path: str, source: str
) -> list[int]:
  """1-based indexes of `want` (names, or 1-based numbers) among `names`."""
  out = []
  for w in want:
    if w.strip().isdigit():
      i = int(w)
      if not 1 <= i <= len(names):
        raise ValueError(f"{path}: band {i} out of range 1..{len(names)}.")
      out.append(i)
      continue
    hits = [i + 1 for i, ns in enumerate(names) if canonical(w) in ns]
    if not hits:
      present = ["/".join(ns) for ns in names]
      raise ValueError(
          f"{path} has no band {w!r}: its bands are {present} (named from "
          f"{source}). Name them with --band_names (e.g. "
          f"--band_names {','.join(SENSORS['naip'][: len(names)])}) or "
          f"--sensor {{{','.join(SENSORS)}}}, or pick by position with "
          "--bands 1,2,3."
      )
    out.append(hits[0])
  return out


def gsd_metres(ds) -> tuple[float, float]:
  """(x, y) pixel size in metres at the raster's centre (geodesic for a
  geographic CRS)."""
  t = ds.transform
  if ds.crs.is_geographic:
    geod = pyproj.Geod(ellps="WGS84")
    cx, cy = t @ (ds.width / 2, ds.height / 2)
    _, _, dx = geod.inv(cx, cy, cx + abs(t.a), cy)
    _, _, dy = geod.inv(cx, cy, cx, cy + abs(t.e))
    return float(dx), float(dy)
  f = ds.crs.linear_units_factor[1]
  return abs(t.a) * f, abs(t.e) * f


def check_georeferenced(ds, path: str, flag: str = "--lr") -> None:
  """A raster without CRS or transform (or rotated) is an error."""
  if ds.crs is None:
    raise ValueError(
        f"{flag} {path} has no CRS: it is not georeferenced. Assign one "
        "(gdal_edit.py -a_srs EPSG:XXXX FILE) or use a georeferenced copy."
    )
  t = ds.transform
  if t.is_identity or t == rasterio.Affine.identity():
    raise ValueError(
        f"{flag} {path} has no geotransform (pixel coordinates only): "
        "georeference it (gdal_edit.py -a_ullr ULX ULY LRX LRY FILE)."
    )
  if t.b or t.d or t.a <= 0 or t.e >= 0:
    raise ValueError(
        f"{flag} {path} is rotated or not north-up (transform {tuple(t)[:6]})"
        ": warp it north-up first (gdalwarp FILE OUT)."
    )


def open_lr(
    path: str,
    want: Sequence[str],
    *,
    sensor: str | None = None,
    band_names_given: Sequence[str] | None = None,
) -> LRRaster:
  """Opens `path` and resolves the bands `want`; ValueError naming the file
  and the fix when it is missing, unreadable, not georeferenced or lacks a
  band."""
  if not os.path.isfile(path):
    raise ValueError(f"--lr {path}: file not found.")
  try:
    ds = rasterio.open(path)
  except rasterio.errors.RasterioIOError as e:
    raise ValueError(
        f"--lr {path} could not be opened as a raster ({e}): it is corrupt "
        "or not a GeoTIFF."
    ) from e
  try:
    check_georeferenced(ds, path)
    names, source = band_names(ds, path, sensor, band_names_given)
    bands = pick_bands(names, want, path, source)
  except ValueError:
    ds.close()
    raise
  return LRRaster(path, ds, bands, names, gsd_metres(ds))


# ------------------------------------------------------------------ grid


@dataclasses.dataclass(frozen=True)
class PlanGrid:
  """Scenes of `h x w` planning pixels, each a G x G grid of HR tiles.

  `transform` maps planning pixels (the run's LR pixels) to the raster's
  CRS; scene (i, j) covers planning rows i*h..(i+1)*h, cols j*w..; tile
  n = r * G + c of a scene covers its rows r*h/G.. and cols c*w/G.. .
  """

  crs: rasterio.crs.CRS
  transform: rasterio.Affine
  h: int
  w: int
  grid: int
  rows: int
  cols: int
  factor: tuple[float, float]  # planning pixel / raster pixel (x, y)

  @property
  def num_scenes(self) -> int:
    return self.rows * self.cols

  @property
  def tiles_per_scene(self) -> int:
    return self.grid * self.grid

  @property
  def width(self) -> int:  # planning pixels covered
    return self.cols * self.w

  @property
  def height(self) -> int:
    return self.rows * self.h

  def scene_bounds(self, i: int, j: int) -> tuple[float, ...]:
    """(minx, miny, maxx, maxy) of scene (i, j) in the raster CRS."""
    t = self.transform
    x0, y0 = t @ (j * self.w, i * self.h)
    x1, y1 = t @ ((j + 1) * self.w, (i + 1) * self.h)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

  def tile_bounds(self, i: int, j: int, n: int) -> tuple[float, ...]:
    """(minx, miny, maxx, maxy) of tile n of scene (i, j): the scene's
    footprint cut into G x G equal parts (they tile it exactly)."""
    x0, y0, x1, y1 = self.scene_bounds(i, j)
    g, (r, c) = self.grid, divmod(n, self.grid)
    dx, dy = (x1 - x0) / g, (y1 - y0) / g
    return x0 + c * dx, y1 - (r + 1) * dy, x0 + (c + 1) * dx, y1 - r * dy

  def tile_transform(self) -> rasterio.Affine:
    """Pixels of the tile raster (G per scene side) -> raster CRS."""
    t = self.transform
    return rasterio.Affine(
        t.a * self.w / self.grid, 0.0, t.c, 0.0, t.e * self.h / self.grid, t.f
    )

  def hr_transform(self, i: int, j: int, hr_h: int, hr_w: int):
    """Affine of scene (i, j)'s HR pixel grid (`hr_h x hr_w` px)."""
    t = self.transform
    x0, y0 = t @ (j * self.w, i * self.h)
    return rasterio.Affine(
        t.a * self.w / hr_w, 0.0, x0, 0.0, t.e * self.h / hr_h, y0
    )


def make_grid(
    lr: LRRaster, hw: tuple[int, int], grid: int, gsd_m: float | None
) -> PlanGrid:
  """The scene grid over `lr` for scenes of `hw` planning pixels at
  `gsd_m` metres (None: the raster's own pixels). A raster smaller than one
  scene is an error naming the sizes."""
  ds = lr.ds
  fx = fy = 1.0
  if gsd_m is not None:
    fx, fy = gsd_m / lr.gsd_m[0], gsd_m / lr.gsd_m[1]
    if math.isclose(fx, 1.0, rel_tol=1e-3) and math.isclose(
        fy, 1.0, rel_tol=1e-3
    ):
      fx = fy = 1.0
  t = ds.transform
  transform = rasterio.Affine(t.a * fx, 0.0, t.c, 0.0, t.e * fy, t.f)
  width = int(math.floor(ds.width / fx + 1e-6))
  height = int(math.floor(ds.height / fy + 1e-6))
  h, w = hw
  rows, cols = height // h, width // w
  if not rows or not cols:
    raise ValueError(
        f"--lr {lr.path} is {ds.width}x{ds.height} px "
        f"({width}x{height} at the planning GSD), smaller than one scene "
        f"of the model ({w}x{h} LR px): use a larger raster, or a run "
        "trained on smaller scenes."
    )
  return PlanGrid(ds.crs, transform, h, w, grid, rows, cols, (fx, fy))


def window_source(lr: LRRaster, g: PlanGrid):
  """What `read_scenes` reads from: the dataset, or a WarpedVRT that
  resamples it onto the planning grid (lazy: read by windows)."""
  if g.factor == (1.0, 1.0):
    return lr.ds
  return vrt.WarpedVRT(
      lr.ds,
      crs=lr.ds.crs,
      transform=g.transform,
      width=g.width,
      height=g.height,
      resampling=Resampling.average,
      src_nodata=lr.ds.nodata,
      nodata=np.nan if lr.ds.nodata is None else lr.ds.nodata,
      dtype="float32",
  )


def nodata_mask(a: np.ndarray, nodata) -> np.ndarray:
  """`[C, H, W]` -> `[H, W]` bool: True where any band is nodata/NaN."""
  bad = np.zeros(a.shape[1:], bool)
  if np.issubdtype(a.dtype, np.floating):
    bad |= ~np.isfinite(a).all(0)
  if nodata is not None and not (
      isinstance(nodata, float) and math.isnan(nodata)
  ):
    bad |= (a == nodata).any(0)
  return bad


def read_scenes(
    src, lr: LRRaster, g: PlanGrid, i: int, j0: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
  """Scenes (i, j0..j0+n-1) -> (pixels `[n, h, w, C]` float32, nodata
  `[n, h, w]` bool), through one window of `src` (`window_source`)."""
  win = windows.Window(j0 * g.w, i * g.h, n * g.w, g.h)
  a = src.read(lr.bands, window=win)  # [C, h, n*w]
  bad = nodata_mask(a, src.nodata)
  a = a.astype(np.float32, copy=False)
  px = a.reshape(a.shape[0], g.h, n, g.w).transpose(2, 1, 3, 0)
  return np.ascontiguousarray(px), bad.reshape(g.h, n, g.w).transpose(1, 0, 2)


def band_means(ds, bands: Sequence[int], max_px: int = 256) -> np.ndarray:
  """`[C]` per-band mean of `ds`'s `bands` (1-based) over a nearest-
  decimated read of <= max_px a side, nodata and non-finite pixels left
  out (NaN for a band with none valid)."""
  f = max(1, math.ceil(max(ds.width, ds.height) / max_px))
  shape = (len(bands), max(1, ds.height // f), max(1, ds.width // f))
  a = ds.read(list(bands), out_shape=shape, resampling=Resampling.nearest)
  good = ~nodata_mask(a, ds.nodata)[None] & np.isfinite(a)
  n = good.sum((1, 2))
  total = np.where(good, a, 0).astype(np.float64).sum((1, 2))
  return np.where(n > 0, total / np.maximum(n, 1), np.nan)


# ------------------------------------------------------------- geometry


def transformer(src_crs, dst_crs="EPSG:4326") -> pyproj.Transformer:
  return pyproj.Transformer.from_crs(
      pyproj.CRS.from_user_input(src_crs.to_wkt() if src_crs else src_crs),
      pyproj.CRS.from_user_input(dst_crs),
      always_xy=True,
  )


def box_ring(b: Sequence[float]) -> list[list[float]]:
  """(minx, miny, maxx, maxy) -> a closed counter-clockwise ring."""
  x0, y0, x1, y1 = b
  return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def ring_to(tr: pyproj.Transformer, ring) -> list[list[float]]:
  xs, ys = tr.transform([p[0] for p in ring], [p[1] for p in ring])
  return [[float(x), float(y)] for x, y in zip(xs, ys)]


def area_km2(crs, b: Sequence[float]) -> float:
  """Area of box `b` (raster CRS) in km^2 (geodesic in a geographic CRS)."""
  if crs.is_geographic:
    geod = pyproj.Geod(ellps="WGS84")
    ring = box_ring(b)
    a, _ = geod.polygon_area_perimeter(
        [p[0] for p in ring], [p[1] for p in ring]
    )
    return abs(a) / 1e6
  f = crs.linear_units_factor[1]
  return (b[2] - b[0]) * (b[3] - b[1]) * f * f / 1e6


def bounds_in(src_crs, dst_crs, b) -> tuple[float, ...] | None:
  """Box `b` in `dst_crs` (densified), or None when not transformable."""
  try:
    out = warp.transform_bounds(src_crs, dst_crs, *b, densify_pts=21)
  except Exception:  # pylint: disable=broad-except  (PROJ errors vary)
    return None
  return out if all(np.isfinite(out)) else None


def intersects(a, b) -> bool:
  return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
