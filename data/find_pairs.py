r"""LR/HR pairs by a spatio-temporal join of scene metadata (GeoSR-Bench style).

GeoSR-Bench finds coincident LR/HR scenes on metadata only (ids, footprints,
times) with Apache Sedona, never on pixels. This module does that join and
writes the pairs as GeoParquet; `build` then feeds each pair to
data.geotiff_pairs.

Metadata tables (one for HR scenes, one for LR scenes), either
  * GeoParquet (1.0/1.1, WKB geometry; the CRS comes from its `geo` metadata),
  * or CSV with the footprint as WKT (the CRS is given with --hr_crs/--lr_crs).
Columns: `id` (unique), the footprint (GeoParquet: the primary geometry column;
CSV: `footprint`), `time` (ISO-8601 string or a Parquet timestamp; naive times
are UTC), `cloud` (fraction in [0, 1]), optional `stratum` (land-cover class)
and optional `path` (the raster; several single-band files stacked as bands are
joined with ";"; relative paths are relative to the table's folder).
Footprints are (Multi)Polygons, valid and non-empty.

Geometry: every footprint is reprojected to EASE-Grid 2.0 Global (EPSG:6933),
a cylindrical *equal-area* projection of the WGS84 ellipsoid. Areas measured
there are true ellipsoidal areas, so overlap = area(HR n LR) / area(HR) is
computed by the join itself (ST_Area in SQL) the same way by every engine, with
no per-pair geodesic step afterwards. (Geodesic areas, e.g. pyproj.Geod, are as
exact but cannot run inside the SQL join.) Edges are densified before the
projection where a straight source edge would bend (e.g. a UTM scene edge);
lon/lat boxes stay 4-vertex boxes (meridians and parallels are straight in a
cylindrical projection). Footprints crossing the antimeridian must be split
there first (a DataError says so); EASE-Grid 2.0 is defined to +-86 deg.

Join (JOIN_SQL, one SQL string run by SedonaDB or by Apache Sedona on Spark):
  ST_Intersects(hr, lr), |t_hr - t_lr| <= max_days, cloud <= max_cloud on both
  sides, overlap >= min_overlap (1e-9 tolerance); per HR scene the best LR
  (largest overlap rounded to 1e-9, then smallest time gap, then LR row order),
  or every match with all_matches. Then, seeded, at most per_stratum pairs per
  land-cover stratum (the HR scene's stratum, else the LR's).
Engines: "sedonadb" (default, embedded), "spark" (Apache Sedona; its jars come
from Maven: set CROSSSCALE_SEDONA_PACKAGES to override the coordinates), and
"shapely" (an STRtree reference written independently of the SQL).

Output GeoParquet 1.1 (`geo` metadata, WKB): geometry = the HR n LR
intersection in lon/lat (OGC:CRS84); hr_id, lr_id, hr_path, lr_path, hr_time,
lr_time (UTC timestamps), time_gap_days (|lr - hr|), overlap (of the HR
footprint), overlap_lr (of the LR footprint), intersection_km2, hr_cloud,
lr_cloud, stratum. Rows sorted by (hr_id, lr_id).

Usage:
  python -m data.find_pairs join --hr hr.parquet --lr lr.csv \
      --lr_crs EPSG:4326 --out pairs.parquet --min_overlap 0.9 \
      --max_days 30 --max_cloud 0.2 --per_stratum 500 --seed 0
  python -m data.find_pairs synth --n_hr 10000 --n_lr 10000 --out /tmp/meta
  python -m data.find_pairs rasters --out hr.parquet --time 2019-08-04 \
      ../shared/data/spacenet/preproc_tutorial/pan1.tif
  python -m data.find_pairs build --pairs pairs.parquet --out /tmp/pairs_ds \
      --scene_px 128
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import sys
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pyproj
import shapely

from crossscale import records

DataError = records.DataError

EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global.
OUTPUT_CRS = "OGC:CRS84"  # lon/lat, the GeoParquet default.
_EASE_HALF_WIDTH = 17367530.445161372  # x of +-180 deg in EPSG:6933 (m).
ENGINES = ("sedonadb", "spark", "shapely")
REQUIRED = ("id", "time", "cloud")
CSV_GEOMETRY = "footprint"
OVERLAP_TOL = 1e-9  # min_overlap tolerance and the rounding of overlap ranks.
_US_PER_DAY = 86_400 * 1_000_000
# Deviation (m) from a straight edge above which an edge is densified.
DENSIFY_TOL_M = 1.0
DENSIFY_PARTS = 16
SPARK_PACKAGES = "org.apache.sedona:sedona-spark-shaded-4.0_2.13:1.8.0"

# The join, shared by the SedonaDB and Spark engines. Views `hr` and `lr` have
# columns idx BIGINT (row), geom GEOMETRY (EPSG:6933), t_us BIGINT (UTC
# microseconds since the epoch), cloud DOUBLE. Parameters are formatted in by
# join_sql() from numbers only.
JOIN_SQL = """
WITH candidates AS (
  SELECT h.idx AS hr_idx, l.idx AS lr_idx,
         ABS(h.t_us - l.t_us) AS gap_us,
         ST_Area(h.geom) AS hr_area, ST_Area(l.geom) AS lr_area,
         ST_Intersection(h.geom, l.geom) AS inter
  FROM hr h JOIN lr l ON ST_Intersects(h.geom, l.geom)
  WHERE h.cloud <= {max_cloud} AND l.cloud <= {max_cloud}
    AND ABS(h.t_us - l.t_us) <= {max_gap_us}
), areas AS (
  SELECT *, ST_Area(inter) AS inter_area FROM candidates
), scored AS (
  SELECT hr_idx, lr_idx, gap_us, inter, inter_area,
         inter_area / hr_area AS overlap, inter_area / lr_area AS overlap_lr
  FROM areas
), ranked AS (
  SELECT *, ROW_NUMBER() OVER (
      PARTITION BY hr_idx
      ORDER BY ROUND(overlap, 9) DESC, gap_us ASC, lr_idx ASC) AS match_rank
  FROM scored
  WHERE overlap >= {min_overlap}
)
SELECT hr_idx, lr_idx, gap_us, inter_area, overlap, overlap_lr,
       ST_AsBinary(inter) AS inter_wkb
FROM ranked
WHERE match_rank <= {max_rank}
"""


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


# ----------------------------------------------------------------- validation


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
      raise DataError(
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
    raise DataError(
        f"{where}: footprints of scenes {_first_bad(ids, bad)} cannot be "
        f"projected from {crs.to_string()} to {dst} (outside the CRS's area "
        "of use, or the wrong CRS for these coordinates): check the table's "
        "CRS (lon/lat order for EPSG:4326)."
    )
  if dst == EQUAL_AREA_CRS:
    wide = (xmax - xmin) > _EASE_HALF_WIDTH
    if wide.any():
      raise DataError(
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
    raise DataError(
        f"{where}: no CRS for the footprints. Pass it (e.g. --hr_crs "
        "EPSG:4326 for a CSV; for GeoParquet write it in the `geo` "
        "metadata's `crs`)."
    )
  try:
    crs = pyproj.CRS(crs)
  except pyproj.exceptions.CRSError as e:
    raise DataError(
        f"{where}: CRS {crs!r} is not understood by PROJ ({e}): "
        "pass e.g. EPSG:4326."
    ) from e
  uniq, counts = np.unique(ids, return_counts=True)
  if (counts > 1).any():
    raise DataError(
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
      raise DataError(
          f"{where}: footprints of scenes {_first_bad(ids, bad)} "
          f"are not parseable {kind}: fix or drop those rows."
      )
    geoms = out
  missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
  if missing.any():
    raise DataError(
        f"{where}: scenes {_first_bad(ids, missing)} have an "
        "empty or missing footprint: fill it in or drop the rows."
    )
  kind = shapely.get_type_id(geoms)
  not_poly = ~np.isin(kind, (3, 6))
  if not_poly.any():
    i = np.flatnonzero(not_poly)[0]
    raise DataError(
        f"{where}: scenes {_first_bad(ids, not_poly)} have a "
        f"{geoms[i].geom_type} footprint; footprints must be Polygons or "
        "MultiPolygons (a scene's covered area)."
    )
  invalid = ~shapely.is_valid(geoms)
  if invalid.any():
    i = np.flatnonzero(invalid)[0]
    raise DataError(
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
    raise DataError(
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


# -------------------------------------------------------------------- readers


def _geo_metadata(path: str, schema: pa.Schema) -> dict:
  raw = (schema.metadata or {}).get(b"geo")
  if raw is None:
    raise DataError(
        f"{path}: no GeoParquet `geo` metadata, so the geometry column and "
        "its CRS are unknown. Write the file as GeoParquet (e.g. "
        "data.find_pairs.write_geoparquet or geopandas.to_parquet), or use a "
        f"CSV with a WKT `{CSV_GEOMETRY}` column and --hr_crs/--lr_crs."
    )
  return json.loads(raw)


def _absolute_paths(values, table_path: str):
  base = os.path.dirname(os.path.abspath(table_path))
  out = []
  for v in values:
    if v is None or v == "":
      out.append("")
      continue
    out.append(
        ";".join(
            p if os.path.isabs(p) else os.path.join(base, p)
            for p in str(v).split(";")
        )
    )
  return out


def read_table(path: str, crs: str | None = None) -> Scenes:
  """Reads a metadata table (GeoParquet or CSV with WKT) into Scenes.

  `crs` is required for CSV; for GeoParquet it may be given only when the file
  says its CRS is unknown (`crs: null`), or when it names the same CRS.
  """
  path = str(path)
  if not os.path.isfile(path):
    raise DataError(f"{path}: metadata table not found; check the path.")
  ext = os.path.splitext(path)[1].lower()
  if ext in (".parquet", ".geoparquet", ".pq"):
    try:
      table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
      raise DataError(f"{path}: not a readable Parquet file ({e}).") from e
    geo = _geo_metadata(path, table.schema)
    gcol = geo.get("primary_column", "geometry")
    meta = geo.get("columns", {}).get(gcol)
    if meta is None or gcol not in table.column_names:
      raise DataError(
          f"{path}: `geo` metadata names geometry column {gcol!r},"
          " which is not in the file: rewrite the file."
      )
    if str(meta.get("encoding", "")).upper() != "WKB":
      raise DataError(
          f"{path}: geometry encoding {meta.get('encoding')!r}; "
          "only WKB is read: rewrite with WKB encoding."
      )
    if "crs" not in meta:
      file_crs = OUTPUT_CRS  # GeoParquet: an absent crs means OGC:CRS84.
    elif meta["crs"] is None:
      file_crs = None
    else:
      file_crs = pyproj.CRS.from_user_input(meta["crs"])
    if (
        crs is not None
        and file_crs is not None
        and (pyproj.CRS(crs) != pyproj.CRS(file_crs))
    ):
      raise DataError(
          f"{path}: its GeoParquet CRS is {pyproj.CRS(file_crs).to_string()} "
          f"but {crs} was passed: drop the CRS flag (the file's is used)."
      )
    if file_crs is None and crs is None:
      raise DataError(
          f"{path}: its GeoParquet `crs` is null (unknown): pass the CRS "
          "(--hr_crs/--lr_crs EPSG:XXXX) or write it into the file."
      )
    crs = crs if file_crs is None else file_crs
    gc = table.column(gcol)
    if isinstance(gc.type, pa.ExtensionType):  # e.g. geoarrow.wkb.
      gc = pa.chunked_array(
          [c.storage for c in gc.chunks], gc.type.storage_type
      )
    geoms = gc.to_numpy(zero_copy_only=False)
    kind = "GeoParquet"
  elif ext in (".csv", ".txt"):
    try:
      table = pa_csv.read_csv(
          path,
          convert_options=pa_csv.ConvertOptions(
              column_types={
                  "id": pa.string(),
                  "time": pa.string(),
                  CSV_GEOMETRY: pa.string(),
                  "stratum": pa.string(),
                  "path": pa.string(),
              }
          ),
      )
    except pa.ArrowInvalid as e:
      raise DataError(
          f"{path}: CSV could not be parsed ({e}): check the "
          "header and that `cloud` holds numbers."
      ) from e
    if CSV_GEOMETRY not in table.column_names:
      raise DataError(
          f"{path}: missing column {CSV_GEOMETRY!r} (the footprint as WKT); "
          f"it has {table.column_names}."
      )
    if crs is None:
      raise DataError(
          f"{path}: a CSV carries no CRS: pass the CRS of its WKT "
          "footprints with --hr_crs/--lr_crs (e.g. EPSG:4326, lon/lat)."
      )
    geoms = table.column(CSV_GEOMETRY).to_numpy(zero_copy_only=False)
    kind = "CSV"
  else:
    raise DataError(
        f"{path}: unknown table format {ext!r}: use GeoParquet "
        "(.parquet) or CSV (.csv) with WKT footprints."
    )
  missing = [c for c in REQUIRED if c not in table.column_names]
  if missing:
    raise DataError(
        f"{path}: missing column(s) {missing}; a {kind} metadata table needs "
        f"{list(REQUIRED)} and a footprint, optional stratum and path; it has "
        f"{table.column_names}. Rename or add the column(s)."
    )
  ids = table.column("id").to_pylist()
  tcol = table.column("time")
  if pa.types.is_timestamp(tcol.type):
    if tcol.null_count:
      raise DataError(
          f"{path}: {tcol.null_count} scenes have no time: fill "
          "them in or drop the rows."
      )
    if tcol.type.tz is None:  # Naive: UTC.
      tcol = tcol.cast(pa.timestamp(tcol.type.unit))
    times = pc.cast(
        tcol.cast(pa.timestamp("us", tcol.type.tz)), pa.int64()
    ).to_numpy()
  elif pa.types.is_date(tcol.type):
    times = tcol.to_pylist()
  else:
    times = [None if t is None else str(t) for t in tcol.to_pylist()]
  try:
    cloud = table.column("cloud").cast(pa.float64()).fill_null(np.nan)
  except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
    raise DataError(f"{path}: column `cloud` is not numeric ({e}).") from e
  stratum = (
      table.column("stratum").to_pylist()
      if "stratum" in table.column_names
      else None
  )
  paths = (
      _absolute_paths(table.column("path").to_pylist(), path)
      if "path" in table.column_names
      else None
  )
  return scenes_from_arrays(
      ids,
      geoms,
      times,
      cloud.to_numpy(),
      crs,
      stratum=stratum,
      path=paths,
      where=path,
  )


# -------------------------------------------------------------------- engines


def join_sql(
    min_overlap: float, max_days: float, max_cloud: float, all_matches: bool
) -> str:
  """JOIN_SQL with its parameters (numbers only) filled in."""
  return JOIN_SQL.format(
      max_cloud=repr(float(max_cloud)),
      max_gap_us=int(round(float(max_days) * _US_PER_DAY)),
      min_overlap=repr(float(min_overlap) - OVERLAP_TOL),
      max_rank=2**62 if all_matches else 1,
  )


def _engine_table(s: Scenes, wkb_type) -> pa.Table:
  return pa.table(
      {
          "idx": pa.array(np.arange(len(s), dtype=np.int64)),
          "geom": pa.ExtensionArray.from_storage(
              wkb_type, pa.array(shapely.to_wkb(s.geoms), pa.binary())
          ),
          "t_us": pa.array(s.t_us),
          "cloud": pa.array(s.cloud),
      }
  )


_RESULT_COLS = (
    "hr_idx",
    "lr_idx",
    "gap_us",
    "inter_area",
    "overlap",
    "overlap_lr",
    "inter_wkb",
)


def _join_sedonadb(hr: Scenes, lr: Scenes, sql: str) -> dict[str, np.ndarray]:
  import geoarrow.pyarrow as ga  # pylint: disable=g-import-not-at-top
  import sedonadb  # pylint: disable=g-import-not-at-top

  sd = sedonadb.connect()
  wkb_type = ga.wkb().with_crs(pyproj.CRS(EQUAL_AREA_CRS).to_json())
  sd.create_data_frame(_engine_table(hr, wkb_type)).to_view("hr")
  sd.create_data_frame(_engine_table(lr, wkb_type)).to_view("lr")
  table = sd.sql(sql).to_arrow_table()
  return _result_arrays(table)


def _result_arrays(table: pa.Table) -> dict[str, np.ndarray]:
  out = {}
  for c in _RESULT_COLS:
    col = table.column(c)
    if isinstance(col.type, pa.ExtensionType):
      col = pa.chunked_array(
          [ch.storage for ch in col.chunks], col.type.storage_type
      )
    out[c] = col.to_numpy(zero_copy_only=False)
  for c in ("hr_idx", "lr_idx", "gap_us"):
    out[c] = out[c].astype(np.int64)
  return out


def _join_spark(hr: Scenes, lr: Scenes, sql: str) -> dict[str, np.ndarray]:
  """The same SQL on Apache Sedona for Spark (local mode)."""
  from sedona.spark import SedonaContext  # pylint: disable=g-import-not-at-top

  packages = os.environ.get("CROSSSCALE_SEDONA_PACKAGES", SPARK_PACKAGES)
  builder = SedonaContext.builder().master("local[*]").appName("find_pairs")
  if packages:
    builder = builder.config("spark.jars.packages", packages)
  spark = SedonaContext.create(builder.getOrCreate())
  for name, s in (("hr", hr), ("lr", lr)):
    raw = pa.table(
        {
            "idx": np.arange(len(s), dtype=np.int64),
            "wkb": pa.array(shapely.to_wkb(s.geoms), pa.binary()),
            "t_us": s.t_us,
            "cloud": s.cloud,
        }
    )
    try:  # Spark >= 4.0 takes a pyarrow Table; older ones need pandas.
      df = spark.createDataFrame(raw)
    except TypeError:
      df = spark.createDataFrame(raw.to_pandas())
    df.createOrReplaceTempView(f"{name}_raw")
    spark.sql(
        f"SELECT idx, ST_GeomFromWKB(wkb) AS geom, t_us, cloud "
        f"FROM {name}_raw"
    ).createOrReplaceTempView(name)
  result = spark.sql(sql)
  table = (
      result.toArrow()
      if hasattr(result, "toArrow")  # Spark >= 4.0.
      else pa.Table.from_pandas(result.toPandas())
  )
  return _result_arrays(table)


def _join_shapely(
    hr: Scenes,
    lr: Scenes,
    min_overlap: float,
    max_days: float,
    max_cloud: float,
    all_matches: bool,
) -> dict[str, np.ndarray]:
  """The reference: STRtree candidates, vectorised filters, numpy ranking."""
  hr_ok = np.flatnonzero(hr.cloud <= max_cloud)
  lr_ok = np.flatnonzero(lr.cloud <= max_cloud)
  tree = shapely.STRtree(lr.geoms[lr_ok])
  q, t = tree.query(hr.geoms[hr_ok])  # Envelope candidates.
  hi, li = hr_ok[q], lr_ok[t]
  gap = np.abs(hr.t_us[hi] - lr.t_us[li])
  keep = gap <= int(round(float(max_days) * _US_PER_DAY))
  hi, li, gap = hi[keep], li[keep], gap[keep]
  keep = shapely.intersects(hr.geoms[hi], lr.geoms[li])
  hi, li, gap = hi[keep], li[keep], gap[keep]
  inter = shapely.intersection(hr.geoms[hi], lr.geoms[li])
  inter_area = shapely.area(inter)
  overlap = inter_area / shapely.area(hr.geoms[hi])
  overlap_lr = inter_area / shapely.area(lr.geoms[li])
  keep = overlap >= float(min_overlap) - OVERLAP_TOL
  hi, li, gap, inter = hi[keep], li[keep], gap[keep], inter[keep]
  inter_area, overlap, overlap_lr = (
      inter_area[keep],
      overlap[keep],
      overlap_lr[keep],
  )
  order = np.lexsort((li, gap, -np.round(overlap, 9), hi))
  if not all_matches:
    first = np.ones(len(order), bool)
    first[1:] = hi[order][1:] != hi[order][:-1]
    order = order[first]
  return {
      "hr_idx": hi[order],
      "lr_idx": li[order],
      "gap_us": gap[order],
      "inter_area": inter_area[order],
      "overlap": overlap[order],
      "overlap_lr": overlap_lr[order],
      "inter_wkb": shapely.to_wkb(inter[order]),
  }


def join(
    hr: Scenes,
    lr: Scenes,
    *,
    engine: str = "sedonadb",
    min_overlap: float = 0.5,
    max_days: float = 30.0,
    max_cloud: float = 1.0,
    all_matches: bool = False,
) -> dict[str, np.ndarray]:
  """The spatio-temporal join, before sampling.

  Returns column arrays: hr_idx, lr_idx (rows of `hr`/`lr`), gap_us, overlap,
  overlap_lr, inter_area (m^2), inter_wkb (EQUAL_AREA_CRS); unordered.
  """
  if engine not in ENGINES:
    raise DataError(f"engine {engine!r}: choose one of {list(ENGINES)}.")
  if not 0.0 <= min_overlap <= 1.0 or max_days < 0 or not 0 <= max_cloud <= 1:
    raise DataError(
        f"min_overlap={min_overlap} must be in [0, 1], max_days={max_days} "
        f">= 0 and max_cloud={max_cloud} in [0, 1]."
    )
  if engine == "shapely":
    return _join_shapely(hr, lr, min_overlap, max_days, max_cloud, all_matches)
  sql = join_sql(min_overlap, max_days, max_cloud, all_matches)
  if engine == "spark":
    return _join_spark(hr, lr, sql)
  return _join_sedonadb(hr, lr, sql)


# ------------------------------------------------------------------- sampling


def stratified_sample(
    strata: np.ndarray, per_stratum: int | None, seed: int
) -> np.ndarray:
  """Sorted indices keeping at most `per_stratum` items of each stratum.

  Strata are visited in sorted order with one np.random.default_rng(seed), so
  the choice depends only on (strata, per_stratum, seed).
  """
  n = len(strata)
  if per_stratum is None:
    return np.arange(n)
  if per_stratum < 0:
    raise DataError(f"per_stratum={per_stratum} must be >= 0.")
  rng = np.random.default_rng(seed)
  keep = []
  for s in sorted(set(strata.tolist())):
    idx = np.flatnonzero(strata == s)
    if len(idx) > per_stratum:
      idx = rng.choice(idx, per_stratum, replace=False)
    keep.append(idx)
  return np.sort(np.concatenate(keep)) if keep else np.arange(0)


# --------------------------------------------------------------------- output


def _timestamps(t_us: np.ndarray) -> pa.Array:
  return pa.array(t_us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _geo_column_meta(geoms: np.ndarray, crs: str) -> dict:
  types = sorted({g.geom_type for g in geoms}) if len(geoms) else []
  meta = {
      "encoding": "WKB",
      "geometry_types": types,
      "crs": pyproj.CRS(crs).to_json_dict(),
  }
  if len(geoms):
    b = shapely.bounds(geoms)
    meta["bbox"] = [
        float(b[:, 0].min()),
        float(b[:, 1].min()),
        float(b[:, 2].max()),
        float(b[:, 3].max()),
    ]
  return meta


def write_geoparquet(
    table: pa.Table,
    geoms: np.ndarray,
    crs: str,
    path: str,
    column: str = "geometry",
) -> str:
  """Writes `table` plus a WKB `column` of shapely `geoms` (in `crs`) as
  GeoParquet 1.1 with its `geo` file metadata."""
  table = table.append_column(
      column, pa.array(shapely.to_wkb(geoms), pa.binary())
  )
  geo = {
      "version": "1.1.0",
      "primary_column": column,
      "columns": {column: _geo_column_meta(geoms, crs)},
  }
  md = dict(table.schema.metadata or {})
  md[b"geo"] = json.dumps(geo).encode()
  table = table.replace_schema_metadata(md)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  pq.write_table(table, path)
  return path


def find_pairs(
    hr: Scenes,
    lr: Scenes,
    *,
    engine: str = "sedonadb",
    min_overlap: float = 0.5,
    max_days: float = 30.0,
    max_cloud: float = 1.0,
    all_matches: bool = False,
    per_stratum: int | None = None,
    seed: int = 0,
) -> tuple[pa.Table, np.ndarray]:
  """Join + stratified sampling -> (pairs table, `[P]` intersections in
  OUTPUT_CRS); rows sorted by (hr_id, lr_id). See the module docstring."""
  r = join(
      hr,
      lr,
      engine=engine,
      min_overlap=min_overlap,
      max_days=max_days,
      max_cloud=max_cloud,
      all_matches=all_matches,
  )
  hi, li = r["hr_idx"], r["lr_idx"]
  order = np.lexsort((lr.ids[li].astype(str), hr.ids[hi].astype(str)))
  r = {k: v[order] for k, v in r.items()}
  hi, li = r["hr_idx"], r["lr_idx"]
  if hr.stratum is not None:
    strata = hr.stratum[hi]
  elif lr.stratum is not None:
    strata = lr.stratum[li]
  else:
    strata = np.full(len(hi), "", object)
  keep = stratified_sample(strata, per_stratum, seed)
  r = {k: v[keep] for k, v in r.items()}
  hi, li, strata = r["hr_idx"], r["lr_idx"], strata[keep]
  inter = shapely.from_wkb(r["inter_wkb"]) if len(keep) else np.array([])
  inter = (
      project(
          inter, pyproj.CRS(EQUAL_AREA_CRS), hr.ids[hi], "pairs", dst=OUTPUT_CRS
      )
      if len(inter)
      else inter
  )
  none = np.full(len(hi), "", object)
  table = pa.table(
      {
          "hr_id": pa.array(hr.ids[hi], pa.string()),
          "lr_id": pa.array(lr.ids[li], pa.string()),
          "hr_path": pa.array(
              none if hr.path is None else hr.path[hi], pa.string()
          ),
          "lr_path": pa.array(
              none if lr.path is None else lr.path[li], pa.string()
          ),
          "hr_time": _timestamps(hr.t_us[hi]),
          "lr_time": _timestamps(lr.t_us[li]),
          "time_gap_days": pa.array(r["gap_us"] / _US_PER_DAY, pa.float64()),
          "overlap": pa.array(r["overlap"], pa.float64()),
          "overlap_lr": pa.array(r["overlap_lr"], pa.float64()),
          "intersection_km2": pa.array(r["inter_area"] / 1e6, pa.float64()),
          "hr_cloud": pa.array(hr.cloud[hi]),
          "lr_cloud": pa.array(lr.cloud[li]),
          "stratum": pa.array(strata, pa.string()),
      }
  )
  return table, inter


def run(
    hr_path: str,
    lr_path: str,
    out_path: str,
    *,
    hr_crs: str | None = None,
    lr_crs: str | None = None,
    **kwargs,
) -> pa.Table:
  """Reads both tables, finds the pairs, writes `out_path` (GeoParquet)."""
  hr = read_table(hr_path, hr_crs)
  lr = read_table(lr_path, lr_crs)
  table, inter = find_pairs(hr, lr, **kwargs)
  write_geoparquet(table, inter, OUTPUT_CRS, out_path)
  return table


def read_pairs(path: str) -> pa.Table:
  """A pairs GeoParquet written by run(), checked for the needed columns."""
  if not os.path.isfile(path):
    raise DataError(
        f"{path}: pairs file not found: make it with "
        "`python -m data.find_pairs join ... --out PATH`."
    )
  table = pq.read_table(path)
  need = ("hr_id", "lr_id", "hr_path", "lr_path", "hr_time", "lr_time")
  missing = [c for c in need if c not in table.column_names]
  if missing:
    raise DataError(
        f"{path}: missing column(s) {missing}: it was not written "
        "by data.find_pairs; regenerate it."
    )
  return table


# ------------------------------------------------------- feeding the builder


def builder_jobs(pairs_path: str) -> list[dict[str, Any]]:
  """One data.geotiff_pairs.build(...) argument set per pair.

  Each dict has out_name ("<hr_id>__<lr_id>"), hr_paths, lr_paths, hr_time,
  lr_time (ISO-8601). A pair without raster paths is a DataError.
  """
  table = read_pairs(pairs_path)
  jobs = []
  for row in table.to_pylist():
    for side in ("hr", "lr"):
      if not row[f"{side}_path"]:
        raise DataError(
            f"{pairs_path}: pair {row['hr_id']} / {row['lr_id']} has no "
            f"{side}_path: give the {side.upper()} metadata table a `path` "
            "column with the raster files."
        )
    jobs.append(
        {
            "out_name": re.sub(
                r"[^\w.-]", "_", f"{row['hr_id']}__{row['lr_id']}"
            ),
            "hr_paths": row["hr_path"].split(";"),
            "lr_paths": row["lr_path"].split(";"),
            "hr_time": row["hr_time"].isoformat(),
            "lr_time": row["lr_time"].isoformat(),
        }
    )
  return jobs


def build_pairs(pairs_path: str, out_dir: str, **build_kwargs) -> list:
  """Runs data.geotiff_pairs.build for every pair into out_dir/<out_name>/.

  `build_kwargs` go to geotiff_pairs.build (scene_px, grid, seed, ...).
  Returns the manifests.
  """
  from data import geotiff_pairs  # pylint: disable=g-import-not-at-top

  manifests = []
  for job in builder_jobs(pairs_path):
    manifests.append(
        geotiff_pairs.build(
            os.path.join(out_dir, job["out_name"]),
            job["hr_paths"],
            job["lr_paths"],
            name=job["out_name"],
            hr_time=job["hr_time"],
            lr_time=job["lr_time"],
            **build_kwargs,
        )
    )
  return manifests


# ------------------------------------------------- metadata from real rasters


def raster_record(
    paths: Sequence[str],
    *,
    scene_id: str | None = None,
    time: str | None = None,
    cloud: float | None = None,
    stratum: str | None = None,
) -> dict[str, Any]:
  """Metadata of one raster (or single-band files stacked as one scene).

  footprint: the raster bounds in its CRS, edges densified (21 points),
  as a lon/lat (OGC:CRS84) shapely Polygon. time: `time`, else the Landsat
  MTL (DATE_ACQUIRED + SCENE_CENTER_TIME), else the first YYYYMMDD in the
  file name. cloud: `cloud`, else the MTL CLOUD_COVER / 100, else 0.0.
  """
  import rasterio  # pylint: disable=g-import-not-at-top
  from rasterio import warp  # pylint: disable=g-import-not-at-top

  from data import geotiff_pairs  # pylint: disable=g-import-not-at-top

  paths = [str(p) for p in paths]
  first = paths[0]
  with rasterio.open(first) as ds:
    if ds.crs is None:
      raise DataError(f"{first}: no CRS; the footprint is unknown.")
    xmin, ymin, xmax, ymax = ds.bounds
    crs = ds.crs
  n = 21
  t = np.linspace(0, 1, n)
  xs = np.concatenate(
      [
          xmin + (xmax - xmin) * t,
          np.full(n, xmax),
          xmax - (xmax - xmin) * t,
          np.full(n, xmin),
      ]
  )
  ys = np.concatenate(
      [
          np.full(n, ymin),
          ymin + (ymax - ymin) * t,
          np.full(n, ymax),
          ymax - (ymax - ymin) * t,
      ]
  )
  lon, lat = warp.transform(crs, "EPSG:4326", xs, ys)
  footprint = shapely.Polygon(np.column_stack([lon, lat]))
  if time is None:
    time = geotiff_pairs.landsat_time(first)
  if time is None:
    m = re.search(
        r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?!\d)", os.path.basename(first)
    )
    if m:
      time = f"{m.group(1)}-{m.group(2)}-{m.group(3)}"
  if time is None:
    raise DataError(
        f"{first}: no acquisition time found (no Landsat MTL, no "
        "YYYYMMDD in the name): pass it (--time)."
    )
  if cloud is None:
    cloud = _mtl_cloud(first)
  return {
      "id": scene_id or geotiff_pairs.file_stem(first),
      "time": time,
      "cloud": 0.0 if cloud is None else float(cloud),
      "stratum": stratum or "",
      "path": ";".join(os.path.abspath(p) for p in paths),
      "footprint": footprint,
  }


def _mtl_cloud(path: str) -> float | None:
  folder = os.path.dirname(os.path.abspath(path))
  stem = os.path.splitext(os.path.basename(path))[0].upper()
  for f in sorted(os.listdir(folder)):
    if f.upper().endswith("_MTL.TXT") and stem.startswith(
        f[: -len("_MTL.txt")].upper()
    ):
      with open(
          os.path.join(folder, f), encoding="utf-8", errors="replace"
      ) as fh:
        m = re.search(r"\bCLOUD_COVER\s*=\s*([-\d.]+)", fh.read())
      if m and float(m.group(1)) >= 0:
        return float(m.group(1)) / 100.0
  return None


def write_metadata(rows: Sequence[dict[str, Any]], path: str) -> str:
  """Rows of raster_record() (footprints in lon/lat) -> GeoParquet or CSV
  (a CSV is read back with crs="EPSG:4326", i.e. --hr_crs/--lr_crs)."""
  cols = ("id", "time", "cloud", "stratum", "path")
  table = pa.table({c: [r[c] for r in rows] for c in cols})
  geoms = np.array([r["footprint"] for r in rows], dtype=object)
  if path.lower().endswith(".csv"):
    wkt = shapely.to_wkt(geoms, rounding_precision=-1)  # Full precision.
    table = table.append_column(CSV_GEOMETRY, pa.array(wkt))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pa_csv.write_csv(table, path)
    return path
  return write_geoparquet(table, geoms, OUTPUT_CRS, path)


# ------------------------------------------------------ synthetic metadata

STRATA = (
    "urban",
    "cropland",
    "forest",
    "grassland",
    "shrubland",
    "water",
    "barren",
)
_STRATA_P = (0.10, 0.25, 0.25, 0.15, 0.12, 0.05, 0.08)
_KM_PER_DEG = 111.32


def _boxes(lon, lat, size_km, rng):
  """Lon/lat boxes of about `size_km` x `size_km` centred at (lon, lat)."""
  half_lat = size_km / 2 / _KM_PER_DEG
  half_lon = half_lat / np.cos(np.radians(lat))
  return shapely.box(
      lon - half_lon, lat - half_lat, lon + half_lon, lat + half_lat
  )


def synth_arrays(
    n: int,
    centres: np.ndarray,
    size_km: float,
    spread_km: float,
    prefix: str,
    rng: np.random.Generator,
    start: str = "2019-01-01",
    years: float = 5.0,
) -> dict[str, np.ndarray]:
  """`n` scenes around `centres` ([K, 2] lon/lat): lon/lat boxes of
  size_km +- 10%, normal offsets of `spread_km`, uniform times over `years`,
  cloud ~ Beta(0.6, 2.5), strata from STRATA (per cluster, 80%)."""
  k = rng.integers(0, len(centres), n)
  lat = np.clip(
      centres[k, 1] + rng.normal(0, spread_km, n) / _KM_PER_DEG, -80, 80
  )
  lon = centres[k, 0] + rng.normal(0, spread_km, n) / (
      _KM_PER_DEG * np.cos(np.radians(lat))
  )
  lon = np.clip(lon, -175, 175)
  size = size_km * rng.uniform(0.9, 1.1, n)
  geoms = _boxes(lon, lat, size, rng)
  t0 = datetime.datetime.fromisoformat(start).replace(
      tzinfo=datetime.timezone.utc
  )
  t0_us = int(t0.timestamp() * 1e6)
  t_us = t0_us + rng.integers(0, int(years * 365.25 * _US_PER_DAY), n)
  cluster_stratum = rng.choice(len(STRATA), len(centres), p=_STRATA_P)
  strat = np.where(
      rng.random(n) < 0.8,
      cluster_stratum[k],
      rng.choice(len(STRATA), n, p=_STRATA_P),
  )
  return {
      "ids": np.array([f"{prefix}{i:07d}" for i in range(n)], object),
      "geoms": geoms,
      "t_us": t_us.astype(np.int64),
      "cloud": rng.beta(0.6, 2.5, n),
      "stratum": np.array(STRATA, object)[strat],
      "path": np.full(n, "", object),
  }


def synth_tables(
    n_hr: int, n_lr: int, seed: int = 0, scenes_per_cluster: int = 200
) -> tuple[dict, dict]:
  """Clustered synthetic HR (~5 km) and LR (~100 km) metadata, lon/lat.

  Cluster centres are uniform on the sphere between 60S and 70N, one per
  `scenes_per_cluster` scenes of the smaller table: about 10 LR footprints
  intersect each HR scene up to 100k x 100k. Beyond that clusters overlap
  (1M 100 km footprints cover the Earth's surface ~20 times over), so the
  LR footprints over each HR scene, and the pairs per scene, grow (about 2x at
  1M x 1M).
  """
  rng = np.random.default_rng(seed)
  k = max(1, min(n_hr, n_lr) // scenes_per_cluster)
  lat = np.degrees(
      np.arcsin(rng.uniform(np.sin(np.radians(-60)), np.sin(np.radians(70)), k))
  )
  centres = np.column_stack([rng.uniform(-170, 170, k), lat])
  hr = synth_arrays(n_hr, centres, 5.0, 100.0, "hr", rng)
  lr = synth_arrays(n_lr, centres, 100.0, 150.0, "lr", rng)
  return hr, lr


def synth_scenes(arrays: dict, where: str = "synthetic") -> Scenes:
  return scenes_from_arrays(
      arrays["ids"],
      arrays["geoms"],
      arrays["t_us"],
      arrays["cloud"],
      "EPSG:4326",
      stratum=arrays["stratum"],
      path=arrays["path"],
      where=where,
  )


def write_synth(arrays: dict, path: str) -> str:
  table = pa.table(
      {
          "id": pa.array(arrays["ids"], pa.string()),
          "time": _timestamps(arrays["t_us"]),
          "cloud": arrays["cloud"],
          "stratum": pa.array(arrays["stratum"], pa.string()),
      }
  )
  return write_geoparquet(table, arrays["geoms"], OUTPUT_CRS, path)


# ------------------------------------------------------------------------ CLI


def _add_join_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--hr", required=True, help="HR metadata (.parquet / .csv)")
  p.add_argument("--lr", required=True, help="LR metadata (.parquet / .csv)")
  p.add_argument("--hr_crs", default=None, help="CRS of a CSV's footprints")
  p.add_argument("--lr_crs", default=None, help="CRS of a CSV's footprints")
  p.add_argument("--out", required=True, help="pairs GeoParquet to write")
  p.add_argument("--engine", choices=ENGINES, default="sedonadb")
  p.add_argument(
      "--min_overlap",
      type=float,
      default=0.5,
      help="min area(HR n LR) / area(HR)",
  )
  p.add_argument(
      "--max_days", type=float, default=30.0, help="max |t_hr - t_lr| in days"
  )
  p.add_argument(
      "--max_cloud",
      type=float,
      default=1.0,
      help="max cloud fraction, both sides",
  )
  p.add_argument(
      "--all_matches",
      action="store_true",
      help="keep every LR match, not only the best per HR scene",
  )
  p.add_argument(
      "--per_stratum",
      type=int,
      default=None,
      help="at most this many pairs per land-cover stratum",
  )
  p.add_argument("--seed", type=int, default=0, help="sampling seed")


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = p.add_subparsers(dest="cmd", required=True)
  _add_join_flags(sub.add_parser("join", help="find the LR/HR pairs"))
  s = sub.add_parser("synth", help="synthetic HR/LR metadata GeoParquets")
  s.add_argument("--n_hr", type=int, default=10_000)
  s.add_argument("--n_lr", type=int, default=10_000)
  s.add_argument("--seed", type=int, default=0)
  s.add_argument("--out", required=True, help="folder for hr/lr.parquet")
  r = sub.add_parser("rasters", help="metadata table from raster files")
  r.add_argument(
      "files",
      nargs="+",
      help="one raster per scene; 'a.tif;b.tif' stacks bands",
  )
  r.add_argument("--time", default=None, help="ISO-8601 time for all")
  r.add_argument("--cloud", type=float, default=None)
  r.add_argument("--stratum", default=None)
  r.add_argument("--out", required=True, help=".parquet or .csv")
  b = sub.add_parser("build", help="data.geotiff_pairs for every pair")
  b.add_argument("--pairs", required=True, help="pairs GeoParquet")
  b.add_argument("--scene_px", type=int, default=256)
  b.add_argument("--grid", type=int, default=4)
  b.add_argument("--max_nodata_frac", type=float, default=0.05)
  from data import common  # pylint: disable=g-import-not-at-top

  common.add_common_flags(b)
  a = p.parse_args(argv)
  try:
    if a.cmd == "join":
      t = run(
          a.hr,
          a.lr,
          a.out,
          hr_crs=a.hr_crs,
          lr_crs=a.lr_crs,
          engine=a.engine,
          min_overlap=a.min_overlap,
          max_days=a.max_days,
          max_cloud=a.max_cloud,
          all_matches=a.all_matches,
          per_stratum=a.per_stratum,
          seed=a.seed,
      )
      print(f"{t.num_rows} pairs ({a.engine}) -> {a.out}")
    elif a.cmd == "synth":
      hr, lr = synth_tables(a.n_hr, a.n_lr, a.seed)
      for name, arr in (("hr", hr), ("lr", lr)):
        print(write_synth(arr, os.path.join(a.out, f"{name}.parquet")))
    elif a.cmd == "rasters":
      rows = [
          raster_record(
              f.split(";"), time=a.time, cloud=a.cloud, stratum=a.stratum
          )
          for f in a.files
      ]
      print(f"{len(rows)} scenes -> {write_metadata(rows, a.out)}")
    else:
      ms = build_pairs(
          a.pairs,
          a.out,
          scene_px=a.scene_px,
          grid=a.grid,
          max_nodata_frac=a.max_nodata_frac,
          seed=a.seed,
          records_per_shard=a.records_per_shard,
      )
      print(f"{len(ms)} datasets -> {a.out}")
  except DataError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  main()
