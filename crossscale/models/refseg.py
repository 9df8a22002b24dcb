"""Parameter-efficient referring segmentation (S4ECA-style dual adapters).

image + expression -> mask. Frozen dual encoders, trainable adapters:

  backbone       hierarchical conv encoder (ConvNeXt-like stages; a stride-4
                 stem then 2x patch merging): stage s gives `[B, H/2^(s+2),
                 W/2^(s+2), C_s]`. Frozen (its LayerNorms train), initialised
                 from `backbone_init` (our checkpoint) when given.
  text_encoder   all-MiniLM-L6-v2 ("minilm", weights in `load_pretrained`)
                 or a small random BERT ("tiny", unit tests only). Frozen.
  text_adapter   Q learnable queries cross-attend to the word embeddings ->
                 semantic language proxies `[B, Q, D]`.
  visual_adapter (1) a language-conditioned bottleneck adapter after every
                 backbone stage, *inside* the backbone's forward (stage s+1
                 sees the adapted features; zero-initialised: identity at
                 start); (2) a multi-scale dense extractor: every stage -> D
                 channels at H/4 (Dense + depthwise 3x3); (3) language-guided
                 scale selection: softmax weights over the S scales from the
                 proxies; (4) language-guided spatial selection: a sigmoid gate
                 from the max over proxies of cosine(proxy, pixel).
  decoder        FiLM by the proxies, two 3x3 convs at H/4, upsampled to H/2
                 with a shallow image stem, 1x1 -> mask logits resized to H x W.

Loss: BCE + Dice on the logits in "aux_losses" ("bce", "dice"); per-example
"metrics" iou / inter / union at threshold 0; "mask_logits": `[B, H, W]`.

Batch: "hr" `[B, H, W, C]` float, "text_ids" / "text_mask" `[B, L]` int,
"mask_target" `[B, H, W]` {0, 1} (absent at pure inference).

Which parameters train is set by `config.optim.frozen` (`frozen_patterns`):
"adapters" (ours), "decoder_only", "full" (text encoder frozen) and
"full_text" (everything).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from crossscale import checkpoint
from crossscale.models import layers
from crossscale.models import text_encoder as te

# Regexes on "a/b/kernel" paths (crossscale.optim.param_labels) per mode.
_BACKBONE_NON_NORM = r"^backbone/(.*/)?(?!norm)[^/]+/(kernel|bias)$"
FROZEN = {
    "adapters": (r"^text_encoder/", _BACKBONE_NON_NORM),
    "decoder_only": (r"^(?!decoder/)",),
    "full": (r"^text_encoder/",),
    "full_text": (),
}

TINY_TEXT = te.BertConfig(
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
)


def frozen_patterns(mode: str) -> tuple[str, ...]:
  if mode not in FROZEN:
    raise ValueError(f"unknown refseg mode {mode!r}; known: {sorted(FROZEN)}")
  return FROZEN[mode]


# --- Backbone -----------------------------------------------------------------


class ConvBlock(nn.Module):
  """x + MLP(LN(dwconv7x7(x))): `[B, h, w, C]` -> same."""

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    y = layers.Conv(c, (7, 7), feature_group_count=c, name="dwconv")(x)
    y = layers.LayerNorm(name="norm")(y)
    y = nn.gelu(layers.Dense(4 * c, name="mlp_in")(y))
    return x + layers.Dense(c, axes=("mlp", "embed"), name="mlp_out")(y)


class Backbone(nn.Module):
  """Hierarchical encoder, called stage by stage so adapters sit in between.

  stem: `[B, H, W, C_in]` -> `[B, H/4, W/4, widths[0]]`;
  stage(i, x): (merge 2x2 -> widths[i] when i > 0) + depths[i] blocks.
  """

  widths: Sequence[int] = (32, 64, 128, 256)
  depths: Sequence[int] = (1, 1, 2, 1)

  def setup(self):
    self.stem_conv = layers.Conv(self.widths[0], (4, 4), strides=(4, 4))
    self.stem_norm = layers.LayerNorm()
    self.down_norm = [layers.LayerNorm() for _ in self.widths[1:]]
    self.down = [
        layers.Conv(w, (2, 2), strides=(2, 2)) for w in self.widths[1:]
    ]
    self.blocks = [[ConvBlock() for _ in range(d)] for d in self.depths]

  def stem(self, x):
    return self.stem_norm(self.stem_conv(x))

  def stage(self, i: int, x):
    if i > 0:
      x = self.down[i - 1](self.down_norm[i - 1](x))
    for blk in self.blocks[i]:
      x = blk(x)
    return x

  def __call__(self, x):
    """All stage outputs (no adapters): list of `[B, h_s, w_s, C_s]`."""
    x, out = self.stem(x), []
    for i in range(len(self.widths)):
      x = self.stage(i, x)
      out.append(x)
    return out


# --- Adapters -----------------------------------------------------------------


class TextAdapter(nn.Module):
  """Learnable queries attend to word embeddings -> proxies `[B, Q, D]`."""

  num_queries: int = 4
  dim: int = 64
  num_heads: int = 4
  depth: int = 1

  @nn.compact
  def __call__(self, tokens, mask):
    """tokens: `[B, L, E]`; mask: `[B, L]` (1 = word)."""
    words = layers.LayerNorm(name="norm_words")(
        layers.Dense(self.dim, name="proj")(tokens)
    )  # [B, L, D]
    q = self.param(
        "queries",
        layers.part(nn.initializers.normal(0.02), ("tokens", "embed")),
        (self.num_queries, self.dim),
    )
    q = jnp.broadcast_to(q, (tokens.shape[0],) + q.shape)  # [B, Q, D]
    attn_mask = mask.astype(bool)[:, None, None, :]  # [B,1,1,L]
    for i in range(self.depth):
      y = layers.Attention(self.num_heads, name=f"cross_{i}")(
          layers.LayerNorm(name=f"norm_q{i}")(q), words, mask=attn_mask
      )
      q = q + y
      y = layers.LayerNorm(name=f"norm_mlp{i}")(q)
      y = layers.Dense(2 * self.dim, name=f"mlp_in{i}")(y)
      q = q + layers.Dense(self.dim, axes=("mlp", "embed"), name=f"mlp_out{i}")(
          nn.gelu(y)
      )
    return layers.LayerNorm(name="norm_out")(q)


class StageAdapter(nn.Module):
  """Language-conditioned bottleneck inside the backbone:
  x + Up(GELU(Down(LN x)) * (1 + gamma(lang))); Up is zero-initialised."""

  bottleneck: int = 16

  @nn.compact
  def __call__(self, x, lang):
    """x: `[B, h, w, C]`; lang: `[B, D]` (mean proxy)."""
    c = x.shape[-1]
    y = layers.Dense(self.bottleneck, name="down")(
        layers.LayerNorm(name="norm")(x)
    )
    gamma = layers.Dense(
        self.bottleneck, name="film", kernel_init=nn.initializers.zeros
    )(lang)
    y = nn.gelu(y) * (1.0 + gamma[:, None, None, :])
    return x + layers.Dense(
        c, axes=("mlp", "embed"), name="up", kernel_init=nn.initializers.zeros
    )(y)


def _resize(x, hw):
  """Bilinear `[B, h, w, C]` -> `[B, *hw, C]`."""
  return jax.image.resize(x, (x.shape[0], *hw, x.shape[-1]), "bilinear")


class VisualAdapter(nn.Module):
  """Multi-scale dense extractor + language-guided scale and spatial
  selection over the (adapted) backbone stages.

  Returns (fused `[B, h, w, D]` at the finest stage's resolution,
  similarity maps `[B, h, w, Q]`, scale weights `[B, S]`)."""

  dim: int = 64

  @nn.compact
  def __call__(self, feats, proxies):
    hw = feats[0].shape[1:3]
    dense = []
    for s, f in enumerate(feats):
      y = layers.LayerNorm(name=f"norm_s{s}")(
          layers.Dense(self.dim, name=f"proj_s{s}")(f)
      )
      y = _resize(y, hw)  # [B,h,w,D]
      y = y + layers.Conv(
          self.dim, (3, 3), feature_group_count=self.dim, name=f"dw_s{s}"
      )(y)
      dense.append(y)
    dense = jnp.stack(dense, 1)  # [B,S,h,w,D]
    lang = proxies.mean(1)  # [B, D]
    scale_logits = layers.Dense(len(feats), name="scale_select")(lang)
    w = jax.nn.softmax(scale_logits, -1)  # [B, S]
    fused = jnp.einsum("bs,bshwd->bhwd", w, dense)
    # Spatial selection: where the language proxies point.
    k = layers.Dense(self.dim, name="pix_key")(fused)
    q = layers.Dense(self.dim, name="proxy_query")(proxies)  # [B, Q, D]
    k = k / (jnp.linalg.norm(k, axis=-1, keepdims=True) + 1e-6)
    q = q / (jnp.linalg.norm(q, axis=-1, keepdims=True) + 1e-6)
    sim = jnp.einsum("bhwd,bqd->bhwq", k, q)  # [B,h,w,Q]
    temp = self.param(
        "gate_scale",
        layers.part(nn.initializers.constant(5.0), ("tokens",)),
        (1,),
    )
    bias = self.param(
        "gate_bias", layers.part(nn.initializers.zeros, ("tokens",)), (1,)
    )
    gate = jax.nn.sigmoid(temp * sim.max(-1, keepdims=True) + bias)
    return fused * (0.5 + gate), sim, w


class MaskDecoder(nn.Module):
  """Light decoder: FiLM by the proxies, convs at h, a shallow image stem at
  H/2, a 1x1 head -> `[B, H, W]` logits."""

  dim: int = 64
  stem_dim: int = 16

  @nn.compact
  def __call__(self, fused, sim, proxies, image):
    lang = proxies.mean(1)
    film = layers.Dense(2 * self.dim, name="film")(lang)  # [B, 2D]
    scale, shift = jnp.split(film[:, None, None, :], 2, -1)
    x = jnp.concatenate([fused, sim], -1)
    x = layers.Conv(self.dim, (3, 3), name="conv0")(x)
    x = nn.gelu(layers.GroupNorm(num_groups=8, name="norm0")(x))
    x = x * (1.0 + scale) + shift
    x = layers.Conv(self.dim, (3, 3), name="conv1")(x)
    x = nn.gelu(layers.GroupNorm(num_groups=8, name="norm1")(x))
    H, W = image.shape[1:3]
    half = (H // 2, W // 2)
    stem = nn.gelu(
        layers.Conv(self.stem_dim, (3, 3), strides=(2, 2), name="image_stem")(
            image
        )
    )  # [B,H/2,W/2,c]
    x = jnp.concatenate([_resize(x, half), _resize(stem, half)], -1)
    x = nn.gelu(layers.Conv(self.dim // 2, (3, 3), name="conv2")(x))
    logits = layers.Conv(1, (1, 1), name="head")(x)[..., 0]  # [B,H/2,W/2]
    return jax.image.resize(logits, (logits.shape[0], H, W), "bilinear")


# --- Losses -------------------------------------------------------------------


def bce_dice(logits, target):
  """Per-example BCE (pixel mean) and soft Dice loss: `[B, H, W]` -> `[B]`."""
  t = target.astype(jnp.float32)
  bce = jnp.mean(
      jnp.maximum(logits, 0)
      - logits * t
      + jnp.log1p(jnp.exp(-jnp.abs(logits))),
      axis=(1, 2),
  )
  p = jax.nn.sigmoid(logits)
  dice = 1.0 - (2 * (p * t).sum((1, 2)) + 1.0) / (
      p.sum((1, 2)) + t.sum((1, 2)) + 1.0
  )
  return bce, dice


def iou_counts(logits, target):
  """Intersection and union of (logits > 0) with the target: `[B]` each."""
  pred = logits > 0
  t = target.astype(bool)
  inter = jnp.sum(pred & t, axis=(1, 2)).astype(jnp.float32)
  union = jnp.sum(pred | t, axis=(1, 2)).astype(jnp.float32)
  return inter, union


# --- Model --------------------------------------------------------------------


class RefSegModel(nn.Module):
  """Referring segmentation with frozen dual encoders and dual adapters.

  `backbone`: dict(widths, depths); `adapter`: dict(dim, num_queries,
  num_heads, depth, bottleneck); `text_encoder`: "minilm" | "tiny";
  `backbone_init`: "" or a params file / orbax checkpoint of ours
  (see `load_backbone`); `train_text_encoder`: let gradients reach the text
  encoder (mode "full_text"); otherwise they are stopped at its output so
  its backward pass is never computed.
  """

  backbone: Any = None
  adapter: Any = None
  text_encoder: str = "minilm"
  backbone_init: str = ""
  train_text_encoder: bool = False
  minilm_path: str = ""

  @nn.nowrap
  def _bb(self):
    return dict(self.backbone or {})

  @nn.nowrap
  def _ad(self):
    return {
        "dim": 64,
        "num_queries": 4,
        "num_heads": 4,
        "depth": 1,
        "bottleneck": 16,
        **dict(self.adapter or {}),
    }

  @nn.nowrap
  def _text_cfg(self) -> te.BertConfig:
    if self.text_encoder == "minilm":
      return te.BertConfig()
    if self.text_encoder == "tiny":
      return TINY_TEXT
    raise ValueError(
        f"unknown text_encoder {self.text_encoder!r} "
        "(config.model.text_encoder); known: minilm, tiny"
    )

  @nn.compact
  def __call__(self, batch, train: bool = False):
    image = batch["hr"]  # [B,H,W,C]
    ad = self._ad()
    words = te.TextEncoder(self._text_cfg(), name="text_encoder")(
        batch["text_ids"], batch["text_mask"]
    )[
        "tokens"
    ]  # [B,L,E]
    if not self.train_text_encoder:
      words = jax.lax.stop_gradient(words)
    proxies = TextAdapter(
        ad["num_queries"],
        ad["dim"],
        ad["num_heads"],
        ad["depth"],
        name="text_adapter",
    )(
        words, batch["text_mask"]
    )  # [B,Q,D]
    lang = proxies.mean(1)
    bb = Backbone(**self._bb(), name="backbone")
    x, feats = bb.stem(image), []
    for i in range(len(bb.widths)):
      x = bb.stage(i, x)
      x = StageAdapter(ad["bottleneck"], name=f"stage_adapter_{i}")(x, lang)
      feats.append(x)
    fused, sim, scale_w = VisualAdapter(ad["dim"], name="visual_adapter")(
        feats, proxies
    )
    logits = MaskDecoder(ad["dim"], name="decoder")(
        fused, sim, proxies, image
    )  # [B,H,W]
    out = {
        "mask_logits": logits,
        "aux_losses": {},
        "metrics": {
            "scale_entropy": -(scale_w * jnp.log(scale_w + 1e-9)).sum(-1)
        },
    }
    if "mask_target" in batch:
      target = batch["mask_target"]
      bce, dice = bce_dice(logits, target)
      w = batch.get("valid")
      w = jnp.ones_like(bce) if w is None else w.astype(jnp.float32)
      n = jnp.maximum(w.sum(), 1.0)
      out["aux_losses"] = {
          "bce": (bce * w).sum() / n,
          "dice": (dice * w).sum() / n,
      }
      inter, union = iou_counts(logits, target)
      out["metrics"].update(
          inter=inter,
          union=union,
          iou=jnp.where(union > 0, inter / jnp.maximum(union, 1.0), 0.0),
      )
    return out

  @nn.nowrap
  def load_pretrained(self, params):
    """Host param tree -> the same with MiniLM (and `backbone_init`) loaded."""
    params = dict(params)
    if self.text_encoder == "minilm":
      _, minilm, _ = te.load_minilm(self.minilm_path or None)
      params["text_encoder"] = checkpoint.replace_checked(
          params["text_encoder"], minilm, "MiniLM weights (text_encoder)"
      )
    if self.backbone_init:
      params["backbone"] = checkpoint.replace_checked(
          params["backbone"],
          load_backbone(self.backbone_init),
          f"config.model.backbone_init={self.backbone_init!r} (backbone)",
      )
    return params


# --- Backbone checkpoints -----------------------------------------------------


def save_backbone(path: str, backbone_params) -> None:
  """Writes backbone params as an .npz of "a/b/kernel" arrays."""
  checkpoint.save_params_npz(path, backbone_params)


def load_backbone(path: str):
  """Backbone params from `path`: an .npz written by `save_backbone`, or a
  run of ours (workdir, step dir, ...: `checkpoint.load_params`) holding a
  "backbone" subtree, e.g. the cross-scale pretraining run."""
  return checkpoint.load_subtree(path, "backbone", "config.model.backbone_init")


class BackboneClassifier(nn.Module):
  """The refseg backbone + mean pool + linear head: pretrains `backbone/`
  on a classification set (e.g. toyworld scenes) for `backbone_init`."""

  num_classes: int
  backbone: Any = None

  @nn.compact
  def __call__(self, batch, train: bool = False):
    feats = Backbone(**dict(self.backbone or {}), name="backbone")(batch["hr"])
    x = layers.LayerNorm(name="head_norm")(feats[-1].mean((1, 2)))
    return {
        "logits": layers.Dense(self.num_classes, name="head")(x),
        "aux_losses": {},
    }
