"""Metadata and pairs tables in and out: GeoParquet 1.1 (WKB) and CSV (WKT).

`read_table(path, crs)` reads an HR or LR metadata table into Scenes;
`write_geoparquet(table, geoms, crs, path)` writes any table with a geometry
column and its `geo` metadata; `raster_record(paths)` and `write_metadata`
make a metadata table from real raster files.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pyproj
import shapely

from crossscale import records
from data.find_pairs import scene_metadata

REQUIRED = ("id", "time", "cloud")
CSV_GEOMETRY = "footprint"


def _geo_metadata(path: str, schema: pa.Schema) -> dict:
  raw = (schema.metadata or {}).get(b"geo")
  if raw is None:
    raise records.DataError(
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


def read_table(path: str, crs: str | None = None) -> scene_metadata.Scenes:
  """Reads a metadata table (GeoParquet or CSV with WKT) into Scenes.

  `crs` is required for CSV; for GeoParquet it may be given only when the file
  says its CRS is unknown (`crs: null`), or when it names the same CRS.
  """
  path = str(path)
  if not os.path.isfile(path):
    raise records.DataError(
        f"{path}: metadata table not found; check the path."
    )
  ext = os.path.splitext(path)[1].lower()
  if ext in (".parquet", ".geoparquet", ".pq"):
    try:
      table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
      raise records.DataError(
          f"{path}: not a readable Parquet file ({e})."
      ) from e
    geo = _geo_metadata(path, table.schema)
    gcol = geo.get("primary_column", "geometry")
    meta = geo.get("columns", {}).get(gcol)
    if meta is None or gcol not in table.column_names:
      raise records.DataError(
          f"{path}: `geo` metadata names geometry column {gcol!r},"
          " which is not in the file: rewrite the file."
      )
    if str(meta.get("encoding", "")).upper() != "WKB":
      raise records.DataError(
          f"{path}: geometry encoding {meta.get('encoding')!r}; "
          "only WKB is read: rewrite with WKB encoding."
      )
    if "crs" not in meta:
      file_crs = (
          scene_metadata.OUTPUT_CRS
      )  # GeoParquet: an absent crs means OGC:CRS84.
    elif meta["crs"] is None:
      file_crs = None
    else:
      file_crs = pyproj.CRS.from_user_input(meta["crs"])
    if (
        crs is not None
        and file_crs is not None
        and (pyproj.CRS(crs) != pyproj.CRS(file_crs))
    ):
      raise records.DataError(
          f"{path}: its GeoParquet CRS is {pyproj.CRS(file_crs).to_string()} "
          f"but {crs} was passed: drop the CRS flag (the file's is used)."
      )
    if file_crs is None and crs is None:
      raise records.DataError(
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
      raise records.DataError(
          f"{path}: CSV could not be parsed ({e}): check the "
          "header and that `cloud` holds numbers."
      ) from e
    if CSV_GEOMETRY not in table.column_names:
      raise records.DataError(
          f"{path}: missing column {CSV_GEOMETRY!r} (the footprint as WKT); "
          f"it has {table.column_names}."
      )
    if crs is None:
      raise records.DataError(
          f"{path}: a CSV carries no CRS: pass the CRS of its WKT "
          "footprints with --hr_crs/--lr_crs (e.g. EPSG:4326, lon/lat)."
      )
    geoms = table.column(CSV_GEOMETRY).to_numpy(zero_copy_only=False)
    kind = "CSV"
  else:
    raise records.DataError(
        f"{path}: unknown table format {ext!r}: use GeoParquet "
        "(.parquet) or CSV (.csv) with WKT footprints."
    )
  missing = [c for c in REQUIRED if c not in table.column_names]
  if missing:
    raise records.DataError(
        f"{path}: missing column(s) {missing}; a {kind} metadata table needs "
        f"{list(REQUIRED)} and a footprint, optional stratum and path; it has "
        f"{table.column_names}. Rename or add the column(s)."
    )
  ids = table.column("id").to_pylist()
  tcol = table.column("time")
  if pa.types.is_timestamp(tcol.type):
    if tcol.null_count:
      raise records.DataError(
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
    raise records.DataError(
        f"{path}: column `cloud` is not numeric ({e})."
    ) from e
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
  return scene_metadata.scenes_from_arrays(
      ids,
      geoms,
      times,
      cloud.to_numpy(),
      crs,
      stratum=stratum,
      path=paths,
      where=path,
  )


def utc_timestamps(t_us: np.ndarray) -> pa.Array:
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

  from data import geotiff_rasters  # pylint: disable=g-import-not-at-top

  paths = [str(p) for p in paths]
  first = paths[0]
  with rasterio.open(first) as ds:
    if ds.crs is None:
      raise records.DataError(f"{first}: no CRS; the footprint is unknown.")
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
    time = geotiff_rasters.landsat_time(first)
  if time is None:
    m = re.search(
        r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?!\d)", os.path.basename(first)
    )
    if m:
      time = f"{m.group(1)}-{m.group(2)}-{m.group(3)}"
  if time is None:
    raise records.DataError(
        f"{first}: no acquisition time found (no Landsat MTL, no "
        "YYYYMMDD in the name): pass it (--time)."
    )
  if cloud is None:
    cloud = _mtl_cloud(first)
  return {
      "id": scene_id or geotiff_rasters.file_stem(first),
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
  return write_geoparquet(table, geoms, scene_metadata.OUTPUT_CRS, path)
