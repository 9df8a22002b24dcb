"""A small convolutional tile encoder: `[B, t, t, C]` -> `[B, width]`.

3x3 conv + GELU blocks at full resolution, then global max pooling: a
translation-invariant detector of fine texture that learns in a few hundred
steps on small tiles, where a ViT's patch embedding needs many more.
"""

from __future__ import annotations

import flax.linen as nn


class ConvEncoder(nn.Module):
  width: int = 64
  depth: int = 2
  pool: str = "max"

  @nn.compact
  def __call__(self, images, train: bool = False):
    del train
    x = images
    for i in range(self.depth):
      x = nn.gelu(nn.Conv(self.width, (3, 3), name=f"conv{i}")(x))
    x = x.max(axis=(1, 2)) if self.pool == "max" else x.mean(axis=(1, 2))
    return nn.LayerNorm(name="norm")(nn.Dense(self.width, name="proj")(x))
