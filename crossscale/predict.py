r"""Runs a cross-scale run on an LR raster with the HR tiles actually bought.

  python -m crossscale.predict --workdir RUN --lr SCENE.tif \
      --hr BOUGHT.tif_or_dir --out DIR [--bands R,G,B] [--hr_bands R,G,B] \
      [--hr_gsd M] [--all_scenes]

The LR raster is cut into the run's scenes as `crossscale.plan` cuts it
(same grid, same GSD rule). `--hr` is one HR raster or a folder of them
(*.tif, any CRS and resolution): each scene's HR grid (the run's HR size
over the scene footprint) is filled from them by reprojection (average
resampling; later files fill only pixels still empty). A tile is bought
when every one of its HR pixels is covered; the model then runs with
exactly those tiles observed (`predict_with_tiles`: the LR context, the
bought tiles' latents in their slots, the predictor completing the rest,
the heads) - no other tile is read.

Scenes: those whose footprint meets an HR raster (--all_scenes: every
scene with valid LR pixels). Writes to --out:
  predictions.geojson       scene footprints (raster CRS) with scene id,
                            row/col, hr_tiles (bought), label(s), scores
                            (softmax, or sigmoid for multi-label), logits
  predictions_4326.geojson  the same in EPSG:4326
  embeddings.npz            scene ids, embedding [n, E], logits [n, K],
                            bounds [n, 4] (raster CRS), bought [n, G*G]
An HR raster that overlaps no scene is an error naming both footprints.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import rasterio
from rasterio import warp
from rasterio.enums import Resampling

from crossscale import geotiles, runspec
from crossscale import plan as plan_lib


def predict_with_tiles(module, lr, tiles, idx, valid):
  """The cross-scale model with the given tiles bought (use as
  `model.apply(vars, lr, tiles, idx, valid, method=predict_with_tiles)`).

  lr `[B, h, w, C]`; tiles `[B, k, t, t, C]` HR pixels of the slots; idx
  `[B, k]` their tile indices; valid `[B, k]` bool (False: an empty slot).
  Returns logits `[B, K]`, embedding `[B, E]`: `CrossScaleModel.__call__`
  at inference with its selection replaced by (idx, valid).
  """
  context, _ = module.lr_context(lr)
  weight = valid.astype(jnp.float32)
  observed = module.encode_tiles(tiles)
  tokens = module.complete(context, idx, weight, observed)
  logits, pooled = module.head_logits(tokens, context)
  if module.zero_hr_gain:
    zero = module.complete(context, idx[:, :0], weight[:, :0], observed[:, :0])
    logits0, _ = module.head_logits(zero, context)
    logits = logits + module.zero_hr_gain * (logits - logits0)
  emb = module.embed(pooled)
  emb = emb / (jnp.linalg.norm(emb, axis=-1, keepdims=True) + 1e-6)
  return logits, emb


def hr_files(path: str) -> list[str]:
  if os.path.isdir(path):
    files = sorted(
        f
        for ext in ("tif", "tiff", "TIF", "TIFF")
        for f in glob.glob(os.path.join(path, f"*.{ext}"))
    )
    if not files:
      raise ValueError(f"--hr {path}: the folder holds no .tif rasters.")
    return files
  if not os.path.isfile(path):
    raise ValueError(f"--hr {path}: file not found.")
  return [path]


def open_hr(paths, want, sensor, names_given) -> list[geotiles.LRRaster]:
  out = []
  for p in paths:
    r = geotiles.open_lr(p, want, sensor=sensor, band_names_given=names_given)
    out.append(r)
  return out


def fill_scene_hr(
    hrs: list[geotiles.LRRaster], g, i: int, j: int, hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
  """Scene (i, j)'s HR grid from the HR rasters: (`[H, W, C]` float32,
  `[H, W]` covered)."""
  H, W = hw
  dst_t = g.hr_transform(i, j, H, W)
  c = len(hrs[0].bands)
  out = np.full((c, H, W), np.nan, np.float32)
  for r in hrs:
    tmp = np.full((c, H, W), np.nan, np.float32)
    warp.reproject(
        source=rasterio.band(r.ds, list(r.bands)),
        destination=tmp,
        src_nodata=r.ds.nodata,
        dst_transform=dst_t,
        dst_crs=g.crs,
        dst_nodata=np.nan,
        resampling=Resampling.average,
    )
    fill = np.isnan(out) & ~np.isnan(tmp)
    out[fill] = tmp[fill]
  covered = np.isfinite(out).all(0)
  return out.transpose(1, 2, 0), covered


def to_tiles(hr: np.ndarray, grid: int) -> np.ndarray:
  """`[B, H, W, C]` -> `[B, G*G, t, t, C]`, row-major (tile_grid.to_tiles)."""
  B, H, W, C = hr.shape
  t = hr.reshape(B, grid, H // grid, grid, W // grid, C)
  return t.transpose(0, 1, 3, 2, 4, 5).reshape(B, grid * grid, H // grid, -1, C)


def bought_tiles(covered: np.ndarray, grid: int) -> np.ndarray:
  """`[H, W]` covered -> `[G*G]` bool: tiles whose pixels are all covered."""
  H, W = covered.shape
  t = covered.reshape(grid, H // grid, grid, W // grid)
  return t.all((1, 3)).reshape(-1)


def check_overlap(hrs, g) -> None:
  x0, _, _, y1 = g.scene_bounds(0, 0)
  _, y0, x1, _ = g.scene_bounds(g.rows - 1, g.cols - 1)
  box = (x0, y0, x1, y1)
  if not any(
      (b := geotiles.bounds_in(r.ds.crs, g.crs, tuple(r.ds.bounds)))
      and geotiles.intersects(b, box)
      for r in hrs
  ):
    raise ValueError(
        f"--hr {[r.path for r in hrs]} does not overlap the planned scenes "
        f"of the LR raster ({box} in {g.crs}; HR: "
        + ", ".join(f"{tuple(r.ds.bounds)} in {r.ds.crs}" for r in hrs)
        + "): pass the HR imagery of this area."
    )


def scenes_of_interest(hrs, g, all_scenes: bool) -> list[tuple[int, int]]:
  boxes = [geotiles.bounds_in(r.ds.crs, g.crs, tuple(r.ds.bounds)) for r in hrs]
  out = []
  for i in range(g.rows):
    for j in range(g.cols):
      sb = g.scene_bounds(i, j)
      if all_scenes or any(b and geotiles.intersects(b, sb) for b in boxes):
        out.append((i, j))
  return out


def planned_tiles(path: str, n_tiles: int) -> dict[tuple[int, int], np.ndarray]:
  """{(scene_row, scene_col): [G*G] bool} of a plan.geojson (crossscale.plan
  on the same LR raster and run): the tiles it says to buy."""
  with open(path) as f:
    features = json.load(f)["features"]
  out = {}
  for feat in features:
    p = feat["properties"]
    key = (int(p["scene_row"]), int(p["scene_col"]))
    out.setdefault(key, np.zeros(n_tiles, bool))[int(p["tile"])] = True
  return out


def run(args: argparse.Namespace) -> dict:
  spec = runspec.from_workdir(args.workdir, args.data_dir, args.step)
  lr = geotiles.open_lr(
      args.lr,
      plan_lib.split_list(args.bands) or spec.lr_bands,
      sensor=args.sensor,
      band_names_given=plan_lib.split_list(args.band_names),
  )
  hrs = open_hr(
      hr_files(args.hr),
      plan_lib.split_list(args.hr_bands) or spec.hr_bands,
      args.hr_sensor,
      plan_lib.split_list(args.hr_band_names),
  )
  gsd = float(np.mean(lr.gsd_m))
  target, note = runspec.planning_gsd(spec, gsd, args.hr_gsd, args.lr)
  print(f"crossscale.predict: {note}", flush=True)
  g = geotiles.make_grid(lr, spec.lr_shape[:2], spec.grid, target)
  check_overlap(hrs, g)
  spec = runspec.in_units_of(
      spec,
      geotiles.band_means(lr.ds, lr.bands),
      "lr",
      args.pixel_scale,
      "--lr",
      args.lr,
  )
  hr_means = np.nanmean(
      [geotiles.band_means(r.ds, r.bands) for r in hrs], axis=0
  )
  spec = runspec.in_units_of(
      spec, hr_means, "hr", args.hr_pixel_scale, "--hr", args.hr
  )
  scenes = scenes_of_interest(hrs, g, args.all_scenes)
  plan = planned_tiles(args.plan, spec.n_tiles) if args.plan else None
  if plan is not None:  # only the planned scenes, only their tiles
    scenes = [s for s in scenes if s in plan]
  H, W = spec.hr_shape[:2]
  n_tiles = spec.n_tiles
  apply = jax.jit(
      lambda p, lr_, tiles, idx, valid: spec.model.apply(
          {"params": p}, lr_, tiles, idx, valid, method=predict_with_tiles
      )
  )
  src = geotiles.window_source(lr, g)
  mean_lr = spec.stats["lr"][0]
  rows = []
  for i, j in scenes:
    px, bad = geotiles.read_scenes(src, lr, g, i, j, 1)
    if bad.all():
      continue
    px = np.where(bad[..., None], mean_lr, px)
    hr, covered = fill_scene_hr(hrs, g, i, j, (H, W))
    bought = bought_tiles(covered, spec.grid)
    if plan is not None:
      bought &= plan[(i, j)]
    hr = spec.standardise(np.nan_to_num(hr), "hr")[None]
    tiles = to_tiles(hr, spec.grid)
    idx = np.arange(n_tiles, dtype=np.int32)[None]
    logits, emb = apply(
        spec.params, spec.standardise(px), tiles, idx, bought[None]
    )
    rows.append(((i, j), np.asarray(logits[0]), np.asarray(emb[0]), bought))
  return write_outputs(args.out, spec, g, rows)


def scene_scores(spec, logits: np.ndarray) -> np.ndarray:
  if spec.multi_label:
    return 1 / (1 + np.exp(-logits))
  e = np.exp(logits - logits.max())
  return e / e.sum()


def write_outputs(out_dir: str, spec, g, rows) -> dict:
  os.makedirs(out_dir, exist_ok=True)
  tr = geotiles.transformer(g.crs)
  feats, feats4326 = [], []
  for (i, j), logits, _, bought in rows:
    s = scene_scores(spec, logits)
    labels = (
        [c for c, v in zip(spec.class_names, s) if v >= 0.5]
        if spec.multi_label
        else [spec.class_names[int(np.argmax(logits))]]
    )
    props = {
        "scene": f"r{i}c{j}",
        "scene_row": i,
        "scene_col": j,
        "hr_tiles": int(bought.sum()),
        "label": labels[0] if labels else None,
        "labels": labels,
        "scores": {c: round(float(v), 6) for c, v in zip(spec.class_names, s)},
        "logits": [round(float(v), 6) for v in logits],
    }
    ring = geotiles.box_ring(g.scene_bounds(i, j))
    for lst, r in ((feats, ring), (feats4326, geotiles.ring_to(tr, ring))):
      lst.append(
          {
              "type": "Feature",
              "geometry": {"type": "Polygon", "coordinates": [r]},
              "properties": props,
          }
      )
  epsg = g.crs.to_epsg()
  crs = {
      "type": "name",
      "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"},
  }
  for name, fs, extra in (
      ("predictions.geojson", feats, {"crs": crs} if epsg else {}),
      ("predictions_4326.geojson", feats4326, {}),
  ):
    with open(os.path.join(out_dir, name), "w") as f:
      json.dump({"type": "FeatureCollection", **extra, "features": fs}, f)
  n = len(rows)
  np.savez(
      os.path.join(out_dir, "embeddings.npz"),
      ids=np.asarray([f"r{i}c{j}" for (i, j), *_ in rows]),
      embedding=np.stack([r[2] for r in rows]) if n else np.zeros((0,)),
      logits=np.stack([r[1] for r in rows]) if n else np.zeros((0,)),
      bounds=np.asarray([g.scene_bounds(i, j) for (i, j), *_ in rows]),
      bought=np.stack([r[3] for r in rows]) if n else np.zeros((0,)),
  )
  return {
      "scenes": n,
      "hr_tiles": int(sum(r[3].sum() for r in rows)),
      "class_names": spec.class_names,
  }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog="python -m crossscale.predict", description=__doc__.split("\n")[0]
  )
  p.add_argument("--workdir", required=True, help="a trained cross_scale run")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--step", type=int, default=None)
  p.add_argument("--lr", required=True)
  p.add_argument("--hr", required=True, help="HR raster or folder of them")
  p.add_argument("--out", required=True)
  p.add_argument("--bands", default=None)
  p.add_argument("--band_names", default=None)
  p.add_argument("--sensor", default=None, choices=sorted(geotiles.SENSORS))
  p.add_argument("--hr_bands", default=None)
  p.add_argument("--hr_band_names", default=None)
  p.add_argument("--hr_sensor", default=None, choices=sorted(geotiles.SENSORS))
  p.add_argument("--hr_gsd", type=float, default=None)
  p.add_argument(
      "--pixel_scale", type=float, default=None, help=plan_lib.PIXEL_SCALE
  )
  p.add_argument(
      "--hr_pixel_scale", type=float, default=None, help="the same for --hr"
  )
  p.add_argument("--all_scenes", action="store_true")
  p.add_argument(
      "--plan",
      default=None,
      help="plan.geojson of crossscale.plan (same LR raster and run): only "
      "its tiles count as bought, even where --hr covers more",
  )
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  try:
    out = run(args)
  except (ValueError, FileNotFoundError, rasterio.errors.RasterioError) as e:
    raise SystemExit(f"crossscale.predict: {e}") from None
  print(
      f"crossscale.predict: {out['scenes']} scenes, {out['hr_tiles']} HR "
      f"tiles bought -> {args.out}",
      flush=True,
  )
  return out


if __name__ == "__main__":
  main(sys.argv[1:])
