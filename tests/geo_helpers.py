"""Tiny cross-scale runs without training, and rasters, for the tests of
crossscale.plan / predict / evaluate."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import rasterio

from crossscale import checkpoint, run_config, shards, train
from tests import helpers

RGB = ("R", "G", "B")


def rgb_dataset(out_dir, **kw) -> str:
  """Random scenes (HR 64 px, LR 16 px, 8x8 grid, bands R,G,B, GSD 1 / 4),
  splits train and val."""
  kw = {
      "hr": 64, "scale": 4, "grid": 8, "lr_bands": RGB, "hr_bands": RGB,
      **kw,
  }  # fmt: skip
  helpers.tiny_dataset(str(out_dir), n_train=8, n_val=6, **kw)
  return str(out_dir)


def untrained_run(data_dir: str, workdir: str, **overrides) -> str:
  """A cross_scale runlocal run in `workdir` whose step-1 checkpoint holds
  initialised (untrained) parameters: what crossscale.export restores,
  without a training step's compile."""
  from experiments.configs import cross_scale  # pylint: disable=g-import-not-at-top

  c = cross_scale.get_config("runlocal")
  c.data.path = data_dir
  c.update_from_flattened_dict({"batch_size": 8, **overrides})
  c.evals = {}
  manifest = shards.load_manifest(data_dir)
  model = train.make_model(c, manifest)
  batch = train.example_batch(manifest, tuple(c.data.fields), 1)
  params = train.init_params(model, batch, False, seed=1)
  tx = train.make_tx(c)
  state = train.TrainState(
      step=jnp.ones((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=jax.random.key_data(jax.random.key(0)),
  )
  os.makedirs(workdir, exist_ok=True)
  ckpt = checkpoint.Checkpointer(
      os.path.join(workdir, "checkpoints"), 1, async_save=False
  )
  ckpt.save(1, state, {}, force=True)
  ckpt.close()
  with open(os.path.join(workdir, run_config.CONFIG_FILE), "w") as f:
    f.write(c.to_json_best_effort(indent=1))
  return workdir


def write_raster(path, data, *, crs="EPSG:32614", transform=None, **kw):
  """`data: [C, H, W]` as a GeoTIFF (north-up, 1 m pixels by default)."""
  profile = dict(
      driver="GTiff",
      width=data.shape[2],
      height=data.shape[1],
      count=data.shape[0],
      dtype=data.dtype,
      crs=crs,
      transform=transform or rasterio.Affine(1, 0, 500000, 0, -1, 5000000),
      **kw,
  )
  if crs is None:
    profile.pop("crs")
  with rasterio.open(path, "w", **profile) as ds:
    ds.write(data)
  return path


def load_geojson(path):
  with open(path) as f:
    return json.load(f)


def as_float(x):
  return np.asarray(x, np.float64)
