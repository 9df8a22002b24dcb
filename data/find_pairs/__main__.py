r"""LR/HR pairs by a spatio-temporal join of scene metadata (GeoSR-Bench style).

Joins HR and LR scene metadata tables into a pairs GeoParquet (`join`),
writes synthetic metadata (`synth`), metadata from raster files (`rasters`),
and builds a data.geotiff_pairs dataset per pair (`build`).

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
import os
import sys
from typing import Sequence

from crossscale import records
from data import common
from data.find_pairs import (
    geoparquet_io,
    join_engines,
    pair_table,
    synthetic_footprints,
)


def _add_join_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--hr", required=True, help="HR metadata (.parquet / .csv)")
  p.add_argument("--lr", required=True, help="LR metadata (.parquet / .csv)")
  p.add_argument("--hr_crs", default=None, help="CRS of a CSV's footprints")
  p.add_argument("--lr_crs", default=None, help="CRS of a CSV's footprints")
  p.add_argument("--out", required=True, help="pairs GeoParquet to write")
  p.add_argument("--engine", choices=join_engines.ENGINES, default="sedonadb")
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
  p = argparse.ArgumentParser(
      prog="python -m data.find_pairs", description=__doc__.split("\n")[0]
  )
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
  common.add_common_flags(b)
  a = p.parse_args(argv)
  try:
    if a.cmd == "join":
      t = pair_table.run(
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
      hr, lr = synthetic_footprints.synth_tables(a.n_hr, a.n_lr, a.seed)
      for name, arr in (("hr", hr), ("lr", lr)):
        print(
            synthetic_footprints.write_synth(
                arr, os.path.join(a.out, f"{name}.parquet")
            )
        )
    elif a.cmd == "rasters":
      rows = [
          geoparquet_io.raster_record(
              f.split(";"), time=a.time, cloud=a.cloud, stratum=a.stratum
          )
          for f in a.files
      ]
      print(
          f"{len(rows)} scenes -> {geoparquet_io.write_metadata(rows, a.out)}"
      )
    else:
      ms = pair_table.build_pairs(
          a.pairs,
          a.out,
          scene_px=a.scene_px,
          grid=a.grid,
          max_nodata_frac=a.max_nodata_frac,
          seed=a.seed,
          records_per_shard=a.records_per_shard,
      )
      print(f"{len(ms)} datasets -> {a.out}")
  except records.DataError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  main()
