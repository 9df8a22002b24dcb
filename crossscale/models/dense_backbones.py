"""Downstream models on HR(-like) imagery: what SR output is *for*.

Three dense backbones, each `[B, H, W, C] -> [B, H, W, K]` (any H, W: the
input is reflect-padded to the backbone's stride multiple and the output
cropped back), or `[B, K]` when `pooled` (global average of the deepest
features + a linear head: the scene classifier of the same backbone):

  UNet           conv encoder (two 3x3 conv + GroupNorm + GELU per level,
                 2x2 average pooling), mirrored decoder with skip concats.
  SegFormerLike  hierarchical overlapping-patch encoder (strided convs: /4,
                 then /2 per stage), efficient self-attention (keys/values
                 from a spatially reduced map, ratio `sr_ratios`), Mix-FFN
                 (MLP with a 3x3 depthwise conv), and the all-MLP decoder
                 (every stage -> `decoder_dim`, upsampled to /4, concat,
                 fused, classified, upsampled to the input grid).
  SwinSeg        conv patch embedding (/`patch`), stages of (shifted-)window
                 attention blocks with relative position bias, patch merging
                 (/2) between stages, and a simple FPN-style decoder (each
                 stage projected, upsampled to the first stage and summed,
                 a 3x3 conv, classified, upsampled).

`DownstreamModel` wraps one backbone with a task and its loss, following
the model contract of `crossscale.models` (`__call__(batch, train)` ->
{..., "aux_losses"}); it is registered as "downstream":

  task="segmentation":   batch[input_key] `[B, H, W, C]`, batch[target_key]
                         `[B, H, W]` int class ids -> {"seg_logits": [B, H, W,
                         K], "aux_losses": {"ce": (), "dice"?: ()}} (softmax
                         cross-entropy, class-balanced or not, and/or soft
                         Dice: `seg_loss`; pixels with ids outside [0, K)
                         are ignored).
  task="regression":     batch[target_key] `[B, H, W]` or `[B, H, W, 1]` ->
                         {"pred": [B, H, W, 1], "aux_losses": {"l1"|"l2": ()}}.
  task="classification": -> {"logits": [B, K], "aux_losses": {}}; the shared
                         trainer adds its task loss (softmax CE against the
                         one-hot batch["labels"]).

Every parameter comes from `crossscale.models.layers` (logical axis names
for sharding). Metrics (pixel accuracy, IoU, F1, MAE, RMSE) are numpy
functions in `crossscale.metrics`.
"""

from __future__ import annotations

from typing import Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from crossscale.models import layers
from crossscale.models import sr as sr_lib

TASKS = ("segmentation", "regression", "classification")


# ----------------------------------------------------------------- helpers


def pad_to_multiple(x: jnp.ndarray, m: int) -> jnp.ndarray:
  """Reflect-pads `[B, H, W, C]` at the bottom/right to multiples of `m`
  (edge-pads when the image is too small to reflect)."""
  _, h, w, _ = x.shape
  ph, pw = -h % m, -w % m
  if not ph and not pw:
    return x
  mode = "reflect" if ph < h and pw < w else "edge"
  return jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)


def linear_weights(n_in: int, n_out: int) -> np.ndarray:
  """`[n_out, n_in]` linear-interpolation matrix, half-pixel centres, edge
  samples clamped (jax.image.resize "linear" when upsampling)."""
  src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
  src = np.clip(src, 0, n_in - 1)
  lo = np.floor(src).astype(int)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = src - lo
  w = np.zeros((n_out, n_in), np.float32)
  w[np.arange(n_out), lo] += 1 - frac
  w[np.arange(n_out), hi] += frac
  return w


def upsample(x: jnp.ndarray, hw: Sequence[int]) -> jnp.ndarray:
  """Bilinear `[B, h, w, C]` -> `[B, *hw, C]` as two small matmuls (cheap
  to compile and differentiate, unlike a generic resize)."""
  _, h, w, _ = x.shape
  if (h, w) == tuple(hw):
    return x
  wh = jnp.asarray(linear_weights(h, int(hw[0])))  # [H, h]
  ww = jnp.asarray(linear_weights(w, int(hw[1])))  # [W, w]
  return jnp.einsum("Hh,Ww,bhwc->bHWc", wh, ww, x)


def avg_pool2(x: jnp.ndarray) -> jnp.ndarray:
  """`[B, H, W, C]` -> `[B, H/2, W/2, C]` (2x2 mean)."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


class ConvBlock(nn.Module):
  """Two (3x3 conv, GroupNorm, GELU): `[B, H, W, C]` -> `[B, H, W, F]`."""

  features: int
  groups: int = 4

  @nn.compact
  def __call__(self, x):
    g = max(1, min(self.groups, self.features))
    while self.features % g:
      g -= 1
    for i in range(2):
      x = layers.Conv(self.features, (3, 3), name=f"conv{i}")(x)
      x = nn.gelu(layers.GroupNorm(num_groups=g, name=f"norm{i}")(x))
    return x


class PooledHead(nn.Module):
  """Global average pool + LayerNorm + linear: `[B, h, w, F]` -> `[B, K]`."""

  num_outputs: int

  @nn.compact
  def __call__(self, x):
    x = layers.LayerNorm(name="norm")(jnp.mean(x, axis=(1, 2)))
    return layers.Dense(
        self.num_outputs, axes=("embed", "tokens"), name="head"
    )(x)


# -------------------------------------------------------------------- U-Net


class UNet(nn.Module):
  """U-Net (Ronneberger et al. 2015), GroupNorm variant.

  Attributes:
    num_outputs: K (classes, or 1 for regression).
    widths: features per level; the input is downsampled len(widths) - 1
      times (padded to a multiple of 2 ** (len(widths) - 1)).
    pooled: `[B, K]` scene logits from the bottleneck instead of a dense map.
  """

  num_outputs: int
  widths: tuple[int, ...] = (16, 32, 64)
  pooled: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    _, h, w, _ = x.shape
    x = pad_to_multiple(x, 2 ** (len(self.widths) - 1))
    skips = []
    for i, f in enumerate(self.widths):
      if i:
        x = avg_pool2(x)
      x = ConvBlock(f, name=f"down{i}")(x)  # [B, H/2^i, ., f]
      skips.append(x)
    if self.pooled:
      return PooledHead(self.num_outputs, name="pool_head")(x)
    for i in range(len(self.widths) - 2, -1, -1):
      skip = skips[i]
      x = upsample(x, skip.shape[1:3])
      x = ConvBlock(self.widths[i], name=f"up{i}")(
          jnp.concatenate([x, skip], axis=-1)
      )
    y = layers.Conv(self.num_outputs, (1, 1), name="head")(x)
    return y[:, :h, :w]


# ------------------------------------------------------------- SegFormer


class EfficientAttention(nn.Module):
  """SegFormer's efficient self-attention on `[B, h, w, D]`: queries from
  every position, keys/values from the map reduced `sr_ratio`x by a strided
  conv + LayerNorm (cost N * N / sr_ratio^2)."""

  num_heads: int
  sr_ratio: int

  @nn.compact
  def __call__(self, x):
    b, h, w, d = x.shape
    q = einops.rearrange(x, "b h w d -> b (h w) d")
    kv = x
    if self.sr_ratio > 1:
      kv = layers.Conv(
          d,
          (self.sr_ratio, self.sr_ratio),
          strides=(self.sr_ratio, self.sr_ratio),
          padding="VALID",
          name="reduce",
      )(x)
      kv = layers.LayerNorm(name="reduce_norm")(kv)
    kv = einops.rearrange(kv, "b h w d -> b (h w) d")
    y = layers.Attention(self.num_heads, name="attn")(
        q, kv, kv, deterministic=True
    )
    return einops.rearrange(y, "b (h w) d -> b h w d", h=h, w=w)


class MixFFN(nn.Module):
  """Dense -> 3x3 depthwise conv -> GELU -> Dense on `[B, h, w, D]`."""

  hidden: int

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    y = layers.Dense(self.hidden, name="fc1")(x)
    y = layers.Conv(
        self.hidden,
        (3, 3),
        feature_group_count=self.hidden,
        axes=(None, "mlp"),
        name="dwconv",
    )(y)
    return layers.Dense(d, axes=("mlp", "embed"), name="fc2")(nn.gelu(y))


class SegFormerBlock(nn.Module):
  num_heads: int
  sr_ratio: int
  mlp_ratio: float = 2.0

  @nn.compact
  def __call__(self, x):
    x = x + EfficientAttention(self.num_heads, self.sr_ratio, name="attn")(
        layers.LayerNorm(name="norm1")(x)
    )
    return x + MixFFN(int(x.shape[-1] * self.mlp_ratio), name="ffn")(
        layers.LayerNorm(name="norm2")(x)
    )


class SegFormerLike(nn.Module):
  """SegFormer (Xie et al. 2021), small: MiT-style encoder + all-MLP decoder.

  Attributes:
    num_outputs: K.
    widths: stage widths (stage i works at 1/(4 * 2^i) of the input).
    depths: blocks per stage.
    num_heads: attention heads per stage.
    sr_ratios: key/value spatial reduction per stage.
    decoder_dim: width of the all-MLP decoder.
    pooled: `[B, K]` scene logits from the last stage.
  """

  num_outputs: int
  widths: tuple[int, ...] = (16, 32, 64)
  depths: tuple[int, ...] = (1, 1, 1)
  num_heads: tuple[int, ...] = (1, 2, 4)
  sr_ratios: tuple[int, ...] = (4, 2, 1)
  decoder_dim: int = 32
  pooled: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    _, h, w, _ = x.shape
    n = len(self.widths)
    x = pad_to_multiple(x, 4 * 2 ** (n - 1) * max(self.sr_ratios))
    feats = []
    for i, f in enumerate(self.widths):
      k, s = (7, 4) if i == 0 else (3, 2)  # overlapping patch embedding
      x = layers.Conv(
          f, (k, k), strides=(s, s), padding=k // 2, name=f"patch_embed{i}"
      )(x)
      x = layers.LayerNorm(name=f"embed_norm{i}")(x)
      for j in range(self.depths[i]):
        x = SegFormerBlock(
            self.num_heads[i], self.sr_ratios[i], name=f"stage{i}_block{j}"
        )(x)
      x = layers.LayerNorm(name=f"stage_norm{i}")(x)  # [B, H/4/2^i..]
      feats.append(x)
    if self.pooled:
      return PooledHead(self.num_outputs, name="pool_head")(x)
    hw4 = feats[0].shape[1:3]
    ys = [
        upsample(layers.Dense(self.decoder_dim, name=f"dec_proj{i}")(f), hw4)
        for i, f in enumerate(feats)
    ]
    y = layers.Dense(self.decoder_dim, name="dec_fuse")(
        jnp.concatenate(ys[::-1], axis=-1)
    )
    y = nn.gelu(layers.LayerNorm(name="dec_norm")(y))
    y = layers.Dense(self.num_outputs, axes=("embed", "tokens"), name="head")(
        y
    )  # [B, H/4, W/4, K]
    y = upsample(y, (y.shape[1] * 4, y.shape[2] * 4))
    return y[:, :h, :w]


# ------------------------------------------------------------------- Swin


class SwinSeg(nn.Module):
  """Swin-style segmenter (Liu et al. 2021), small.

  Attributes:
    num_outputs: K.
    patch: patch-embedding stride (stage 0 works at 1/patch).
    widths: stage widths (patch merging halves the grid between stages).
    depths: blocks per stage (alternately shifted).
    num_heads: heads per stage.
    window_size: attention window (tokens per side).
    decoder_dim: width of the FPN-style decoder.
    pooled: `[B, K]` scene logits from the last stage.
  """

  num_outputs: int
  patch: int = 2
  widths: tuple[int, ...] = (16, 32)
  depths: tuple[int, ...] = (2, 2)
  num_heads: tuple[int, ...] = (2, 4)
  window_size: int = 4
  decoder_dim: int = 32
  pooled: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    del train
    _, h, w, _ = x.shape
    n = len(self.widths)
    x = pad_to_multiple(x, self.patch * self.window_size * 2 ** (n - 1))
    x = layers.Conv(
        self.widths[0],
        (self.patch, self.patch),
        strides=(self.patch, self.patch),
        padding="VALID",
        name="patch_embed",
    )(
        x
    )  # [B, H/p, W/p, D]
    x = layers.LayerNorm(name="embed_norm")(x)
    feats = []
    for i, f in enumerate(self.widths):
      if i:  # patch merging: 2x2 neighbours -> 4D -> Dense f
        x = einops.rearrange(x, "b (h p) (w q) d -> b h w (p q d)", p=2, q=2)
        x = layers.Dense(f, name=f"merge{i}")(
            layers.LayerNorm(name=f"merge_norm{i}")(x)
        )
      for j in range(self.depths[i]):
        x = sr_lib.SwinBlock(
            self.num_heads[i],
            self.window_size,
            j % 2 == 1,
            name=f"stage{i}_block{j}",
        )(x)
      feats.append(layers.LayerNorm(name=f"stage_norm{i}")(x))
    if self.pooled:
      return PooledHead(self.num_outputs, name="pool_head")(feats[-1])
    hw0 = feats[0].shape[1:3]
    y = sum(
        upsample(layers.Dense(self.decoder_dim, name=f"dec_proj{i}")(f), hw0)
        for i, f in enumerate(feats)
    )
    y = nn.gelu(
        layers.GroupNorm(num_groups=4, name="dec_norm")(
            layers.Conv(self.decoder_dim, (3, 3), name="dec_conv")(y)
        )
    )
    y = layers.Conv(self.num_outputs, (1, 1), name="head")(y)
    y = upsample(y, (y.shape[1] * self.patch, y.shape[2] * self.patch))
    return y[:, :h, :w]


def SceneClassifier(num_classes: int, widths=(16, 32, 64)) -> UNet:
  """The scene classifier: the U-Net's conv encoder, global pooling and a
  linear head, `[B, H, W, C] -> [B, num_classes]`."""
  return UNet(num_outputs=num_classes, widths=tuple(widths), pooled=True)


BACKBONES = {"unet": UNet, "segformer": SegFormerLike, "swin": SwinSeg}


def make_backbone(
    name: str, num_outputs: int, pooled: bool = False, **kwargs
) -> nn.Module:
  """Backbone `name` ("unet", "segformer", "swin") with its own defaults
  overridden by `kwargs` (e.g. widths=(8, 16))."""
  if name not in BACKBONES:
    raise ValueError(
        f"unknown downstream backbone {name!r} "
        f"(config.model.backbone); known: {sorted(BACKBONES)}"
    )
  return BACKBONES[name](num_outputs=num_outputs, pooled=pooled, **kwargs)


# ------------------------------------------------------------------- losses

SEG_LOSSES = ("ce", "balanced_ce", "dice", "ce+dice", "balanced_ce+dice")


def inverse_frequency_weights(target: jnp.ndarray, k: int) -> jnp.ndarray:
  """`[K]` class weights n / (K' * n_k) from the pixel counts n_k of the
  `[B, H, W]` ids in [0, K) (n: their total, K': classes present); 0 for an
  absent class. Every present class then carries the same total weight
  (n / K'), so a class covering 1% of the pixels counts as much as the
  background covering 99%."""
  counts = jnp.sum(
      jax.nn.one_hot(target, k, dtype=jnp.float32),
      axis=tuple(range(target.ndim)),
  )  # [K]
  present = counts > 0
  w = counts.sum() / (jnp.maximum(present.sum(), 1) * jnp.maximum(counts, 1.0))
  return jnp.where(present, w, 0.0)


def segmentation_loss(
    logits: jnp.ndarray,
    target: jnp.ndarray,
    class_weights: jnp.ndarray | None = None,
) -> jnp.ndarray:
  """Softmax cross-entropy of `[B, H, W, K]` logits against `[B, H, W]`
  integer ids; ids outside [0, K) are ignored (e.g. 255 = no label).

  class_weights `[K]` (optional): the weighted mean sum_i w_{y_i} ce_i /
  sum_i w_{y_i} (PyTorch's CrossEntropyLoss(weight=...) convention); None:
  the plain mean."""
  k = logits.shape[-1]
  target = target.astype(jnp.int32)
  valid = (target >= 0) & (target < k)
  safe = jnp.where(valid, target, 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
  w = valid.astype(ce.dtype)
  if class_weights is not None:
    w = w * jnp.asarray(class_weights, ce.dtype)[safe]
  return (ce * w).sum() / jnp.maximum(w.sum(), 1e-12)


def dice_loss(
    logits: jnp.ndarray, target: jnp.ndarray, smooth: float = 1.0
) -> jnp.ndarray:
  """Soft multi-class Dice loss (Milletari et al. 2016): the mean over the
  K classes of 1 - (2 sum p_k y_k + s) / (sum p_k + sum y_k + s), sums over
  every valid pixel of the batch, p = softmax(logits) `[B, H, W, K]`, y the
  one-hot of the `[B, H, W]` ids (ids outside [0, K) ignored). Each class
  counts equally whatever its area: the loss does not collapse to the
  majority class."""
  k = logits.shape[-1]
  target = target.astype(jnp.int32)
  valid = ((target >= 0) & (target < k))[..., None].astype(logits.dtype)
  p = jax.nn.softmax(logits, axis=-1) * valid
  y = jax.nn.one_hot(target, k, dtype=logits.dtype) * valid
  axes = tuple(range(logits.ndim - 1))
  inter = jnp.sum(p * y, axes)  # [K]
  denom = jnp.sum(p, axes) + jnp.sum(y, axes)
  return jnp.mean(1.0 - (2.0 * inter + smooth) / (denom + smooth))


def segmentation_losses(
    logits: jnp.ndarray,
    target: jnp.ndarray,
    kind: str = "ce",
    class_weights: Sequence[float] = (),
) -> dict[str, jnp.ndarray]:
  """The terms of segmentation loss `kind` (SEG_LOSSES), by name:
  "ce" (plain, or class-balanced for "balanced_ce*": `class_weights` when
  given, else `inverse_frequency_weights` of the batch) and/or "dice"."""
  if kind not in SEG_LOSSES:
    raise ValueError(
        f"unknown segmentation loss {kind!r} "
        f"(config.model.seg_loss); known: {SEG_LOSSES}"
    )
  terms = kind.split("+")
  out = {}
  if "ce" in terms:
    out["ce"] = segmentation_loss(logits, target)
  if "balanced_ce" in terms:
    k = logits.shape[-1]
    if class_weights:
      if len(class_weights) != k:
        raise ValueError(
            f"config.model.class_weights has {len(class_weights)}"
            f" entries for {k} classes."
        )
      w = jnp.asarray(class_weights, jnp.float32)
    else:
      t = target.astype(jnp.int32)
      w = inverse_frequency_weights(jnp.where((t >= 0) & (t < k), t, k), k)
    out["ce"] = segmentation_loss(logits, target, w)
  if "dice" in terms:
    out["dice"] = dice_loss(logits, target)
  return out


def regression_loss(
    pred: jnp.ndarray, target: jnp.ndarray, kind: str = "l1"
) -> jnp.ndarray:
  """Mean L1 or L2 of `[B, H, W, 1]` against `[B, H, W(, 1)]`; NaN targets
  (no data) are ignored."""
  target = target.reshape(pred.shape).astype(pred.dtype)
  valid = jnp.isfinite(target)
  d = pred - jnp.where(valid, target, 0.0)
  if kind == "l1":
    per = jnp.abs(d)
  elif kind == "l2":
    per = jnp.square(d)
  else:
    raise ValueError(
        f"unknown regression loss {kind!r} "
        "(config.model.regression_loss); known: l1, l2"
    )
  w = valid.astype(per.dtype)
  return (per * w).sum() / jnp.maximum(w.sum(), 1.0)


# ------------------------------------------------------------------- model


class DownstreamModel(nn.Module):
  """A backbone + task + loss under the shared model contract (module doc).

  Attributes:
    task: "segmentation", "regression" or "classification".
    backbone: "unet", "segformer" or "swin".
    num_classes: K for segmentation / classification (ignored for
      regression, which predicts one channel).
    backbone_kwargs: fields of the backbone (widths, depths, ...) as a tuple
      of (name, value) pairs or a dict.
    input_key: the image field of the batch ("hr"; the SR grid passes SR).
    target_key: the target field ("mask_objects", "target", "labels").
    regression_loss: "l1" or "l2".
    seg_loss: segmentation loss, one of SEG_LOSSES: "ce" (plain softmax
      cross-entropy), "balanced_ce" (class-weighted CE: `class_weights`, or
      the batch's inverse class frequencies when empty), "dice" (soft
      Dice), or a sum "ce+dice" / "balanced_ce+dice". Use a balanced loss
      when a class is rare (toyworld objects: ~1% of the pixels), else the
      model predicts background everywhere.
    class_weights: fixed `[K]` weights for "balanced_ce" (e.g. inverse
      train-split frequencies); () = per batch.
  """

  task: str
  backbone: str = "unet"
  num_classes: int = 2
  backbone_kwargs: dict | tuple = ()
  input_key: str = "hr"
  target_key: str = "mask_objects"
  regression_loss: str = "l1"
  seg_loss: str = "ce"
  class_weights: tuple[float, ...] = ()

  def setup(self):
    if self.task not in TASKS:
      raise ValueError(
          f"unknown downstream task {self.task!r} "
          f"(config.model.task); known: {TASKS}"
      )
    k = 1 if self.task == "regression" else self.num_classes
    self.net = make_backbone(
        self.backbone,
        k,
        pooled=self.task == "classification",
        **dict(self.backbone_kwargs),
    )

  def predict(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    """`[B, H, W, C]` -> seg logits `[B, H, W, K]`, regression `[B, H, W,
    1]` or class logits `[B, K]`."""
    return self.net(x, train)

  def __call__(self, batch: dict, train: bool = False) -> dict:
    y = self.predict(batch[self.input_key], train)
    target = batch.get(self.target_key)
    if self.task == "classification":
      return {"logits": y, "aux_losses": {}}
    if self.task == "segmentation":
      aux = (
          {}
          if target is None
          else segmentation_losses(
              y, target, self.seg_loss, tuple(self.class_weights)
          )
      )
      return {"seg_logits": y, "aux_losses": aux}
    aux = (
        {}
        if target is None
        else {
            self.regression_loss: regression_loss(
                y, target, self.regression_loss
            )
        }
    )
    return {"pred": y, "aux_losses": aux}
