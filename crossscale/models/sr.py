"""Super-resolution models (pure Flax linen): LR `[B, h, w, C_in]` -> SR
`[B, H, W, C_out]`, any band counts (e.g. Sentinel-2 12 -> NAIP 4).

Every model has two entry points:
  * `model.apply({"params": p}, batch, train=...)` with batch {"lr", "hr"}
    returns {"sr": [B, H, W, C_out], "aux_losses": {"l1": ()}} with
    (H, W) = batch["hr"]'s grid, so the shared trainer (which adds up the aux
    losses of a model without logits) trains it on pixel L1;
  * `model.apply({"params": p}, lr, out_hw, method="predict")` -> `[B, H, W,
    C_out]` for inference without HR (`predict_fn` jits it).

Grid models (`Bicubic`, `EDSR`, `SwinIRLike`) upsample by an integer `scale`;
when the caller's `out_hw` differs from `scale * (h, w)` (e.g. a x16 model on
a 16.7x task) their output is resized to `out_hw` with antialiased bicubic,
as GeoSR-Bench does before scoring. `ImplicitSR` queries the HR grid directly
at any real scale.

Family layout: pixel-loss models live here; adversarial (RRDB generator +
relativistic discriminator) and diffusion models will get their own modules
(`sr_gan.py`, `sr_diffusion.py`) that reuse `Upsampler`, `sr_outputs` and
the `predict` contract, so evaluation and tiled inference stay shared.
"""

from __future__ import annotations

import functools
from typing import Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from crossscale.models import layers, vit

# ----------------------------------------------------------------- helpers


def pixel_shuffle(x: jnp.ndarray, r: int) -> jnp.ndarray:
  """`[B, h, w, C*r*r]` -> `[B, h*r, w*r, C]` (PyTorch's channel order)."""
  return einops.rearrange(x, "b h w (c r1 r2) -> b (h r1) (w r2) c", r1=r, r2=r)


def _prime_factors(n: int) -> list[int]:
  """12 -> [2, 2, 3]; the upsampler runs one conv + shuffle per factor."""
  out, p = [], 2
  while n > 1:
    while n % p == 0:
      out.append(p)
      n //= p
    p += 1
  return out


def integer_scale(scale: float, model: str) -> int:
  """`scale` as an int, or a ValueError saying what to use instead."""
  if scale < 1 or int(scale) != scale:
    raise ValueError(
        f"{model} upsamples by an integer scale >= 1, got {scale} "
        "(config.model.scale). Use ImplicitSR for real-valued scales, or an "
        "integer scale plus out_hw to resize to the HR grid."
    )
  return int(scale)


def resize(
    x: jnp.ndarray, out_hw: Sequence[int], method: str = "cubic"
) -> jnp.ndarray:
  """`[B, h, w, C]` -> `[B, *out_hw, C]`; Keys cubic (a=-0.5), half-pixel
  centres, antialiased when shrinking (jax.image.resize)."""
  b, _, _, c = x.shape
  return jax.image.resize(x, (b, int(out_hw[0]), int(out_hw[1]), c), method)


def to_grid(sr: jnp.ndarray, out_hw: Sequence[int] | None) -> jnp.ndarray:
  """Resizes a grid model's `[B, s*h, s*w, C]` to `out_hw` when it differs."""
  if out_hw is None or tuple(sr.shape[1:3]) == tuple(out_hw):
    return sr
  return resize(sr, out_hw)


def sr_outputs(sr: jnp.ndarray, batch: dict) -> dict:
  """The model-contract dict: {"sr": [B, H, W, C], "aux_losses": {"l1": ()}}
  (no loss when the batch has no "hr")."""
  hr = batch.get("hr")
  if hr is None:
    return {"sr": sr, "aux_losses": {}}
  if sr.shape != hr.shape:
    raise ValueError(
        f"SR output {sr.shape} does not match batch['hr'] "
        f"{hr.shape}: check the model's out_bands against the "
        "HR band count (config.model.out_bands)."
    )
  return {"sr": sr, "aux_losses": {"l1": jnp.mean(jnp.abs(sr - hr))}}


class SRModel(nn.Module):
  """Base: `__call__(batch)` runs `predict(lr, hr grid)` and adds the L1."""

  def __call__(self, batch: dict, train: bool = False) -> dict:
    hr = batch.get("hr")
    out_hw = None if hr is None else hr.shape[1:3]
    return sr_outputs(self.predict(batch["lr"], out_hw, train), batch)

  def predict(self, lr, out_hw=None, train: bool = False):
    raise NotImplementedError


def predict_fn(model: nn.Module, params):
  """A jitted `fn(lr [B, h, w, C], out_hw) -> [B, H, W, C_out]` (one compile
  per input shape and out_hw), the form `crossscale.sliding_window` expects."""

  @functools.partial(jax.jit, static_argnums=2)
  def run(p, lr, out_hw):
    return model.apply({"params": p}, lr, out_hw, method="predict")

  return lambda lr, out_hw: run(
      params, jnp.asarray(lr, jnp.float32), tuple(int(n) for n in out_hw)
  )


# ----------------------------------------------------------------- bicubic


def map_bands(
    x: jnp.ndarray, band_map: Sequence[Sequence[int]] | None
) -> jnp.ndarray:
  """`[..., C_in]` -> `[..., len(band_map)]`: output band j is the mean of
  input bands `band_map[j]` (a fixed, parameter-free 1x1 projection).

  E.g. Sentinel-2 (B1..B8, B8A, B9, B11, B12 as 0..11) -> NAIP (R, G, B,
  NIR): ((3,), (2,), (1,), (7,)). None keeps the bands as they are.
  """
  if band_map is None:
    return x
  c = x.shape[-1]
  w = np.zeros((c, len(band_map)), np.float32)  # [C_in, C_out]
  for j, srcs in enumerate(band_map):
    srcs = tuple(srcs)
    if not srcs or min(srcs) < 0 or max(srcs) >= c:
      raise ValueError(
          f"band_map[{j}] = {srcs} must name input bands in "
          f"[0, {c}) (config.model.band_map)."
      )
    w[list(srcs), j] = 1.0 / len(srcs)
  return x @ w


class Bicubic(SRModel):
  """Parameter-free baseline: band mapping, then Keys bicubic to the HR grid.

  Attributes:
    scale: upsampling factor used when no `out_hw` is given (may be real).
    band_map: see `map_bands`; required when C_in != C_out of the task.
  """

  scale: float = 4.0
  band_map: tuple[tuple[int, ...], ...] | None = None

  def predict(self, lr, out_hw=None, train: bool = False):
    del train
    x = map_bands(lr, self.band_map)
    if out_hw is None:
      out_hw = (
          round(lr.shape[1] * self.scale),
          round(lr.shape[2] * self.scale),
      )
    return resize(x, out_hw)


# -------------------------------------------------------------------- EDSR


class ResBlock(nn.Module):
  """EDSR block, no BatchNorm: x + res_scale * conv(relu(conv(x)))."""

  features: int
  res_scale: float = 1.0

  @nn.compact
  def __call__(self, x):
    y = nn.relu(layers.Conv(self.features, (3, 3), name="conv0")(x))
    return x + self.res_scale * layers.Conv(
        self.features, (3, 3), name="conv1"
    )(y)


class EDSRBody(nn.Module):
  """Feature extractor at LR resolution: `[B, h, w, C]` -> `[B, h, w, F]`."""

  features: int = 64
  num_blocks: int = 16
  res_scale: float = 0.1

  @nn.compact
  def __call__(self, lr):
    x = layers.Conv(self.features, (3, 3), name="head")(lr)
    y = x
    for i in range(self.num_blocks):
      y = ResBlock(self.features, self.res_scale, name=f"block{i}")(y)
    return x + layers.Conv(self.features, (3, 3), name="body_conv")(y)


class Upsampler(nn.Module):
  """Conv + pixel shuffle per prime factor of `scale` (x4 = x2, x2):
  `[B, h, w, F]` -> `[B, h*scale, w*scale, F]`."""

  features: int
  scale: int

  @nn.compact
  def __call__(self, x):
    for i, r in enumerate(_prime_factors(self.scale)):
      x = pixel_shuffle(
          layers.Conv(self.features * r * r, (3, 3), name=f"conv{i}")(x), r
      )
    return x


class EDSR(SRModel):
  """EDSR (Lim et al. 2017): residual CNN without BN, residual scaling,
  pixel-shuffle upsampler. Defaults: EDSR-baseline width/depth with the
  large model's residual scaling 0.1 (stable at any band count).

  Attributes:
    out_bands: C_out.
    scale: integer upsampling factor.
  """

  out_bands: int
  scale: int = 4
  features: int = 64
  num_blocks: int = 16
  res_scale: float = 0.1

  @nn.compact
  def predict(self, lr, out_hw=None, train: bool = False):
    del train
    s = integer_scale(self.scale, "EDSR")
    x = EDSRBody(self.features, self.num_blocks, self.res_scale, name="body")(
        lr
    )  # [B, h, w, F]
    x = Upsampler(self.features, s, name="upsampler")(x)  # [B, sh, sw, F]
    return to_grid(layers.Conv(self.out_bands, (3, 3), name="tail")(x), out_hw)


# ------------------------------------------------------------------ SwinIR


def window_partition(x: jnp.ndarray, ws: int) -> jnp.ndarray:
  """`[B, H, W, C]` -> `[B * nW, ws*ws, C]` (windows in row-major order)."""
  return einops.rearrange(
      x, "b (nh p) (nw q) c -> (b nh nw) (p q) c", p=ws, q=ws
  )


def window_merge(x: jnp.ndarray, ws: int, h: int, w: int) -> jnp.ndarray:
  """Inverse of `window_partition`: `[B * nW, ws*ws, C]` -> `[B, h, w, C]`."""
  return einops.rearrange(
      x,
      "(b nh nw) (p q) c -> b (nh p) (nw q) c",
      nh=h // ws,
      nw=w // ws,
      p=ws,
      q=ws,
  )


def relative_position_index(ws: int) -> np.ndarray:
  """`[ws*ws, ws*ws]` index into the `[(2ws-1)^2]` relative-bias table."""
  yy, xx = np.meshgrid(np.arange(ws), np.arange(ws), indexing="ij")
  coords = np.stack([yy.ravel(), xx.ravel()])  # [2, N]
  rel = coords[:, :, None] - coords[:, None, :] + ws - 1  # [2, N, N]
  return rel[0] * (2 * ws - 1) + rel[1]


def shift_mask(h: int, w: int, ws: int, shift: int) -> np.ndarray:
  """`[nW, N, N]` additive mask (0 or -100) for shifted windows: after a
  cyclic roll by -shift, tokens from different image regions that share a
  window must not attend to each other (Swin, Liu et al. 2021)."""
  region = np.zeros((h, w), np.int32)
  cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
  for i, sy in enumerate(cuts):
    for j, sx in enumerate(cuts):
      region[sy, sx] = 3 * i + j
  win = einops.rearrange(region, "(nh p) (nw q) -> (nh nw) (p q)", p=ws, q=ws)
  return np.where(win[:, :, None] != win[:, None, :], -100.0, 0.0).astype(
      np.float32
  )


class WindowAttention(nn.Module):
  """Multi-head self-attention inside windows with a learned relative
  position bias: `[Bw, N, C]` (+ mask `[nW, N, N]`) -> `[Bw, N, C]`.
  Parameters carry logical axis names (`layers`), so they shard."""

  num_heads: int
  window_size: int

  @nn.compact
  def __call__(self, x, mask=None):
    c = x.shape[-1]
    ws, nh = self.window_size, self.num_heads
    qkv = layers.Dense(3 * c, name="qkv")(x)
    q, k, v = einops.rearrange(qkv, "b n (t h d) -> t b h n d", t=3, h=nh)
    attn = jnp.einsum("bhnd,bhmd->bhnm", q * (c // nh) ** -0.5, k)
    table = self.param(
        "relative_position_bias",
        layers.part(
            nn.initializers.truncated_normal(0.02), ("tokens", "heads")
        ),
        ((2 * ws - 1) ** 2, nh),
    )
    bias = table[relative_position_index(ws)]  # [N, N, h]
    attn = attn + einops.rearrange(bias, "n m h -> h n m")
    if mask is not None:
      attn = einops.rearrange(attn, "(b w) h n m -> b w h n m", w=mask.shape[0])
      attn = einops.rearrange(
          attn + mask[None, :, None], "b w h n m -> (b w) h n m"
      )
    y = jnp.einsum("bhnm,bhmd->bhnd", jax.nn.softmax(attn, axis=-1), v)
    return layers.Dense(c, axes=("mlp", "embed"), name="proj")(
        einops.rearrange(y, "b h n d -> b n (h d)")
    )


class SwinBlock(nn.Module):
  """Pre-norm (shifted-)window attention + MLP on `[B, H, W, C]`, H and W
  multiples of the window. No shift when the image is a single window."""

  num_heads: int
  window_size: int
  shifted: bool
  mlp_ratio: float = 2.0

  @nn.compact
  def __call__(self, x):
    _, h, w, c = x.shape
    ws = self.window_size
    shift = ws // 2 if self.shifted and min(h, w) > ws else 0
    y = layers.LayerNorm(name="norm1")(x)
    if shift:
      y = jnp.roll(y, (-shift, -shift), axis=(1, 2))
    mask = jnp.asarray(shift_mask(h, w, ws, shift)) if shift else None
    y = WindowAttention(self.num_heads, ws, name="attn")(
        window_partition(y, ws), mask
    )
    y = window_merge(y, ws, h, w)
    if shift:
      y = jnp.roll(y, (shift, shift), axis=(1, 2))
    x = x + y
    return x + vit.MlpBlock(int(c * self.mlp_ratio), name="mlp")(
        layers.LayerNorm(name="norm2")(x), False
    )


class ResidualSwinGroup(nn.Module):
  """SwinIR's RSTB: `depth` blocks (alternately shifted), a 3x3 conv, and a
  residual connection: `[B, H, W, C]` -> same."""

  depth: int
  num_heads: int
  window_size: int
  mlp_ratio: float = 2.0

  @nn.compact
  def __call__(self, x):
    y = x
    for i in range(self.depth):
      y = SwinBlock(
          self.num_heads,
          self.window_size,
          i % 2 == 1,
          self.mlp_ratio,
          name=f"block{i}",
      )(y)
    return x + layers.Conv(x.shape[-1], (3, 3), name="conv")(y)


class SwinIRLike(SRModel):
  """SwinIR (Liang et al. 2021): conv head, residual Swin groups, conv +
  global skip, then conv + LeakyReLU, pixel-shuffle upsampler and conv tail.
  The LR is reflect-padded to a multiple of the window and the SR cropped
  back. Defaults follow SwinIR-light (60 dims, 4 groups of 6, window 8).
  """

  out_bands: int
  scale: int = 4
  embed_dim: int = 60
  depths: tuple[int, ...] = (6, 6, 6, 6)
  num_heads: int = 6
  window_size: int = 8
  mlp_ratio: float = 2.0
  upsample_features: int = 64

  @nn.compact
  def predict(self, lr, out_hw=None, train: bool = False):
    del train
    s = integer_scale(self.scale, "SwinIRLike")
    _, h, w, _ = lr.shape
    ws = self.window_size
    x = jnp.pad(
        lr, ((0, 0), (0, -h % ws), (0, -w % ws), (0, 0)), mode="reflect"
    )
    x = layers.Conv(self.embed_dim, (3, 3), name="head")(x)  # [B, h', w', D]
    y = x
    for i, d in enumerate(self.depths):
      y = ResidualSwinGroup(
          d, self.num_heads, ws, self.mlp_ratio, name=f"group{i}"
      )(y)
    y = layers.LayerNorm(name="norm")(y)
    x = x + layers.Conv(self.embed_dim, (3, 3), name="body_conv")(y)
    x = nn.leaky_relu(
        layers.Conv(self.upsample_features, (3, 3), name="pre_upsample")(x),
        0.01,
    )
    x = Upsampler(self.upsample_features, s, name="upsampler")(x)
    sr = layers.Conv(self.out_bands, (3, 3), name="tail")(x)
    return to_grid(sr[:, : h * s, : w * s], out_hw)


# ------------------------------------------------------------ implicit SR


def grid_coords(n: int) -> jnp.ndarray:
  """`[n]` pixel-centre coordinates of an n-pixel axis spanning [-1, 1]."""
  return -1.0 + (2.0 * jnp.arange(n) + 1.0) / n


def nearest_cell(coord: jnp.ndarray, n_in: int, shift: int):
  """For query coords `[n_out]`, the LR pixel index `[n_out]` whose cell
  holds coord + shift * (half an LR pixel) (clamped to the image), and the
  query's offset from that pixel's centre in LR half-pixels `[n_out]`."""
  c = jnp.clip(coord + shift / n_in + 1e-6, -1 + 1e-6, 1 - 1e-6)
  idx = jnp.clip(jnp.floor((c + 1) / 2 * n_in).astype(jnp.int32), 0, n_in - 1)
  return idx, (coord - grid_coords(n_in)[idx]) * n_in


def unfold3x3(feat: jnp.ndarray) -> jnp.ndarray:
  """`[B, h, w, F]` -> `[B, h, w, 9F]`: each pixel's 3x3 neighbourhood
  (zero-padded), as LIIF's feature unfolding."""
  _, h, w, _ = feat.shape
  p = jnp.pad(feat, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate(
      [p[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=-1
  )


class ImplicitSR(SRModel):
  """Arbitrary-scale SR by a local implicit image function (LIIF, Chen et
  al. 2021; the SRNO family's decoder): an EDSR encoder makes LR features
  `[B, h, w, F]`; each HR pixel centre queries its 4 nearest LR feature
  vectors (local ensemble), and an MLP maps [feature, relative coordinate,
  cell size] to the bands; the 4 predictions are blended by the areas of the
  opposite sub-rectangles. `out_hw` may be any size (16.7x included); queries
  form a grid, so features are gathered per axis (two `take`s).

  Memory grows as H * W * (9F if feat_unfold else F); tile big rasters with
  `crossscale.sliding_window`.
  """

  out_bands: int
  scale: float = 4.0
  features: int = 64
  num_blocks: int = 16
  res_scale: float = 1.0
  hidden: tuple[int, ...] = (256, 256, 256, 256)
  feat_unfold: bool = True

  @nn.compact
  def predict(self, lr, out_hw=None, train: bool = False):
    del train
    _, h, w, _ = lr.shape
    if out_hw is None:
      out_hw = (round(h * self.scale), round(w * self.scale))
    H, W = int(out_hw[0]), int(out_hw[1])
    feat = EDSRBody(
        self.features, self.num_blocks, self.res_scale, name="encoder"
    )(
        lr
    )  # [B, h, w, F]
    if self.feat_unfold:
      feat = unfold3x3(feat)  # [B, h, w, 9F]
    mlp = _Mlp(self.hidden, self.out_bands, name="decoder")
    cy, cx = grid_coords(H), grid_coords(W)
    cell = jnp.asarray([2.0 / H * h, 2.0 / W * w], jnp.float32)  # LR units
    preds, areas = [], []
    for sy in (-1, 1):
      iy, ry = nearest_cell(cy, h, sy)  # [H]
      for sx in (-1, 1):
        ix, rx = nearest_cell(cx, w, sx)  # [W]
        f = jnp.take(jnp.take(feat, iy, axis=1), ix, axis=2)  # [B, H, W, F']
        rel = jnp.stack(jnp.broadcast_arrays(ry[:, None], rx[None, :]), -1)
        extra = jnp.concatenate(
            [rel, jnp.broadcast_to(cell, (H, W, 2))], -1
        )  # [H, W, 4]
        extra = jnp.broadcast_to(extra, f.shape[:3] + (4,))
        preds.append(mlp(jnp.concatenate([f, extra], -1)))  # [B, H, W, C]
        areas.append(jnp.abs(ry[:, None] * rx[None, :]) + 1e-9)  # [H, W]
    areas = areas[::-1]  # each prediction is weighted by its opposite area
    total = sum(areas)
    return sum(p * (a / total)[None, :, :, None] for p, a in zip(preds, areas))


class _Mlp(nn.Module):
  """Pointwise MLP `[..., D]` -> `[..., out]` with ReLU hidden layers."""

  hidden: tuple[int, ...]
  out: int

  @nn.compact
  def __call__(self, x):
    for i, d in enumerate(self.hidden):
      x = nn.relu(layers.Dense(d, name=f"dense{i}")(x))
    return layers.Dense(self.out, name=f"dense{len(self.hidden)}")(x)


SR_MODELS = {
    "sr_bicubic": Bicubic,
    "sr_edsr": EDSR,
    "sr_swinir": SwinIRLike,
    "sr_implicit": ImplicitSR,
}
