"""A small convolutional tile encoder: `[B, t, t, C]` -> `[B, width]`.

3x3 conv + GELU blocks, then global max pooling: a translation-invariant
detector of fine texture that learns in a few hundred steps on small tiles,
where a ViT's patch embedding needs many more. The first conv has stride
`stride` (0: auto, t // 10, so a 40-px tile is read at 10x10 and an 8-px tile
at full resolution).
"""

from __future__ import annotations

import flax.linen as nn

from crossscale.models import layers


class ConvEncoder(nn.Module):
  width: int = 64
  depth: int = 2
  pool: str = "max"
  stride: int = 0

  @nn.compact
  def __call__(self, images, train: bool = False):
    del train
    x = images
    stride = self.stride or max(1, images.shape[1] // 10)
    for i in range(self.depth):
      s = stride if i == 0 else 1
      x = nn.gelu(
          layers.Conv(
              self.width,
              (max(3, s), max(3, s)),
              strides=(s, s),
              name=f"conv{i}",
          )(x)
      )
    x = x.max(axis=(1, 2)) if self.pool == "max" else x.mean(axis=(1, 2))
    return layers.LayerNorm(name="norm")(
        layers.Dense(self.width, axes=("conv_out", "embed"), name="proj")(x)
    )
