"""data.find_pairs: metadata tables' errors, the CLI, real raster metadata."""

import datetime
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely

from crossscale import records
from data import find_pairs as fp
from data.find_pairs import __main__ as find_pairs_cli

sedonadb = pytest.importorskip("sedonadb")

ENGINES = ("sedonadb", "shapely")
T0 = "2020-06-01T00:00:00"


# ------------------------------------------------------------------- errors


def _csv(path, header, rows):
  with open(path, "w") as f:
    f.write(",".join(header) + "\n")
    for r in rows:
      f.write(",".join(f'"{v}"' for v in r) + "\n")
  return str(path)


BOX = "POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))"


@pytest.mark.parametrize(
    "header,row,crs,match",
    [
        (
            ["id", "footprint", "cloud"],
            ["a", BOX, 0.1],
            "EPSG:4326",
            r"missing column\(s\) \['time'\].*Rename or add",
        ),
        (
            ["id", "footprint", "time", "cloud"],
            ["a", BOX, "31/12/2020", 0.1],
            "EPSG:4326",
            r"scene 'a' has time '31/12/2020'.*ISO-8601",
        ),
        (
            ["id", "footprint", "time", "cloud"],
            ["a", "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))", T0, 0.1],
            "EPSG:4326",
            r"scenes 'a' have an invalid footprint"
            r" \(Self-intersection.*make_valid",
        ),
        (
            ["id", "footprint", "time", "cloud"],
            ["a", "POLYGON EMPTY", T0, 0.1],
            "EPSG:4326",
            r"empty or missing footprint",
        ),
        (
            ["id", "footprint", "time", "cloud"],
            ["a", "POLYGON((0 0, 1", T0, 0.1],
            "EPSG:4326",
            r"not parseable WKT",
        ),
        (
            ["id", "footprint", "time", "cloud"],
            ["a", "POINT(0 0)", T0, 0.1],
            "EPSG:4326",
            r"Point footprint; footprints must be Polygons",
        ),
        (
            ["id", "footprint", "time", "cloud"],
            ["a", BOX, T0, 0.1],
            None,
            r"a CSV carries no CRS.*--hr_crs/--lr_crs",
        ),
        (
            ["id", "footprint", "time", "cloud"],
            ["a", BOX, T0, 35.0],
            "EPSG:4326",
            r"outside \[0, 1\].*looks like percent, divide it by 100",
        ),
        (
            ["id", "footprint", "time", "cloud"],
            ["a", "POLYGON((179 0, -179 0, -179 1, 179 1, 179 0))", T0, 0.1],
            "EPSG:4326",
            r"cross the antimeridian",
        ),
    ],
)
def test_csv_errors_name_the_file_and_the_fix(
    tmp_path, header, row, crs, match
):
  path = _csv(tmp_path / "meta.csv", header, [row])
  with pytest.raises(records.DataError, match=match) as e:
    fp.read_table(path, crs)
  assert str(path) in str(e.value)


def test_geoparquet_crs_errors(tmp_path):
  table = pa.table({"id": ["a"], "time": [T0], "cloud": [0.0]})
  g = np.array([shapely.box(0, 0, 1, 1)])
  path = fp.write_geoparquet(table, g, "EPSG:4326", str(tmp_path / "a.parquet"))
  assert len(fp.read_table(path)) == 1
  with pytest.raises(records.DataError, match="drop the CRS flag"):
    fp.read_table(path, "EPSG:32631")
  back = pq.read_table(path)
  geo = json.loads(back.schema.metadata[b"geo"])
  geo["columns"]["geometry"]["crs"] = None
  pq.write_table(
      back.replace_schema_metadata({b"geo": json.dumps(geo)}),
      str(tmp_path / "null.parquet"),
  )
  with pytest.raises(
      records.DataError,
      match=r"null.parquet: its GeoParquet "
      r"`crs` is null \(unknown\): pass the CRS",
  ):
    fp.read_table(str(tmp_path / "null.parquet"))
  assert len(fp.read_table(str(tmp_path / "null.parquet"), "EPSG:4326")) == 1
  pq.write_table(
      back.replace_schema_metadata({}), str(tmp_path / "plain.parquet")
  )
  with pytest.raises(
      records.DataError, match=r"plain.parquet: no GeoParquet " "`geo` metadata"
  ):
    fp.read_table(str(tmp_path / "plain.parquet"))


def test_cli_errors_exit_with_the_message(tmp_path):
  path = _csv(
      tmp_path / "hr.csv", ["id", "footprint", "cloud"], [["a", BOX, 0.1]]
  )
  with pytest.raises(SystemExit, match=r"^error: .*hr.csv: missing column"):
    find_pairs_cli.main(
        [
            "join",
            "--hr",
            path,
            "--lr",
            path,
            "--hr_crs",
            "EPSG:4326",
            "--lr_crs",
            "EPSG:4326",
            "--out",
            str(tmp_path / "p.parquet"),
        ]
    )


def test_cli_join_csv_and_geoparquet(tmp_path):
  hr = _csv(
      tmp_path / "hr.csv",
      ["id", "footprint", "time", "cloud", "stratum", "path"],
      [
          ["h1", BOX, "2020-06-01", 0.0, "urban", "h1.tif"],
          [
              "h2",
              "POLYGON((5 5, 6 5, 6 6, 5 6, 5 5))",
              "2020-06-01",
              0.0,
              "forest",
              "",
          ],
      ],
  )
  lr_t = pa.table(
      {
          "id": ["l1"],
          "time": pa.array([datetime.datetime(2020, 6, 3)], pa.timestamp("s")),
          "cloud": [0.0],
          "path": ["lr/l1.tif"],
      }
  )
  lr = fp.write_geoparquet(
      lr_t,
      np.array([shapely.box(-1, -1, 0.5, 2)]),
      "EPSG:4326",
      str(tmp_path / "lr.parquet"),
  )
  out = str(tmp_path / "pairs.parquet")
  find_pairs_cli.main(
      [
          "join",
          "--hr",
          hr,
          "--lr",
          lr,
          "--hr_crs",
          "EPSG:4326",
          "--out",
          out,
          "--min_overlap",
          "0.4",
      ]
  )
  t = pq.read_table(out).to_pylist()
  assert [(r["hr_id"], r["lr_id"], r["stratum"]) for r in t] == [
      ("h1", "l1", "urban")
  ]
  assert t[0]["hr_path"] == str(tmp_path / "h1.tif")
  assert t[0]["lr_path"] == str(tmp_path / "lr" / "l1.tif")
  assert t[0]["time_gap_days"] == 2.0
  assert t[0]["overlap"] == pytest.approx(0.5, abs=2e-3)  # Half in lon.


def test_cli_synth_then_join_with_each_engine(tmp_path):
  find_pairs_cli.main(
      [
          "synth",
          "--n_hr",
          "400",
          "--n_lr",
          "300",
          "--seed",
          "3",
          "--out",
          str(tmp_path),
      ]
  )
  hr, lr = str(tmp_path / "hr.parquet"), str(tmp_path / "lr.parquet")
  assert pq.read_schema(hr).field("time").type == pa.timestamp("us", tz="UTC")
  tables = []
  for engine in ENGINES:
    out = str(tmp_path / f"{engine}.parquet")
    find_pairs_cli.main(
        [
            "join",
            "--hr",
            hr,
            "--lr",
            lr,
            "--out",
            out,
            "--engine",
            engine,
            "--max_days",
            "365",
            "--per_stratum",
            "5",
        ]
    )
    tables.append(pq.read_table(out))
  cols = ["hr_id", "lr_id", "hr_time", "lr_time", "time_gap_days", "stratum"]
  assert tables[0].num_rows > 5
  assert tables[0].select(cols).equals(tables[1].select(cols))
  assert np.allclose(tables[0]["overlap"], tables[1]["overlap"], rtol=1e-9)


# ------------------------------------------------------ real raster metadata

SP = "spacenet/preproc_tutorial"
LS = "landsat_pan_ms"
L8 = "LC08_L1TP_195025_20130707_20170503_01_T1"
L7 = "LE07_L1TP_195025_20010730_20170204_01_T1"
NAIP = "geotiff/naip/m_4709963_se_14_1_{}.tif"


def test_real_rasters_find_the_true_pairs(shared_data, tmp_path):
  d = lambda p: os.path.join(shared_data, p)
  # SpaceNet pan/ms tiles carry no date: one stand-in time for the pair.
  hr = [
      fp.raster_record([d(NAIP.format(y))])
      for y in ("20100629", "20150926", "20200831")
  ]
  hr += [
      fp.raster_record([d(f"{SP}/pan{i}.tif")], time="2019-08-04")
      for i in (1, 2, 3)
  ]
  hr += [fp.raster_record([d(f"{LS}/{s}_B8.TIF")]) for s in (L8, L7)]
  lr = [
      fp.raster_record([d(f"{SP}/ms{i}.tif")], time="2019-08-04")
      for i in (1, 2, 3)
  ]
  lr += [
      fp.raster_record(
          [d(f"{LS}/{s}_B{b}.TIF") for b in (2, 3, 4)], scene_id=f"{s}_MS"
      )
      for s in (L8, L7)
  ]
  lr += [
      fp.raster_record(
          [d(f"geotiff/landsat/pucallpa_{y}.tif")], time=f"{y}-07-01"
      )
      for y in (2000, 2020)
  ]
  assert hr[0]["time"] == "2010-06-29"  # From the NAIP file name.
  assert hr[6]["time"].startswith("2013-07-07T10:17")  # From the MTL.
  assert hr[6]["cloud"] == pytest.approx(0.0603)
  fp.write_metadata(hr, str(tmp_path / "hr.parquet"))
  fp.write_metadata(lr, str(tmp_path / "lr.csv"))
  out = str(tmp_path / "pairs.parquet")
  find_pairs_cli.main(
      [
          "join",
          "--hr",
          str(tmp_path / "hr.parquet"),
          "--lr",
          str(tmp_path / "lr.csv"),
          "--lr_crs",
          "EPSG:4326",
          "--out",
          out,
          "--min_overlap",
          "0.9",
          "--max_days",
          "30",
      ]
  )
  t = pq.read_table(out)
  pairs = list(zip(t["hr_id"].to_pylist(), t["lr_id"].to_pylist()))
  # Landsat 7 and 8 of path/row 195/025 overlap, 12 years apart: only the
  # same-date pan/MS pairs are found; NAIP has no LR; Pucallpa has no HR.
  assert pairs == [
      (f"{L8}_B8", f"{L8}_MS"),
      (f"{L7}_B8", f"{L7}_MS"),
      ("pan1", "ms1"),
      ("pan2", "ms2"),
      ("pan3", "ms3"),
  ]
  assert t["time_gap_days"].to_pylist() == [0.0] * 5
  # Intersection areas agree with an independent geodesic area (pyproj.Geod)
  # of the lon/lat intersection polygons.
  geod = pyproj.Geod(ellps="WGS84")
  g = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
  geodesic = [abs(geod.geometry_area_perimeter(x)[0]) / 1e6 for x in g]
  assert t["intersection_km2"].to_pylist() == pytest.approx(geodesic, rel=1e-4)
  assert t["intersection_km2"][2].as_py() == pytest.approx(0.09, rel=2e-3)
  # Without the time window, LC08 B8 sees both MS scenes and keeps its own.
  t2, _ = fp.find_pairs(
      fp.read_table(str(tmp_path / "hr.parquet")),
      fp.read_table(str(tmp_path / "lr.csv"), "EPSG:4326"),
      min_overlap=0.9,
      max_days=1e5,
      all_matches=True,
  )
  l8 = [r["lr_id"] for r in t2.to_pylist() if r["hr_id"] == f"{L8}_B8"]
  assert l8 == [f"{L8}_MS", f"{L7}_MS"]  # Sorted by id.
  t3, _ = fp.find_pairs(
      fp.read_table(str(tmp_path / "hr.parquet")),
      fp.read_table(str(tmp_path / "lr.csv"), "EPSG:4326"),
      min_overlap=0.9,
      max_days=1e5,
  )
  assert t3.select(["hr_id", "lr_id"]).to_pylist()[:2] == [
      {"hr_id": f"{s}_B8", "lr_id": f"{s}_MS"} for s in (L8, L7)
  ]
  # Feeding data.geotiff_pairs: the pairs' paths and times become its inputs.
  jobs = fp.builder_jobs(out)
  assert jobs[0]["lr_paths"] == [d(f"{LS}/{L8}_B{b}.TIF") for b in (2, 3, 4)]
  assert jobs[2]["hr_paths"] == [d(f"{SP}/pan1.tif")]
  pq.write_table(t.slice(2, 1), str(tmp_path / "one.parquet"))
  find_pairs_cli.main(
      [
          "build",
          "--pairs",
          str(tmp_path / "one.parquet"),
          "--out",
          str(tmp_path / "ds"),
          "--scene_px",
          "128",
      ]
  )
  from crossscale import shards  # pylint: disable=g-import-not-at-top

  m = shards.load_manifest(str(tmp_path / "ds" / "pan1__ms1"))
  assert m.hr_shape == [128, 128, 1] and m.lr_shape == [64, 64, 4]
  assert m.builder["windows"] == 16
