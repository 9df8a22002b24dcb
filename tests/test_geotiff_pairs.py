"""data.geotiff_pairs on real rasters from ../shared/data."""

import os
import re

import numpy as np
import pytest
import rasterio
from rasterio import warp
from rasterio.enums import Resampling

from crossscale import records, shards
from data import geotiff_pairs

SPACENET = "spacenet/preproc_tutorial"
LANDSAT = "landsat_pan_ms/LC08_L1TP_195025_20130707_20170503_01_T1"
NAIP = "geotiff/naip/m_4709963_se_14_1_20150926.tif"
PUCALLPA = "geotiff/landsat/pucallpa_2020.tif"


def _all_scenes(out):
  m = shards.load_manifest(str(out))
  return m, [
      s for split in m.splits for s in shards.iter_scenes(str(out), split)
  ]


def _corr(a, b):
  return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _block_mean(img, k):
  """`[H, W]` -> `[H/k, W/k]` block means."""
  H, W = img.shape
  return img.astype(np.float64).reshape(H // k, k, W // k, k).mean((1, 3))


def _row_col(scene_id):
  r, c = re.search(r"_r(\d+)_c(\d+)$", scene_id).groups()
  return int(r), int(c)


def test_spacenet_pan_ms_pair(shared_data, tmp_path):
  pan = os.path.join(shared_data, SPACENET, "pan1.tif")
  ms = os.path.join(shared_data, SPACENET, "ms1.tif")
  m = geotiff_pairs.build(tmp_path, [pan], [ms], scene_px=128, grid=4)
  assert m.hr_shape == [128, 128, 1] and m.lr_shape == [64, 64, 4]
  assert m.builder["scale"] == 2 and m.builder["windows"] == 16
  assert m.hr_gsd == pytest.approx(0.5, abs=1e-3)
  assert m.lr_gsd == pytest.approx(2 * m.hr_gsd)
  assert m.dtypes == {"hr": "<u2", "lr": "<f4"}  # float64 MS -> float32.
  assert m.class_names == [] and m.hr_bands == ["pan1"]
  assert m.lr_bands == ["ms1_1", "ms1_2", "ms1_3", "ms1_4"]
  assert sum(m.num_records(s) for s in m.splits) == 16
  m2, scenes = _all_scenes(tmp_path)
  assert m2.lr_shape == m.lr_shape and len(scenes) == 16
  assert len({s.id for s in scenes}) == 16
  with rasterio.open(ms) as src:
    native = src.read().transpose(1, 2, 0)
  with rasterio.open(pan) as src:
    pan_bounds, pan_res = tuple(src.bounds), src.res[0]
  hr_means, lr_means, shifted = [], [], []
  for s in scenes:
    assert s.crs == "EPSG:32631" and s.labels.shape == (0,)
    assert s.hr.dtype == np.uint16 and s.lr.dtype == np.float32
    assert np.isfinite(s.lr).all()
    # The two grids nearly coincide (both start at the raster's top-left), so
    # a window's LR is the native MS pixels up to resampling slivers.
    r, c = _row_col(s.id)
    left = pan_bounds[0] + c * 128 * pan_res
    top = pan_bounds[3] - r * 128 * pan_res
    assert s.bounds == pytest.approx(
        (left, top - 128 * pan_res, left + 128 * pan_res, top)
    )
    ref = native[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64]
    assert np.abs(s.lr - ref).mean() < 0.01 * np.abs(ref).mean()
    h, l = _block_mean(s.hr[..., 0], 2), s.lr.astype(np.float64).mean(-1)
    hr_means.append(h)
    lr_means.append(l)
    shifted.append(_corr(h[:, 1:], l[:, :-1]))
    assert _corr(h, l) > shifted[-1]  # Aligned beats one LR pixel off.
  # Real alignment: the pan block mean tracks the MS brightness.
  assert _corr(np.stack(hr_means), np.stack(lr_means)) > 0.8
  assert np.mean(shifted) < 0.8


def test_landsat_pan_ms_time_from_mtl(shared_data, tmp_path):
  base = os.path.join(shared_data, LANDSAT)
  lr = [f"{base}_B{b}.TIF" for b in (2, 3, 4)]
  geotiff_pairs.main(
      [
          "--out",
          str(tmp_path),
          "--hr",
          f"{base}_B8.TIF",
          "--lr",
          *lr,
          "--scene_px",
          "32",
          "--grid",
          "4",
      ]
  )
  m, scenes = _all_scenes(tmp_path)
  assert m.builder["scale"] == 2
  assert m.hr_gsd == 15.0 and m.lr_gsd == 30.0
  assert m.hr_bands == ["B8"] and m.lr_bands == ["B2", "B3", "B4"]
  assert m.hr_shape == [32, 32, 1] and m.lr_shape == [16, 16, 3]
  assert m.dtypes == {"hr": "<i2", "lr": "<i2"}
  assert len(scenes) == 4  # 81x81 px of the 82x82 pan overlap the MS.
  for s in scenes:
    assert s.hr_time.startswith("2013-07-07T10:17:42")
    assert s.lr_time == s.hr_time
    assert s.crs == "EPSG:32632"
    assert _corr(_block_mean(s.hr[..., 0], 2), s.lr.mean(-1)) > 0.8
  # An explicit time wins over the MTL.
  out2 = tmp_path / "explicit"
  geotiff_pairs.build(
      out2,
      [f"{base}_B8.TIF"],
      lr,
      scene_px=32,
      grid=4,
      hr_time="2013-07-08",
      lr_time="2013-07-09T00:00:00Z",
  )
  _, scenes = _all_scenes(out2)
  assert {(s.hr_time, s.lr_time) for s in scenes} == {
      ("2013-07-08", "2013-07-09T00:00:00Z")
  }


def test_lr_in_another_crs(shared_data, tmp_path):
  """An LR in EPSG:4326 (degrees) is warped onto UTM HR windows."""
  naip = os.path.join(shared_data, NAIP)
  lr_path = str(tmp_path / "naip_4326.tif")
  with rasterio.open(naip) as src:
    t, w, h = warp.calculate_default_transform(
        src.crs,
        "EPSG:4326",
        src.width,
        src.height,
        *src.bounds,
        resolution=(0.000265, 0.00018),
    )  # ~20 m at 47 N.
    profile = dict(src.profile, crs="EPSG:4326", transform=t, width=w, height=h)
    with rasterio.open(lr_path, "w", **profile) as dst:
      for b in range(1, src.count + 1):
        warp.reproject(
            rasterio.band(src, b),
            rasterio.band(dst, b),
            resampling=Resampling.average,
        )
  m = geotiff_pairs.build(
      tmp_path / "ds", [naip], [lr_path], scene_px=128, grid=4
  )
  assert m.builder["scale"] == 4 and m.lr_shape == [32, 32, 4]
  assert m.builder["windows_dropped_nodata"] < m.builder["windows"]
  _, scenes = _all_scenes(tmp_path / "ds")
  for s in scenes:
    assert s.crs == "EPSG:26914" and s.lr.dtype == np.uint8
    for b in range(4):
      assert _corr(_block_mean(s.hr[..., b], 4), s.lr[..., b]) > 0.9


def test_disjoint_footprints(shared_data, tmp_path):
  naip = os.path.join(shared_data, NAIP)
  landsat = os.path.join(shared_data, PUCALLPA)
  with pytest.raises(records.DataError, match="do not overlap") as e:
    geotiff_pairs.build(tmp_path, [naip], [landsat], scene_px=128)
  assert naip in str(e.value) and landsat in str(e.value)
  assert not os.path.exists(tmp_path / shards.MANIFEST)


def _naip_with_nodata(src_path, dst_path):
  """A copy of NAIP with nodata (0): one 128x256 block and 50 pixels."""
  with rasterio.open(src_path) as src:
    a, profile = src.read(), src.profile
  assert profile["nodata"] == 0 and (a != 0).all()
  a[:, :128, :256] = 0  # Windows r0_c0 and r0_c1: all nodata.
  a[:, 200:205, :10] = 0  # Window r1_c0: 0.3% nodata, kept.
  a[0, 300, 300] = 0  # One band nodata -> the pixel is nodata.
  with rasterio.open(dst_path, "w", **profile) as dst:
    dst.write(a)


def test_naip_synthetic_lr_with_nodata_and_mask(shared_data, tmp_path):
  naip = str(tmp_path / "naip.tif")
  _naip_with_nodata(os.path.join(shared_data, NAIP), naip)
  # A real-valued mask on the same grid: NDVI > 0.2 from R (1) and NIR (4).
  veg = str(tmp_path / "veg.tif")
  with rasterio.open(naip) as src:
    red, nir = src.read(1).astype(float), src.read(4).astype(float)
    profile = dict(src.profile, count=1, nodata=None)
  ndvi = (nir - red) / np.maximum(nir + red, 1)
  with rasterio.open(veg, "w", **profile) as dst:
    dst.write((ndvi > 0.2).astype(np.uint8)[None])
  m = geotiff_pairs.build(
      tmp_path / "ds",
      [naip],
      lr_scale=4,
      scene_px=128,
      grid=8,
      mask_paths={"veg": veg},
      seed=3,
  )
  assert m.builder["windows"] == 35 and m.builder["windows_dropped_nodata"] == 2
  assert m.hr_shape == [128, 128, 4] and m.lr_shape == [32, 32, 4]
  assert m.lr_gsd == 20.0 and m.hr_gsd == 5.0 and m.grid == 8
  assert m.class_names == ["veg"] and m.mask_names == ["veg"]
  _, scenes = _all_scenes(tmp_path / "ds")
  by_id = {s.id: s for s in scenes}
  assert len(by_id) == 33
  stem = "naip"
  assert f"{stem}_r0_c0" not in by_id and f"{stem}_r0_c1" not in by_id
  s = by_id[f"{stem}_r1_c0"]
  assert (s.hr[200 - 128 : 205 - 128, :10] == 0).all()
  assert (by_id[f"{stem}_r2_c2"].hr[300 - 256, 300 - 256] == 0).all()
  ref = (ndvi > 0.2).astype(np.uint8)
  for s in scenes:
    assert s.lr.dtype == np.uint8 and s.hr.dtype == np.uint8
    assert s.hr_time is None and s.lr_time is None
    r, c = _row_col(s.id)
    want = ref[r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128]
    np.testing.assert_array_equal(s.masks["veg"], want)
    assert s.labels.tolist() == [int(want.any())]
    # Synthetic LR tracks the HR block mean (blur + noise only).
    assert _corr(_block_mean(s.hr[..., 3], 4), s.lr[..., 3]) > 0.9
  # Deterministic: the same seed gives the same LR noise.
  geotiff_pairs.build(
      tmp_path / "ds2",
      [naip],
      lr_scale=4,
      scene_px=128,
      grid=8,
      mask_paths={"veg": veg},
      seed=3,
  )
  _, again = _all_scenes(tmp_path / "ds2")
  for s in again:
    np.testing.assert_array_equal(s.lr, by_id[s.id].lr)
    assert s.split == by_id[s.id].split


def test_synthetic_needs_lr_scale(shared_data, tmp_path):
  naip = os.path.join(shared_data, NAIP)
  with pytest.raises(records.DataError, match="--lr_scale"):
    geotiff_pairs.build(tmp_path, [naip], scene_px=128)


def test_scene_px_not_divisible(shared_data, tmp_path):
  base = os.path.join(shared_data, LANDSAT)
  lr = [f"{base}_B{b}.TIF" for b in (2, 3, 4)]
  with pytest.raises(
      records.DataError,
      match=r"scene_px=30 is not divisible by the tile grid 4",
  ):
    geotiff_pairs.build(tmp_path, [f"{base}_B8.TIF"], lr, scene_px=30, grid=4)
  # Divisible by the grid (3) but not by the measured LR scale (2).
  with pytest.raises(
      records.DataError, match=r"not divisible by the LR scale 2.*multiple of 6"
  ):
    geotiff_pairs.build(tmp_path, [f"{base}_B8.TIF"], lr, scene_px=33, grid=3)


def test_lr_files_on_different_grids(shared_data, tmp_path):
  base = os.path.join(shared_data, LANDSAT)
  b8 = f"{base}_B8.TIF"
  with pytest.raises(records.DataError, match="not on the grid") as e:
    geotiff_pairs.build(
        tmp_path, [b8], [f"{base}_B2.TIF", f"{base}_B3.TIF", b8], scene_px=32
    )
  assert b8 in str(e.value) and "--lr" in str(e.value)


def test_lr_files_band_count_mismatch(shared_data, tmp_path):
  pan = os.path.join(shared_data, SPACENET, "pan1.tif")
  ms1 = os.path.join(shared_data, SPACENET, "ms1.tif")
  ms2 = os.path.join(shared_data, SPACENET, "ms2.tif")
  with pytest.raises(records.DataError, match="has 4 bands") as e:
    geotiff_pairs.build(tmp_path, [pan], [ms1, ms2], scene_px=128)
  assert ms1 in str(e.value)


def test_cli_reports_data_errors(shared_data, tmp_path, capsys):
  naip = os.path.join(shared_data, NAIP)
  with pytest.raises(SystemExit, match="do not overlap"):
    geotiff_pairs.main(
        [
            "--out",
            str(tmp_path),
            "--hr",
            naip,
            "--lr",
            os.path.join(shared_data, PUCALLPA),
        ]
    )


def test_several_pairs_in_one_dataset(shared_data, tmp_path):
  """--pair HR LR (repeatable): SpaceNet's pan/MS pairs 1 and 2 in one
  dataset; the LR source and scale are recorded as its degradation."""
  d = os.path.join(shared_data, SPACENET)
  pairs = [
      (os.path.join(d, f"pan{i}.tif"), os.path.join(d, f"ms{i}.tif"))
      for i in (1, 2)
  ]
  geotiff_pairs.main(
      ["--out", str(tmp_path), "--scene_px", "128"]
      + [a for h, l in pairs for a in ("--pair", h, l)]
  )
  m, scenes = _all_scenes(tmp_path)
  assert [p["windows_kept"] for p in m.builder["pairs"]] == [16, 16]
  assert [p["lr_paths"] for p in m.builder["pairs"]] == [[l] for _, l in pairs]
  assert len(scenes) == 32 and len({s.id for s in scenes}) == 32
  assert {s.id.split("_r")[0] for s in scenes} == {"pan1", "pan2"}
  assert m.class_names == [] and m.lr_shape == [64, 64, 4]
  assert m.builder["degradation"] == {
      "source": "raster",
      "scale": 2,
      "psf_sigma": None,
      "noise_std": None,
  }
  with rasterio.open(pairs[1][0]) as src:  # pan2's windows hold pan2
    first = src.read(1, window=((0, 128), (0, 128)))
  s = next(s for s in scenes if s.id == "pan2_r0_c0")
  np.testing.assert_array_equal(s.hr[..., 0], first)
