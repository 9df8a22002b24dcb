"""The cross-scale model's tile sampler: scores the G x G tiles of a
scene from its LR view alone (crossscale/models/cross_scale.py), and its
regression targets: stop-gradient scores per tile, standardised over the
batch."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from crossscale import tile_grid
from crossscale.models import layers, vit


class Sampler(nn.Module):
  """Scores the G x G tiles from the LR view alone: `[B, h, w, C]` -> `[B, N]`.

  Fine-grained: a conv stack scores at LR-pixel (sub-tile) resolution and a
  learned attention pooling summarises the pixels inside each tile;
  contextual: tile tokens then attend to each other before the final score.
  prior > 0 adds a learned multiple (initialised at `prior`) of the LR
  detail statistic (`lr_detail_prior`, the heuristic policy's score), so the
  sampler starts from the heuristic's ranking and learns what to change.
  gsd_positions=True: tile positions and the LR pixels' positions inside
  their tile are sin-cos embeddings of ground positions (`layers.
  gsd_positions`, from `gsd: [B]` metres per LR pixel) instead of a learned
  table (none); band_embedding="wavelength": the first conv reads any
  bands, named by `bands`.
  """

  grid: int
  width: int = 64
  depth: int = 1
  num_heads: int = 4
  prior: float = 0.0
  gsd_positions: bool = False
  reference_gsd: float = 1.0
  position_gain: float = 0.0  # > 0: learned gains (layers.position_gain)
  band_embedding: str = "learned"
  bands: tuple[str, ...] = ()

  @nn.compact
  def __call__(self, lr, train: bool = False, gsd=None):
    if self.gsd_positions and gsd is None:
      raise ValueError("Sampler(gsd_positions=True) needs gsd=[B] m/pixel")
    x = lr
    for i in range(2):
      conv = (
          layers.band_conv(
              x,
              self.width,
              (3, 3),
              name="conv0",
              band_embedding=self.band_embedding,
              bands=self.bands,
          )
          if i == 0
          else layers.Conv(self.width, (3, 3), name=f"conv{i}")(x)
      )
      x = nn.gelu(layers.GroupNorm(num_groups=8)(conv))
    sub = tile_grid.to_tiles(x, self.grid)  # [B, N, s, s, F]
    B, N, side = sub.shape[:3]
    sub = sub.reshape(B, N, -1, self.width)  # [B, N, s*s, F]
    if self.gsd_positions:  # LR pixels' ground offsets inside their tile
      gain = layers.position_gain(self, self.position_gain, "pixel_pos_gain")
      sub = (
          sub
          + gain
          * layers.gsd_positions(
              side, side, gsd, self.width, self.reference_gsd
          )[:, None]
      )
    attn = nn.softmax(
        layers.Dense(1, axes=("embed", None), name="pool_logits")(sub), axis=2
    )
    tok = (
        attn
        * layers.Dense(
            self.width, axes=("embed", "embed_out"), name="pool_values"
        )(sub)
    ).sum(2)
    if self.gsd_positions:  # tile centres on the ground
      gain = layers.position_gain(self, self.position_gain, "tile_pos_gain")
      tok = tok + gain * layers.gsd_positions(
          self.grid,
          self.grid,
          jnp.asarray(gsd) * side,
          self.width,
          self.reference_gsd,
      )
    else:
      tok = tok + self.param(
          "tile_pos",
          layers.part(nn.initializers.normal(0.02), (None, "tokens", "embed")),
          (1, N, self.width),
      )
    for i in range(self.depth):
      tok = vit.EncoderBlock(
          self.num_heads, 2 * self.width, name=f"context{i}"
      )(tok, train)
    score = layers.Dense(1, axes=("embed", None), name="score")(
        layers.LayerNorm()(tok)
    )[
        ..., 0
    ]  # [B, N]
    if self.prior:
      w = self.param(
          "prior_weight",
          layers.part(nn.initializers.constant(self.prior), ()),
          (),
      )
      score = score + w * lr_detail_prior(lr, self.grid)
    return score


def lr_detail_prior(lr: jnp.ndarray, grid: int) -> jnp.ndarray:
  """`[B, N]`: log LR detail per tile (`tile_grid.tile_statistic`), standardised
  over each scene's tiles (only the ranking inside a scene matters)."""
  x = jnp.log(tile_grid.tile_statistic(lr, grid) + 1e-6)
  return (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-3)


def batch_standardise(x: jnp.ndarray) -> jnp.ndarray:
  """Stop-gradient `(x - mean) / std` over the whole batch `[B, T]`, not per
  scene: most tiles are background, and per-scene statistics would turn
  their noise into targets."""
  return jax.lax.stop_gradient((x - x.mean()) / (x.std() + 1e-3))


def sampler_regression_loss(logits, tidx, z) -> jnp.ndarray:
  """Mean squared error of the sampler's logits `[B, N]` at tiles `tidx`
  `[B, T]` to their targets `z` `[B, T]`."""
  s = jnp.take_along_axis(logits, tidx, axis=1)
  return ((s - z) ** 2).mean()


def detail_target(tile_px, scale: int) -> jnp.ndarray:
  """`[B, T]`: log HR detail energy of tiles `[B, T, t, t, C]` (what an LR
  pixel at `scale` cannot hold), standardised over the batch."""
  return batch_standardise(jnp.log(tile_grid.hr_detail(tile_px, scale) + 1e-4))


def sampler_detail_loss(logits, tidx, tile_px, scale: int) -> jnp.ndarray:
  """The sampler's label-free target: its logits `[B, N]` at tiles `tidx`
  `[B, T]` regress onto the standardised log HR detail energy of those
  tiles' pixels `[B, T, t, t, C]` (`detail_target`)."""
  return sampler_regression_loss(logits, tidx, detail_target(tile_px, scale))


def evidence_target(per_token, labels, idx, r: float) -> jnp.ndarray:
  """`[B, k]`: tiles `idx` `[B, k]`'s share of their scene's positive-class
  evidence: the sum over classes c with labels `[B, K]` = 1 of the softmax
  over the N tiles of r x the class-c logits `per_token` `[B, N, K]` (the MIL
  head's LSE pooling weight: high on the few tiles that carry a small
  object's class, spread thin over a land-cover region). Log, standardised
  over those tiles of the batch, stop-gradient."""
  resp = jax.nn.softmax(r * per_token, axis=1)  # [B, N, K]
  e = jnp.einsum("bnk,bk->bn", resp, labels.astype(resp.dtype))
  e = jnp.take_along_axis(e, idx, axis=1)  # [B, k]
  return batch_standardise(jnp.log(e + 1e-4))
