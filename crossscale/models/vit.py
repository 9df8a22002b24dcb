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

  @nn.compact
  def __call__(self, images, train: bool = False):
    _, h, w, _ = images.shape
    p = self.patch_size or auto_patch_size(min(h, w), self.target_side)
    if h % p or w % p:
      raise ValueError(
          f"image {h}x{w} is not divisible by patch_size {p}; "
          "set model.patch_size to a divisor (or 0 for auto)."
      )
    x = images
    if self.stem == "conv":
      for i in range(2):
        x = nn.gelu(layers.Conv(self.width // 2, (3, 3), name=f"stem{i}")(x))
    elif self.stem != "patch":
      raise ValueError(
          f"unknown stem {self.stem!r} (config.model.*.stem); "
          "known: patch, conv"
      )
    x = layers.Conv(
        self.width,
        (p, p),
        strides=(p, p),
        padding="VALID",
        axes=("conv_in", "embed"),
        name="embed",
    )(x)
    x = x.reshape(x.shape[0], -1, self.width)  # [B, N, D]
    pos = self.param(
        "pos_embedding",
        layers.part(nn.initializers.normal(0.02), (None, "tokens", "embed")),
        (1, x.shape[1], self.width),
    )
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
