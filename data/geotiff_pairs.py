"""Builder: georeferenced rasters -> aligned LR/HR scene records.

Two modes:
  real pairs:  --hr FILE... --lr FILE...  an HR raster and an LR raster of the
               same place (any CRS each, e.g. a 0.5 m pan band with a 1 m
               multispectral image, or Landsat 15 m B8 with 30 m B2,B3,B4).
  synthetic:   --hr FILE... --lr_scale S  LR = crossscale.sensor.degrade(HR, S).

The HR/LR overlap is tiled into scene_px x scene_px HR windows; each LR window
is the LR warped onto the same bounds at scale x the HR pixel size (scale =
round(lr_gsd / hr_gsd), measured). Windows with too much nodata are dropped;
--mask NAME=FILE rasters become Scene.masks[NAME] and the labels; splits are
seeded per window. Scene ids: "<first HR file stem>_r{row}_c{col}"; times
from --hr_time/--lr_time, else a Landsat *_MTL.txt beside the first file.
Raster reading and alignment live in data.geotiff_rasters; the geometry rules
are described in docs/data.md.

Several places go into one dataset with --pair HR LR (repeatable; files of
stacked bands comma-separated), e.g. SpaceNet's three pan/MS pairs:
  python -m data.geotiff_pairs --out /tmp/pan_ms3 --scene_px 128 \\
      --pair pan1.tif ms1.tif --pair pan2.tif ms2.tif --pair pan3.tif ms3.tif
Records without --mask carry no labels: they train pretraining or SR
(experiments/configs/pretrain.py, sr.py), not classifiers. The manifest's
builder["degradation"] records the LR's scale, PSF and noise.

Usage:
  python -m data.geotiff_pairs --out /tmp/pan_ms \\
      --hr ../shared/data/spacenet/preproc_tutorial/pan1.tif \\
      --lr ../shared/data/spacenet/preproc_tutorial/ms1.tif --scene_px 128
  python -m data.geotiff_pairs --out /tmp/naip --lr_scale 4 \\
      --hr ../shared/data/geotiff/naip/m_4709963_se_14_1_20150926.tif
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import rasterio
from rasterio import windows

from crossscale import records, sensor, shards
from data import common, geotiff_rasters

DEFAULT_SCENE_PX = 256
DEFAULT_GRID = 4


def check_sizes(scene_px: int, grid: int, scale: int, where: str) -> None:
  """scene_px must be a positive multiple of grid and of scale."""
  step = math.lcm(max(grid, 1), max(scale, 1))
  lo = max(scene_px // step * step, step)
  hint = (
      f"Pick --scene_px as a multiple of {step} (e.g. {lo} or "
      f"{lo + step}), or change --grid."
  )
  if grid < 1 or scale < 1 or scene_px < 1:
    raise records.DataError(
        f"{where}: scene_px={scene_px}, grid={grid} and "
        f"scale={scale} must be >= 1."
    )
  if scene_px % grid:
    raise records.DataError(
        f"{where}: scene_px={scene_px} is not divisible by "
        f"the tile grid {grid}. {hint}"
    )
  if scene_px % scale:
    raise records.DataError(
        f"{where}: scene_px={scene_px} is not divisible by "
        f"the LR scale {scale}. {hint}"
    )


def _window_scene(
    hr: geotiff_rasters.Side,
    lr: geotiff_rasters.Side | None,
    masks: Mapping[str, tuple[str, Any]],
    window: windows.Window,
    scale: int,
    scene_px: int,
    max_nodata_frac: float,
    rng: np.random.Generator,
    degrade_kw: Mapping[str, float],
) -> dict[str, Any] | None:
  """Arrays of one window, or None when it has too much nodata."""
  hr_img, hr_bad = geotiff_rasters.read_hr(hr, window)
  if hr_bad.mean() > max_nodata_frac:
    return None
  win_t = geotiff_rasters.window_transform(window, hr.transform)
  hr_img = hr_img.copy()
  hr_img[hr_bad] = 0
  hr_img = geotiff_rasters.cast(hr_img, geotiff_rasters.out_dtype(hr.dtype))
  if lr is None:
    lr_img = sensor.degrade(hr_img, scale, rng, **degrade_kw)
  else:
    lr_t = rasterio.Affine(
        win_t.a * scale, 0.0, win_t.c, 0.0, win_t.e * scale, win_t.f
    )
    lr_img, lr_bad = geotiff_rasters.warp_lr(
        lr, lr_t, hr.crs, scene_px // scale
    )
    if lr_bad.mean() > max_nodata_frac:
      return None
    lr_img[lr_bad] = 0.0
    lr_img = geotiff_rasters.cast(lr_img, geotiff_rasters.out_dtype(lr.dtype))
  out_masks = {
      name: geotiff_rasters.warp_mask(path, ds, win_t, hr.crs, scene_px)
      for name, (path, ds) in masks.items()
  }
  return {
      "hr": hr_img,
      "lr": lr_img,
      "masks": out_masks,
      "bounds": geotiff_rasters.window_bounds(window, hr.transform),
  }


def _read_pair(
    hr_paths: Sequence[str],
    lr_paths: Sequence[str] | None,
    index: int,
    *,
    lr_scale: int | None,
    scene_px: int,
    grid: int,
    seed: int,
    max_nodata_frac: float,
    mask_paths: Mapping[str, str],
    hr_time: str | None,
    lr_time: str | None,
    degrade_kw: Mapping[str, float],
) -> dict[str, Any]:
  """The kept windows of one HR/LR pair (`index`: its place among the
  pairs; the first pair seeds its windows as a lone pair always did)."""
  with contextlib.ExitStack() as stack:
    hr = geotiff_rasters.open_side(hr_paths, "--hr", stack)
    hr_gsd = geotiff_rasters.hr_gsd_metres(hr)
    lr = (
        geotiff_rasters.open_side(lr_paths, "--lr", stack) if lr_paths else None
    )
    if lr is not None:
      box = geotiff_rasters.footprint_overlap(hr, lr)
      scale, ratio = geotiff_rasters.lr_scale_of(hr, lr)
      if scale < 1:
        raise records.DataError(
            f"--lr {lr.paths[0]} is finer than --hr {hr.paths[0]} (pixel size "
            f"ratio {ratio:.3f}): swap --hr and --lr."
        )
      if lr_scale is not None and lr_scale != scale:
        raise records.DataError(
            f"--lr_scale {lr_scale} but --lr {lr.paths[0]} is {ratio:.3f}x "
            f"coarser than --hr {hr.paths[0]} (scale {scale}): drop "
            "--lr_scale (it is measured from the rasters when --lr is given)."
        )
    else:
      box, scale, ratio = hr.bounds, int(lr_scale), float(lr_scale)
    check_sizes(scene_px, grid, scale, f"--hr {hr.paths[0]}")
    masks = {}
    for mname in sorted(mask_paths):
      path = mask_paths[mname]
      if not os.path.isfile(path):
        raise records.DataError(f"mask {mname!r}: {path} not found.")
      masks[mname] = (path, stack.enter_context(rasterio.open(path)))
    tiles = geotiff_rasters.tile_windows(hr.transform, hr.shape, box, scene_px)
    if not tiles:
      raise records.DataError(
          f"--hr {hr.paths[0]}: the LR/HR overlap {box} holds no "
          f"{scene_px}x{scene_px} HR window: pass a smaller --scene_px."
      )
    kept = []
    for row, col, window in tiles:
      key = [seed, row, col] if index == 0 else [seed, index, row, col]
      arrays = _window_scene(
          hr,
          lr,
          masks,
          window,
          scale,
          scene_px,
          max_nodata_frac,
          np.random.default_rng(key),
          degrade_kw,
      )
      if arrays is not None:
        kept.append((row, col, arrays))
    times = [
        geotiff_rasters.side_time(hr, hr_time, "--hr_time"),
        geotiff_rasters.side_time(lr, lr_time, "--lr_time"),
    ]
    if lr is None and times[1] is None:
      times[1] = times[0]  # The synthetic LR is the HR acquisition.
    return {
        "kept": kept,
        "windows": len(tiles),
        "scale": scale,
        "ratio": ratio,
        "hr_gsd": hr_gsd,
        "crs": hr.crs.to_string(),
        "hr_bands": hr.bands,
        "lr_bands": lr.bands if lr is not None else hr.bands,
        "stem": hr.stem,
        "times": times,
        "hr_paths": [os.path.abspath(p) for p in hr_paths],
        "lr_paths": [os.path.abspath(p) for p in lr_paths]
        if lr_paths
        else None,
    }


def _check_same(pairs: Sequence[dict[str, Any]]) -> None:
  """Pairs of one dataset share the LR scale and the band count."""
  a = pairs[0]
  for b in pairs[1:]:
    for key, what in (
        ("scale", "LR scale"),
        ("hr_bands", "HR bands"),
        ("lr_bands", "LR bands"),
    ):
      n_a = a[key] if key == "scale" else len(a[key])
      n_b = b[key] if key == "scale" else len(b[key])
      if n_a != n_b:
        raise records.DataError(
            f"pair {b['hr_paths'][0]} has {what} {b[key]}, but the first "
            f"pair {a['hr_paths'][0]} has {a[key]}: the pairs of one "
            "dataset need the same LR scale and bands; build them as "
            "separate datasets."
        )


def build(
    out_dir: str,
    hr_paths: Sequence[str] | None = None,
    lr_paths: Sequence[str] | None = None,
    *,
    pairs: Sequence[tuple[Sequence[str], Sequence[str] | None]] | None = None,
    name: str = "geotiff_pairs",
    scene_px: int = DEFAULT_SCENE_PX,
    grid: int = DEFAULT_GRID,
    lr_scale: int | None = None,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    max_nodata_frac: float = 0.05,
    mask_paths: Mapping[str, str] | None = None,
    hr_time: str | None = None,
    lr_time: str | None = None,
    psf_sigma: float = 0.5,
    noise_std: float = 0.01,
    records_per_shard: int = 512,
) -> shards.Manifest:
  """Tiles an HR raster and its LR counterpart into scenes in `out_dir`.

  The geometry is described in docs/data.md. Without `lr_paths` the LR is
  synthesised with sensor.degrade at `lr_scale` (then required; with
  `lr_paths`, `lr_scale` if given must equal the measured scale) with an RNG
  seeded per window from (seed, row, col); `psf_sigma`/`noise_std` go to
  sensor.degrade (its noise is relative to the dtype range: 255 for uint8,
  65535 for uint16, so lower `noise_std` for 11/12-bit data in uint16).

  `pairs` puts several places into one dataset: [(hr_paths, lr_paths or
  None), ...] instead of `hr_paths`/`lr_paths`; they must share the LR scale
  and band count, masks apply to every pair, and windows of all pairs are
  split together. The LR degradation (real raster or sensor.degrade with
  its scale, PSF and noise) is recorded in the manifest's
  builder["degradation"] (`crossscale.sensor.degradation_record`).
  """
  if pairs is None:
    pairs = [(hr_paths or [], lr_paths)]
  elif hr_paths or lr_paths:
    raise records.DataError("give either hr_paths/lr_paths or pairs, not both.")
  pairs = [
      ([str(p) for p in h], [str(p) for p in l] if l else None)
      for h, l in pairs
  ]
  mask_paths = dict(mask_paths or {})
  if not all(h for h, _ in pairs):
    raise records.DataError("no HR raster: pass --hr FILE or --pair HR LR.")
  if len({bool(l) for _, l in pairs}) > 1:
    raise records.DataError(
        "some pairs have an LR raster and some not: one dataset has one LR "
        "source (real rasters, or sensor.degrade with --lr_scale); build "
        "them as separate datasets."
    )
  if any(not l for _, l in pairs) and lr_scale is None:
    raise records.DataError(
        "no --lr rasters and no --lr_scale: pass the LR raster(s) with --lr, "
        "or --lr_scale S to synthesise the LR from the HR (sensor.degrade)."
    )
  if not 0.0 <= max_nodata_frac <= 1.0:
    raise records.DataError(
        f"max_nodata_frac={max_nodata_frac} must be in " "[0, 1]."
    )
  check_sizes(scene_px, grid, 1, "--scene_px/--grid")
  degrade_kw = {"psf_sigma": psf_sigma, "noise_std": noise_std}
  read = [
      _read_pair(
          h,
          l,
          i,
          lr_scale=lr_scale,
          scene_px=scene_px,
          grid=grid,
          seed=seed,
          max_nodata_frac=max_nodata_frac,
          mask_paths=mask_paths,
          hr_time=hr_time,
          lr_time=lr_time,
          degrade_kw=degrade_kw,
      )
      for i, (h, l) in enumerate(pairs)
  ]
  _check_same(read)
  kept = [(p, row, col, a) for p in read for row, col, a in p["kept"]]
  n_windows = sum(p["windows"] for p in read)
  if not kept:
    raise records.DataError(
        f"--hr {pairs[0][0][0]}: all {n_windows} windows have more than "
        f"{max_nodata_frac:.0%} nodata (HR or LR): check the nodata values / "
        "overlap, or raise --max_nodata_frac."
    )
  class_names = sorted(mask_paths)
  splits = common.assign_splits(len(kept), split_fractions, seed)
  stems = [p["stem"] for p in read]
  prefix = {
      id(p): (f"p{i}_" if stems.count(p["stem"]) > 1 else "")
      for i, p in enumerate(read)
  }
  first = read[0]

  def scenes():
    for (p, row, col, a), split in zip(kept, splits):
      labels = np.array(
          [int(np.any(a["masks"][m] != 0)) for m in class_names], np.uint8
      )
      yield records.Scene(
          id=f"{prefix[id(p)]}{p['stem']}_r{row}_c{col}",
          lr=a["lr"],
          hr=a["hr"],
          lr_bands=first["lr_bands"],
          hr_bands=first["hr_bands"],
          lr_gsd=p["hr_gsd"] * p["scale"],
          hr_gsd=p["hr_gsd"],
          grid=grid,
          labels=labels,
          split=split,
          masks=a["masks"],
          crs=p["crs"],
          bounds=a["bounds"],
          hr_time=p["times"][0],
          lr_time=p["times"][1],
      )

  real = bool(pairs[0][1])
  synthetic = not real
  builder = {
      "builder": "geotiff_pairs",
      "hr_paths": first["hr_paths"],
      "lr_paths": first["lr_paths"],
      "pairs": [
          {
              "hr_paths": p["hr_paths"],
              "lr_paths": p["lr_paths"],
              "windows": p["windows"],
              "windows_kept": len(p["kept"]),
          }
          for p in read
      ],
      "lr_source": "raster" if first["lr_paths"] else "sensor.degrade",
      "mask_paths": {k: os.path.abspath(v) for k, v in mask_paths.items()},
      "scale": first["scale"],
      "gsd_ratio": first["ratio"],
      "scene_px": scene_px,
      "grid": grid,
      "lr_resampling": geotiff_rasters.LR_RESAMPLING.name if real else None,
      "degrade": degrade_kw if synthetic else None,
      "degradation": sensor.degradation_record(
          first["scale"],
          **(degrade_kw if synthetic else {}),
          source="raster" if real else "sensor.degrade",
      ),
      "max_nodata_frac": max_nodata_frac,
      "windows": n_windows,
      "windows_dropped_nodata": n_windows - len(kept),
      "split_fractions": list(split_fractions),
      "seed": seed,
  }
  return shards.write_dataset(
      out_dir,
      name,
      scenes(),
      class_names,
      records_per_shard=records_per_shard,
      builder=builder,
      expected_per_split=dict(collections.Counter(splits)),
  )


def _parse_masks(items: Sequence[str] | None) -> dict[str, str]:
  """["water=w.tif", ...] -> {"water": "w.tif"}."""
  out = {}
  for item in items or ():
    mname, sep, path = item.partition("=")
    if not sep or not mname or not path:
      raise records.DataError(f"--mask {item!r}: expected NAME=FILE.")
    out[mname] = path
  return out


def _parse_pairs(items, parser) -> list[tuple[list[str], list[str] | None]]:
  """[["hr.tif", "lr.tif"], ["b8.tif", "b2.tif,b3.tif"]] -> (hr, lr) lists."""
  out = []
  for item in items:
    if len(item) > 2:
      parser.error(
          f"--pair {' '.join(item)}: give HR and LR (comma-separated files "
          "for stacked bands), or HR alone with --lr_scale"
      )
    split = [[f for f in x.split(",") if f] for x in item]
    out.append((split[0], split[1] if len(split) > 1 else None))
  return out


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(
      description="Build aligned LR/HR scene records from GeoTIFFs."
  )
  p.add_argument(
      "--hr",
      nargs="+",
      default=None,
      help="HR raster, or single-band rasters stacked as bands",
  )
  p.add_argument(
      "--pair",
      nargs="+",
      action="append",
      default=None,
      metavar="HR[,HR...] [LR[,LR...]]",
      help="one place of several in one dataset (repeatable, instead of "
      "--hr/--lr): its HR raster(s) and LR raster(s), comma-separated when "
      "stacked; without LR, --lr_scale synthesises it",
  )
  p.add_argument(
      "--lr",
      nargs="+",
      default=None,
      help="LR raster(s), any CRS; omit to synthesise with " "--lr_scale",
  )
  p.add_argument(
      "--lr_scale",
      type=int,
      default=None,
      help="synthetic LR downsampling factor (without --lr)",
  )
  p.add_argument(
      "--psf_sigma",
      type=float,
      default=0.5,
      help="synthetic LR blur (sensor.degrade)",
  )
  p.add_argument(
      "--noise_std",
      type=float,
      default=0.01,
      help="synthetic LR noise, fraction of the dtype range",
  )
  p.add_argument("--name", default="geotiff_pairs")
  p.add_argument(
      "--scene_px",
      type=int,
      default=DEFAULT_SCENE_PX,
      help="HR window size in pixels",
  )
  p.add_argument(
      "--grid", type=int, default=DEFAULT_GRID, help="HR tile grid size G"
  )
  p.add_argument(
      "--split_fractions",
      type=float,
      nargs=3,
      default=(0.7, 0.15, 0.15),
      metavar=("TRAIN", "VAL", "TEST"),
  )
  p.add_argument("--max_nodata_frac", type=float, default=0.05)
  p.add_argument(
      "--mask",
      action="append",
      default=None,
      metavar="NAME=FILE",
      help="mask raster resampled onto each HR window (repeatable)",
  )
  p.add_argument("--hr_time", default=None, help="ISO-8601 HR time")
  p.add_argument("--lr_time", default=None, help="ISO-8601 LR time")
  common.add_common_flags(p)
  args = p.parse_args(argv)
  pairs = _parse_pairs(args.pair, p) if args.pair else None
  if pairs and (args.hr or args.lr):
    p.error("give --pair (repeatable) or --hr/--lr, not both")
  if not pairs and not args.hr:
    p.error("give --hr FILE [--lr FILE] or --pair HR LR (repeatable)")
  m = common.run_build(
      lambda: build(
          args.out,
          args.hr,
          args.lr,
          pairs=pairs,
          name=args.name,
          scene_px=args.scene_px,
          grid=args.grid,
          lr_scale=args.lr_scale,
          split_fractions=args.split_fractions,
          seed=args.seed,
          max_nodata_frac=args.max_nodata_frac,
          mask_paths=_parse_masks(args.mask),
          hr_time=args.hr_time,
          lr_time=args.lr_time,
          psf_sigma=args.psf_sigma,
          noise_std=args.noise_std,
          records_per_shard=args.records_per_shard,
      ),
      args.out,
      summary=False,
  )
  counts = {s: m.num_records(s) for s in m.splits}
  print(
      f"{m.name}: hr {m.hr_shape} @ {m.hr_gsd:.3g} m, lr {m.lr_shape} @ "
      f"{m.lr_gsd:.3g} m, {m.builder['windows_dropped_nodata']} of "
      f"{m.builder['windows']} windows dropped (nodata), splits {counts} "
      f"-> {args.out}"
  )


if __name__ == "__main__":
  main()
