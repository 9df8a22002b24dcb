"""Linen layers whose parameters carry logical axis names.

Every parameter of the encoders, sampler, predictor and heads is created
through these factories, so `crossscale.partitioning.param_shardings` can map it
to the mesh by the rules in `config.sharding.rules`. The initialisers are
linen's defaults: only the annotation is added, values are unchanged.

Logical axes:
  embed    model width (the input side of a projection)    -> fsdp by default
  mlp      hidden / output features of a projection        -> model
  heads    attention heads; kv: per-head features           -> model / -
  conv_in, conv_out   convolution channels                  -> fsdp / model
  norm     LayerNorm / GroupNorm scales and biases          -> replicated
  tokens   positions (patches, tiles), classes, misc.       -> replicated
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from crossscale import bands as bands_lib

_lecun = nn.initializers.lecun_normal()
_zeros = nn.initializers.zeros


def part(init, axes: Sequence[str | None]):
  """`init` with logical axis names, one per parameter dimension."""
  return nn.with_logical_partitioning(init, tuple(axes))


def Dense(
    features: int, axes=("embed", "mlp"), kernel_init=_lecun, **kwargs
) -> nn.Dense:
  """Kernel `[in, out]` named `axes`, bias `[out]` named `axes[1]`."""
  return nn.Dense(
      features,
      kernel_init=part(kernel_init, axes),
      bias_init=part(_zeros, axes[1:]),
      **kwargs,
  )


def Conv(
    features: int, kernel_size, axes=("conv_in", "conv_out"), **kwargs
) -> nn.Conv:
  """Kernel `[kh, kw, in, out]`; spatial dims are never sharded."""
  spatial = (None,) * len(kernel_size)
  return nn.Conv(
      features,
      kernel_size,
      kernel_init=part(_lecun, spatial + tuple(axes)),
      bias_init=part(_zeros, axes[1:]),
      **kwargs,
  )


def Embed(
    num_embeddings: int, features: int, axes=("tokens", "embed"), **kwargs
) -> nn.Embed:
  """Table `[num_embeddings, features]` (linen's default init)."""
  return nn.Embed(
      num_embeddings,
      features,
      embedding_init=part(
          nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0),
          axes,
      ),
      **kwargs,
  )


def LayerNorm(**kwargs) -> nn.LayerNorm:
  return nn.LayerNorm(
      scale_init=part(nn.initializers.ones, ("norm",)),
      bias_init=part(_zeros, ("norm",)),
      **kwargs,
  )


def GroupNorm(**kwargs) -> nn.GroupNorm:
  return nn.GroupNorm(
      scale_init=part(nn.initializers.ones, ("norm",)),
      bias_init=part(_zeros, ("norm",)),
      **kwargs,
  )


def Attention(num_heads: int, **kwargs) -> nn.MultiHeadDotProductAttention:
  """q/k/v kernels `[embed, heads, kv]`, output kernel `[heads, kv, embed]`."""
  return nn.MultiHeadDotProductAttention(
      num_heads=num_heads,
      kernel_init=part(_lecun, ("embed", "heads", "kv")),
      bias_init=part(_zeros, ("heads", "kv")),
      out_kernel_init=part(_lecun, ("heads", "kv", "embed")),
      out_bias_init=part(_zeros, ("embed",)),
      **kwargs,
  )


# --- Ground-unit positions and band wavelengths (issue 22) ------------------

MAX_PERIOD = 10000.0  # of the sin-cos position embeddings, in position units


def sincos_1d(pos, dim: int, max_period: float = MAX_PERIOD):
  """`pos: [...]` -> `[..., dim]`: sin and cos of `pos * w_i` for dim // 2
  frequencies w_i from 1 to 1 / max_period (geometric); zero-padded to
  `dim` when odd."""
  n = dim // 2
  w = max_period ** (-jnp.arange(n, dtype=jnp.float32) / max(n - 1, 1))
  a = jnp.asarray(pos, jnp.float32)[..., None] * w  # [..., n]
  out = jnp.concatenate([jnp.sin(a), jnp.cos(a)], axis=-1)
  return jnp.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, dim - 2 * n)])


def sincos_2d(yx, dim: int, max_period: float = MAX_PERIOD):
  """`yx: [..., 2]` (row, column positions) -> `[..., dim]`: the 2-D sin-cos
  embedding, half the features for each axis (Scale-MAE / MAE form)."""
  half = dim // 2
  return jnp.concatenate(
      [
          sincos_1d(yx[..., 0], half, max_period),
          sincos_1d(yx[..., 1], dim - half, max_period),
      ],
      axis=-1,
  )


def ground_grid(rows: int, cols: int, step, offset=0.5):
  """`[B, rows*cols, 2]` ground positions (row-major) of the cells of a
  `rows x cols` grid whose cells are `step: [B]` ground units apart: cell
  (i, j) at ((i + offset) * step, (j + offset) * step) (offset 0.5: the
  cell's centre)."""
  i, j = jnp.meshgrid(
      jnp.arange(rows, dtype=jnp.float32),
      jnp.arange(cols, dtype=jnp.float32),
      indexing="ij",
  )
  ij = jnp.stack([i.reshape(-1), j.reshape(-1)], axis=-1) + offset  # [N, 2]
  step = jnp.asarray(step, jnp.float32).reshape(-1, 1, 1)  # [B, 1, 1]
  return ij[None] * step


def gsd_positions(rows: int, cols: int, cell_gsd, dim: int, reference_gsd):
  """`[B, rows*cols, dim]`: sin-cos embeddings of the cell centres of a grid
  whose cells are `cell_gsd: [B]` metres wide, in units of `reference_gsd`
  metres: the same ground position gets the same embedding at any GSD."""
  step = jnp.asarray(cell_gsd, jnp.float32) / float(reference_gsd)
  return sincos_2d(ground_grid(rows, cols, step), dim)


def position_gain(module: nn.Module, init: float, name: str = "pos_gain"):
  """The factor on a module's sin-cos position embeddings: 1 when `init`
  <= 0 (fixed, unit amplitude per feature), else a learned scalar starting
  at `init` (a learned table starts at std 0.02; unit-amplitude positions
  can swamp small token features). Call inside a compact method or setup."""
  if init <= 0:
    return 1.0
  return module.param(name, part(nn.initializers.constant(init), ()), ())


class WavelengthConv(nn.Module):
  """A convolution over any set of spectral bands (DOFA-style): each band's
  kernel `[kh, kw, features]` is generated by a small MLP from a sin-cos
  embedding of its centre wavelength and width (nm), and the band kernels
  are summed over bands (scaled by 1/sqrt(kh*kw*C), LeCun's fan-in), so
  one set of parameters reads RGB, RGB+NIR, Sentinel-2's 12 bands, ...

  `x: [B, H, W, C]`, `wavelengths: [C, 2]` (`crossscale.bands.wavelengths`)
  -> `[B, H', W', features]`.
  """

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: str = "SAME"
  embed_dim: int = 32
  hidden: int = 64

  @nn.compact
  def __call__(self, x, wavelengths):
    C = x.shape[-1]
    wl = jnp.asarray(wavelengths, jnp.float32)  # [C, 2]
    if wl.shape != (C, 2):
      raise ValueError(
          f"{C} input bands but wavelengths of shape {wl.shape}: give one "
          "(centre, width) per band (the model's lr_bands / hr_bands must "
          "name the input's bands)"
      )
    e = jnp.concatenate(
        [
            sincos_1d(wl[:, 0], self.embed_dim, 1e5),
            sincos_1d(wl[:, 1], self.embed_dim, 1e5),
        ],
        axis=-1,
    )  # [C, 2E]
    kh, kw = self.kernel_size
    h = nn.gelu(Dense(self.hidden, axes=(None, None), name="band_mlp0")(e))
    k = Dense(kh * kw * self.features, axes=(None, None), name="band_mlp1")(h)
    k = k.reshape(C, kh, kw, self.features).transpose(1, 2, 0, 3)
    k = k * (kh * kw * C) ** -0.5  # [kh, kw, C, F]
    bias = self.param("bias", part(_zeros, ("conv_out",)), (self.features,))
    y = jax.lax.conv_general_dilated(
        x,
        k.astype(x.dtype),
        tuple(self.strides),
        self.padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y + bias


BAND_EMBEDDINGS = ("learned", "wavelength")


def band_conv(
    x,
    features: int,
    kernel_size,
    *,
    band_embedding: str = "learned",
    bands: Sequence[str] = (),
    name: str,
    axes=("conv_in", "conv_out"),
    **kwargs,
):
  """The first layer of an encoder, reading the input's bands `x: [B, H,
  W, C]`: a `Conv` with a learned kernel per input channel
  (band_embedding="learned", today's; fixed to C bands in order), or a
  `WavelengthConv` generating the kernels from `bands`' wavelengths
  ("wavelength": any bands). Call inside a compact method."""
  if band_embedding == "learned":
    return Conv(features, kernel_size, axes=axes, name=name, **kwargs)(x)
  if band_embedding != "wavelength":
    raise ValueError(
        f"unknown band_embedding {band_embedding!r} "
        f"(config.model.band_embedding); known: {BAND_EMBEDDINGS}"
    )
  return WavelengthConv(features, tuple(kernel_size), name=name, **kwargs)(
      x, bands_lib.wavelengths(bands)
  )
