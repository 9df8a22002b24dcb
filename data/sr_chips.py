"""Builder: SR-benchmark chip records from real images with a dense target.

Each source image (read by data.referring's readers) is cut into
non-overlapping `chip` x `chip` HR windows, scaled to [0, 1] float32; the LR
is a 4x `crossscale.sensor.degrade` of each window (per band, clipped to
[0, 1]); the target is the mask `masks["target"]`: binary uint8 for
segmentation, float32 metres for regression. Scene ids are
`referring.chip_id(image, row, col)`. The manifest's `builder` block holds
the task(s), notes, the source files and `sr_groups` (levircd: SR per image).

Sources (`--source`), read from ../shared/data (or `--src`):
  spacenet_buildings  sample_geotiff.tif + geotiff_labels.geojson, 64 px
  spacenet_roads      road_mask_input.tif + sample_road_raster_mask.tif, 64 px
  levircd             LEVIR-CD A and B stacked (6 bands), change mask, 64 px,
                      split per image (LEVIRCD_TEST pairs for test)
  hag                 the DSM as the image, height above ground (m), 32 px
Registered in data/registry.py as `<source>_chips`.

Run: python -m data.sr_chips --source hag --out /tmp/hag_chips
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
from typing import Sequence

import numpy as np

from crossscale import records, sensor, shards
from data import common, referring

# Bump when the records change, so cached builds are redone.
GENERATOR_VERSION = 1
SOURCES = ("spacenet_buildings", "spacenet_roads", "levircd", "hag")
SCALE = 4
LEVIRCD_TEST = 4  # of the 12 LEVIR-CD sample pairs: images for test


@dataclasses.dataclass
class Source:
  """Images `[H, W, C]` in [0, 1] and their targets `[H, W]`, ready to chip."""

  images: list[np.ndarray]
  targets: list[np.ndarray]
  ids: list[str]
  bands: tuple[str, ...]
  gsd: float
  chip: int
  tasks: dict
  files: str  # the source files, relative to the shared data folder
  notes: list[str]
  image_splits: list[str] | None = None  # one per image; None: seeded
  sr_groups: int = 1


def _spacenet(src: str, name: str) -> Source:
  read = {
      "spacenet_buildings": referring.source_spacenet_buildings,
      "spacenet_roads": referring.source_spacenet_roads,
  }[name]
  item = read(src)[0]
  img = item.image.astype(np.float32)
  hi = float(np.percentile(img, 99.9))
  img = np.clip(img / hi, 0.0, 1.0)
  cls = "building" if name == "spacenet_buildings" else "road"
  note = (
      f"{item.bands[0]} scaled by its 99.9th percentile ({hi:.0f}) and "
      f"clipped to [0, 1]; 64 px chips ({item.gsd:.1f} m), LR = 4x "
      "sensor.degrade; seeded 70/15/15 split over the non-overlapping "
      "chips of the one image (val unused)."
  )
  if name == "spacenet_buildings":
    files = "spacenet/sample_geotiff.tif + geotiff_labels.geojson"
    note += (
        " Footprints: the 43 polygons of geotiff_labels.geojson "
        "rasterised onto the image grid (the sample_*mask*.tif "
        "rasters beside it are another scene's); the real MS/pan "
        "pairs have no building masks."
    )
  else:
    files = "spacenet/road_mask_input.tif + sample_road_raster_mask.tif"
    note += (
        " Las Vegas, EPSG:4326 (gsd ~0.3 m from 2.7e-6 deg); "
        "road pixels are ~3% of the image."
    )
  return Source(
      images=[img],
      targets=[(item.labels > 0).astype(np.uint8)],  # class or instance ids
      ids=[item.id],
      bands=tuple(item.bands),
      gsd=float(item.gsd),
      chip=64,
      tasks={
          "segmentation": {"num_classes": 2, "classes": ["background", cls]}
      },
      files=files,
      notes=[note],
  )


def _levircd(src: str, seed: int) -> Source:
  counts = collections.Counter()
  items = referring.source_levircd(src, counts)
  if len(items) <= LEVIRCD_TEST:
    raise records.DataError(
        f"levircd: {len(items)} labelled pairs under {src}/levircd, need more "
        f"than {LEVIRCD_TEST} (the test images): check A/, B/ and label/."
    )
  order = np.random.default_rng(seed).permutation(len(items))
  test = {items[k].id for k in order[:LEVIRCD_TEST]}
  return Source(
      images=[it.image.astype(np.float32) / 255.0 for it in items],
      targets=[it.labels for it in items],
      ids=[it.id for it in items],
      bands=tuple(items[0].bands),
      gsd=float(items[0].gsd),
      chip=64,
      tasks={
          "segmentation": {
              "num_classes": 2,
              "classes": ["background", "changed building"],
          }
      },
      files="levircd/{A,B,label}",
      notes=[
          f"{len(items)} LEVIR-CD 256 px pairs (0.5 m); input = A and B RGB "
          "stacked (6 bands, /255), LR = both 4x sensor.degrade; SR models are "
          "built for 3 bands and applied to A and B separately (sr_groups=2); "
          f"seeded per-image split: test = {sorted(test)}, the other "
          f"{len(items) - len(test)} train (the release's train_/val_/test_ "
          "prefixes would leave 3 training pairs); 64 px chips, no image "
          f"crosses splits; skipped pairs: {dict(counts) or 'none'}."
      ],
      image_splits=["test" if it.id in test else "train" for it in items],
      sr_groups=2,
  )


def _hag(src: str) -> Source:
  counts = collections.Counter()
  item = referring.source_elevation(src, counts)[0]
  dsm, hag = item.image[..., 0], item.image[..., 1]
  lo, hi = float(dsm.min()), float(dsm.max())
  return Source(
      images=[((dsm - lo) / max(hi - lo, 1e-6))[..., None]],
      targets=[hag.astype(np.float32)],
      ids=[item.id],
      bands=("dsm",),
      gsd=float(item.gsd),
      chip=32,
      tasks={"regression": {"unit": "m"}},
      files="geotiff/elevation/{dsm,hag}.tif",
      notes=[
          "no optical image is co-registered with hag.tif: the "
          "input is the DSM (min-max scaled to [0, 1]) and the "
          "target height above ground in metres; 32 px chips (2 m);"
          f" {counts['elevation_nodata_filled']} nodata pixels were"
          " filled with 0 by data.referring.source_elevation."
      ],
  )


def read_source(source: str, src: str, seed: int = 0) -> Source:
  """The named source's images and targets. A missing or unreadable file is
  a DataError naming it and what to do."""
  if source not in SOURCES:
    raise ValueError(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
  try:
    if source == "levircd":
      return _levircd(src, seed)
    if source == "hag":
      return _hag(src)
    return _spacenet(src, source)
  except records.DataError:
    raise
  except Exception as e:  # rasterio / PIL / JSON errors name the file
    raise records.DataError(
        f"{source}: could not read its files under {src} "
        f"({type(e).__name__}: {e}). Restore the file (copy it again from "
        "the shared data), or set CROSSSCALE_SHARED_DATA to a folder "
        "holding an intact copy."
    ) from e


def chip_scenes(name: str, s: Source, seed: int):
  """Scenes of the non-overlapping chips of `s` (see the module docstring).
  Splits: `s.image_splits` (no image crosses splits), else a seeded
  70/15/15 train/val/test over all windows; chip i's LR noise is seeded
  [seed, i] over the windows of all images in order."""
  wins = []  # (image index, row, col)
  for k, t in enumerate(s.targets):
    wins += [(k, r, c) for r, c in referring.windows(*t.shape, s.chip, s.chip)]
  if s.image_splits is None:
    split_of = common.assign_splits(len(wins), (0.7, 0.15, 0.15), seed)
  else:
    split_of = [s.image_splits[k] for k, _, _ in wins]
  for split in ("train", "test"):
    if split not in split_of:
      raise records.DataError(
          f"{name}: no {split} chips of {s.chip} px; lower the chip size."
      )
  for i, ((k, r, c), split) in enumerate(zip(wins, split_of)):
    hr = s.images[k][r : r + s.chip, c : c + s.chip].astype(np.float32)
    lr = sensor.degrade(
        hr, SCALE, np.random.default_rng([seed, i]), data_range=1.0
    )
    yield records.Scene(
        id=referring.chip_id(s.ids[k], r, c),
        lr=np.clip(lr, 0, 1).astype(np.float32),
        hr=hr,
        lr_bands=s.bands,
        hr_bands=s.bands,
        lr_gsd=s.gsd * SCALE,
        hr_gsd=s.gsd,
        grid=1,
        labels=np.zeros((0,), np.uint8),  # no scene labels: dense targets
        split=split,
        masks={"target": s.targets[k][r : r + s.chip, c : c + s.chip]},
    )


def build(
    source: str, out_dir: str, src: str | None = None, seed: int = 0
) -> shards.Manifest:
  """Writes the chip records of `source` (SOURCES) to `out_dir`."""
  src = src or common.SHARED_DATA
  s = read_source(source, src, seed)
  return shards.write_dataset(
      out_dir,
      f"{source}_chips",
      chip_scenes(source, s, seed),
      class_names=[],
      builder={
          "name": "sr_chips",
          "version": GENERATOR_VERSION,
          "source": source,
          "files": s.files,
          "seed": seed,
          "scale": SCALE,
          "degradation": sensor.degradation_record(
              SCALE, 0.5, 0.01, data_range=1.0
          ),
          "chip": s.chip,
          "tasks": s.tasks,
          "notes": s.notes,
          "sr_groups": s.sr_groups,
      },
      # Dense targets flip and rotate with the image.
      label_symmetries=shards.SYMMETRIES,
  )


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--source", required=True, choices=SOURCES)
  p.add_argument("--src", default=None, help="shared data folder")
  common.add_common_flags(p)
  a = p.parse_args(argv)
  common.run_build(lambda: build(a.source, a.out, a.src, a.seed), a.out)


if __name__ == "__main__":
  main()
