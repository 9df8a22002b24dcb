"""crossscale.plan and crossscale.predict on real rasters of ../shared/data
(NAIP 4-band UTM, Landsat in EPSG:4326, SpaceNet MS) with an untrained
runlocal cross-scale run (initialised parameters: geometry and consistency
need no training)."""

import json
import os

import jax
import numpy as np
import pytest
import rasterio
import shapely

from crossscale import geotiles, plan, predict, runspec
from crossscale.kernels import tile_select_reference as ref
from tests import geo_helpers as gh

NAIP = "geotiff/naip/m_4709963_se_14_1_20200831.tif"
LANDSAT = "geotiff/landsat/pucallpa_2020.tif"
SPACENET_MS = "spacenet/preproc_tutorial/ms1.tif"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  d = gh.rgb_dataset(tmp_path_factory.mktemp("rgb"))
  return gh.untrained_run(d, str(tmp_path_factory.mktemp("run")))


@pytest.fixture(scope="module")
def spec(run):
  return runspec.from_workdir(run)


def _crop(shared_data, name, out_dir, h, w, r0=100, c0=100):
  """NAIP rows r0.., cols c0.. (h x w px at 5 m, 4 bands) as a GeoTIFF
  named as NAIP quarter-quads are (bands R,G,B,NIR by the name table)."""
  with rasterio.open(os.path.join(shared_data, name)) as ds:
    win = rasterio.windows.Window(c0, r0, w, h)
    data, t, crs = ds.read(window=win), ds.window_transform(win), ds.crs
  path = os.path.join(str(out_dir), f"m_4709963_se_14_1_crop{h}x{w}.tif")
  return gh.write_raster(path, data, crs=crs, transform=t, nodata=0)


@pytest.fixture(scope="module")
def naip_crop(shared_data, tmp_path_factory):
  """2 x 3 scenes of NAIP (32 x 48 px at 5 m)."""
  return _crop(shared_data, NAIP, tmp_path_factory.mktemp("crop"), 32, 48)


def _plan(run, lr, out, *extra):
  return plan.main(["--workdir", run, "--lr", lr, "--out", str(out), *extra])


def _features(out, name="plan.geojson"):
  return gh.load_geojson(os.path.join(out, name))["features"]


_PLAN_FNS = {}


def _scene_logits(spec, lr_path, g):
  """The model's own `plan` (logits, selection) on every scene, in
  batches of 32 (one compile): (standardised LR `[S, h, w, C]`, outputs)."""
  if id(spec) not in _PLAN_FNS:
    _PLAN_FNS[id(spec)] = runspec.batched(
        jax.jit(
            lambda x: spec.model.apply(
                {"params": spec.params},
                {"lr": x},
                rngs={"selection": jax.random.key(0)},
                method="plan",
            )
        )
    )
  lr = geotiles.open_lr(lr_path, spec.lr_bands)
  src = geotiles.window_source(lr, g)
  px = np.concatenate(
      [geotiles.read_scenes(src, lr, g, i, 0, g.cols)[0] for i in range(g.rows)]
  )
  x = spec.standardise(px)
  return x, _PLAN_FNS[id(spec)](x)


def test_plan_naip_geometry_scores_and_model_selection(
    run, spec, shared_data, tmp_path
):
  lr = _crop(shared_data, NAIP, tmp_path, 170, 250)  # 10 x 15 scenes + edges
  s = _plan(run, lr, tmp_path, "--hr_gsd", "1.25")
  assert s["mode"] == "per_scene" and s["planning_gsd_m"] == 5.0
  rows, cols = s["grid"]
  assert (rows, cols) == (170 // 16, 250 // 16)
  k = spec.k
  feats = _features(tmp_path)
  assert len(feats) == s["tiles_bought"] == rows * cols * k
  g = geotiles.make_grid(geotiles.open_lr(lr, gh.RGB), (16, 16), 8, None)
  # Tiles tile the scene footprint exactly: G*G disjoint equal boxes whose
  # union is the scene.
  scene = shapely.box(*g.scene_bounds(3, 5))
  tiles = [shapely.box(*g.tile_bounds(3, 5, n)) for n in range(64)]
  assert shapely.union_all(tiles).equals(scene)
  assert sum(t.area for t in tiles) == pytest.approx(scene.area, rel=1e-12)
  assert scene.area == pytest.approx(80.0 * 80.0)  # 16 px at 5 m
  # Polygons, scores.tif and ranks agree; ranks follow scores per scene.
  with rasterio.open(tmp_path / "scores.tif") as ds:
    score, bought = ds.read(1), ds.read(2)
    assert ds.crs == g.crs and ds.transform.a == pytest.approx(10.0)
  assert bought.sum() == len(feats)
  by_scene = {}
  for f in feats:
    p = f["properties"]
    assert shapely.geometry.shape(f["geometry"]).equals(
        shapely.box(*g.tile_bounds(p["scene_row"], p["scene_col"], p["tile"]))
    )
    assert bought[p["row"], p["col"]] == 1
    assert p["score"] == pytest.approx(score[p["row"], p["col"]], abs=1e-5)
    by_scene.setdefault(p["scene"], []).append(p)
  for ps in by_scene.values():
    ranked = sorted(ps, key=lambda p: p["rank"])
    assert [p["rank"] for p in ranked] == list(range(1, k + 1))
    sc = [p["score"] for p in ranked]
    assert sc == sorted(sc, reverse=True)
  # The tiles bought are the model's own selection (method="plan").
  _, out = _scene_logits(spec, lr, g)
  np.testing.assert_allclose(
      score.reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3).reshape(-1, 64),
      out["tile_logits"],
      rtol=1e-5,
      atol=1e-5,
  )
  mine = {(p["scene_row"] * cols + p["scene_col"], p["tile"]) for f in feats
          for p in [f["properties"]]}  # fmt: skip
  model = {(b, int(t)) for b, ts in enumerate(out["tile_indices"]) for t in ts}
  assert mine == model
  # EPSG:4326 copy: same features, lon/lat of North Dakota.
  f4326 = _features(tmp_path, "plan_4326.geojson")
  assert len(f4326) == len(feats)
  lon, lat = np.array(f4326[0]["geometry"]["coordinates"][0]).T
  assert (-100 < lon).all() and (lon < -98).all() and (46 < lat).all()
  summary = json.load(open(tmp_path / "summary.json"))
  assert summary["s_per_km2"] > 0 and summary["area_km2"] == pytest.approx(
      rows * cols * 0.0064
  )
  assert os.path.getsize(tmp_path / "plan.png") > 10_000


def test_global_budget_on_landsat_4326(run, shared_data, tmp_path):
  lr = os.path.join(shared_data, LANDSAT)
  s = _plan(
      run, lr, tmp_path, "--global", "--budget", "100", "--hr_gsd", "40",
      "--band_names", "SWIR1,NIR,R,G", "--bands", "R,G,NIR",
  )  # fmt: skip
  assert s["mode"] == "global" and s["tiles_bought"] == 100
  feats = _features(tmp_path)
  with rasterio.open(tmp_path / "scores.tif") as ds:
    score = ds.read(1)
    assert ds.crs.to_epsg() == 4326
  # The 100 best scores of the raster, ranked 1..100 by score.
  top = np.sort(score[np.isfinite(score)])[::-1][:100]
  got = sorted((p["properties"] for p in feats), key=lambda p: p["rank"])
  np.testing.assert_allclose([p["score"] for p in got], top, atol=1e-5)
  # Geographic CRS: 160 m planning pixels (in degrees), geodesic area.
  rows, cols = s["grid"]
  assert s["planning_gsd_m"] == 160.0
  assert s["area_km2"] == pytest.approx(
      rows * cols * (16 * 0.16) ** 2, rel=0.02
  )


def test_prices_buy_greedily_by_score_per_price(run, spec, naip_crop, tmp_path):
  with rasterio.open(naip_crop) as ds:
    b, crs = ds.bounds, ds.crs
  tr = geotiles.transformer(crs)
  mid = (b.left + b.right) / 2
  zones = []
  for (x0, x1), price in (((b.left - 1, mid), 1.0), ((mid, b.right + 1), 5)):
    ring = geotiles.ring_to(
        tr, geotiles.box_ring((x0, b.bottom - 1, x1, b.top + 1))
    )
    geom = {"type": "Polygon", "coordinates": [ring]}
    zones.append(
        {"type": "Feature", "properties": {"cost": price}, "geometry": geom}
    )
  zpath = tmp_path / "zones.geojson"
  zpath.write_text(json.dumps({"type": "FeatureCollection", "features": zones}))
  out = tmp_path / "plan"
  s = _plan(
      run, naip_crop, out, "--hr_gsd", "1.25", "--prices", str(zpath),
      "--price_key", "cost", "--total", "60",
  )  # fmt: skip
  feats = [f["properties"] for f in _features(out)]
  assert s["mode"] == "prices" and s["spend"] <= 60
  # Prices follow the zone of each tile centre (left half: 1, right: 5).
  g = geotiles.make_grid(geotiles.open_lr(naip_crop, gh.RGB), (16, 16), 8, None)
  for p in feats:
    x0, _, x1, _ = g.tile_bounds(p["scene_row"], p["scene_col"], p["tile"])
    assert p["price"] == (1.0 if (x0 + x1) / 2 < mid else 5)
  # Exactly the model's cost-budget rule (select_under_cost) on all tiles.
  _, out_model = _scene_logits(spec, naip_crop, g)
  logits = out_model["tile_logits"].reshape(1, -1)
  ids = [
      (b, t) for b in range(len(out_model["tile_logits"])) for t in range(64)
  ]
  prices = np.array([
      1.0 if np.mean(g.tile_bounds(*divmod(b, g.cols), t)[::2]) < mid else 5.0
      for b, t in ids
  ])[None]  # fmt: skip
  mask = np.asarray(
      ref.select_under_cost(jax.nn.sigmoid(logits), prices, 60.0)
  )[0]
  want = {ids[i] for i in np.nonzero(mask)[0]}
  got = {(p["scene_row"] * g.cols + p["scene_col"], p["tile"]) for p in feats}
  assert got == want and len(got) > 0
  spend = [p["spend"] for p in sorted(feats, key=lambda p: p["rank"])]
  assert spend == sorted(spend) and spend[-1] == pytest.approx(s["spend"])
  # The expensive half gets fewer tiles than the uniform plan gives it.
  right = sum(p["price"] == 5 for p in feats)
  assert right < len(feats) / 2


def test_resamples_to_the_runs_gsd_spacenet(run, shared_data, tmp_path):
  lr = os.path.join(shared_data, SPACENET_MS)  # 300 px at 1 m; run LR 4 m
  s = _plan(run, lr, tmp_path, "--sensor", "spacenet_ms")
  assert s["planning_gsd_m"] == 4.0 and "resampling" in s["gsd_note"]
  assert s["grid"] == [300 // 4 // 16, 300 // 4 // 16]
  with rasterio.open(tmp_path / "scores.tif") as ds:
    assert ds.transform.a == pytest.approx(8.0, rel=1e-3)  # 2 px of 4 m


def test_nodata_scenes_skipped_and_partial_flagged(run, tmp_path):
  rng = np.random.default_rng(0)
  a = rng.integers(1, 255, (3, 32, 48), dtype=np.uint8)
  a[:, :16, :16] = 0  # scene r0c0: all nodata
  a[:, 16:, 16:20] = 0  # scene r1c1: 2 tile columns nodata
  path = gh.write_raster(str(tmp_path / "nd.tif"), a, nodata=0)
  out = tmp_path / "p"
  s = _plan(run, path, out, "--hr_gsd", "0.25")  # 1 m LR pixels
  assert (s["scenes"], s["skipped_nodata"], s["partial"]) == (6, 1, 1)
  feats = [f["properties"] for f in _features(out)]
  assert not [p for p in feats if p["scene"] == "r0c0"]
  r1c1 = [p for p in feats if p["scene"] == "r1c1"]
  assert r1c1 and all(p["partial_nodata"] for p in r1c1)
  assert all(p["tile_col"] >= 2 for p in r1c1)  # nodata tiles never bought
  with rasterio.open(out / "scores.tif") as ds:
    sc = ds.read(1)
  assert np.isnan(sc[:8, :8]).all() and np.isnan(sc[8:, 8:10]).all()
  assert np.isfinite(sc[8:, 10:16]).all()


@pytest.mark.slow  # ~15-35 s: 4096 scenes under tracemalloc
def test_peak_memory_bounded_on_a_large_raster(run, tmp_path):
  limit = 4
  a = np.random.default_rng(1).uniform(0, 1, (3, 1024, 1024))
  path = gh.write_raster(str(tmp_path / "big.tif"), a.astype(np.float32))
  assert os.path.getsize(path) > 3 * limit * 2**20
  s = _plan(
      run, path, tmp_path / "p", "--hr_gsd", "0.25", "--memory_mb", str(limit),
      "--trace_memory", "--bands", "1,2,3", "--pixel_scale", "255",
  )  # fmt: skip
  assert s["scored"] == 64 * 64
  assert s["peak_traced_mb"] < limit, s


@pytest.mark.parametrize(
    "case, fix",
    [
        ("bands", "--band_names"),
        ("no_crs", "gdal_edit.py -a_srs"),
        ("small", "smaller than one scene"),
        ("gsd", "--hr_gsd"),
    ],
)
def test_bad_inputs_exit_with_the_file_and_fix(
    run, shared_data, tmp_path, case, fix
):
  extra = ["--hr_gsd", "0.25"]
  lr = str(tmp_path / f"{case}.tif")
  a = np.ones((3, 40, 40), np.uint8)
  if case == "bands":
    lr, extra = os.path.join(shared_data, LANDSAT), ["--hr_gsd", "20"]
  elif case == "no_crs":
    gh.write_raster(lr, a, crs=None)
  elif case == "small":
    gh.write_raster(lr, a[:, :10, :40])
  else:
    lr, extra = os.path.join(shared_data, LANDSAT), ["--band_names", "R,G,B,N"]
  with pytest.raises(SystemExit) as e:
    _plan(run, lr, tmp_path / "out", *extra)
  msg = str(e.value)
  assert msg.startswith("crossscale.plan: ") and fix in msg and lr in msg
  if case == "bands":
    assert "'R'" in msg and "BAND1" in msg


def test_pixels_in_other_units_refused_or_rescaled(run, naip_crop, tmp_path):
  """The same NAIP scenes as uint16 x 40 (a reflectance-like unit) are
  refused naming the file, the bands and --pixel_scale; rescaled by 1/40
  they plan exactly like the uint8 original (the run trained on uint8)."""
  with rasterio.open(naip_crop) as ds:
    a, t, crs = ds.read(), ds.transform, ds.crs
  big = str(tmp_path / "m_4709963_se_14_1_x40.tif")  # NAIP band names
  gh.write_raster(big, a.astype(np.uint16) * 40, crs=crs, transform=t, nodata=0)
  with pytest.raises(SystemExit) as e:
    _plan(run, big, tmp_path / "refused", "--hr_gsd", "1.25")
  msg = str(e.value)
  assert big in msg and "--pixel_scale" in msg and "band 'R'" in msg
  _plan(run, naip_crop, tmp_path / "u8", "--hr_gsd", "1.25")
  _plan(
      run, big, tmp_path / "x40", "--hr_gsd", "1.25", "--pixel_scale", "0.025"
  )
  with (
      rasterio.open(tmp_path / "u8" / "scores.tif") as u8,
      rasterio.open(tmp_path / "x40" / "scores.tif") as x40,
  ):
    np.testing.assert_allclose(u8.read(1), x40.read(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(u8.read(2), x40.read(2))


# ---------------------------------------------------------------- predict


@pytest.mark.slow  # ~20 s: compiles predict and the full model
def test_predict_on_bought_tiles_equals_the_model(
    run, spec, naip_crop, tmp_path
):
  """HR only where the plan bought (two files in a folder): predict's
  logits equal model.apply on the same LR and the full HR arrays (its
  sampler buys those very tiles)."""
  out = tmp_path / "plan"
  _plan(run, naip_crop, out, "--hr_gsd", "1.25")
  g = geotiles.make_grid(geotiles.open_lr(naip_crop, gh.RGB), (16, 16), 8, None)
  H = 64
  rng = np.random.default_rng(3)
  hr = rng.integers(1, 255, (3, g.rows * H, g.cols * H), dtype=np.uint8)
  keep = np.zeros(hr.shape[1:], bool)
  for f in _features(out):
    p = f["properties"]
    r0, c0 = p["row"] * 8, p["col"] * 8
    keep[r0 : r0 + 8, c0 : c0 + 8] = True
  masked = np.where(keep, hr, 0).astype(np.uint8)
  t = g.hr_transform(0, 0, H, H)
  folder = tmp_path / "hr"
  folder.mkdir()
  half = g.cols * H // 2
  gh.write_raster(str(folder / "a.tif"), masked[:, :, :half], crs=g.crs,
                  transform=t, nodata=0)  # fmt: skip
  t2 = t * rasterio.Affine.translation(half, 0)
  gh.write_raster(str(folder / "b.tif"), masked[:, :, half:], crs=g.crs,
                  transform=t2, nodata=0)  # fmt: skip
  pout = tmp_path / "pred"
  res = predict.main(
      ["--workdir", run, "--lr", naip_crop, "--hr", str(folder),
       "--out", str(pout), "--hr_gsd", "1.25"]
  )  # fmt: skip
  assert res["scenes"] == 6 and res["hr_tiles"] == 6 * spec.k
  emb = np.load(pout / "embeddings.npz")
  x, _ = _scene_logits(spec, naip_crop, g)
  full = hr.reshape(3, g.rows, H, g.cols, H).transpose(1, 3, 2, 4, 0)
  full = spec.standardise(full.reshape(-1, H, H, 3), "hr")
  want = spec.model.apply(
      {"params": spec.params},
      {"lr": x, "hr": full},
      train=False,
      rngs={"selection": jax.random.key(0)},
  )
  np.testing.assert_allclose(
      emb["logits"], want["logits"], rtol=1e-4, atol=1e-4
  )
  np.testing.assert_allclose(
      emb["embedding"], want["embedding"], rtol=1e-4, atol=1e-4
  )
  assert list(emb["ids"]) == [f"r{i}c{j}" for i in range(2) for j in range(3)]
  bought = emb["bought"]
  assert (np.sort(np.nonzero(bought)[1].reshape(6, -1)) == np.sort(
      want["tile_indices"], 1)).all()  # fmt: skip
  feats = _features(pout, "predictions.geojson")
  assert feats[0]["properties"]["label"] in spec.class_names
  assert shapely.geometry.shape(feats[0]["geometry"]).equals(
      shapely.box(*g.scene_bounds(0, 0))
  )


def test_predict_refuses_hr_that_does_not_overlap(run, naip_crop, tmp_path):
  hr = gh.write_raster(
      str(tmp_path / "far.tif"), np.ones((3, 64, 64), np.uint8)
  )  # UTM 14N, 500 km east of the NAIP crop
  with pytest.raises(SystemExit) as e:
    predict.main(
        ["--workdir", run, "--lr", naip_crop, "--hr", hr, "--out",
         str(tmp_path / "o"), "--hr_gsd", "1.25"]
    )  # fmt: skip
  assert "does not overlap" in str(e.value) and hr in str(e.value)


def test_prefix_select_matches_a_sort():
  rng = np.random.default_rng(0)
  keys = rng.normal(size=5000).astype(np.float32)
  keys[::7] = keys[3]  # ties
  keys[5] = np.nan
  w = rng.uniform(0, 2, 5000)
  got = plan.prefix_select(keys, w, 300.0, chunk=777)
  order = np.lexsort((np.arange(5000), -np.nan_to_num(keys, nan=-np.inf)))
  order = order[np.isfinite(keys[order])]
  n = int((np.cumsum(w[order]) <= 300.0).sum())
  np.testing.assert_array_equal(got, order[:n])
  got = plan.prefix_select(keys, None, 123, chunk=1000)
  np.testing.assert_array_equal(got, order[:123])


@pytest.mark.slow  # ~10 s: lowers the export
def test_plan_from_an_export_equals_plan_from_the_run(run, naip_crop, tmp_path):
  from crossscale import export  # pylint: disable=g-import-not-at-top

  export.export_run(run, str(tmp_path / "export"), platforms=("cpu",))
  a = _plan(run, naip_crop, tmp_path / "a", "--hr_gsd", "1.25")
  b = plan.main(
      ["--export", str(tmp_path / "export"), "--lr", naip_crop, "--out",
       str(tmp_path / "b"), "--hr_gsd", "1.25"]
  )  # fmt: skip
  fa, fb = _features(tmp_path / "a"), _features(tmp_path / "b")
  assert len(fa) == len(fb) > 0
  key = lambda f: (f["properties"]["scene"], f["properties"]["tile"])
  assert sorted(map(key, fa)) == sorted(map(key, fb))
  np.testing.assert_allclose(
      [f["properties"]["score"] for f in sorted(fa, key=key)],
      [f["properties"]["score"] for f in sorted(fb, key=key)],
      rtol=1e-4, atol=1e-5,
  )  # fmt: skip
  assert a["tiles_bought"] == b["tiles_bought"]


def test_predict_plan_restricts_bought_tiles_to_the_planned(tmp_path):
  feats = [
      {"type": "Feature", "geometry": None,
       "properties": {"scene_row": r, "scene_col": c, "tile": t}}
      for r, c, t in ((0, 1, 3), (0, 1, 7), (2, 0, 0))
  ]  # fmt: skip
  path = tmp_path / "plan.geojson"
  path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
  plan_ = predict.planned_tiles(str(path), 16)
  assert sorted(plan_) == [(0, 1), (2, 0)]
  assert np.flatnonzero(plan_[(0, 1)]).tolist() == [3, 7]
  assert np.flatnonzero(plan_[(2, 0)]).tolist() == [0]
