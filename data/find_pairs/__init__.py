"""LR/HR pairs by a spatio-temporal join of scene metadata (GeoSR-Bench style).

Coincident LR/HR scenes are found on metadata only (ids, footprints, times,
cloud), never on pixels, and written as GeoParquet; `build` then feeds each
pair to data.geotiff_pairs. The package holds:

  scene_metadata        Scenes: a validated table, footprints in EPSG:6933
  geoparquet_io         GeoParquet / CSV metadata in and out; rasters -> rows
  join_engines          the join: sedonadb, spark (Apache Sedona), shapely
  pair_table            join + stratified sampling -> the pairs table; builds
  synthetic_footprints  clustered synthetic metadata (tests, benchmark)
  __main__              the CLI: python -m data.find_pairs {join,synth,...}

The public names of all of them are importable from here, e.g.
`from data import find_pairs; find_pairs.find_pairs(hr, lr, ...)`. The
tables' columns and the join's rules are described in docs/data.md.
"""

from data.find_pairs.geoparquet_io import (
    CSV_GEOMETRY,
    REQUIRED,
    raster_record,
    read_table,
    utc_timestamps,
    write_geoparquet,
    write_metadata,
)
from data.find_pairs.join_engines import (
    ENGINES,
    JOIN_SQL,
    OVERLAP_TOL,
    join,
    join_sql,
)
from data.find_pairs.pair_table import (
    build_pairs,
    builder_jobs,
    find_pairs,
    read_pairs,
    run,
    stratified_sample,
)
from data.find_pairs.scene_metadata import (
    EQUAL_AREA_CRS,
    OUTPUT_CRS,
    US_PER_DAY,
    Scenes,
    parse_times,
    project,
    scenes_from_arrays,
)
from data.find_pairs.synthetic_footprints import (
    STRATA,
    synth_arrays,
    synth_scenes,
    synth_tables,
    write_synth,
)

__all__ = [
    "CSV_GEOMETRY",
    "EQUAL_AREA_CRS",
    "ENGINES",
    "JOIN_SQL",
    "OUTPUT_CRS",
    "OVERLAP_TOL",
    "REQUIRED",
    "STRATA",
    "US_PER_DAY",
    "Scenes",
    "build_pairs",
    "builder_jobs",
    "find_pairs",
    "join",
    "join_sql",
    "parse_times",
    "project",
    "raster_record",
    "read_pairs",
    "read_table",
    "run",
    "scenes_from_arrays",
    "stratified_sample",
    "synth_arrays",
    "synth_scenes",
    "synth_tables",
    "utc_timestamps",
    "write_geoparquet",
    "write_metadata",
    "write_synth",
]
