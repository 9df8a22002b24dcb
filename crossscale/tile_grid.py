"""Tile-grid operations on HR scenes (plain-JAX reference implementations).

An HR scene `[B, H, W, C]` is a G x G grid of tiles of t = H / G pixels,
numbered row-major: tile n covers rows (n // G) * t.. and cols (n % G) * t...
"""

from __future__ import annotations

import einops
import jax.numpy as jnp


def to_tiles(images: jnp.ndarray, grid: int) -> jnp.ndarray:
  """`[B, H, W, C]` -> `[B, G*G, t, t, C]` (all tiles, row-major)."""
  return einops.rearrange(
      images, "b (g1 t1) (g2 t2) c -> b (g1 g2) t1 t2 c", g1=grid, g2=grid
  )


def gather_tiles(
    images: jnp.ndarray, idx: jnp.ndarray, grid: int
) -> jnp.ndarray:
  """Selected tiles `[B, k, t, t, C]` of `images: [B, H, W, C]` at tile
  indices `idx: [B, k]`. Reference path: XLA fuses the gather so only the
  selected tiles are materialised; its backward scatters into them."""
  return jnp.take_along_axis(
      to_tiles(images, grid), idx[:, :, None, None, None], axis=1
  )


def tile_statistic(lr: jnp.ndarray, grid: int) -> jnp.ndarray:
  """LR detail per tile `[B, G*G]`: local variance plus gradient energy of
  the LR pixels inside each tile, summed over bands (the heuristic sampler)."""
  gy = jnp.diff(lr, axis=1, append=lr[:, -1:])
  gx = jnp.diff(lr, axis=2, append=lr[:, :, -1:])
  t = to_tiles(lr, grid)  # [B, N, s, s, C]
  var = t.var(axis=(2, 3)).sum(-1)
  energy = (to_tiles(gx**2 + gy**2, grid)).mean(axis=(2, 3)).sum(-1)
  return var + energy


def mask_fraction(mask: jnp.ndarray, grid: int) -> jnp.ndarray:
  """Share of nonzero pixels per tile `[B, G*G]` of `mask: [B, H, W]` (e.g.
  an object map: the oracle policy's score)."""
  m = (mask > 0).astype(jnp.float32)[..., None]
  return to_tiles(m, grid).mean(axis=(2, 3, 4))


def detail_residual(tile_pixels: jnp.ndarray, scale: int) -> jnp.ndarray:
  """The part of each tile an LR pixel cannot hold: `[B, k, t, t, C]` minus
  its own `scale x scale` block means, same shape (t divisible by scale)."""
  B, k, t, _, C = tile_pixels.shape
  s = max(1, min(scale, t))
  if t % s:
    raise ValueError(f"tile size {t} is not a multiple of the LR scale {s}")
  blocks = einops.rearrange(
      tile_pixels, "b k (h s1) (w s2) c -> b k h w s1 s2 c", s1=s, s2=s
  )
  res = blocks - blocks.mean((4, 5), keepdims=True)
  return einops.rearrange(res, "b k h w s1 s2 c -> b k (h s1) (w s2) c")


def hr_detail(tile_pixels: jnp.ndarray, scale: int) -> jnp.ndarray:
  """Detail an LR pixel cannot hold: `[B, k, t, t, C]` -> `[B, k]`, the mean
  squared difference between each tile and its own `scale x scale` block
  means (what survives above the LR sampling frequency)."""
  B, k, t, _, C = tile_pixels.shape
  s = max(1, min(scale, t))
  x = tile_pixels[:, :, : t - t % s, : t - t % s]
  blocks = einops.rearrange(
      x, "b k (h s1) (w s2) c -> b k h w (s1 s2) c", s1=s, s2=s
  )
  return ((blocks - blocks.mean(4, keepdims=True)) ** 2).mean((2, 3, 4, 5))
