"""The spatio-temporal join of two Scenes tables, by one of three engines.

`join(hr, lr, engine=..., min_overlap=..., max_days=..., max_cloud=...)`
returns the matching (HR, LR) rows before sampling. "sedonadb" (default,
embedded) and "spark" (Apache Sedona; jars from Maven, override with
CROSSSCALE_SEDONA_PACKAGES) run the one SQL string JOIN_SQL; "shapely" is an
STRtree reference written independently of the SQL.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyproj
import shapely

from crossscale import records
from data.find_pairs import scene_metadata

ENGINES = ("sedonadb", "spark", "shapely")
OVERLAP_TOL = 1e-9  # min_overlap tolerance and the rounding of overlap ranks.
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


def join_sql(
    min_overlap: float, max_days: float, max_cloud: float, all_matches: bool
) -> str:
  """JOIN_SQL with its parameters (numbers only) filled in."""
  return JOIN_SQL.format(
      max_cloud=repr(float(max_cloud)),
      max_gap_us=int(round(float(max_days) * scene_metadata.US_PER_DAY)),
      min_overlap=repr(float(min_overlap) - OVERLAP_TOL),
      max_rank=2**62 if all_matches else 1,
  )


def _engine_table(s: scene_metadata.Scenes, wkb_type) -> pa.Table:
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


def _join_sedonadb(
    hr: scene_metadata.Scenes, lr: scene_metadata.Scenes, sql: str
) -> dict[str, np.ndarray]:
  import geoarrow.pyarrow as ga  # pylint: disable=g-import-not-at-top
  import sedonadb  # pylint: disable=g-import-not-at-top

  sd = sedonadb.connect()
  wkb_type = ga.wkb().with_crs(
      pyproj.CRS(scene_metadata.EQUAL_AREA_CRS).to_json()
  )
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


def _join_spark(
    hr: scene_metadata.Scenes, lr: scene_metadata.Scenes, sql: str
) -> dict[str, np.ndarray]:
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
    hr: scene_metadata.Scenes,
    lr: scene_metadata.Scenes,
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
  keep = gap <= int(round(float(max_days) * scene_metadata.US_PER_DAY))
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
    hr: scene_metadata.Scenes,
    lr: scene_metadata.Scenes,
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
    raise records.DataError(
        f"engine {engine!r}: choose one of {list(ENGINES)}."
    )
  if not 0.0 <= min_overlap <= 1.0 or max_days < 0 or not 0 <= max_cloud <= 1:
    raise records.DataError(
        f"min_overlap={min_overlap} must be in [0, 1], max_days={max_days} "
        f">= 0 and max_cloud={max_cloud} in [0, 1]."
    )
  if engine == "shapely":
    return _join_shapely(hr, lr, min_overlap, max_days, max_cloud, all_matches)
  sql = join_sql(min_overlap, max_days, max_cloud, all_matches)
  if engine == "spark":
    return _join_spark(hr, lr, sql)
  return _join_sedonadb(hr, lr, sql)
