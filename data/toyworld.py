"""toyworld: a procedural scene world, deterministic from a seed.

The embedded default dataset. Each scene is a smooth multi-band terrain with a
few small objects (6x6 HR pixels). A scene's class is the *texture* of its
objects (stripes, checks, diagonals, each covering half the object), so the
label is resolvable only at HR: at LR (4x coarser after a sensor PSF) every
object is the same half-intensity blob. Objects occupy a few of the G x G
tiles and distractors (random half-filled patterns, identical at LR) occupy
others, so choosing which HR tiles to look at matters. As in real imagery, the
LR context is informative but not decisive: with probability `context_strength`
the terrain takes its class's characteristic tint (else a random one), so an
LR-only model can beat chance but not reach what HR tiles allow.

Run: python -m data.toyworld --out /tmp/toyworld [--num_train 4000 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Iterator

import numpy as np

from crossscale import records, sensor, shards
from data import common


def _shape_masks() -> dict[str, np.ndarray]:
  """Class patterns as `[6, 6]` bool masks, each covering half the object.

  They differ only in fine texture (orientation and frequency of stripes and
  checks), so after the sensor's PSF and 4x downsampling every object is the
  same half-intensity blob: the class is resolvable only at HR.
  """
  r, c = np.mgrid[:6, :6]
  return {
      "hstripes": r % 2 == 0,
      "vstripes": c % 2 == 0,
      "checker": (r + c) % 2 == 0,
      "diagonal": (r - c) % 4 < 2,
      "antidiagonal": (r + c) % 4 < 2,
      "blocks": (r // 2 + c // 2) % 2 == 0,
  }


# Bump when the generator's output changes, so cached builds are redone.
# 4: manifests declare no label symmetries (flips and rot90 change a stripe
#    or diagonal texture into another class), so training does not augment.
GENERATOR_VERSION = 4

SHAPES = _shape_masks()
# Training augmentations that keep every class: none. rot90 turns hstripes
# into vstripes and diagonal into antidiagonal; a flip swaps the diagonals.
LABEL_SYMMETRIES = ()
# Distractors: an irregular half-filled pattern, drawn anew per object, that
# looks like any object at LR and belongs to no class.


@dataclasses.dataclass(frozen=True)
class ToyworldConfig:
  hr_size: int = 64  # HR pixels per side.
  grid: int = 8  # G: HR tiles per side (tile = hr_size // grid).
  scale: int = 4  # LR pixel = scale x scale HR pixels.
  bands: tuple[str, ...] = ("R", "G", "B")
  classes: tuple[str, ...] = tuple(SHAPES)
  multi_label: bool = False  # True: 1-3 distinct classes per scene.
  max_objects: int = 3  # class objects per scene (1..max).
  max_distractors: int = 3
  psf_sigma: float = 0.5  # in LR pixels (sensor.degrade).
  noise_std: float = 0.01
  hr_gsd: float = 1.0
  context_strength: float = 0.5  # P(terrain tint = the class's tint).


def class_tints(num_classes: int, nbands: int) -> np.ndarray:
  """`[num_classes, C]` fixed per-class terrain tints in [0, 1]."""
  return np.random.default_rng(1234).uniform(0.0, 1.0, (num_classes, nbands))


def _terrain(
    rng: np.random.Generator, size: int, tint: np.ndarray
) -> np.ndarray:
  """Smooth random field `[size, size, C]` in [0.15, 0.65] around `tint: [C]`,
  with fine texture."""
  nbands = len(tint)
  coarse = 0.5 * rng.uniform(0.0, 1.0, (5, 5, nbands)) + 0.5 * tint
  up = np.kron(coarse, np.ones((size // 4 + 1, size // 4 + 1, 1)))[:size, :size]
  field = sensor.blur(up, size / 10.0)
  lo, hi = field.min((0, 1)), field.max((0, 1))  # keep the tint's hue
  field = 0.15 + 0.5 * (field - lo.min()) / (hi.max() - lo.min() + 1e-9)
  return field + rng.normal(0.0, 0.02, field.shape)


def make_scene(
    cfg: ToyworldConfig, rng: np.random.Generator, scene_id: str, split: str
) -> records.Scene:
  """One toyworld scene; all randomness drawn from `rng`."""
  G, size = cfg.grid, cfg.hr_size
  tile = size // G
  if tile < 7:
    raise ValueError(
        f"toyworld tiles are {tile} px; objects need >= 7 px: "
        "lower grid or raise hr_size."
    )
  nb, nc = len(cfg.bands), len(cfg.classes)
  objects = np.zeros((size, size), np.uint8)  # class id + 1 per pixel
  labels = np.zeros(nc, np.uint8)
  if cfg.multi_label:
    present = rng.choice(nc, size=rng.integers(1, 4), replace=False)
  else:
    present = rng.choice(nc, size=1)
  tint = (
      class_tints(nc, nb)[present[0]]
      if rng.uniform() < cfg.context_strength
      else rng.uniform(0, 1, nb)
  )
  hr = _terrain(rng, size, tint)
  n_obj = [int(rng.integers(1, cfg.max_objects + 1)) for _ in present]
  n_dis = int(rng.integers(0, cfg.max_distractors + 1))
  tiles = rng.choice(G * G, size=sum(n_obj) + n_dis, replace=False)
  kinds = [int(c) for c, n in zip(present, n_obj) for _ in range(n)]
  kinds += [-1] * n_dis
  for t, kind in zip(tiles, kinds):
    mask = (
        SHAPES[cfg.classes[kind]]
        if kind >= 0
        else rng.permutation(np.arange(36) < 18).reshape(6, 6)
    )
    r0 = (t // G) * tile + rng.integers(0, tile - 5)
    c0 = (t % G) * tile + rng.integers(0, tile - 5)
    color = rng.uniform(0.0, 1.0, nb)
    color = np.where(rng.uniform() < 0.5, 0.85 + 0.15 * color, 0.1 * color)
    region = hr[r0 : r0 + 6, c0 : c0 + 6]
    region[mask] = color
    if kind >= 0:
      objects[r0 : r0 + 6, c0 : c0 + 6][mask] = kind + 1
      labels[kind] = 1
  hr8 = np.clip(np.rint(hr * 255), 0, 255).astype(np.uint8)
  lr8 = sensor.degrade(
      hr8, cfg.scale, rng, psf_sigma=cfg.psf_sigma, noise_std=cfg.noise_std
  )
  names = [cfg.classes[int(c)] for c in present]
  text = " and ".join(f"{n} {name}" for name, n in zip(names, n_obj))
  return records.Scene(
      id=scene_id,
      lr=lr8,
      hr=hr8,
      lr_bands=cfg.bands,
      hr_bands=cfg.bands,
      lr_gsd=cfg.hr_gsd * cfg.scale,
      hr_gsd=cfg.hr_gsd,
      grid=G,
      labels=labels,
      split=split,
      text=f"a scene with {text}",
      masks={"objects": objects},
  )


def generate(
    cfg: ToyworldConfig, counts: dict[str, int], seed: int
) -> Iterator[records.Scene]:
  """Yields the scenes of every split; scene i of a split depends only on
  (seed, split, i), so any subset can be regenerated."""
  for s, split in enumerate(common.SPLITS):
    for i in range(counts.get(split, 0)):
      rng = np.random.default_rng([seed, s, i])
      yield make_scene(cfg, rng, f"{split}_{i:06d}", split)


def build(
    out_dir: str,
    cfg: ToyworldConfig = ToyworldConfig(),
    *,
    num_train: int = 4000,
    num_val: int = 500,
    num_test: int = 500,
    seed: int = 0,
    records_per_shard: int = 1024,
    name: str = "toyworld",
) -> shards.Manifest:
  counts = {"train": num_train, "val": num_val, "test": num_test}
  return shards.write_dataset(
      out_dir,
      name,
      generate(cfg, counts, seed),
      cfg.classes,
      records_per_shard=records_per_shard,
      expected_per_split=counts,
      builder={
          "builder": "toyworld",
          "version": GENERATOR_VERSION,
          "seed": seed,
          "counts": counts,
          "config": dataclasses.asdict(cfg),
          "degradation": sensor.degradation_record(
              cfg.scale, cfg.psf_sigma, cfg.noise_std
          ),
      },
      label_symmetries=LABEL_SYMMETRIES,
  )


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_common_flags(p)
  p.add_argument("--num_train", type=int, default=4000)
  p.add_argument("--num_val", type=int, default=500)
  p.add_argument("--num_test", type=int, default=500)
  d = ToyworldConfig()
  p.add_argument("--hr_size", type=int, default=d.hr_size)
  p.add_argument("--grid", type=int, default=d.grid)
  p.add_argument("--scale", type=int, default=d.scale)
  p.add_argument(
      "--bands", default=",".join(d.bands), help="comma-separated band names"
  )
  p.add_argument("--multi_label", action="store_true")
  p.add_argument("--noise_std", type=float, default=d.noise_std)
  a = p.parse_args(argv)
  cfg = ToyworldConfig(
      hr_size=a.hr_size,
      grid=a.grid,
      scale=a.scale,
      bands=tuple(a.bands.split(",")),
      multi_label=a.multi_label,
      noise_std=a.noise_std,
  )
  common.run_build(
      lambda: build(
          a.out,
          cfg,
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
