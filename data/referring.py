"""Builder: referring-segmentation records from any segmentation masks.

From class masks (objects = connected components of each class) or instance
masks, every instance of an image gets templated referring expressions
naming its class with

  position: where its centroid lies in a 3x3 grid of the image
            ("the building in the top left corner of the image"),
  size:     "large"/"small" against the median area of its class in the
            image ("the small building"), only with >= 2 instances,
  relation: left of / right of / above / below a nearby instance that has a
            unique description of its own ("the building left of the road").

An expression is a set of constraints; it is kept only when exactly one
instance of the image satisfies them. An ambiguous one (two instances match
equally) gets one qualifier added (size or position); if still ambiguous it
is dropped and counted. Every unique expression of an image is kept.

Each expression becomes one Scene: `hr` the image (chip) `[H, W, C]`, `lr` a
degraded copy (crossscale.sensor.degrade), `text` the expression, `masks =
{"target": [H, W] uint8}`, labels one-hot over the target classes, split
assigned per image/chip (never per expression, so no image crosses splits).

Sources (`--source`), read from ../shared/data (or `--src`):
  toyworld            toyworld scenes' "objects" masks (generated here)
  spacenet_buildings  spacenet/sample_geotiff.tif + geotiff_labels.geojson
  spacenet_roads      spacenet/road_mask_input.tif + sample_road_raster_mask.tif
  levircd             levircd/{A,B,label}: change masks over the A/B pair
  elevation           geotiff/elevation/{dsm,hag}.tif + buildings.geojson
Large rasters are cut into `--chip` x `--chip` chips (remainders dropped)
with seeded train/val/test splits (data.common.assign_splits).

Run: python -m data.referring --source spacenet_buildings --out /tmp/ref_sn
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import time
from typing import Callable, Iterable, Iterator, Mapping, Sequence
import warnings

import numpy as np
from scipy import ndimage

from crossscale import records, sensor, shards
from data import common, image_folder

# Bump when the records change, so cached builds are redone.
# 2: SpaceNet buildings from geotiff_labels.geojson (the raster masks were
#    another scene's footprints).
GENERATOR_VERSION = 2
SOURCES = (
    "toyworld",
    "spacenet_buildings",
    "spacenet_roads",
    "levircd",
    "elevation",
)

# --- Instances ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instance:
  """One object: its class noun phrase and `mask: [H, W]` bool."""

  cls: str
  mask: np.ndarray

  @property
  def area(self) -> int:
    return int(self.mask.sum())

  @property
  def center(self) -> tuple[float, float]:
    """Centroid (row, col) in pixels."""
    r, c = np.nonzero(self.mask)
    return float(r.mean()), float(c.mean())


def instances_from_class_mask(
    class_mask: np.ndarray,
    names: Mapping[int, str],
    min_area: int = 1,
    merge_gap: int = 0,
) -> tuple[list[Instance], int]:
  """Connected components (8-connected) of each class of `class_mask: [H, W]`.

  `names` maps class values to noun phrases (other values are background).
  `merge_gap` > 0 joins pieces less than merge_gap + 1 px apart (a striped
  object is one object). Returns (instances, number dropped below min_area).
  """
  out, small = [], 0
  eight = np.ones((3, 3), bool)
  for value in sorted(names):
    binary = class_mask == value
    if not binary.any():
      continue
    grown = (
        ndimage.binary_dilation(binary, eight, iterations=merge_gap)
        if merge_gap
        else binary
    )
    labels, n = ndimage.label(grown, structure=eight)
    labels = np.where(binary, labels, 0)
    for k in range(1, n + 1):
      m = labels == k
      if m.sum() < min_area:
        small += int(m.any())
        continue
      out.append(Instance(names[value], m))
  return out, small


def instances_from_ids(
    ids: np.ndarray, cls: str, min_area: int = 1
) -> tuple[list[Instance], int]:
  """One instance per nonzero id of `ids: [H, W]` (e.g. rasterised polygons)."""
  out, small = [], 0
  for v in np.unique(ids):
    if v == 0:
      continue
    m = ids == v
    if m.sum() < min_area:
      small += 1
      continue
    out.append(Instance(cls, m))
  return out, small


# --- Attributes ----------------------------------------------------------------

_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "center", "right")


def position_word(center: tuple[float, float], shape: Sequence[int]) -> str:
  """Cell of a 3x3 grid holding `center`: "top left", "top", ..., "center"."""
  r = _ROWS[min(int(3 * center[0] / shape[0]), 2)]
  c = _COLS[min(int(3 * center[1] / shape[1]), 2)]
  if r == "middle":
    return c
  return r if c == "center" else f"{r} {c}"


def position_phrase(word: str) -> str:
  """ "top left" -> "in the top left corner of the image", etc."""
  if word == "center":
    return "in the center of the image"
  if word in ("top", "bottom"):
    return f"at the {word} of the image"
  if word in ("left", "right"):
    return f"on the {word} side of the image"
  return f"in the {word} corner of the image"


def size_words(
    instances: Sequence[Instance], large: float = 2.0, small: float = 0.5
) -> list[str | None]:
  """ "large"/"small"/None per instance: area against its class's median."""
  by_cls = collections.defaultdict(list)
  for inst in instances:
    by_cls[inst.cls].append(inst.area)
  out = []
  for inst in instances:
    areas = by_cls[inst.cls]
    med = float(np.median(areas))
    if len(areas) < 2 or med <= 0:
      out.append(None)
    elif inst.area >= large * med:
      out.append("large")
    elif inst.area <= small * med:
      out.append("small")
    else:
      out.append(None)
  return out


def relation(a: tuple[float, float], b: tuple[float, float]) -> str:
  """Where centroid `a` lies from `b`, along the dominant axis (image rows
  grow downward): "left of", "right of", "above" or "below"."""
  dr, dc = a[0] - b[0], a[1] - b[1]
  if abs(dc) >= abs(dr):
    return "left of" if dc < 0 else "right of"
  return "above" if dr < 0 else "below"


# Superlatives: the instance with the extreme key among those matching the
# rest of a query. Keys are (area, -area, col, -col, row, -row) per instance.
EXTREMES = (
    "largest",
    "smallest",
    "leftmost",
    "rightmost",
    "topmost",
    "bottommost",
)


@dataclasses.dataclass(frozen=True)
class Query:
  """An expression's constraints; `rel` = (relation word, anchor index);
  `extreme` picks, among the instances matching the rest, the one with the
  extreme size/position (ties match all tied instances)."""

  cls: str
  size: str | None = None
  pos: str | None = None
  rel: tuple[str, int] | None = None
  extreme: str | None = None


@dataclasses.dataclass
class Scene2D:
  """Per-image attributes the queries are checked against."""

  instances: list[Instance]
  centers: list[tuple[float, float]]
  pos: list[str]
  size: list[str | None]
  areas: list[int]

  @classmethod
  def of(cls, instances: Sequence[Instance], shape: Sequence[int]):
    centers = [i.center for i in instances]
    return cls(
        list(instances),
        centers,
        [position_word(c, shape) for c in centers],
        size_words(instances),
        [i.area for i in instances],
    )

  def _base(self, q: Query, j: int) -> bool:
    if self.instances[j].cls != q.cls:
      return False
    if q.size is not None and self.size[j] != q.size:
      return False
    if q.pos is not None and self.pos[j] != q.pos:
      return False
    if q.rel is not None:
      word, k = q.rel
      if j == k or relation(self.centers[j], self.centers[k]) != word:
        return False
    return True

  def _key(self, extreme: str, j: int) -> float:
    r, c = self.centers[j]
    return {
        "largest": self.areas[j],
        "smallest": -self.areas[j],
        "leftmost": -c,
        "rightmost": c,
        "topmost": -r,
        "bottommost": r,
    }[extreme]

  def matching(self, q: Query) -> list[int]:
    """Indices of the instances the query describes."""
    hits = [j for j in range(len(self.instances)) if self._base(q, j)]
    if q.extreme is None or not hits:
      return hits
    best = max(self._key(q.extreme, j) for j in hits)
    return [j for j in hits if self._key(q.extreme, j) == best]

  def unique(self, q: Query | None, i: int) -> bool:
    return q is not None and self.matching(q) == [i]


def render(q: Query, anchor: Query | None = None) -> str:
  """The English text of a query: "the small building left of the road"."""
  adjective = q.extreme or q.size
  words = ["the"] + ([adjective] if adjective else []) + [q.cls]
  if q.rel is not None:
    words += [q.rel[0], render(anchor)]
  if q.pos is not None:
    words.append(position_phrase(q.pos))
  return " ".join(words)


def _anchor(scene: Scene2D, i: int) -> tuple[int, Query] | None:
  """Nearest other instance (other classes first) with a unique
  relation-free description."""
  ci = np.array(scene.centers[i])
  cls_i = scene.instances[i].cls
  order = sorted(
      (k for k in range(len(scene.instances)) if k != i),
      key=lambda k: (
          scene.instances[k].cls == cls_i,
          float(np.sum((np.array(scene.centers[k]) - ci) ** 2)),
      ),
  )
  for k in order:
    cls_k = scene.instances[k].cls
    for q in (
        Query(cls_k),
        Query(cls_k, pos=scene.pos[k]),
        *(Query(cls_k, extreme=e) for e in EXTREMES[:2]),
    ):
      if scene.unique(q, k):
        return k, q
  return None


def _extreme_qualifier(scene: Scene2D, q: Query, i: int) -> Query | None:
  """`q` plus the first superlative that singles out i, if any."""
  for e in EXTREMES:
    cand = dataclasses.replace(q, extreme=e)
    if scene.unique(cand, i):
      return cand
  return None


def _candidates(scene: Scene2D, i: int):
  """[(query, fallbacks, anchor query)] for target i: a query that is not
  unique is replaced by its first unique fallback (a qualifier added)."""
  cls, pos, size = scene.instances[i].cls, scene.pos[i], scene.size[i]
  base = Query(cls)
  out = []
  if scene.unique(base, i):
    out.append((base, [], None))
  at = Query(cls, pos=pos)
  out.append(
      (
          at,
          [
              Query(cls, pos=pos, size=size) if size else None,
              _extreme_qualifier(scene, at, i),
          ],
          None,
      )
  )
  if size:
    out.append((Query(cls, size=size), [Query(cls, size=size, pos=pos)], None))
  for e in EXTREMES:
    q = Query(cls, extreme=e)
    if len(scene.matching(base)) > 1 and scene.unique(q, i):
      out.append((q, [], None))
  anchor = _anchor(scene, i)
  if anchor is not None:
    k, aq = anchor
    rq = Query(cls, rel=(relation(scene.centers[i], scene.centers[k]), k))
    out.append(
        (
            rq,
            [
                dataclasses.replace(rq, size=size) if size else None,
                _extreme_qualifier(scene, rq, i),
            ],
            aq,
        )
    )
  return out


def referring_expressions(
    instances: Sequence[Instance], shape: Sequence[int]
) -> tuple[list[tuple[str, int]], collections.Counter]:
  """All unique expressions of an image: ([(text, instance index)], stats).

  stats counts "kept" expressions, "qualified" ones (made unique by an added
  size/position/superlative qualifier) and "dropped_ambiguous" ones (still
  matching two or more instances).
  """
  scene = Scene2D.of(instances, shape)
  stats = collections.Counter()
  out = []
  for i in range(len(instances)):
    seen = set()
    for q, fallbacks, anchor in _candidates(scene, i):
      if not scene.unique(q, i):
        q = next((f for f in fallbacks if scene.unique(f, i)), None)
        if q is None:
          stats["dropped_ambiguous"] += 1
          continue
        stats["qualified"] += 1
      text = render(q, anchor)
      if text not in seen:
        seen.add(text)
        out.append((text, i))
  stats["kept"] = len(out)
  return out, stats


# --- Labelled images and chips --------------------------------------------------


@dataclasses.dataclass
class LabelledImage:
  """An image with its labels, before chipping.

  labels: `[H, W]` int; with kind "class" values are class ids (`names`
  maps id -> noun phrase) split into connected components; with kind
  "instance" each nonzero value is one instance of class `names[0]`.
  """

  id: str
  image: np.ndarray  # [H, W, C]
  bands: tuple[str, ...]
  gsd: float
  labels: np.ndarray  # [H, W]
  kind: str
  names: Mapping[int, str]
  split: str | None = None
  lr: np.ndarray | None = None  # [H/s, W/s, C] when given by the source
  crs: str | None = None
  transform: object | None = None  # rasterio Affine of the image


def windows(H: int, W: int, size: int, stride: int) -> list[tuple[int, int]]:
  """Top-left corners (row, col) of the size x size windows at `stride`
  that fit inside an H x W image (remainders dropped)."""
  return [
      (r, c)
      for r in range(0, H - size + 1, stride)
      for c in range(0, W - size + 1, stride)
  ]


def chip_id(image_id: str, r: int, c: int) -> str:
  """Id of the chip of image `image_id` with top-left pixel (r, c)."""
  return f"{image_id}/r{r:05d}_c{c:05d}"


def crop(item: LabelledImage, r: int, c: int, size: int) -> LabelledImage:
  """The size x size window of `item` at (r, c), its id and transform moved."""
  win = (slice(r, r + size), slice(c, c + size))
  tr = (
      item.transform @ item.transform.translation(c, r)
      if (item.transform is not None)
      else None
  )
  return dataclasses.replace(
      item,
      id=chip_id(item.id, r, c),
      image=item.image[win],
      labels=item.labels[win],
      lr=None,
      transform=tr,
  )


def chips(item: LabelledImage, size: int | None) -> Iterator[LabelledImage]:
  """Non-overlapping size x size windows (remainders dropped); None: whole."""
  H, W = item.labels.shape
  if size is None or (H, W) == (size, size):
    yield item
    return
  if H < size or W < size:
    raise records.DataError(
        f"{item.id}: image {H}x{W} is smaller than --chip {size}: lower --chip."
    )
  for r, c in windows(H, W, size, size):
    yield crop(item, r, c, size)


def shifted_train_chips(
    item: LabelledImage,
    size: int,
    stride: int,
    is_train: Callable[[int, int], bool],
) -> Iterator[LabelledImage]:
  """Extra training windows at `stride`, off the chip grid, whose every
  pixel lies in train chips: `is_train(r, c)` says whether the grid chip
  with top-left (r, c) is in the train split. Val/test pixels never reach
  training, so the splits stay spatially disjoint."""
  if stride <= 0 or size % stride:
    raise ValueError(
        f"--train_stride {stride} must be a positive divisor of "
        f"--chip {size}"
    )
  H, W = item.labels.shape
  for r, c in windows(H, W, size, stride):
    if r % size == 0 and c % size == 0:
      continue  # on the grid: already a chip of its own
    r0, c0 = r - r % size, c - c % size
    cells = {
        (r0 + dr, c0 + dc)
        for dr in {0, size * (r % size > 0)}
        for dc in {0, size * (c % size > 0)}
    }
    if all(is_train(rr, cc) for rr, cc in cells):
      yield crop(item, r, c, size)


def _instances(item: LabelledImage, min_area: int, merge_gap: int):
  if item.kind == "class":
    return instances_from_class_mask(
        item.labels, item.names, min_area, merge_gap
    )
  return instances_from_ids(item.labels, item.names[0], min_area)


def _bounds(item: LabelledImage):
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
    item: LabelledImage,
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
  exprs, s = referring_expressions(insts, item.labels.shape)
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
    items: Iterable[LabelledImage],
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
  all_chips = [c for item in items for c in chips(item, opt.chip)]
  seeded = common.assign_splits(len(all_chips), opt.split_fractions, opt.seed)
  splits = [c.split or s for c, s in zip(all_chips, seeded)]
  for index, (item, split) in enumerate(zip(all_chips, splits)):
    yield from image_scenes(item, index, split, class_names, opt, stats)
  if not opt.train_stride or opt.chip is None:
    return
  train_ids = {c.id for c, s in zip(all_chips, splits) if s == "train"}
  index = len(all_chips)
  for item in items:
    is_train = lambda r, c, i=item.id: chip_id(i, r, c) in train_ids
    for ch in shifted_train_chips(item, opt.chip, opt.train_stride, is_train):
      stats["shifted_train_chips"] += 1
      yield from image_scenes(ch, index, "train", class_names, opt, stats)
      index += 1


# --- Sources ----------------------------------------------------------------------


def _read_raster(path: str):
  """(`[H, W, C]` pixels, transform, crs string, nodata) of a GeoTIFF."""
  import rasterio  # pylint: disable=import-outside-toplevel

  if not os.path.isfile(path):
    raise records.DataError(
        f"{path} not found: set CROSSSCALE_SHARED_DATA to "
        "the folder holding the shared data, or pass --src."
    )
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
    with rasterio.open(path) as src:
      img = np.moveaxis(src.read(), 0, -1)
      crs = src.crs.to_string() if src.crs else None
      return img, src.transform, crs, src.nodata


def _check_aligned(a: np.ndarray, b: np.ndarray, pa: str, pb: str) -> None:
  if a.shape[:2] != b.shape[:2]:
    raise records.DataError(
        f"{pa} is {a.shape[0]}x{a.shape[1]} but its mask {pb} is "
        f"{b.shape[0]}x{b.shape[1]}: image and mask must share one pixel grid."
    )


def _check_same_grid(pi: str, tr, crs, pm: str, mtr, mcrs) -> None:
  """A georeferenced image's mask must carry the same georeference: a mask
  without one cannot be shown to lie on the image (SpaceNet's
  sample_fp_mask.tif has none, and its footprints are of another scene)."""
  if crs is None:
    return
  if mcrs is None or mcrs != crs or not mtr.almost_equals(tr):
    raise records.DataError(
        f"{pm} (crs {mcrs}, transform {tuple(mtr)[:6]}) is not on the grid "
        f"of its image {pi} (crs {crs}, transform {tuple(tr)[:6]}): a mask "
        "must be georeferenced to its image; rasterise the vector labels "
        "onto the image grid instead (rasterise_geojson)."
    )


def rasterise_geojson(
    path: str, shape: tuple[int, int], transform, crs: str
) -> np.ndarray:
  """`[H, W]` int32 ids (1..N, 0 = none) of the N features of the GeoJSON at
  `path`, reprojected from the file's CRS (its "crs" member, else CRS84 as
  RFC 7946 says) to `crs` and burnt onto the grid of `transform`."""
  from rasterio import features, warp  # pylint: disable=import-outside-toplevel

  if not os.path.isfile(path):
    raise records.DataError(
        f"{path} not found: set CROSSSCALE_SHARED_DATA to "
        "the folder holding the shared data, or pass --src."
    )
  with open(path) as f:
    fc = json.load(f)
  src_crs = (fc.get("crs") or {}).get("properties", {}).get("name", "EPSG:4326")
  src_crs = src_crs.replace("urn:ogc:def:crs:", "").replace("::", ":")
  if src_crs in ("OGC:1.3:CRS84", "OGC:CRS84"):
    src_crs = "EPSG:4326"  # lon/lat order, as EPSG:4326 x/y in rasterio
  shapes = [
      (warp.transform_geom(src_crs, crs, feat["geometry"]), i + 1)
      for i, feat in enumerate(fc["features"])
  ]
  return features.rasterize(
      shapes, out_shape=shape, transform=transform, fill=0, dtype="int32"
  )


def _spacenet(
    src: str, image: str, mask: str, cls: str, band: str
) -> list[LabelledImage]:
  pi, pm = os.path.join(src, "spacenet", image), os.path.join(
      src, "spacenet", mask
  )
  img, tr, crs, _ = _read_raster(pi)
  if mask.endswith(".geojson"):
    labels, kind, names = (
        rasterise_geojson(pm, img.shape[:2], tr, crs),
        "instance",
        {0: cls},
    )
  else:
    m, mtr, mcrs, _ = _read_raster(pm)
    _check_aligned(img, m, pi, pm)
    _check_same_grid(pi, tr, crs, pm, mtr, mcrs)
    labels, kind, names = (m[..., 0] > 0).astype(np.uint8), "class", {1: cls}
  gsd = abs(tr.a)
  if crs and "4326" in crs:
    gsd *= 111_320.0  # degrees -> metres at the equator (about 0.3 m here)
  return [
      LabelledImage(
          id=os.path.splitext(image)[0],
          image=img,
          bands=(band,),
          gsd=gsd,
          labels=labels,
          kind=kind,
          names=names,
          crs=crs,
          transform=tr,
      )
  ]


def source_spacenet_buildings(src: str) -> list[LabelledImage]:
  """sample_geotiff.tif (900x900 pan, 0.5 m) + its building footprints
  (geotiff_labels.geojson, 43 polygons, rasterised onto the image grid, one
  instance each). The raster masks beside it (sample_*mask*.tif) carry no
  georeference and show another scene's footprints: not used."""
  return _spacenet(
      src, "sample_geotiff.tif", "geotiff_labels.geojson", "building", "PAN"
  )


def source_spacenet_roads(src: str) -> list[LabelledImage]:
  """road_mask_input.tif (1300x1300, ~0.3 m) + its road raster mask."""
  return _spacenet(
      src, "road_mask_input.tif", "sample_road_raster_mask.tif", "road", "B1"
  )


def source_levircd(src: str, stats: collections.Counter) -> list[LabelledImage]:
  """LEVIR-CD pairs: A and B stacked as 6 bands, the change mask as class 1.

  Split: the file-name prefix (train_/val_/test_: the release's split); pairs
  without a label or with A/B sizes differing are skipped and counted.
  """
  root = os.path.join(src, "levircd")
  if not os.path.isdir(os.path.join(root, "label")):
    raise records.DataError(
        f"{root}/label not found: LEVIR-CD needs A/, B/ " "and label/ folders."
    )
  out = []
  for f in sorted(os.listdir(os.path.join(root, "A"))):
    lab = os.path.join(root, "label", f)
    if not os.path.isfile(lab):
      stats["levircd_without_label"] += 1
      continue
    a, _ = image_folder.read_image(os.path.join(root, "A", f))
    b, _ = image_folder.read_image(os.path.join(root, "B", f))
    m, _ = image_folder.read_image(lab)
    if a.shape != b.shape or a.shape[:2] != m.shape[:2]:
      stats["levircd_size_mismatch"] += 1
      continue
    prefix = f.split("_")[0]
    out.append(
        LabelledImage(
            id=os.path.splitext(f)[0],
            image=np.concatenate([a, b], -1),
            bands=("A_R", "A_G", "A_B", "B_R", "B_G", "B_B"),
            gsd=0.5,
            labels=(m[..., 0] > 0).astype(np.uint8),
            kind="class",
            names={1: "changed building"},
            split=prefix if prefix in common.SPLITS else None,
        )
    )
  return out


def source_elevation(
    src: str, stats: collections.Counter
) -> list[LabelledImage]:
  """dsm + hag (2 m, float32) with buildings.geojson rasterised per building.

  Nodata (-9999) is filled with 0 and counted."""
  root = os.path.join(src, "geotiff", "elevation")
  bands = []
  for name in ("dsm", "hag"):
    img, tr, crs, nodata = _read_raster(os.path.join(root, f"{name}.tif"))
    band = img[..., 0].astype(np.float32)
    bad = ~np.isfinite(band) | (
        (band == nodata) if nodata is not None else False
    )
    stats["elevation_nodata_filled"] += int(bad.sum())
    bands.append(np.where(bad, 0.0, band))
  H, W = bands[0].shape
  ids = rasterise_geojson(
      os.path.join(root, "buildings.geojson"), (H, W), tr, crs
  )
  return [
      LabelledImage(
          id="elevation",
          image=np.stack(bands, -1),
          bands=("dsm", "hag"),
          gsd=abs(tr.a),
          labels=ids,
          kind="instance",
          names={0: "building"},
          crs=crs,
          transform=tr,
      )
  ]


TOYWORLD_NAMES = {
    "hstripes": "horizontally striped object",
    "vstripes": "vertically striped object",
    "checker": "checkered object",
    "diagonal": "diagonally striped object",
    "antidiagonal": "anti-diagonally striped object",
    "blocks": "blocky object",
}


def source_toyworld(
    counts: Mapping[str, int], seed: int
) -> tuple[list[LabelledImage], list[str]]:
  """toyworld scenes (their own LR, split and grid) with their objects mask.

  Objects are half-filled textures: pieces 1 px apart are merged (use
  merge_gap=1); two objects of one class that touch become one instance.
  """
  from data import toyworld  # pylint: disable=import-outside-toplevel

  cfg = toyworld.ToyworldConfig()
  names = {
      k + 1: TOYWORLD_NAMES.get(c, f"{c} object")
      for k, c in enumerate(cfg.classes)
  }
  items = [
      LabelledImage(
          id=s.id,
          image=s.hr,
          bands=s.hr_bands,
          gsd=s.hr_gsd,
          labels=s.masks["objects"],
          kind="class",
          names=names,
          split=s.split,
          lr=s.lr,
      )
      for s in toyworld.generate(cfg, dict(counts), seed)
  ]
  return items, [names[k] for k in sorted(names)]


# --- Build --------------------------------------------------------------------------


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

    items, names = source_toyworld(counts, opt.seed)
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
    return source_spacenet_buildings(src), ["building"], opt
  if source == "spacenet_roads":
    return source_spacenet_roads(src), ["road"], opt
  if source == "levircd":
    return source_levircd(src, stats), ["changed building"], opt
  if source == "elevation":
    return source_elevation(src, stats), ["building"], opt
  raise records.DataError(f"unknown --source {source!r}; known: {SOURCES}")


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


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--source", required=True, choices=SOURCES)
  p.add_argument(
      "--src", default=None, help="shared data root (default: ../shared/data)"
  )
  p.add_argument("--name", default=None)
  d = Options()
  p.add_argument(
      "--chip",
      type=int,
      default=None,
      help="chip size in px (default 256; 128 for elevation)",
  )
  p.add_argument("--scale", type=int, default=d.scale)
  p.add_argument("--grid", type=int, default=d.grid)
  p.add_argument("--min_area", type=int, default=d.min_area)
  p.add_argument("--split_fractions", default="0.7,0.15,0.15")
  p.add_argument(
      "--max_per_image",
      type=int,
      default=None,
      help="keep at most N expressions per chip (seeded)",
  )
  p.add_argument(
      "--train_stride",
      type=int,
      default=None,
      help="extra overlapping train windows at this stride, "
      "made only of train chips (a divisor of --chip)",
  )
  p.add_argument("--num_train", type=int, default=200, help="toyworld only")
  p.add_argument("--num_val", type=int, default=50, help="toyworld only")
  p.add_argument("--num_test", type=int, default=50, help="toyworld only")
  common.add_common_flags(p)
  a = p.parse_args(argv)
  chip = a.chip or (128 if a.source == "elevation" else 256)
  opt = Options(
      chip=chip,
      scale=a.scale,
      grid=a.grid,
      min_area=a.min_area,
      split_fractions=tuple(float(x) for x in a.split_fractions.split(",")),
      seed=a.seed,
      max_per_image=a.max_per_image,
      train_stride=a.train_stride,
  )
  counts = {"train": a.num_train, "val": a.num_val, "test": a.num_test}
  m = common.run_build(
      lambda: build(
          a.source,
          a.out,
          opt,
          src=a.src,
          name=a.name,
          counts=counts,
          records_per_shard=a.records_per_shard,
      ),
      a.out,
  )
  print("stats: " + json.dumps(m.builder["stats"], sort_keys=True))


if __name__ == "__main__":
  main()
