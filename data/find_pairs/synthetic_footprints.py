"""Synthetic clustered HR/LR scene metadata, for tests and the join benchmark.

`synth_tables(n_hr, n_lr, seed)` gives HR (~5 km) and LR (~100 km) lon/lat
boxes around shared cluster centres, with times, cloud and strata;
`synth_scenes` turns one into Scenes, `write_synth` into a GeoParquet.
"""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import shapely

from data.find_pairs import geoparquet_io, scene_metadata

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
  t_us = t0_us + rng.integers(
      0, int(years * 365.25 * scene_metadata.US_PER_DAY), n
  )
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


def synth_scenes(
    arrays: dict, where: str = "synthetic"
) -> scene_metadata.Scenes:
  return scene_metadata.scenes_from_arrays(
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
          "time": geoparquet_io.utc_timestamps(arrays["t_us"]),
          "cloud": arrays["cloud"],
          "stratum": pa.array(arrays["stratum"], pa.string()),
      }
  )
  return geoparquet_io.write_geoparquet(
      table, arrays["geoms"], scene_metadata.OUTPUT_CRS, path
  )
