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
