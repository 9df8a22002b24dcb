"""The pairs: join, stratified sampling, the pairs table, and its builds.

`find_pairs(hr, lr, ...)` joins two Scenes tables (join_engines.join), keeps
at most `per_stratum` pairs per land-cover stratum (seeded) and returns the
pairs table with the HR n LR intersections in lon/lat; `run` does the same
from files to a GeoParquet; `build_pairs` feeds every pair of such a file to
data.geotiff_pairs.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import shapely

from crossscale import records
from data.find_pairs import geoparquet_io, join_engines, scene_metadata


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
    raise records.DataError(f"per_stratum={per_stratum} must be >= 0.")
  rng = np.random.default_rng(seed)
  keep = []
  for s in sorted(set(strata.tolist())):
    idx = np.flatnonzero(strata == s)
    if len(idx) > per_stratum:
      idx = rng.choice(idx, per_stratum, replace=False)
    keep.append(idx)
  return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def find_pairs(
    hr: scene_metadata.Scenes,
    lr: scene_metadata.Scenes,
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
  OUTPUT_CRS); rows sorted by (hr_id, lr_id).
  """
  r = join_engines.join(
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
      scene_metadata.project(
          inter,
          pyproj.CRS(scene_metadata.EQUAL_AREA_CRS),
          hr.ids[hi],
          "pairs",
          dst=scene_metadata.OUTPUT_CRS,
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
          "hr_time": geoparquet_io.utc_timestamps(hr.t_us[hi]),
          "lr_time": geoparquet_io.utc_timestamps(lr.t_us[li]),
          "time_gap_days": pa.array(
              r["gap_us"] / scene_metadata.US_PER_DAY, pa.float64()
          ),
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
  hr = geoparquet_io.read_table(hr_path, hr_crs)
  lr = geoparquet_io.read_table(lr_path, lr_crs)
  table, inter = find_pairs(hr, lr, **kwargs)
  geoparquet_io.write_geoparquet(
      table, inter, scene_metadata.OUTPUT_CRS, out_path
  )
  return table


def read_pairs(path: str) -> pa.Table:
  """A pairs GeoParquet written by run(), checked for the needed columns."""
  if not os.path.isfile(path):
    raise records.DataError(
        f"{path}: pairs file not found: make it with "
        "`python -m data.find_pairs join ... --out PATH`."
    )
  table = pq.read_table(path)
  need = ("hr_id", "lr_id", "hr_path", "lr_path", "hr_time", "lr_time")
  missing = [c for c in need if c not in table.column_names]
  if missing:
    raise records.DataError(
        f"{path}: missing column(s) {missing}: it was not written "
        "by data.find_pairs; regenerate it."
    )
  return table


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
        raise records.DataError(
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
