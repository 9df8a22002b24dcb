r"""Plans which HR tiles to buy over an LR raster of any size.

  python -m crossscale.plan --workdir RUN --lr SCENE.tif --out DIR \
      [--budget 0.125] [--per_scene | --global] [--bands R,G,B] \
      [--prices ZONES.geojson --price_key price --total 500] \
      [--hr_gsd 0.6] [--memory_mb 256]
  python -m crossscale.plan --export EXPORT_DIR --lr SCENE.tif --out DIR

The raster is cut into the run's LR scenes (its LR size at the planning GSD,
`crossscale.runspec.planning_gsd`) and their G x G HR tile grid, read a row
of scenes at a time (memory set by --memory_mb, not by the raster), scored
by the run's sampler (in-process, or the export's `sample`: the same
logits) and tiles are bought:
  --per_scene (default)  the budget in every scene: top-k by logit, ties to
                         the lowest tile index (the model's own selection);
  --global               one budget over the raster (a ratio of all scored
                         tiles, or a count): top-K by logit;
  --prices FILE          a price per tile from the GeoJSON zone holding the
                         tile centre (`--price_key`; tiles outside every zone
                         cost --default_price, or are not for sale), bought
                         greedily by sigmoid(logit) / price while the
                         cumulative price stays <= --total (the model's
                         cost budget: the ranking's prefix; free tiles
                         first).
--global and --prices keep the scores in a file beside the outputs and
select by bisecting the score threshold in chunked passes, so memory stays
bounded there too (plus 16 bytes per bought tile).

Writes to --out:
  plan.geojson       one polygon per tile bought in the raster CRS (a
                     "crs" member names it); properties scene, scene_row,
                     scene_col, tile, tile_row, tile_col, row/col (in
                     scores.tif), score (logit), rank (per scene or
                     global), price, spend (cumulative, in buying order),
                     partial_nodata
  plan_4326.geojson  the same features in EPSG:4326 lon/lat (RFC 7946)
  scores.tif         band 1 the logit of every tile, band 2 1 where bought,
                     at tile resolution in the raster CRS (NaN: not scored)
  plan.png           the LR view with the tiles bought
  summary.json       scenes (scored, skipped as nodata, partial), tiles,
                     spend, the GSD assumption, time per km^2 and per LR
                     megapixel, peak memory
Scenes entirely nodata are skipped (counted); nodata pixels of the others
are filled with the band mean (0 once standardised) and the scene flagged;
a tile whose LR pixels are all nodata is never bought.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc
from typing import Sequence

import numpy as np
import rasterio
from rasterio import windows

from crossscale import budgets, geotiles, runspec

SCORES = "scores.tif"
_EXCLUDED = np.uint32(0)  # sortable key of a tile never bought


# ------------------------------------------------------------- selection


def topk_per_scene(logits: np.ndarray, k: int) -> np.ndarray:
  """`[B, N]` logits -> `[B, k]` tile indices, best first, ties to the
  lowest index, NaN never chosen (-1 where fewer than k are finite)."""
  key = np.where(np.isnan(logits), np.inf, -logits)
  order = np.argsort(key, axis=1, kind="stable")[:, :k]
  finite = ~np.isnan(np.take_along_axis(logits, order, axis=1))
  return np.where(finite, order, -1)


def sortable(x: np.ndarray) -> np.ndarray:
  """float32 -> uint32 with the same order; NaN -> 0 (never selected)."""
  b = np.ascontiguousarray(x, np.float32).view(np.uint32)
  u = np.where(b >> 31, ~b, b | np.uint32(0x80000000))
  return np.where(np.isnan(x), _EXCLUDED, u).astype(np.uint32)


def prefix_select(
    keys: np.ndarray, weights: np.ndarray | None, cap: float, chunk: int
) -> np.ndarray:
  """The longest prefix of the ranking (key descending, ties lowest index,
  NaN never) whose weights sum to <= cap: its indices in ranking order.

  keys/weights: `[M]` (memmaps welcome: read `chunk` at a time); weights
  None = 1 per tile (cap = a tile count). Bisects the threshold on the
  float32 order (32 passes), then takes the boundary score's tiles in index
  order while they fit.
  """
  m = len(keys)

  def chunks():
    for s in range(0, m, chunk):
      w = None if weights is None else np.asarray(weights[s : s + chunk])
      yield s, sortable(np.asarray(keys[s : s + chunk])), w

  def above(u: int) -> float:
    total = 0.0
    for _, k, w in chunks():
      sel = k > u
      total += float(sel.sum() if w is None else w[sel].sum())
    return total

  lo, hi = 0, 2**32 - 1
  while lo < hi:
    mid = (lo + hi) // 2
    if above(mid) <= cap:
      hi = mid
    else:
      lo = mid + 1
  taken, spent, full = [], 0.0, False
  for s, k, w in chunks():  # everything above, and the boundary group
    idx = np.nonzero(k > lo)[0]
    spent += float(len(idx) if w is None else w[idx].sum())
    taken.append(s + idx)
  for s, k, w in chunks():
    if lo == _EXCLUDED or full:
      break
    for i in np.nonzero(k == lo)[0]:
      wi = 1.0 if w is None else float(w[i])
      if spent + wi > cap:
        full = True
        break
      spent += wi
      taken.append(np.array([s + i]))
  idx = np.concatenate(taken) if taken else np.zeros((0,), np.int64)
  key = np.asarray(keys[idx]) if len(idx) else np.zeros((0,), np.float32)
  return idx[np.lexsort((idx, -key.astype(np.float64)))]


# ------------------------------------------------------------ price zones


class PriceZones:
  """Price of a point: the `key` property of the GeoJSON zone holding it
  (the first in file order), else `default` (None: not for sale)."""

  def __init__(self, path: str, key: str, default: float | None, crs):
    import shapely  # pylint: disable=g-import-not-at-top

    try:
      with open(path) as f:
        fc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise ValueError(
          f"--prices {path}: not readable as GeoJSON ({e})."
      ) from None
    feats = fc.get("features") or []
    if not feats:
      raise ValueError(f"--prices {path} has no features (price zones).")
    geoms, prices = [], []
    for n, f in enumerate(feats):
      p = (f.get("properties") or {}).get(key)
      if not isinstance(p, (int, float)) or not np.isfinite(p) or p < 0:
        raise ValueError(
            f"--prices {path}: feature {n} has {key}={p!r}; every zone needs "
            f"a finite price >= 0 in property {key!r} (--price_key)."
        )
      geoms.append(shapely.geometry.shape(f["geometry"]))
      prices.append(float(p))
    zone_crs = (fc.get("crs") or {}).get("properties", {}).get("name")
    self.to_zone = geotiles.transformer(crs, zone_crs or "EPSG:4326")
    self.tree = shapely.STRtree(geoms)
    self.prices = np.asarray(prices, np.float64)
    self.default = default

  def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Prices `[n]` of points (raster CRS); NaN: not for sale."""
    import shapely  # pylint: disable=g-import-not-at-top

    zx, zy = self.to_zone.transform(x, y)
    pts = shapely.points(np.asarray(zx), np.asarray(zy))
    hit = self.tree.query(pts, predicate="within")  # [2, hits]
    out = np.full(len(x), np.nan if self.default is None else self.default)
    first = {}
    for p, z in zip(hit[0], hit[1]):
      first[p] = min(first.get(p, z), z)
    for p, z in first.items():
      out[p] = self.prices[z]
    return out


def price_keys(logits: np.ndarray, prices: np.ndarray) -> np.ndarray:
  """`[n]` sigmoid(logit) / price (free tiles: inf; NaN where the tile is
  not scored or not for sale): the price budget's ranking key."""
  util = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  key = np.where(prices > 0, util / np.where(prices > 0, prices, 1.0), np.inf)
  key[np.isnan(prices) | np.isnan(logits)] = np.nan
  return key.astype(np.float32)


def tile_centres(g: geotiles.PlanGrid, i: int, js: np.ndarray):
  """Centres (x, y) `[len(js) * N]` of every tile of scenes (i, js)."""
  t = g.transform
  n = np.arange(g.tiles_per_scene)
  r, c = n // g.grid, n % g.grid
  col = js[:, None] * g.w + (c[None] + 0.5) * g.w / g.grid
  row = i * g.h + (r[None] + 0.5) * g.h / g.grid + 0 * js[:, None]
  x, y = t @ (col.ravel(), row.ravel())
  return np.asarray(x), np.asarray(y)


# ---------------------------------------------------------------- outputs


class FeatureWriter:
  """Streams features to plan.geojson (raster CRS) and plan_4326.geojson."""

  def __init__(self, out_dir: str, crs):
    self.files = [
        open(os.path.join(out_dir, "plan.geojson"), "w"),
        open(os.path.join(out_dir, "plan_4326.geojson"), "w"),
    ]
    epsg = crs.to_epsg()
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()
    head = '{"type": "FeatureCollection", '
    crs_member = {"type": "name", "properties": {"name": name}}
    self.files[0].write(
        head + f'"crs": {json.dumps(crs_member)}, "features": [\n'
    )
    self.files[1].write(head + '"features": [\n')
    self.tr = geotiles.transformer(crs)
    self.count = 0

  def add(self, bounds, props: dict) -> None:
    ring = geotiles.box_ring(bounds)
    for f, r in zip(self.files, (ring, geotiles.ring_to(self.tr, ring))):
      feat = {
          "type": "Feature",
          "geometry": {"type": "Polygon", "coordinates": [r]},
          "properties": props,
      }
      f.write(("," if self.count else "") + json.dumps(feat) + "\n")
    self.count += 1

  def close(self) -> None:
    for f in self.files:
      f.write("]}\n")
      f.close()


def open_scores(out_dir: str, g: geotiles.PlanGrid):
  """scores.tif: band 1 logits, band 2 bought, at tile resolution."""
  ds = rasterio.open(
      os.path.join(out_dir, SCORES),
      "w+",
      driver="GTiff",
      width=g.cols * g.grid,
      height=g.rows * g.grid,
      count=2,
      dtype="float32",
      crs=g.crs,
      transform=g.tile_transform(),
      nodata=np.nan,
  )
  ds.set_band_description(1, "score (sampler logit)")
  ds.set_band_description(2, "bought (1) or not (0)")
  return ds


def tile_window(g: geotiles.PlanGrid, i: int, j0: int, n: int):
  return windows.Window(j0 * g.grid, i * g.grid, n * g.grid, g.grid)


def to_tile_raster(v: np.ndarray, g: geotiles.PlanGrid) -> np.ndarray:
  """`[n, G*G]` per-scene values -> `[G, n*G]` tile-raster window."""
  n = len(v)
  return (
      v.reshape(n, g.grid, g.grid).transpose(1, 0, 2).reshape(g.grid, -1)
  ).astype(np.float32)


def tile_nodata(bad: np.ndarray, g: geotiles.PlanGrid) -> np.ndarray:
  """`[n, h, w]` nodata pixels -> `[n, G*G]`: True where a tile has no
  valid pixel."""
  re_ = (np.arange(g.grid + 1) * g.h) // g.grid
  ce = (np.arange(g.grid + 1) * g.w) // g.grid
  rows = np.logical_and.reduceat(bad, re_[:-1], axis=1)
  return np.logical_and.reduceat(rows, ce[:-1], axis=2).reshape(len(bad), -1)


def decimated_max(ds, band: int, max_px: int) -> np.ndarray:
  """Band `band` of `ds` reduced by f x f block maxima to <= max_px a side
  (NaN as 0), read f rows at a time."""
  f = int(np.ceil(max(ds.width, ds.height) / max_px))
  w = ds.width // f * f
  rows = []
  for r in range(0, ds.height // f * f, f):
    a = ds.read(band, window=windows.Window(0, r, w, f))
    a = np.nan_to_num(a, nan=0.0).reshape(f, w // f, f).max((0, 2))
    rows.append(a)
  return np.stack(rows) if rows else np.zeros((1, 1), np.float32)


def write_png(path: str, lr: geotiles.LRRaster, scores_path: str, g) -> None:
  """The LR view (decimated to <= 1000 px) with the tiles bought in red."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  ds = lr.ds
  f = max(1.0, max(ds.width, ds.height) / 1000)
  shape = (max(1, int(ds.height / f)), max(1, int(ds.width / f)))
  bands = lr.bands[:3] if len(lr.bands) >= 3 else lr.bands[:1]
  img = ds.read(bands, out_shape=(len(bands),) + shape).astype(np.float32)
  img = np.where(geotiles.nodata_mask(img, ds.nodata)[None], np.nan, img)
  lo, hi = np.nanpercentile(img, 2), np.nanpercentile(img, 98)
  img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
  img = np.nan_to_num(img.transpose(1, 2, 0))
  with rasterio.open(scores_path) as s:
    bought, sb = decimated_max(s, 2, 2000), s.bounds
  fig, ax = plt.subplots(figsize=(8, 8 * shape[0] / shape[1]), dpi=125)
  b = ds.bounds
  ax.imshow(
      img[..., 0] if img.shape[-1] == 1 else img,
      extent=(b.left, b.right, b.bottom, b.top),
      cmap="gray",
  )
  ax.imshow(
      np.ma.masked_where(~(bought > 0), bought),
      extent=(sb.left, sb.right, sb.bottom, sb.top),
      cmap="autumn",
      alpha=0.6,
      interpolation="nearest",
  )
  ax.set_title(f"{os.path.basename(lr.path)}: HR tiles to buy (red)")
  ax.set_xlabel(str(ds.crs))
  fig.savefig(path, bbox_inches="tight")
  plt.close(fig)


# -------------------------------------------------------------- planning


def scenes_per_read(spec: runspec.RunSpec, memory_mb: float) -> int:
  """Scenes read at once: pixels in several float32 copies plus the
  model's activations (~256 B per LR pixel) within half of memory_mb."""
  h, w, c = spec.lr_shape
  per_scene = h * w * (c * 16 + 256)
  return int(max(1, min(4096, memory_mb * 2**19 // per_scene)))


def plan(
    spec: runspec.RunSpec,
    lr: geotiles.LRRaster,
    g: geotiles.PlanGrid,
    out_dir: str,
    *,
    budget=None,
    mode: str = "per_scene",
    prices: PriceZones | None = None,
    total: float | None = None,
    memory_mb: float = 256,
) -> dict:
  """Scores every tile of `g` and writes the plan (module docstring).
  Returns the summary (without timing)."""
  n_tiles = g.tiles_per_scene
  nb = min(scenes_per_read(spec, memory_mb), g.cols)
  mean = spec.stats["lr"][0]
  counts = dict(scenes=g.num_scenes, scored=0, skipped_nodata=0, partial=0)
  writer = FeatureWriter(out_dir, g.crs)
  scores = open_scores(out_dir, g)
  logitfile = keyfile = wfile = None
  if mode != "per_scene":
    shape = (g.num_scenes * n_tiles,)
    mm = lambda name, dtype: np.lib.format.open_memmap(
        os.path.join(out_dir, name), "w+", dtype, shape
    )
    logitfile = keyfile = mm(".logits.npy", np.float32)
    if prices is not None:
      keyfile, wfile = mm(".keys.npy", np.float32), mm(
          ".prices.npy", np.float64
      )
  k = None
  if mode == "per_scene":
    k = budgets.k_from_budget(
        spec.k if budget is None else budget, n_tiles, key="--budget"
    )
  partial = set()
  spend, bought = 0.0, 0
  src = geotiles.window_source(lr, g)
  with rasterio.Env(GDAL_CACHEMAX=max(1, int(memory_mb // 8))):
    for i in range(g.rows):
      for j0 in range(0, g.cols, nb):
        n = min(nb, g.cols - j0)
        px, bad = geotiles.read_scenes(src, lr, g, i, j0, n)
        frac = bad.mean((1, 2))
        keep = frac < 1.0
        counts["skipped_nodata"] += int((~keep).sum())
        counts["scored"] += int(keep.sum())
        for j in np.nonzero(keep & (frac > 0))[0]:
          partial.add((i, j0 + int(j)))
        px = np.where(bad[..., None], mean, px)
        logits = np.full((n, n_tiles), np.nan, np.float32)
        if keep.any():
          logits[keep] = spec.score(spec.standardise(px[keep]))
        logits[tile_nodata(bad, g)] = np.nan
        del px
        win = tile_window(g, i, j0, n)
        scores.write(to_tile_raster(logits, g), 1, window=win)
        if mode == "per_scene":
          idx = topk_per_scene(logits, k)
          mark = np.zeros((n, n_tiles), np.float32)
          for s in range(n):
            for rank, t in enumerate(idx[s]):
              if t < 0:
                continue
              mark[s, t] = 1.0
              spend += 1.0
              bought += 1
              _add(writer, g, (i, j0 + s), int(t), float(logits[s, t]),
                   rank + 1, 1.0, spend, (i, j0 + s) in partial)  # fmt: skip
          scores.write(to_tile_raster(mark, g), 2, window=win)
          continue
        base = (i * g.cols + j0) * n_tiles
        logitfile[base : base + n * n_tiles] = logits.ravel()
        if prices is not None:
          p = prices(*tile_centres(g, i, np.arange(j0, j0 + n)))
          wfile[base : base + n * n_tiles] = np.nan_to_num(p, nan=0.0)
          keyfile[base : base + n * n_tiles] = price_keys(logits.ravel(), p)
    if mode != "per_scene":
      chunk = max(1024, int(memory_mb * 2**20 // 64))
      if prices is None:
        n_valid = sum(
            int(np.isfinite(keyfile[s : s + chunk]).sum())
            for s in range(0, len(keyfile), chunk)
        )
        cap = budgets.k_from_budget(
            budget if budget is not None else spec.k / n_tiles,
            n_valid,
            key="--budget",
        )
      else:
        if total is None or not total >= 0:
          raise ValueError("--prices needs --total SPEND (>= 0).")
        cap = float(total)
      order = prefix_select(keyfile, wfile, cap, chunk)
      sel = np.sort(order)
      logit_of = dict(zip(sel.tolist(), np.asarray(logitfile[sel]).tolist()))
      price_of = (
          dict(zip(sel.tolist(), np.asarray(wfile[sel]).tolist()))
          if wfile is not None
          else {}
      )
      for rank, gi in enumerate(order.tolist()):
        scene, t = divmod(gi, n_tiles)
        ij = divmod(scene, g.cols)
        price = price_of.get(gi, 1.0)
        spend += price
        bought += 1
        _add(writer, g, ij, t, logit_of[gi], rank + 1, price, spend,
             ij in partial)  # fmt: skip
      _mark_bought(scores, g, order, n_tiles)
  writer.close()
  scores.close()
  del logitfile, keyfile, wfile
  for f in (".logits.npy", ".keys.npy", ".prices.npy"):
    if os.path.exists(os.path.join(out_dir, f)):
      os.remove(os.path.join(out_dir, f))
  counts["partial"] = len(partial)
  return {
      **counts,
      "mode": "prices" if prices is not None else mode,
      "tiles_per_scene_budget": k if mode == "per_scene" else None,
      "tiles_bought": bought,
      "spend": spend,
      "grid": [g.rows, g.cols],
      "scene_px": [g.h, g.w],
      "tiles_per_scene": n_tiles,
      "scenes_per_read": nb,
  }


def _add(writer, g, ij, t, score, rank, price, spend, partial) -> None:
  i, j = ij
  r, c = divmod(t, g.grid)
  writer.add(
      g.tile_bounds(i, j, t),
      {
          "scene": f"r{i}c{j}",
          "scene_row": i,
          "scene_col": j,
          "tile": t,
          "tile_row": r,
          "tile_col": c,
          "row": i * g.grid + r,
          "col": j * g.grid + c,
          "score": round(score, 6),
          "rank": rank,
          "price": price,
          "spend": round(spend, 6),
          "partial_nodata": bool(partial),
      },
  )


def _mark_bought(scores, g, order: np.ndarray, n_tiles: int) -> None:
  """Band 2 = 1 at the tiles in `order` (global tile ids), a scene row of
  the tile raster at a time."""
  gi = np.sort(order)
  scene_rows = (gi // n_tiles) // g.cols
  for i in np.unique(scene_rows):
    sel = gi[scene_rows == i]
    mark = np.zeros((g.cols, n_tiles), np.float32)
    mark[(sel // n_tiles) % g.cols, sel % n_tiles] = 1.0
    scores.write(
        to_tile_raster(mark, g), 2, window=tile_window(g, i, 0, g.cols)
    )


# -------------------------------------------------------------- CLI


def parse_budget(s: str | None):
  """'0.125' -> ratio, '8' -> count, None -> the run's."""
  if s is None:
    return None
  try:
    return int(s) if s.strip().lstrip("-").isdigit() else float(s)
  except ValueError:
    raise SystemExit(
        f"crossscale.plan: --budget {s!r}: give a ratio (0.125) or a count."
    ) from None


PIXEL_SCALE = (
    "multiply the raster's pixels by this before the run's normalisation "
    "(e.g. 1/10000 for reflectance x 10000 on a [0, 1]-trained run); "
    "default: none, and a raster in other units than the training data is "
    "refused"
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog="python -m crossscale.plan", description=__doc__.split("\n")[0]
  )
  p.add_argument("--workdir", help="a trained cross_scale run")
  p.add_argument("--export", help="or its export directory")
  p.add_argument("--data_dir", help="the run's records (default: config's)")
  p.add_argument("--step", type=int, default=None)
  p.add_argument("--lr", required=True, help="the LR raster (GeoTIFF)")
  p.add_argument("--out", required=True)
  p.add_argument("--budget", default=None, help="ratio or count")
  m = p.add_mutually_exclusive_group()
  m.add_argument("--per_scene", dest="mode", action="store_const",
                 const="per_scene")  # fmt: skip
  m.add_argument("--global", dest="mode", action="store_const",
                 const="global")  # fmt: skip
  p.add_argument("--bands", default=None, help="default: the run's LR bands")
  p.add_argument("--band_names", default=None, help="name every raster band")
  p.add_argument("--sensor", default=None, choices=sorted(geotiles.SENSORS))
  p.add_argument("--prices", default=None, help="price zones (GeoJSON)")
  p.add_argument("--price_key", default="price")
  p.add_argument("--default_price", type=float, default=None)
  p.add_argument("--total", type=float, default=None, help="total spend")
  p.add_argument("--hr_gsd", type=float, default=None, help="metres")
  p.add_argument("--pixel_scale", type=float, default=None, help=PIXEL_SCALE)
  p.add_argument("--memory_mb", type=float, default=256)
  p.add_argument("--trace_memory", action="store_true",
                 help="measure Python-heap peak (tracemalloc)")  # fmt: skip
  return p.parse_args(argv)


def split_list(s: str | None) -> list[str] | None:
  return [x.strip() for x in s.split(",") if x.strip()] if s else None


def run(args: argparse.Namespace) -> dict:
  t0 = time.perf_counter()
  spec = runspec.load(args.workdir, args.export, args.data_dir, args.step)
  if args.prices and args.mode == "per_scene":
    raise ValueError(
        "--prices buys under one --total spend over the raster: drop "
        "--per_scene."
    )
  mode = "prices" if args.prices else (args.mode or "per_scene")
  lr = geotiles.open_lr(
      args.lr,
      split_list(args.bands) or spec.lr_bands,
      sensor=args.sensor,
      band_names_given=split_list(args.band_names),
  )
  try:
    gsd = float(np.mean(lr.gsd_m))
    target, note = runspec.planning_gsd(spec, gsd, args.hr_gsd, args.lr)
    print(f"crossscale.plan: {note}", flush=True)
    g = geotiles.make_grid(lr, spec.lr_shape[:2], spec.grid, target)
    means = geotiles.band_means(lr.ds, lr.bands)
    spec = runspec.in_units_of(
        spec, means, "lr", args.pixel_scale, "--lr", args.lr
    )
    zones = None
    if args.prices:
      zones = PriceZones(args.prices, args.price_key, args.default_price, g.crs)
    os.makedirs(args.out, exist_ok=True)
    spec.score(np.zeros((1,) + spec.lr_shape, np.float32))  # compile
    t_load = time.perf_counter() - t0
    if args.trace_memory:
      tracemalloc.start()
    t1 = time.perf_counter()
    summary = plan(
        spec,
        lr,
        g,
        args.out,
        budget=parse_budget(args.budget),
        mode="global" if mode == "prices" else mode,
        prices=zones,
        total=args.total,
        memory_mb=args.memory_mb,
    )
    seconds = time.perf_counter() - t1
    peak = tracemalloc.get_traced_memory()[1] if args.trace_memory else None
    if args.trace_memory:
      tracemalloc.stop()
    write_png(
        os.path.join(args.out, "plan.png"),
        lr,
        os.path.join(args.out, SCORES),
        g,
    )
    x0, _, _, y1 = g.scene_bounds(0, 0)
    _, y0, x1, _ = g.scene_bounds(g.rows - 1, g.cols - 1)
    km2 = geotiles.area_km2(g.crs, (x0, y0, x1, y1))
    lr_mpx = g.width * g.height * g.factor[0] * g.factor[1] / 1e6
    summary.update(
        lr=os.path.abspath(args.lr),
        crs=str(g.crs),
        raster_gsd_m=list(lr.gsd_m),
        planning_gsd_m=target if target is not None else gsd,
        gsd_note=note,
        area_km2=km2,
        lr_megapixels=lr_mpx,
        seconds=seconds,
        seconds_load_and_compile=t_load,
        s_per_km2=seconds / km2 if km2 else None,
        s_per_lr_megapixel=seconds / lr_mpx if lr_mpx else None,
        memory_mb_limit=args.memory_mb,
        peak_traced_mb=None if peak is None else peak / 2**20,
        max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        run=spec.source,
    )
    with open(os.path.join(args.out, "summary.json"), "w") as f:
      json.dump(summary, f, indent=1)
  finally:
    lr.ds.close()
  return summary


def main(argv: Sequence[str] | None = None) -> dict:
  """The command line; bad inputs exit with one message naming the file and
  the fix (SystemExit), not a traceback."""
  args = parse_args(argv)
  try:
    summary = run(args)
  except (ValueError, FileNotFoundError, rasterio.errors.RasterioError) as e:
    raise SystemExit(f"crossscale.plan: {e}") from None
  print(
      f"crossscale.plan: {summary['tiles_bought']} tiles in "
      f"{summary['scored']} scenes ({summary['skipped_nodata']} skipped as "
      f"nodata, {summary['partial']} partial), {summary['area_km2']:.2f} "
      f"km^2 in {summary['seconds']:.2f} s ({summary['s_per_km2']:.3g} "
      f"s/km^2, {summary['s_per_lr_megapixel']:.3g} s/LR Mpx) -> {args.out}",
      flush=True,
  )
  return summary


if __name__ == "__main__":
  main(sys.argv[1:])
