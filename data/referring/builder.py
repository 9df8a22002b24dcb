"""The referring builder: labelled images -> one record per expression.

`build(source, out_dir, Options(...))` reads a source (sources.py), cuts
chips, assigns splits per chip (never per expression), and writes one Scene
per unique expression: `hr` the chip, `lr` a degraded copy, `text`, `masks =
{"target": [H, W] uint8}`, labels one-hot over the classes. Its counts go to
the manifest's builder["stats"].
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import time
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from crossscale import records, sensor, shards
from data import common, image_folder
from data.referring import chipping, expressions, sources

# Bump when the records change, so cached builds are redone.
# 2: SpaceNet buildings from geotiff_labels.geojson (the raster masks were
#    another scene's footprints).
GENERATOR_VERSION = 2


def _instances(item: chipping.LabelledImage, min_area: int, merge_gap: int):
  if item.kind == "class":
    return expressions.instances_from_class_mask(
        item.labels, item.names, min_area, merge_gap
    )
  return expressions.instances_from_ids(item.labels, item.names[0], min_area)


def _bounds(item: chipping.LabelledImage):
  if item.transform is None:
    return None
  H, W = item.labels.shape
  x0, y0 = item.transform @ (0, 0)
  x1, y1 = item.transform @ (W, H)
  return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


@dataclasses.dataclass(frozen=True)
class Options:
  """How images become records (the CLI's flags)."""

  chip: int | None = 256
  scale: int = 4
  grid: int = 8
  min_area: int = 16
  merge_gap: int = 0
  split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
  seed: int = 0
  psf_sigma: float = 0.5
  noise_std: float = 0.01
  max_per_image: int | None = None
  # Stride of extra, overlapping train windows inside train chips (None:
  # chips only). A divisor of `chip`; 16 on 64 px chips gives ~8x the
  # training expressions of a single tile, with new positions and contexts.
  train_stride: int | None = None


def image_scenes(
    item: chipping.LabelledImage,
    index: int,
    split: str,
    class_names: Sequence[str],
    opt: Options,
    stats: collections.Counter,
) -> list[records.Scene]:
  """The Scenes (one per expression) of one chip."""
  insts, small = _instances(item, opt.min_area, opt.merge_gap)
  stats["images"] += 1
  stats["instances"] += len(insts)
  stats["instances_below_min_area"] += small
  if not insts:
    stats["images_without_instances"] += 1
    return []
  exprs, s = expressions.referring_expressions(insts, item.labels.shape)
  stats.update(s)
  if opt.max_per_image is not None and len(exprs) > opt.max_per_image:
    rng = np.random.default_rng([opt.seed, index, 1])
    keep = np.sort(rng.choice(len(exprs), opt.max_per_image, replace=False))
    stats["capped"] += len(exprs) - len(keep)
    exprs = [exprs[k] for k in keep]
  lr = item.lr
  if lr is None:
    lr = sensor.degrade(
        item.image,
        opt.scale,
        np.random.default_rng([opt.seed, index]),
        psf_sigma=opt.psf_sigma,
        noise_std=opt.noise_std,
    )
  out = []
  for n, (text, k) in enumerate(exprs):
    labels = np.zeros(len(class_names), np.uint8)
    labels[class_names.index(insts[k].cls)] = 1
    out.append(
        records.Scene(
            id=f"{item.id}/e{n:03d}",
            lr=lr,
            hr=item.image,
            lr_bands=item.bands,
            hr_bands=item.bands,
            lr_gsd=item.gsd * opt.scale,
            hr_gsd=item.gsd,
            grid=opt.grid,
            labels=labels,
            split=split,
            text=text,
            masks={"target": insts[k].mask.astype(np.uint8)},
            crs=item.crs,
            bounds=_bounds(item),
        )
    )
  return out


def generate(
    items: Iterable[chipping.LabelledImage],
    class_names: Sequence[str],
    opt: Options,
    stats: collections.Counter,
) -> Iterator[records.Scene]:
  """Chips every image, assigns splits per chip, yields expression Scenes.

  Chips whose source gives no split get a seeded one (assign_splits over all
  such chips, so splits are balanced and reproducible). With
  `opt.train_stride`, overlapping windows made only of train chips follow
  as extra train scenes (shifted_train_chips)."""
  items = list(items)
  all_chips = [c for item in items for c in chipping.chips(item, opt.chip)]
  seeded = common.assign_splits(len(all_chips), opt.split_fractions, opt.seed)
  splits = [c.split or s for c, s in zip(all_chips, seeded)]
  for index, (item, split) in enumerate(zip(all_chips, splits)):
    yield from image_scenes(item, index, split, class_names, opt, stats)
  if not opt.train_stride or opt.chip is None:
    return
  train_ids = {c.id for c, s in zip(all_chips, splits) if s == "train"}
  index = len(all_chips)
  for item in items:
    is_train = lambda r, c, i=item.id: chipping.chip_id(i, r, c) in train_ids
    for ch in chipping.shifted_train_chips(
        item, opt.chip, opt.train_stride, is_train
    ):
      stats["shifted_train_chips"] += 1
      yield from image_scenes(ch, index, "train", class_names, opt, stats)
      index += 1


def _source_items(
    source: str,
    src: str,
    opt: Options,
    counts: Mapping[str, int],
    stats: collections.Counter,
):
  """(labelled images, class names, options adjusted for the source)."""
  if source == "toyworld":
    from data import toyworld  # pylint: disable=import-outside-toplevel

    items, names = sources.source_toyworld(counts, opt.seed)
    cfg = toyworld.ToyworldConfig()  # its LR fixes scale and grid
    return (
        items,
        names,
        dataclasses.replace(
            opt,
            chip=None,
            scale=cfg.scale,
            grid=cfg.grid,
            merge_gap=max(opt.merge_gap, 1),
            min_area=min(opt.min_area, 6),
        ),
    )
  if source == "spacenet_buildings":
    return sources.source_spacenet_buildings(src), ["building"], opt
  if source == "spacenet_roads":
    return sources.source_spacenet_roads(src), ["road"], opt
  if source == "levircd":
    return sources.source_levircd(src, stats), ["changed building"], opt
  if source == "elevation":
    return sources.source_elevation(src, stats), ["building"], opt
  raise records.DataError(
      f"unknown --source {source!r}; known: {sources.SOURCES}"
  )


def build(
    source: str,
    out_dir: str,
    opt: Options = Options(),
    *,
    src: str | None = None,
    name: str | None = None,
    counts: Mapping[str, int] | None = None,
    records_per_shard: int = 512,
) -> shards.Manifest:
  """Builds the referring records of one source; its counts (images,
  instances, kept/qualified/dropped expressions, seconds) are written to the
  manifest's builder["stats"] once the shards are closed."""
  src = src or common.SHARED_DATA
  counts = dict(counts or {"train": 200, "val": 50, "test": 50})
  stats = collections.Counter()
  t0 = time.time()
  items, class_names, opt = _source_items(source, src, opt, counts, stats)
  for it in items:
    H, W = (opt.chip, opt.chip) if opt.chip else it.labels.shape
    image_folder.check_hr_size(H, W, opt.scale, opt.grid, f"{source} {it.id}")
  builder = {
      "builder": "referring",
      "version": GENERATOR_VERSION,
      "source": source,
      "src": os.path.abspath(src),
      "options": dataclasses.asdict(opt),
  }
  m = shards.write_dataset(
      out_dir,
      name or f"referring_{source}",
      generate(items, class_names, opt, stats),
      class_names,
      records_per_shard=records_per_shard,
      builder=builder,
  )
  stats["seconds"] = round(time.time() - t0, 2)
  m.builder["stats"] = dict(stats)
  _rewrite_manifest(out_dir, m)
  return m


def _rewrite_manifest(out_dir: str, m: shards.Manifest) -> None:
  """Writes the manifest again with the final stats (atomic rename)."""
  path = os.path.join(out_dir, shards.MANIFEST)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(dataclasses.asdict(m), f, indent=1)
  os.replace(tmp, path)
