"""Scene metadata: footprints validated and projected to equal area.

`scenes_from_arrays(ids, geoms, times, cloud, crs)` checks one metadata table
(unique ids, valid (Multi)Polygon footprints, ISO-8601 times, cloud in
[0, 1]) and reprojects its footprints to EASE-Grid 2.0 Global (EPSG:6933),
where areas are true ellipsoidal areas; the result is a `Scenes`. Every reader
(geoparquet_io.read_table, synthetic_footprints.synth_scenes) ends here.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Sequence

import numpy as np
import pyproj
import shapely

from crossscale import records

EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global.
OUTPUT_CRS = "OGC:CRS84"  # lon/lat, the GeoParquet default.
_EASE_HALF_WIDTH = 17367530.445161372  # x of +-180 deg in EPSG:6933 (m).
US_PER_DAY = 86_400 * 1_000_000  # Microseconds per day.
# Deviation (m) from a straight edge above which an edge is densified.
DENSIFY_TOL_M = 1.0
DENSIFY_PARTS = 16


@dataclasses.dataclass
class Scenes:
  """One metadata table, validated and projected to EQUAL_AREA_CRS.

  Attributes:
    source: where it came from (file path), for messages.
    ids: `[N]` object array of unique str ids.
    geoms: `[N]` shapely (Multi)Polygons in EQUAL_AREA_CRS (metres).
    t_us: `[N]` int64 UTC microseconds since 1970-01-01.
    cloud: `[N]` float64 cloud fraction in [0, 1].
    stratum: `[N]` object array of str, or None when the table has none.
    path: `[N]` object array of str (absolute; "" when unknown), or None.
  """

  source: str
  ids: np.ndarray
  geoms: np.ndarray
  t_us: np.ndarray
  cloud: np.ndarray
  stratum: np.ndarray | None = None
  path: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.ids)


def _first_bad(ids, mask, limit=3) -> str:
  bad = np.flatnonzero(mask)[:limit]
  more = (
      f" (and {int(mask.sum()) - len(bad)} more)" if mask.sum() > limit else ""
  )
  return ", ".join(repr(str(ids[i])) for i in bad) + more


def parse_times(values: Sequence[Any], ids, where: str) -> np.ndarray:
  """ISO-8601 strings / datetimes -> `[N]` int64 UTC microseconds."""
  out = np.empty(len(values), np.int64)
  epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
  for i, v in enumerate(values):
    try:
      if isinstance(v, str):
        v = datetime.datetime.fromisoformat(v.strip())
      elif isinstance(v, datetime.date) and not isinstance(
          v, datetime.datetime
      ):
        v = datetime.datetime(v.year, v.month, v.day)
      if not isinstance(v, datetime.datetime):
        raise ValueError(f"not a time: {v!r}")
    except ValueError as e:
      raise records.DataError(
          f"{where}: scene {str(ids[i])!r} has time {v!r}, which is not an "
          "ISO-8601 time: write e.g. 2020-08-31 or 2020-08-31T10:15:00Z "
          "(naive times are read as UTC)."
      ) from e
    if v.tzinfo is None:
      v = v.replace(tzinfo=datetime.timezone.utc)
    out[i] = (v - epoch) // datetime.timedelta(microseconds=1)
  return out


def _transform_coords(transformer, xy: np.ndarray) -> np.ndarray:
  x, y = transformer.transform(xy[:, 0], xy[:, 1])
  return np.column_stack([x, y])


def project(
    geoms: np.ndarray,
    crs: pyproj.CRS,
    ids,
    where: str,
    dst: str = EQUAL_AREA_CRS,
) -> np.ndarray:
  """`geoms` in `crs` -> `dst`, densifying edges that would bend.

  The edges of a geometry are densified (into DENSIFY_PARTS pieces of its
  longest edge) when the projected midpoint of a source edge lies more than
  DENSIFY_TOL_M metres off the straight projected edge.
  """
  tr = pyproj.Transformer.from_crs(crs, dst, always_xy=True)
  if crs == pyproj.CRS(dst):
    return geoms
  coords, gi = shapely.get_coordinates(geoms, return_index=True)
  same = gi[1:] == gi[:-1]
  a, b = coords[:-1][same], coords[1:][same]
  if len(a):
    ends_a = _transform_coords(tr, a)
    ends_b = _transform_coords(tr, b)
    mid = _transform_coords(tr, (a + b) / 2)
    # Distance of the projected source midpoint from the projected edge.
    d, m = ends_b - ends_a, mid - ends_a
    with np.errstate(invalid="ignore", divide="ignore"):
      dev = np.abs(d[:, 0] * m[:, 1] - d[:, 1] * m[:, 0]) / np.hypot(*d.T)
      dev = np.where(np.hypot(*d.T) > 0, dev, np.hypot(*m.T))
    bent = np.zeros(len(geoms), bool)
    bent[np.unique(gi[:-1][same][~(dev <= DENSIFY_TOL_M)])] = True
    if bent.any():
      edge = np.hypot(*(b - a).T)
      longest = np.zeros(len(geoms))
      np.maximum.at(longest, gi[:-1][same], edge)
      geoms = geoms.copy()
      geoms[bent] = shapely.segmentize(
          geoms[bent], longest[bent] / DENSIFY_PARTS
      )
  out = shapely.transform(geoms, lambda xy: _transform_coords(tr, xy))
  xmin, ymin, xmax, ymax = shapely.bounds(out).T
  bad = ~np.isfinite(xmin + ymin + xmax + ymax)
  if bad.any():
    raise records.DataError(
        f"{where}: footprints of scenes {_first_bad(ids, bad)} cannot be "
        f"projected from {crs.to_string()} to {dst} (outside the CRS's area "
        "of use, or the wrong CRS for these coordinates): check the table's "
        "CRS (lon/lat order for EPSG:4326)."
    )
  if dst == EQUAL_AREA_CRS:
    wide = (xmax - xmin) > _EASE_HALF_WIDTH
    if wide.any():
      raise records.DataError(
          f"{where}: footprints of scenes {_first_bad(ids, wide)} span more "
          "than half the globe in longitude: they cross the antimeridian. "
          "Split them at +-180 deg into a MultiPolygon (e.g. with the "
          "`antimeridian` package) first."
      )
  return out


def scenes_from_arrays(
    ids,
    geoms,
    times,
    cloud,
    crs,
    *,
    stratum=None,
    path=None,
    where: str = "metadata",
) -> Scenes:
  """Validates raw columns and projects footprints; the core of every reader.

  Args:
    ids: `[N]` scene ids (unique).
    geoms: `[N]` shapely geometries, or WKB bytes, or WKT strings, in `crs`.
    times: `[N]` ISO-8601 strings / datetimes, or int64 UTC microseconds.
    cloud: `[N]` cloud fractions in [0, 1].
    crs: anything pyproj.CRS accepts (e.g. "EPSG:4326").
    stratum / path: optional `[N]` strings.
    where: the file name, for messages.
  """
  ids = np.asarray([str(i) for i in ids], dtype=object)
  n = len(ids)
  if crs is None:
    raise records.DataError(
        f"{where}: no CRS for the footprints. Pass it (e.g. --hr_crs "
        "EPSG:4326 for a CSV; for GeoParquet write it in the `geo` "
        "metadata's `crs`)."
    )
  try:
    crs = pyproj.CRS(crs)
  except pyproj.exceptions.CRSError as e:
    raise records.DataError(
        f"{where}: CRS {crs!r} is not understood by PROJ ({e}): "
        "pass e.g. EPSG:4326."
    ) from e
  uniq, counts = np.unique(ids, return_counts=True)
  if (counts > 1).any():
    raise records.DataError(
        f"{where}: ids {list(uniq[counts > 1][:3])} repeat: ids "
        "must be unique within a table."
    )
  geoms = np.asarray(geoms, dtype=object)
  if n and not isinstance(geoms[0], shapely.Geometry):
    parse = shapely.from_wkt if isinstance(geoms[0], str) else shapely.from_wkb
    kind = "WKT" if isinstance(geoms[0], str) else "WKB"
    out = parse(geoms, on_invalid="ignore")
    bad = shapely.is_missing(out) & ~np.array([g is None for g in geoms])
    if bad.any():
      raise records.DataError(
          f"{where}: footprints of scenes {_first_bad(ids, bad)} "
          f"are not parseable {kind}: fix or drop those rows."
      )
    geoms = out
  missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
  if missing.any():
    raise records.DataError(
        f"{where}: scenes {_first_bad(ids, missing)} have an "
        "empty or missing footprint: fill it in or drop the rows."
    )
  kind = shapely.get_type_id(geoms)
  not_poly = ~np.isin(kind, (3, 6))
  if not_poly.any():
    i = np.flatnonzero(not_poly)[0]
    raise records.DataError(
        f"{where}: scenes {_first_bad(ids, not_poly)} have a "
        f"{geoms[i].geom_type} footprint; footprints must be Polygons or "
        "MultiPolygons (a scene's covered area)."
    )
  invalid = ~shapely.is_valid(geoms)
  if invalid.any():
    i = np.flatnonzero(invalid)[0]
    raise records.DataError(
        f"{where}: scenes {_first_bad(ids, invalid)} have an invalid "
        f"footprint ({shapely.is_valid_reason(geoms[i])}): repair them, e.g. "
        "with shapely.make_valid or ST_MakeValid, before the join."
    )
  if isinstance(times, np.ndarray) and np.issubdtype(times.dtype, np.integer):
    t_us = times.astype(np.int64)
  else:
    t_us = parse_times(list(times), ids, where)
  cloud = np.asarray(cloud, np.float64)
  bad = ~((cloud >= 0) & (cloud <= 1))
  if bad.any():
    pct = np.nanmax(cloud) <= 100 and np.nanmin(cloud) >= 0
    raise records.DataError(
        f"{where}: scenes {_first_bad(ids, bad)} have cloud fractions outside "
        "[0, 1] (or missing)"
        + (
            ": the column looks like percent, divide it " "by 100."
            if pct
            else "."
        )
    )
  geoms = project(geoms, crs, ids, where)
  strat = (
      None
      if stratum is None
      else np.asarray(["" if s is None else str(s) for s in stratum], object)
  )
  paths = (
      None
      if path is None
      else np.asarray(["" if p is None else str(p) for p in path], object)
  )
  return Scenes(where, ids, geoms, t_us, cloud, strat, paths)
