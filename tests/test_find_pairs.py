"""data.find_pairs: the spatio-temporal LR/HR join, its engines and outputs."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely
from shapely import affinity

from crossscale import records
from data import find_pairs as fp

sedonadb = pytest.importorskip("sedonadb")

ENGINES = ("sedonadb", "shapely")
DAY_US = 86_400 * 1_000_000
T0 = "2020-06-01T00:00:00"


def _pair_map(r, hr, lr):
  return {
      (hr.ids[h], lr.ids[l]): o
      for h, l, o in zip(r["hr_idx"], r["lr_idx"], r["overlap"])
  }


def _assert_same(a, b, hr, lr):
  ma, mb = _pair_map(a, hr, lr), _pair_map(b, hr, lr)
  assert set(ma) == set(mb)
  for k in mb:
    assert ma[k] == pytest.approx(mb[k], rel=1e-9, abs=0)


def _random_scenes(rng, n, crs, centre, size, spread, prefix):
  """Rotated rectangles (some MultiPolygons) in `crs` units around `centre`."""
  geoms = []
  for i in range(n):
    cx, cy = centre + rng.normal(0, spread, 2)
    w, h = size * rng.uniform(0.5, 1.5, 2)
    g = affinity.rotate(
        shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
        rng.uniform(0, 90),
    )
    if i % 7 == 0:  # A MultiPolygon: the scene plus a far-away sliver.
      g = shapely.MultiPolygon(
          [g, shapely.box(cx + 3 * w, cy, cx + 3.2 * w, cy + h)]
      )
    geoms.append(g)
  t_us = rng.integers(0, 120, n) * DAY_US + rng.integers(0, DAY_US, n)
  return fp.scenes_from_arrays(
      [f"{prefix}{i}" for i in range(n)],
      geoms,
      t_us,
      rng.uniform(0, 1, n),
      crs,
      stratum=rng.choice(["a", "b", "c"], n),
      where=prefix,
  )


@pytest.mark.parametrize("all_matches", [False, True])
def test_sedonadb_equals_shapely_on_random_inputs(all_matches):
  rng = np.random.default_rng(0)
  # HR in UTM 31N (metres), LR in lon/lat: both are projected to EPSG:6933.
  hr = _random_scenes(
      rng, 400, "EPSG:32631", np.array([500e3, 5.75e6]), 3e3, 20e3, "hr"
  )
  lr = _random_scenes(
      rng, 300, "EPSG:4326", np.array([3.0, 51.9]), 0.15, 0.25, "lr"
  )
  kw = dict(
      min_overlap=0.2, max_days=20, max_cloud=0.8, all_matches=all_matches
  )
  a = fp.join(hr, lr, engine="sedonadb", **kw)
  b = fp.join(hr, lr, engine="shapely", **kw)
  assert len(b["hr_idx"]) > 50  # The test has teeth.
  if not all_matches:
    assert len(set(b["hr_idx"])) == len(b["hr_idx"])
  _assert_same(a, b, hr, lr)
  ia = shapely.from_wkb(a["inter_wkb"])
  assert np.allclose(shapely.area(ia), a["inter_area"], rtol=1e-9)


def test_sedonadb_equals_shapely_on_synthetic_globe():
  hr_a, lr_a = fp.synth_tables(3000, 3000, seed=1)
  hr, lr = fp.synth_scenes(hr_a, "hr"), fp.synth_scenes(lr_a, "lr")
  kw = dict(min_overlap=0.5, max_days=60, max_cloud=0.5)
  a = fp.join(hr, lr, engine="sedonadb", **kw)
  b = fp.join(hr, lr, engine="shapely", **kw)
  assert len(b["hr_idx"]) > 100
  _assert_same(a, b, hr, lr)


def test_synthetic_sizes_times_and_strata():
  hr_a, lr_a = fp.synth_tables(2000, 1000, seed=0)
  hr, lr = fp.synth_scenes(hr_a), fp.synth_scenes(lr_a)
  side_hr = np.sqrt(shapely.area(hr.geoms)) / 1e3
  side_lr = np.sqrt(shapely.area(lr.geoms)) / 1e3
  assert 4.4 < side_hr.min() and side_hr.max() < 5.6
  assert 88 < side_lr.min() and side_lr.max() < 112
  span = (hr.t_us.max() - hr.t_us.min()) / DAY_US / 365.25
  assert 4.8 < span <= 5.0
  assert set(hr.stratum) <= set(fp.STRATA) and len(set(hr.stratum)) > 3
  assert ((hr.cloud >= 0) & (hr.cloud <= 1)).all()


def test_projection_areas_match_geodesic_areas():
  """Equal-area EPSG:6933 areas == pyproj.Geod areas on the WGS84 ellipsoid."""
  geod = pyproj.Geod(ellps="WGS84")
  to_ll = pyproj.Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
  utm = shapely.box(400e3, 5.0e6, 500e3, 5.1e6)  # A 100 km UTM square.
  ll = shapely.box(10.0, 60.0, 11.5, 61.0)  # A lon/lat box.
  a = fp.scenes_from_arrays(["u"], [utm], [T0], [0.0], "EPSG:32631")
  b = fp.scenes_from_arrays(["l"], [ll], [T0], [0.0], "EPSG:4326")
  # UTM edges bend in EPSG:6933 and are densified; lon/lat box edges stay
  # straight (meridians/parallels), so the box keeps its 5 vertices.
  assert shapely.get_num_coordinates(a.geoms)[0] > 5
  assert shapely.get_num_coordinates(b.geoms)[0] == 5
  fine = shapely.segmentize(utm, 100.0)  # Independent: 100 m steps.
  fine_ll = shapely.transform(
      fine, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1]))
  )
  want_u = abs(geod.geometry_area_perimeter(fine_ll)[0])
  want_l = abs(
      geod.geometry_area_perimeter(shapely.segmentize(ll, 0.001))[0]
  )  # Geodesic edges ~ parallels.
  assert shapely.area(a.geoms[0]) == pytest.approx(want_u, rel=1e-6)
  assert shapely.area(b.geoms[0]) == pytest.approx(want_l, rel=1e-6)


# ------------------------------------------------ hand-made rectangles (m^2)


def _ea(ids, boxes, days, cloud, stratum=None):
  """Scenes given directly in EPSG:6933 (metres, areas exact)."""
  t = np.array([int(d * DAY_US) for d in days], np.int64)
  return fp.scenes_from_arrays(
      ids,
      [shapely.box(*b) for b in boxes],
      t,
      cloud,
      fp.EQUAL_AREA_CRS,
      stratum=stratum,
  )


@pytest.fixture
def rects():
  # HR "h": the 100 m x 100 m square [0, 100]^2 at day 0, cloud 0.1.
  # HR "k": [1000, 1100] x [0, 100], day 0, cloud 0.9 (too cloudy).
  hr = _ea(
      ["h", "k"], [(0, 0, 100, 100), (1000, 0, 1100, 100)], [0, 0], [0.1, 0.9]
  )
  # LR: a covers 60% of h (2 days off), b 40%, c 100% but 40 days off,
  # d 100% but cloudy, e 60% at 1 day (beats a on the time gap), f only
  # touches h along an edge; g covers k fully.
  lr = _ea(
      list("abcdefg"),
      [
          (0, 0, 100, 60),
          (0, 60, 100, 100),
          (-50, -50, 150, 150),
          (-10, -10, 110, 110),
          (0, 40, 100, 100),
          (100, 0, 200, 100),
          (990, -10, 1110, 110),
      ],
      [2, -1, 40, 0, -1, 0, 0],
      [0.0, 0.0, 0.0, 0.7, 0.2, 0.0, 0.0],
  )
  return hr, lr


def _pairs(r, hr, lr):
  return sorted(
      (hr.ids[h], lr.ids[l], round(float(o), 12))
      for h, l, o in zip(r["hr_idx"], r["lr_idx"], r["overlap"])
  )


@pytest.mark.parametrize("engine", ENGINES)
def test_filters_on_rectangles(rects, engine):
  hr, lr = rects

  def run(**kw):
    base = dict(
        engine=engine,
        min_overlap=0.5,
        max_days=30,
        max_cloud=0.5,
        all_matches=True,
    )
    base.update(kw)
    return _pairs(fp.join(hr, lr, **base), hr, lr)

  assert run() == [("h", "a", 0.6), ("h", "e", 0.6)]
  assert run(all_matches=False) == [("h", "e", 0.6)]  # Smaller time gap.
  assert run(min_overlap=0.6) == [("h", "a", 0.6), ("h", "e", 0.6)]
  assert run(min_overlap=0.61) == []
  assert run(min_overlap=0.4) == [
      ("h", "a", 0.6),
      ("h", "b", 0.4),
      ("h", "e", 0.6),
  ]
  assert run(max_days=1) == [("h", "e", 0.6)]
  assert run(max_days=40) == [("h", "a", 0.6), ("h", "c", 1.0), ("h", "e", 0.6)]
  assert run(max_days=40, all_matches=False) == [("h", "c", 1.0)]
  assert run(max_cloud=0.1) == [("h", "a", 0.6)]  # e (0.2) is too cloudy.
  assert run(max_cloud=0.7) == [
      ("h", "a", 0.6),
      ("h", "d", 1.0),
      ("h", "e", 0.6),
  ]
  assert run(max_cloud=0.9) == [
      ("h", "a", 0.6),
      ("h", "d", 1.0),
      ("h", "e", 0.6),
      ("k", "g", 1.0),
  ]
  # Touching only (overlap 0) passes ST_Intersects but needs min_overlap 0.
  assert ("h", "f", 0.0) in run(min_overlap=0.0)


def test_overlap_ties_go_to_the_smaller_gap_then_the_lr_row():
  hr = _ea(["h"], [(0, 0, 10, 10)], [0], [0])
  # All three contain h (overlap 1); gaps 1, 2, 2 days; z is the cloudiest.
  lr = _ea(
      ["z", "y", "x"],
      [(-1, -1, 11, 11), (-2, -2, 12, 12), (-3, -3, 13, 13)],
      [1, -2, 2],
      [0.5, 0, 0],
  )
  for engine in ENGINES:
    r = fp.join(hr, lr, engine=engine, max_days=5)
    assert lr.ids[r["lr_idx"]].tolist() == ["z"]  # Smallest gap.
    r = fp.join(hr, lr, engine=engine, max_days=5, max_cloud=0.4)
    assert lr.ids[r["lr_idx"]].tolist() == ["y"]  # |-2| = |2|: first row.


# -------------------------------------------------------- stratified sampling


def test_stratified_sample_caps_and_is_seeded():
  strata = np.array(["u"] * 50 + ["f"] * 7 + ["w"] * 20, object)
  a = fp.stratified_sample(strata, 10, seed=3)
  counts = {s: int((strata[a] == s).sum()) for s in ("u", "f", "w")}
  assert counts == {"u": 10, "f": 7, "w": 10}
  assert (np.diff(a) > 0).all()
  assert np.array_equal(a, fp.stratified_sample(strata, 10, seed=3))
  assert not np.array_equal(a, fp.stratified_sample(strata, 10, seed=4))
  assert np.array_equal(fp.stratified_sample(strata, None, 0), np.arange(77))
  assert len(fp.stratified_sample(strata, 0, 0)) == 0


def test_find_pairs_samples_per_stratum_for_both_engines():
  hr_a, lr_a = fp.synth_tables(2000, 2000, seed=2)
  hr, lr = fp.synth_scenes(hr_a), fp.synth_scenes(lr_a)
  kw = dict(min_overlap=0.5, max_days=90, per_stratum=15, seed=7)
  full, _ = fp.find_pairs(hr, lr, min_overlap=0.5, max_days=90)
  full_counts = {
      s: full["stratum"].to_pylist().count(s)
      for s in set(full["stratum"].to_pylist())
  }
  assert max(full_counts.values()) > 15
  tables = [fp.find_pairs(hr, lr, engine=e, **kw)[0] for e in ENGINES]
  assert (
      tables[0]
      .select(["hr_id", "lr_id", "stratum"])
      .equals(tables[1].select(["hr_id", "lr_id", "stratum"]))
  )
  st = tables[0]["stratum"].to_pylist()
  for s, n in full_counts.items():
    assert st.count(s) == min(n, 15)
  # The HR scene's stratum labels the pair.
  assert st == [
      hr.stratum[list(hr.ids).index(i)] for i in tables[0]["hr_id"].to_pylist()
  ]
  again = fp.find_pairs(hr, lr, **kw)[0]
  assert again.equals(tables[0])


# ---------------------------------------------------------- GeoParquet output


def test_geoparquet_round_trip(rects, tmp_path):
  hr, lr = rects
  table, inter = fp.find_pairs(
      hr, lr, min_overlap=0.5, max_days=30, max_cloud=0.5, all_matches=True
  )
  path = fp.write_geoparquet(
      table, inter, fp.OUTPUT_CRS, str(tmp_path / "p.parquet")
  )
  back = pq.read_table(path)
  geo = json.loads(back.schema.metadata[b"geo"])
  assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
  col = geo["columns"]["geometry"]
  assert col["encoding"] == "WKB" and col["geometry_types"] == ["Polygon"]
  assert pyproj.CRS.from_json_dict(col["crs"]) == pyproj.CRS("OGC:CRS84")
  assert back.schema.field("geometry").type == pa.binary()
  assert back.schema.field("hr_time").type == pa.timestamp("us", tz="UTC")
  g = shapely.from_wkb(back["geometry"].to_numpy(zero_copy_only=False))
  assert np.allclose(shapely.bounds(g).min(0)[:2], col["bbox"][:2])
  assert np.allclose(shapely.bounds(g).max(0)[2:], col["bbox"][2:])
  # The lon/lat intersections project back onto the exact rectangles (the
  # PROJ round trip of EASE-Grid 2.0 is good to ~1e-6 m).
  tr = pyproj.Transformer.from_crs(
      "OGC:CRS84", fp.EQUAL_AREA_CRS, always_xy=True
  )
  ea = shapely.transform(
      g, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
  )
  assert np.allclose(shapely.area(ea), [6000.0, 6000.0], rtol=1e-8)
  assert back.column("hr_id").to_pylist() == ["h", "h"]
  assert back.column("lr_id").to_pylist() == ["a", "e"]
  assert back.column("time_gap_days").to_pylist() == [2.0, 1.0]
  assert back.column("overlap").to_pylist() == pytest.approx([0.6, 0.6])
  assert back.column("lr_cloud").to_pylist() == [0.0, 0.2]
  # SedonaDB reads it as a geometry column with its CRS.
  df = sedonadb.connect().read_parquet(path)
  assert "geometry" in str(df.schema).lower()
  # And it is itself a valid metadata table for another join (its CRS read
  # from the file): the two intersections overlap each other 100% / 2/3.
  meta = back.select(["geometry"]).append_column("id", pa.array(["x", "y"]))
  meta = meta.append_column("time", back["hr_time"]).append_column(
      "cloud", pa.array([0.0, 0.0])
  )
  meta = meta.replace_schema_metadata(back.schema.metadata)
  pq.write_table(meta, str(tmp_path / "m.parquet"))
  again = fp.read_table(str(tmp_path / "m.parquet"))
  assert shapely.area(again.geoms) == pytest.approx([6000.0] * 2, rel=1e-8)


def test_no_pairs_still_writes_valid_geoparquet(rects, tmp_path):
  hr, lr = rects
  for engine in ENGINES:
    table, inter = fp.find_pairs(
        hr, lr, engine=engine, max_days=30, max_cloud=0.5, min_overlap=0.7
    )
    assert table.num_rows == 0
  path = fp.write_geoparquet(
      table, inter, fp.OUTPUT_CRS, str(tmp_path / "none.parquet")
  )
  back = pq.read_table(path)
  assert back.num_rows == 0 and b"geo" in back.schema.metadata
  with pytest.raises(records.DataError, match="engine 'duckdb'"):
    fp.join(hr, lr, engine="duckdb")
  with pytest.raises(records.DataError, match=r"min_overlap=1.5 must be"):
    fp.join(hr, lr, min_overlap=1.5)


# ------------------------------------------------------------ Spark engine


def test_spark_engine_equals_shapely():
  pytest.importorskip(
      "pyspark",
      reason="pyspark not installed: the Spark "
      "engine (Apache Sedona for Spark) is not tested here",
  )
  pytest.importorskip("sedona.spark", reason="apache-sedona not installed")
  rng = np.random.default_rng(5)
  hr = _random_scenes(
      rng, 60, "EPSG:32631", np.array([500e3, 5.75e6]), 3e3, 10e3, "hr"
  )
  lr = _random_scenes(
      rng, 40, "EPSG:4326", np.array([3.0, 51.9]), 0.15, 0.1, "lr"
  )
  kw = dict(min_overlap=0.2, max_days=30, max_cloud=0.9)
  _assert_same(
      fp.join(hr, lr, engine="spark", **kw),
      fp.join(hr, lr, engine="shapely", **kw),
      hr,
      lr,
  )
