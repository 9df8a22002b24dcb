"""geoworld scenes re-rendered at another ground sample distance (GSD) by
the generator itself, with exact labels (issue 22's GSD shift).

Record-based re-rendering (`crossscale.gsd_render.rescale_scene`) has to
guess the labels of a changed view: a zoom-out mosaics in scenes whose
objects the centre's labels do not name, a zoom-in may crop objects away.
geoworld knows what is where, so here:
- factor k >= 2 (an integer): the ground of k x k scenes of the scene's
  region (the stored scene top-left, the others drawn for it), each
  rendered at 1 m, area-averaged by k; labels are every class of the k^2
  scenes (each fully in view).
- factor 1/k: the centre 1/k of the scene, every 1-m pixel drawn as k x k
  pixels (geoworld's world is piecewise constant per 1-m pixel, so this is
  its exact finer rendering); labels are the object classes with a pixel in
  the crop and the land covers holding >= `min_cover` of it, the rule of
  the stored labels.
LR is the sensor's view (`geoworld.lr_view`) of the re-rendered HR, so its
GSD follows; pixel sizes are the stored ones.

`write_multiscale` (`python -m data.geoworld_gsd --source DIR --out DIR2`)
writes a training set of every train scene drawn at several factors (the
val and test splits as stored): training across scales with exact labels,
the reference the record-based augmentation is measured against.
"""

from __future__ import annotations

import argparse
import dataclasses
from fractions import Fraction

import numpy as np

from crossscale import records, shards
from data import common
from data import geoworld as gw


def config_of(builder: dict) -> tuple[gw.GeoworldConfig, int]:
  """(config, seed) of a geoworld manifest's builder spec."""
  if builder.get("builder") != "geoworld":
    raise ValueError(
        f"generator re-rendering needs a geoworld dataset, got builder "
        f"{builder.get('builder')!r}: use neighbours='random'"
    )
  cfg = dict(builder["config"])
  cfg["split_regions"] = tuple(cfg["split_regions"])
  return gw.GeoworldConfig(**cfg), int(builder["seed"])


def check_factor(factor: float) -> Fraction:
  """`factor` as k or 1/k (k >= 1 an integer), else a ValueError."""
  f = Fraction(factor).limit_denominator(64)
  if abs(float(f) - factor) > 1e-9 or 1 not in (f.numerator, f.denominator):
    raise ValueError(
        f"geoworld re-renders at integer GSD factors k or 1/k, got {factor}:"
        " use e.g. 0.5, 2 or 4"
    )
  return f


def stored_plan(cfg, seed: int, regions, split: str, i: int):
  """(plan, rng) of stored scene `i` of `split`: `generate`'s draws, so
  rendering the plan gives the stored HR."""
  rng = np.random.default_rng([seed, common.SPLITS.index(split), i])
  r = int(rng.choice(gw.split_regions(cfg, seed)[split]))
  return gw.plan_scene(cfg, rng, regions, r), rng


def _zoom_out(cfg, seed, regions, split, i, plan, k: int):
  """HR [H, W, 3] uint8, objects [H, W] uint8, labels [C] of the k x k
  ground block whose top-left scene is `plan`."""
  size, s = cfg.hr_size, common.SPLITS.index(split)
  hr = np.zeros((size * k, size * k, 3))
  obj = np.zeros((size * k, size * k), np.uint8)
  labels = np.zeros(len(gw.CLASSES), np.uint8)
  for cell in range(k * k):
    if cell:
      rng = np.random.default_rng([seed, s, i, k, cell])
      p = gw.plan_scene(cfg, rng, regions, plan.region)
    else:
      p = plan
    h, o = gw.render(cfg, p)
    r, c = (cell // k) * size, (cell % k) * size
    hr[r : r + size, c : c + size], obj[r : r + size, c : c + size] = h, o
    labels |= p.labels
  hr = hr.reshape(size, k, size, k, 3).mean(axis=(1, 3))
  obj = obj.reshape(size, k, size, k).max(axis=(1, 3))
  return np.clip(np.rint(hr), 0, 255).astype(np.uint8), obj, labels


def _zoom_in(cfg, plan, k: int):
  """HR, objects, labels of the centre 1/k of `plan`'s scene, each 1-m
  pixel drawn k x k."""
  size = cfg.hr_size
  lo, n = (size - size // k) // 2, size // k
  crop = slice(lo, lo + n)
  hr, obj = gw.render(cfg, plan)
  up = lambda x: np.repeat(np.repeat(x[crop, crop], k, 0), k, 1)
  hr, obj = up(hr), up(obj)
  labels = np.zeros(len(gw.CLASSES), np.uint8)
  labels[np.unique(obj[obj > 0]) - 1] = 1
  lc = plan.landcover[crop, crop]
  frac = np.bincount(lc.ravel(), minlength=len(gw.LANDCOVER)) / lc.size
  labels[: len(gw.LANDCOVER)] = frac >= cfg.min_cover
  if not labels[: len(gw.LANDCOVER)].any():
    labels[np.argmax(frac)] = 1  # as the stored rule keeps one
  return hr, obj, labels


def rendered_scene(
    builder: dict, split: str, i: int, factor: float, regions=None
) -> records.Scene:
  """Stored scene `i` of `split` of the geoworld built with `builder` (its
  manifest's spec), seen at `factor` x its GSD (module docstring)."""
  cfg, seed = config_of(builder)
  f = check_factor(factor)
  regions = regions or gw.make_regions(cfg, seed)
  plan, _ = stored_plan(cfg, seed, regions, split, i)
  if f >= 1:
    hr, obj, labels = _zoom_out(cfg, seed, regions, split, i, plan, int(f))
  else:
    hr, obj, labels = _zoom_in(cfg, plan, f.denominator)
  s = common.SPLITS.index(split)
  lr = gw.lr_view(cfg, hr, np.random.default_rng([seed, s, i, 7, f.numerator,
                                                  f.denominator]))  # fmt: skip
  names = [gw.CLASSES[c] for c in np.flatnonzero(labels)]
  return records.Scene(
      id=f"{split}_r{plan.region:02d}_{i:06d}",
      lr=lr,
      hr=hr,
      lr_bands=gw.LR_BANDS,
      hr_bands=("R", "G", "B"),
      lr_gsd=cfg.hr_gsd * cfg.scale * float(f),
      hr_gsd=cfg.hr_gsd * float(f),
      grid=cfg.grid,
      labels=labels,
      split=split,
      text="a scene with " + ", ".join(n.replace("_", " ") for n in names),
      masks={"objects": obj},
  )


def write_multiscale(
    data_dir: str, factors, out_dir: str, num_train: int | None = None
) -> shards.Manifest:
  """Records at `out_dir`: the train split of the geoworld at `data_dir`
  with each of its first `num_train` (default all) scenes drawn at every
  factor in `factors` (ids suffixed `_x<factor>`), val and test as stored;
  normalised with the source's band statistics."""
  manifest = shards.load_manifest(data_dir)
  cfg, seed = config_of(manifest.builder)
  factors = [float(check_factor(float(f))) for f in factors]
  n = manifest.splits["train"]["num_records"]
  n = n if num_train is None else min(n, num_train)
  regions = gw.make_regions(cfg, seed)

  def scenes():
    for i in range(n):
      for f in factors:
        s = rendered_scene(manifest.builder, "train", i, f, regions)
        yield dataclasses.replace(s, id=f"{s.id}_x{f:g}")
    for split in ("val", "test"):
      yield from shards.iter_scenes(data_dir, split, False)

  out = shards.write_dataset(
      out_dir,
      f"{manifest.name}_multiscale",
      scenes(),
      manifest.class_names,
      builder={
          "builder": "geoworld_multiscale",
          "source": manifest.name,
          "source_created": manifest.created,
          "source_builder": manifest.builder,
          "gsd_in_metres": manifest.gsd_known,
          "train_factors": factors,
          "num_train": n,
      },
      label_symmetries=manifest.label_symmetries,
  )
  shards.set_band_stats(out_dir, manifest.band_stats)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--source", required=True, help="a geoworld records dir")
  p.add_argument("--out", required=True)
  p.add_argument("--train_factors", default="0.5,1,2")
  p.add_argument("--num_train", type=int, default=None)
  a = p.parse_args(argv)
  m = write_multiscale(a.source, a.train_factors.split(","), a.out, a.num_train)
  print(a.out, {k: v["num_records"] for k, v in m.splits.items()})


if __name__ == "__main__":
  main()
