"""Vision Transformer pieces (Flax linen, pure): encoder and classifier.

Shapes: images `[B, h, w, C]` -> tokens `[B, N, D]` with N = (h/p) * (w/p).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from crossscale.models import layers


def auto_patch_size(size: int, target_side: int = 8) -> int:
  """The divisor p of `size` whose token grid size/p is closest to
  `target_side` (ties -> more tokens): 16 -> 2, 50 -> 5, 64 -> 8."""
  divisors = [p for p in range(1, size + 1) if size % p == 0]
  return min(divisors, key=lambda p: (abs(size // p - target_side), p))


class MlpBlock(nn.Module):
  mlp_dim: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool):
    d = x.shape[-1]
    x = layers.Dense(self.mlp_dim)(x)
    x = nn.gelu(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return layers.Dense(d, axes=("mlp", "embed"))(x)


class EncoderBlock(nn.Module):
  """Pre-norm transformer block: x + MHSA(LN(x)); x + MLP(LN(x))."""

  num_heads: int
  mlp_dim: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool):
    y = layers.LayerNorm()(x)
    y = layers.Attention(
        self.num_heads, dropout_rate=self.dropout, deterministic=not train
    )(y, y)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
    y = MlpBlock(self.mlp_dim, self.dropout)(layers.LayerNorm()(x), train)
    return x + nn.Dropout(self.dropout, deterministic=not train)(y)


class Encoder(nn.Module):
  """Patchify + learned position embedding + transformer blocks.

  `images: [B, h, w, C]` -> `tokens: [B, N, width]` (after a final LayerNorm).
  `patch_size=0` picks one with `auto_patch_size(size, target_side)`.
  stem="conv" runs two 3x3 convolutions at full resolution before the
  patchify (an early-convolution hybrid ViT): far better than a linear patch
  embedding at fine textures inside small tiles. pool="mean"|"max" is used
  by `pooled`.

  gsd_positions=True replaces the learned position table by the sin-cos
  embedding of each token's ground position (its patch centre, in units of
  `reference_gsd` metres) from the images' GSD `gsd: [B]` (metres per
  pixel, a call argument): the same ground position gets the same embedding
  at any GSD, and any token grid size is accepted. band_embedding=
  "wavelength" makes the first layer read any bands, named by `bands`
  (`layers.band_conv`). Both off: today's encoder, parameters unchanged.
  """

  width: int = 128
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 256
  patch_size: int = 0
  target_side: int = 8
  stem: str = "patch"
  dropout: float = 0.0
  remat: bool = False
  gsd_positions: bool = False
  reference_gsd: float = 1.0
  position_gain: float = 0.0  # > 0: a learned gain (layers.position_gain)
  band_embedding: str = "learned"
  bands: tuple[str, ...] = ()

  @nn.compact
  def __call__(self, images, train: bool = False, gsd=None):
    _, h, w, _ = images.shape
    p = self.patch_size or auto_patch_size(min(h, w), self.target_side)
    if h % p or w % p:
      raise ValueError(
          f"image {h}x{w} is not divisible by patch_size {p}; "
          "set model.patch_size to a divisor (or 0 for auto)."
      )
    x = images
    bands = dict(band_embedding=self.band_embedding, bands=self.bands)
    if self.stem == "conv":
      for i in range(2):
        conv = (
            layers.band_conv(x, self.width // 2, (3, 3), name="stem0", **bands)
            if i == 0
            else layers.Conv(self.width // 2, (3, 3), name=f"stem{i}")(x)
        )
        x = nn.gelu(conv)
    elif self.stem != "patch":
      raise ValueError(
          f"unknown stem {self.stem!r} (config.model.*.stem); "
          "known: patch, conv"
      )
    embed = dict(strides=(p, p), padding="VALID", name="embed")
    if self.stem == "conv":
      x = layers.Conv(self.width, (p, p), axes=("conv_in", "embed"), **embed)(x)
    else:
      x = layers.band_conv(
          x, self.width, (p, p), axes=("conv_in", "embed"), **embed, **bands
      )
    x = x.reshape(x.shape[0], -1, self.width)  # [B, N, D]
    pos = self.positions(h // p, w // p, p, gsd)  # [1 or B, N, D]
    x = nn.Dropout(self.dropout, deterministic=not train)(x + pos)
    block = (
        nn.remat(EncoderBlock, static_argnums=(2,))
        if self.remat
        else (EncoderBlock)
    )
    for i in range(self.depth):
      x = block(self.num_heads, self.mlp_dim, self.dropout, name=f"block{i}")(
          x, train
      )
    return layers.LayerNorm(name="norm")(x)

  def positions(self, rows: int, cols: int, p: int, gsd):
    """Position embeddings of the `rows x cols` tokens of `p`-px patches:
    the learned table `[1, N, D]`, or with gsd_positions their ground
    embedding `[B, N, D]` (`layers.gsd_positions`; `gsd: [B]` metres per
    pixel)."""
    if not self.gsd_positions:
      return self.param(
          "pos_embedding",
          layers.part(nn.initializers.normal(0.02), (None, "tokens", "embed")),
          (1, rows * cols, self.width),
      )
    if gsd is None:
      raise ValueError(
          "gsd_positions=True needs the images' GSD: call the encoder with "
          "gsd=[B] metres per pixel"
      )
    gain = layers.position_gain(self, self.position_gain)
    return gain * layers.gsd_positions(
        rows, cols, jnp.asarray(gsd) * p, self.width, self.reference_gsd
    )


class LRClassifier(nn.Module):
  """LR-only ViT classifier: the baseline that sees no HR pixel.

  batch["lr"]: `[B, h, w, C_lr]` -> {"logits": `[B, num_classes]`}.
  """

  num_classes: int
  encoder: dict[str, Any]

  @nn.compact
  def __call__(self, batch, train: bool = False):
    tokens = Encoder(**self.encoder, name="lr_encoder")(batch["lr"], train)
    pooled = jnp.mean(tokens, axis=1)  # [B, D]
    logits = layers.Dense(
        self.num_classes,
        axes=("embed", "tokens"),
        name="head",
        kernel_init=nn.initializers.zeros,
    )(pooled)
    return {"logits": logits, "aux_losses": {}}
