"""A small convolutional tile encoder: `[B, t, t, C]` -> `[B, width]`.

3x3 conv + GELU blocks, then global max pooling: a translation-invariant
detector of fine texture that learns in a few hundred steps on small tiles,
where a ViT's patch embedding needs many more. The first conv has stride
`stride` (0: auto, t // 10, so a 40-px tile is read at 10x10 and an 8-px tile
at full resolution). band_embedding="wavelength" makes the first conv read
any bands, named by `bands` (`layers.band_conv`); positions do not enter
(global pooling), so GSD-aware positions leave it unchanged.
"""

from __future__ import annotations

import flax.linen as nn

from crossscale.models import layers


class ConvEncoder(nn.Module):
  width: int = 64
  depth: int = 2
  pool: str = "max"
  stride: int = 0
  band_embedding: str = "learned"
  bands: tuple[str, ...] = ()

  @nn.compact
  def __call__(self, images, train: bool = False, gsd=None):
    del train, gsd  # no positions: translation invariant
    x = images
    stride = self.stride or max(1, images.shape[1] // 10)
    for i in range(self.depth):
      s = stride if i == 0 else 1
      kernel = (max(3, s), max(3, s))
      if i == 0:
        x = layers.band_conv(
            x,
            self.width,
            kernel,
            strides=(s, s),
            name="conv0",
            band_embedding=self.band_embedding,
            bands=self.bands,
        )
      else:
        x = layers.Conv(self.width, kernel, strides=(s, s), name=f"conv{i}")(x)
      x = nn.gelu(x)
    x = x.max(axis=(1, 2)) if self.pool == "max" else x.mean(axis=(1, 2))
    return layers.LayerNorm(name="norm")(
        layers.Dense(self.width, axes=("conv_out", "embed"), name="proj")(x)
    )
