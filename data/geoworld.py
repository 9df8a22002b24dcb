"""geoworld: a procedural world shaped like GL-10M, deterministic from a seed.

Multi-label scenes over 24 classes on a 10x10 HR tile grid (160 px, 16-px
tiles) under a 20x20 LR view (8x coarser, `crossscale.sensor`: PSF, area
downsampling, noise, after a linear LR band response `LR_RESPONSE`).
- Land-cover classes (8) are large smooth regions: LR sees them by colour.
- Object classes (16; 3, 5 or 8 px, up to an LR pixel) are zero-mean
  textures (shape x pattern x spectral signature) added to the background
  on a few tiles: after the PSF their LR footprint is below the sensor
  noise, so only HR tiles resolve them.
- Decoys: bright 16-24 px structures of 8-px cells, strong LR detail, no
  label (LR detail alone is a misleading guide to which tiles matter).
- Pads (v3): every object stands on a tile of smooth, region-coloured
  ground, seen at LR; up to 3 more pads a scene are empty. LR can learn
  where objects may be, never which: only HR tiles tell the classes.
- Regions (12) each have a terrain palette, a land-cover mix, object
  frequencies, co-occurring object pairs and a decoy rate; train, val and
  test come from disjoint regions (`split_regions`), the region in each
  scene id (`region_of`). `masks["objects"]` holds class id + 1 on the
  pixels of label-bearing objects (`object_tiles`: the oracle's tiles).

Run: python -m data.geoworld --out DIR [--num_train 2000 ...]
     python -m data.geoworld --properties [--n 64]  (measured, JSON)
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
from typing import Iterator

import numpy as np

from crossscale import records, sensor, shards
from data import common

# Bump when the generator's output changes (part of the registry cache key).
# Version 3 is frozen (2026-12-02): the issue-21 comparisons are made on it.
GEOWORLD_VERSION = 3

LANDCOVER = (
    "water",
    "forest",
    "cropland",
    "grassland",
    "bare_soil",
    "urban",
    "wetland",
    "sand",
)
# Base RGB colour in [0, 1] and fine-texture std of each land-cover class.
_LC_COLOUR = np.array(
    [
        [0.15, 0.25, 0.40],
        [0.15, 0.35, 0.15],
        [0.55, 0.55, 0.25],
        [0.35, 0.55, 0.30],
        [0.55, 0.45, 0.35],
        [0.50, 0.48, 0.50],
        [0.25, 0.35, 0.30],
        [0.75, 0.70, 0.55],
    ]
)
_LC_TEXTURE = np.array([0.01, 0.04, 0.03, 0.02, 0.03, 0.05, 0.03, 0.02])

# Object classes: (name, size px, shape, pattern, signature, land covers it
# favours). A class is its shape, pattern and signature up to orientation:
# instances are rotated/flipped at random, so flips and rot90 keep labels.
_OBJECTS = (
    ("car", 3, "square", "checker", 0, ("urban",)),
    ("boat", 3, "square", "stripes", 1, ("water",)),
    ("container", 3, "square", "center", 2, ("urban",)),
    ("wind_turbine", 3, "plus", "center", 0, ("grassland", "cropland")),
    ("truck", 3, "square", "stripes", 3, ("urban", "cropland")),
    ("storage_tank", 5, "disc", "center", 0, ("urban", "bare_soil")),
    ("swimming_pool", 5, "square", "center", 1, ("urban",)),
    ("house", 5, "square", "stripes", 2, ("urban", "grassland")),
    ("silo", 5, "disc", "checker", 3, ("cropland",)),
    ("greenhouse", 5, "square", "stripes", 0, ("cropland",)),
    ("helipad", 5, "plus", "checker", 1, ("urban",)),
    ("tennis_court", 8, "square", "stripes", 1, ("urban", "grassland")),
    ("airplane", 8, "plus", "center", 2, ("bare_soil", "grassland")),
    ("baseball_diamond", 8, "disc", "stripes", 3, ("grassland",)),
    ("solar_farm", 8, "square", "checker", 2, ("bare_soil", "sand")),
    ("basketball_court", 8, "disc", "checker", 0, ("urban",)),
)
OBJECTS = tuple(o[0] for o in _OBJECTS)
CLASSES = LANDCOVER + OBJECTS
# Spectral signatures of object textures (RGB amplitude per band).
_SIGNATURES = np.array(
    [
        [1.0, 1.0, 1.0],
        [1.0, -1.0, 0.0],
        [0.0, 1.0, -1.0],
        [-1.0, 0.0, 1.0],
    ]
)
# LR band response: each LR band a linear mix of the HR R, G, B bands.
LR_BANDS = ("L1", "L2", "L3")
LR_RESPONSE = np.array(
    [
        [0.6, 0.3, 0.1],
        [0.2, 0.6, 0.2],
        [0.1, 0.3, 0.6],
    ]
)


@dataclasses.dataclass(frozen=True)
class GeoworldConfig:
  hr_size: int = 160  # HR pixels per side.
  grid: int = 10  # 10x10 HR tiles of 16 px.
  scale: int = 8  # LR pixel = 8x8 HR pixels: LR 20x20.
  num_regions: int = 12
  split_regions: tuple[int, int, int] = (8, 2, 2)  # train, val, test.
  max_landcover: int = 3  # land-cover classes present: 1..max.
  min_cover: float = 0.1  # fraction of the scene a land cover needs.
  max_object_classes: int = 5  # object classes present: 1..max.
  max_object_tiles: int = 12  # total object instances (one per tile).
  max_decoys: int = 4
  max_empty_pads: int = 3  # pads without an object (see plan_scene).
  object_amplitude: float = 0.3  # texture amplitude, in [0, 1] units.
  psf_sigma: float = 0.5  # in LR pixels (sensor.degrade).
  noise_std: float = 0.01  # relative to 255.
  hr_gsd: float = 1.0


def _shape(kind: str, s: int) -> np.ndarray:
  r, c = np.mgrid[:s, :s] - (s - 1) / 2
  if kind == "square":
    return np.ones((s, s), bool)
  if kind == "disc":
    return r**2 + c**2 <= (s / 2) ** 2 + 0.25
  if kind == "plus":
    return (np.abs(r) <= s / 6 + 0.2) | (np.abs(c) <= s / 6 + 0.2)
  raise ValueError(f"unknown object shape {kind!r}")


def _pattern(kind: str, s: int) -> np.ndarray:
  r, c = np.mgrid[:s, :s]
  if kind == "checker":
    return ((r + c) % 2) * 2.0 - 1
  if kind == "stripes":
    return (r % 2) * 2.0 - 1
  if kind == "center":
    d = np.maximum(np.abs(r - (s - 1) / 2), np.abs(c - (s - 1) / 2))
    return np.where(d <= s / 4, 1.0, -1.0)
  raise ValueError(f"unknown object pattern {kind!r}")


@functools.cache
def object_templates() -> tuple[np.ndarray, ...]:
  """Per object class a `[s, s, 3]` texture, zero-mean per band over its
  shape (0 outside it), max |value| 1."""
  out = []
  for _, s, shape, pattern, sig, _ in _OBJECTS:
    m = _shape(shape, s)
    p = np.where(m, _pattern(pattern, s), 0.0)
    p = np.where(m, p - p[m].mean(), 0.0)
    p = p / np.abs(p).max()
    out.append(p[..., None] * _SIGNATURES[sig])
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class Region:
  """One region's character (all drawn from the world seed)."""

  palette: np.ndarray  # [8, 3] land-cover colours.
  landcover_mix: np.ndarray  # [8] probabilities.
  object_freq: np.ndarray  # [16] relative frequencies.
  partners: np.ndarray  # [16] co-occurring object class (-1: none).
  decoy_rate: float  # mean decoys per scene.
  pad_colour: np.ndarray  # [3] the smooth ground objects stand on.


def make_regions(cfg: GeoworldConfig, seed: int) -> list[Region]:
  rng = np.random.default_rng([seed, 7919])
  out = []
  n_obj = len(OBJECTS)
  for _ in range(cfg.num_regions):
    partners = np.full(n_obj, -1)
    for a, b in rng.choice(n_obj, (3, 2), replace=False):
      partners[a], partners[b] = b, a
    out.append(
        Region(
            palette=np.clip(
                _LC_COLOUR + rng.normal(0, 0.05, _LC_COLOUR.shape), 0.05, 0.9
            ),
            landcover_mix=rng.dirichlet(np.full(len(LANDCOVER), 0.7)),
            object_freq=rng.lognormal(0.0, 1.0, n_obj),
            partners=partners,
            decoy_rate=float(rng.uniform(0.5, cfg.max_decoys * 0.75)),
            pad_colour=rng.uniform(0.35, 0.6, 3),
        )
    )
  return out


def split_regions(cfg: GeoworldConfig, seed: int) -> dict[str, list[int]]:
  """Disjoint region ids of each split (the geographic hold-out)."""
  if sum(cfg.split_regions) != cfg.num_regions or min(cfg.split_regions) < 1:
    raise ValueError(
        f"geoworld split_regions {cfg.split_regions} must be >= 1 each and "
        f"sum to num_regions={cfg.num_regions}."
    )
  perm = np.random.default_rng([seed, 104729]).permutation(cfg.num_regions)
  ends = np.cumsum(cfg.split_regions)
  return {
      s: sorted(int(r) for r in perm[e - n : e])
      for s, n, e in zip(common.SPLITS, cfg.split_regions, ends)
  }


def region_of(scene_id: str) -> int:
  """Region id from a geoworld scene id `<split>_r<region>_<index>`."""
  m = re.fullmatch(r"[a-z]+_r(\d+)_\d+", scene_id)
  if not m:
    raise ValueError(f"{scene_id!r} is not a geoworld scene id")
  return int(m.group(1))


def object_tiles(objects: np.ndarray, grid: int) -> np.ndarray:
  """`[G*G]` bool: tiles holding label-bearing objects, from `objects:
  [H, W]` (masks["objects"]), row-major like the model's tiles."""
  H, W = objects.shape
  t = objects.reshape(grid, H // grid, grid, W // grid) > 0
  return t.any(axis=(1, 3)).reshape(-1)


@dataclasses.dataclass
class _Plan:
  """A scene before rendering: what is where."""

  landcover: np.ndarray  # [H, W] land-cover id.
  terrain: np.ndarray  # [H, W, 3] float background.
  objects: list  # (class index in OBJECTS, r0, c0, texture [s, s, 3]).
  decoys: list  # (r0, c0, patch [h, w, 3]).
  labels: np.ndarray  # [len(CLASSES)] uint8.
  region: int


def _upsample(x: np.ndarray, size: int) -> np.ndarray:
  """Bilinear (pixel-centre aligned, edge-clamped) `[h, w, C]` -> `[size,
  size, C]`."""
  out = x
  for axis in (0, 1):
    n = x.shape[axis]
    pos = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    i0 = np.minimum(np.floor(pos).astype(int), n - 2)
    w = (pos - i0).reshape([-1 if a == axis else 1 for a in range(3)])
    out = np.take(out, i0, axis) * (1 - w) + np.take(out, i0 + 1, axis) * w
  return out


def _landcover_map(cfg, rng, region: Region) -> tuple[np.ndarray, list]:
  """Smooth argmax regions of 1..max_landcover classes drawn from the
  region's mix; classes under `min_cover` are dropped and refilled."""
  size = cfg.hr_size
  k = int(rng.integers(1, cfg.max_landcover + 1))
  chosen = rng.choice(len(LANDCOVER), k, replace=False, p=region.landcover_mix)
  # A smooth field at 1/4 resolution, linearly upsampled (4x cheaper).
  lo = size // 4
  coarse = rng.uniform(0, 1, (5, 5, k))
  up = np.kron(coarse, np.ones((lo // 5 + 1, lo // 5 + 1, 1)))[:lo, :lo]
  field = _upsample(sensor.blur(up, lo / 10.0), size)
  keep = np.arange(k)
  while True:
    am = keep[field[..., keep].argmax(-1)]
    frac = np.bincount(am.ravel(), minlength=k) / am.size
    ok = keep[frac[keep] >= cfg.min_cover]
    if len(ok) == len(keep):
      break
    keep = ok if len(ok) else keep[[frac[keep].argmax()]]
  return chosen[am], [int(chosen[i]) for i in keep]


def _terrain(rng, lc: np.ndarray, region: Region) -> np.ndarray:
  """`[H, W, 3]` region-palette colours with a gentle low-frequency shading
  and each class's fine texture."""
  H, W = lc.shape
  shade = sensor.blur(rng.normal(0, 1, (H // 8, W // 8, 1)), 1.5)
  shade = np.kron(shade, np.ones((8, 8, 1)))
  x = region.palette[lc] * (1 + 0.08 * shade / (np.abs(shade).max() + 1e-9))
  return x + rng.normal(0, 1, (H, W, 3)) * _LC_TEXTURE[lc][..., None]


def _decoy_patch(rng) -> np.ndarray:
  """Bright 16 or 24 px block of 8-px cells: strong LR detail, no label."""
  n = int(rng.integers(2, 4))
  cells = rng.uniform(0, 1, (n, n)) < 0.5
  cells[0, 0], cells[-1, -1] = True, False  # never flat
  colour = 0.85 + 0.15 * rng.uniform(0, 1, 3)
  dark = 0.1 * rng.uniform(0, 1, 3)
  patch = np.where(cells[..., None], colour, dark)
  return np.kron(patch, np.ones((8, 8, 1)))


def plan_scene(
    cfg: GeoworldConfig, rng: np.random.Generator, regions, region: int
) -> _Plan:
  """Draws one scene of `region`: land cover, decoys, then objects."""
  G, size = cfg.grid, cfg.hr_size
  tile = size // G
  reg = regions[region]
  lc, present_lc = _landcover_map(cfg, rng, reg)
  terrain = _terrain(rng, lc, reg)
  taken = np.zeros((G, G), bool)
  decoys = []
  for _ in range(min(int(rng.poisson(reg.decoy_rate)), cfg.max_decoys)):
    patch = _decoy_patch(rng)
    h = patch.shape[0]
    r0, c0 = rng.integers(0, size - h + 1, 2)
    decoys.append((int(r0), int(c0), patch))
    rows = slice(r0 // tile, (r0 + h - 1) // tile + 1)
    taken[rows, c0 // tile : (c0 + h - 1) // tile + 1] = True
  # Object classes: region frequency x land-cover affinity x partners.
  w = reg.object_freq.copy()
  for j, o in enumerate(_OBJECTS):
    if any(LANDCOVER.index(a) in present_lc for a in o[5]):
      w[j] *= 4.0
  n_cls = int(rng.integers(1, cfg.max_object_classes + 1))
  n_cls = min(n_cls, 8 - len(present_lc))
  chosen = []
  for _ in range(n_cls):
    p = w.copy()
    p[chosen] = 0
    j = int(rng.choice(len(OBJECTS), p=p / p.sum()))
    chosen.append(j)
    if reg.partners[j] >= 0:
      w[reg.partners[j]] *= 6.0
  free = np.flatnonzero(~taken.ravel())
  counts = [int(rng.integers(1, 4)) for _ in chosen]
  while sum(counts) > min(cfg.max_object_tiles, len(free)):
    counts[int(np.argmax(counts))] -= 1
  chosen = [j for j, n in zip(chosen, counts) if n]  # a class needs >= 1
  counts = [n for n in counts if n]
  tiles = rng.choice(free, sum(counts), replace=False)
  # Pads: every object tile's ground is the region's smooth pad colour, an
  # LR-visible cue to where objects are (not which: pads are class-blind),
  # as a port or an airfield is at coarse resolution; some pads are empty.
  rest = np.setdiff1d(free, tiles)
  n_empty = min(int(rng.integers(0, cfg.max_empty_pads + 1)), len(rest))
  pads = np.concatenate([tiles, rng.choice(rest, n_empty, replace=False)])
  for t in pads:
    r0, c0 = (t // G) * tile, (t % G) * tile
    ground = reg.pad_colour * (1 + 0.02 * rng.normal(0, 1, (tile, tile, 3)))
    terrain[r0 : r0 + tile, c0 : c0 + tile] = ground
  templates = object_templates()
  objects = []
  kinds = [j for j, n in zip(chosen, counts) for _ in range(n)]
  for t, j in zip(tiles, kinds):
    tex = np.rot90(templates[j], int(rng.integers(4)))
    tex = tex[:, ::-1] if rng.uniform() < 0.5 else tex
    tex = tex * rng.uniform(0.7, 1.0)
    s = tex.shape[0]
    r0 = (t // G) * tile + int(rng.integers(1, tile - s))
    c0 = (t % G) * tile + int(rng.integers(1, tile - s))
    objects.append((j, r0, c0, tex))
  labels = np.zeros(len(CLASSES), np.uint8)
  labels[present_lc] = 1
  labels[[len(LANDCOVER) + j for j in chosen]] = 1
  return _Plan(lc, terrain, objects, decoys, labels, region)


def render(
    cfg: GeoworldConfig,
    plan: _Plan,
    with_objects: bool = True,
    with_decoys: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
  """HR `[H, W, 3]` uint8 and the objects mask `[H, W]` uint8 (class id + 1
  on object pixels). An object adds its zero-mean texture to the background
  of its footprint, its amplitude capped per band to stay in [0.02, 0.98]."""
  hr = plan.terrain.copy()
  if with_decoys:
    for r0, c0, patch in plan.decoys:
      h = patch.shape[0]
      hr[r0 : r0 + h, c0 : c0 + h] = patch
  mask = np.zeros(plan.landcover.shape, np.uint8)
  for j, r0, c0, tex in plan.objects if with_objects else ():
    s = tex.shape[0]
    fp = np.any(tex != 0, -1)
    view = hr[r0 : r0 + s, c0 : c0 + s]
    bg = np.clip(view[fp], 0, 1)
    view[fp] = bg  # clipped first so the added texture survives intact
    room = np.maximum(np.minimum(bg.min(0) - 0.02, 0.98 - bg.max(0)), 0)
    view[fp] += np.minimum(cfg.object_amplitude, room) * tex[fp]
    mask[r0 : r0 + s, c0 : c0 + s][fp] = len(LANDCOVER) + j + 1
  hr8 = np.clip(np.rint(np.clip(hr, 0, 1) * 255), 0, 255).astype(np.uint8)
  return hr8, mask


def lr_view(
    cfg: GeoworldConfig, hr8: np.ndarray, rng: np.random.Generator | None
) -> np.ndarray:
  """LR `[h, w, 3]` uint8: the LR band response, then the sensor (PSF, area
  downsampling, noise; noise-free and unquantised float when rng is None)."""
  mixed = hr8.astype(np.float64) @ LR_RESPONSE.T
  if rng is None:
    return sensor.degrade(mixed, cfg.scale, None, cfg.psf_sigma, 0.0, 255.0)
  lr = sensor.degrade(
      mixed, cfg.scale, rng, cfg.psf_sigma, cfg.noise_std, 255.0
  )
  return np.clip(np.rint(lr), 0, 255).astype(np.uint8)


def make_scene(
    cfg: GeoworldConfig,
    rng: np.random.Generator,
    regions,
    region: int,
    scene_id: str,
    split: str,
) -> records.Scene:
  plan = plan_scene(cfg, rng, regions, region)
  hr8, objects = render(cfg, plan)
  lr8 = lr_view(cfg, hr8, rng)
  names = [CLASSES[i] for i in np.flatnonzero(plan.labels)]
  return records.Scene(
      id=scene_id,
      lr=lr8,
      hr=hr8,
      lr_bands=LR_BANDS,
      hr_bands=("R", "G", "B"),
      lr_gsd=cfg.hr_gsd * cfg.scale,
      hr_gsd=cfg.hr_gsd,
      grid=cfg.grid,
      labels=plan.labels,
      split=split,
      text="a scene with " + ", ".join(n.replace("_", " ") for n in names),
      masks={"objects": objects},
  )


def _check(cfg: GeoworldConfig) -> None:
  tile = cfg.hr_size // cfg.grid
  if cfg.hr_size % cfg.grid or cfg.hr_size % cfg.scale or tile < 10:
    raise ValueError(
        f"geoworld: hr_size {cfg.hr_size} must divide by grid {cfg.grid} "
        f"and scale {cfg.scale}, with tiles >= 10 px (8-px objects): "
        "change hr_size, grid or scale."
    )


def generate(
    cfg: GeoworldConfig, counts: dict[str, int], seed: int
) -> Iterator[records.Scene]:
  """Scenes of every split; scene i of a split depends only on (seed, split,
  i) and the world (regions) only on the seed."""
  _check(cfg)
  regions = make_regions(cfg, seed)
  by_split = split_regions(cfg, seed)
  for s, split in enumerate(common.SPLITS):
    for i in range(counts.get(split, 0)):
      rng = np.random.default_rng([seed, s, i])
      r = int(rng.choice(by_split[split]))
      yield make_scene(cfg, rng, regions, r, f"{split}_r{r:02d}_{i:06d}", split)


def build(
    out_dir: str,
    cfg: GeoworldConfig = GeoworldConfig(),
    *,
    num_train: int = 2000,
    num_val: int = 500,
    num_test: int = 500,
    seed: int = 0,
    records_per_shard: int = 1024,
    name: str = "geoworld",
) -> shards.Manifest:
  counts = {"train": num_train, "val": num_val, "test": num_test}
  return shards.write_dataset(
      out_dir,
      name,
      generate(cfg, counts, seed),
      CLASSES,
      records_per_shard=records_per_shard,
      expected_per_split=counts,
      builder={
          "builder": "geoworld",
          "version": GEOWORLD_VERSION,
          "seed": seed,
          "counts": counts,
          "regions": split_regions(cfg, seed),
          "landcover_classes": list(LANDCOVER),
          "object_classes": list(OBJECTS),
          "config": dataclasses.asdict(cfg),
      },
  )


def properties(
    cfg: GeoworldConfig = GeoworldConfig(), n: int = 64, seed: int = 0
) -> dict:
  """What can be measured on the generated data alone, over `n` train
  scenes: object and decoy LR footprints (noise-free LR with vs without
  them, in DN) against the LR noise, the heuristic's LR detail
  (`tile_grid.tile_statistic`) on object, decoy and other tiles, the object
  tiles its top 1/8 finds, label and object-tile counts. Not the sweep's
  properties (those need training)."""
  from crossscale import tile_grid  # pylint: disable=g-import-not-at-top

  _check(cfg)
  regions = make_regions(cfg, seed)
  train = split_regions(cfg, seed)["train"]
  obj_dn, dec_dn, n_labels, n_obj_tiles, found = [], [], [], [], []
  k = -(-cfg.grid**2 // 8)  # tiles bought at 1/8
  detail = {"object": [], "decoy": [], "other": []}
  for i in range(n):
    rng = np.random.default_rng([seed, 0, i])
    r = int(rng.choice(train))
    plan = plan_scene(cfg, rng, regions, r)
    hr, objects = render(cfg, plan)
    lr = lr_view(cfg, hr, None)
    obj_dn.append(np.abs(lr - lr_view(cfg, render(cfg, plan, False)[0], None)))
    no_dec = render(cfg, plan, with_decoys=False)[0]
    d = np.abs(lr - lr_view(cfg, no_dec, None))
    if plan.decoys:
      dec_dn.append(d.max())
    stat = np.asarray(tile_grid.tile_statistic(lr[None], cfg.grid))[0]
    is_obj = object_tiles(objects, cfg.grid)
    # Decoy tiles: where removing the decoys changes LR by > 3 noise stds.
    seen = d.max(-1) > 3 * cfg.noise_std * 255  # [h, w]
    is_dec = object_tiles(np.kron(seen, np.ones((cfg.scale,) * 2)), cfg.grid)
    detail["object"] += list(stat[is_obj & ~is_dec])
    detail["decoy"] += list(stat[is_dec & ~is_obj])
    detail["other"] += list(stat[~is_obj & ~is_dec])
    n_labels.append(int(plan.labels.sum()))
    n_obj_tiles.append(int(is_obj.sum()))
    found.append(is_obj[np.argsort(-stat, kind="stable")[:k]].sum())
  return {
      "scenes": n,
      "lr_noise_dn": cfg.noise_std * 255,
      "object_lr_max_dn": float(np.max(obj_dn)),
      "decoy_lr_max_dn_median": float(np.median(dec_dn)) if dec_dn else 0.0,
      "lr_detail_median": {
          k: float(np.median(v)) if v else None for k, v in detail.items()
      },
      "labels_per_scene": [min(n_labels), max(n_labels)],
      "object_tiles_per_scene": [min(n_obj_tiles), max(n_obj_tiles)],
      # Share of object tiles among the k = G*G/8 tiles of highest LR
      # detail (the heuristic at 1/8), against k/(G*G) for random tiles.
      "object_tile_recall_at_1_8": {
          "heuristic": float(np.sum(found) / np.sum(n_obj_tiles)),
          "random": k / cfg.grid**2,
      },
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", help="output dataset directory")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--records_per_shard", type=int, default=1024)
  p.add_argument("--num_train", type=int, default=2000)
  p.add_argument("--num_val", type=int, default=500)
  p.add_argument("--num_test", type=int, default=500)
  p.add_argument(
      "--properties", action="store_true", help="print measured properties"
  )
  p.add_argument("--n", type=int, default=64, help="scenes for --properties")
  a = p.parse_args(argv)
  if a.properties:
    print(json.dumps(properties(n=a.n, seed=a.seed), indent=1))
    return
  if not a.out:
    p.error("--out DIR is required (or --properties)")
  common.run_build(
      lambda: build(
          a.out,
          num_train=a.num_train,
          num_val=a.num_val,
          num_test=a.num_test,
          seed=a.seed,
          records_per_shard=a.records_per_shard,
      ),
      a.out,
  )


if __name__ == "__main__":
  main()
