"""Cross-scale pretraining of the LR and HR encoders (pure Flax linen).

One step on a scene (LR view `[B, h, w, C_lr]`, HR scene `[B, H, W, C_hr]`,
tile grid G x G, N = G*G):

  LR view -> mask patches -> LR encoder -> tokens [B, M, D_lr]
      -> pixel head: masked LR patches (masked modelling)
      -> regions [B, N, D_lr] (tokens pooled onto the tile grid)
  HR scene -> T random tiles -> HR tile encoder -> [B, T, D_hr]
      -> detail head: tile minus LR block means
  alignment: sigmoid pairwise loss; region (b, i) <-> tile (b, i) positive,
      every other (region, tile) pair of the batch negative
  HR scene -> C detail-rich tiles, two photometric/shifted views -> HR tile
      encoder -> tile contrast (view a <-> view b)
  optional: HR scene -> refseg's backbone -> pooled onto the grid -> alignment
  optional: pooled LR tokens <-> frozen MiniLM embeddings of class prompts

Why each objective (alignment, masked modelling, HR detail, tile contrast,
text): docs/design.md.

With `sampler` set, the cross-scale model's sampler also pretrains on its
own label-free target (regressing the log HR detail energy of each tile from
the LR view, `models.sampler.sampler_detail_loss`).

Parameters are named like the cross-scale model's ("lr_encoder",
"hr_encoder", "sampler") and the referring model's ("backbone"), so
`config.model_init` / `model.perceptual_init` / `model.backbone_init` take
them directly.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from crossscale import selection, tile_grid
from crossscale.models import convnet, cross_scale, layers, vit
from crossscale.models import sampler as sampler_lib

PROMPT = "A satellite image of {}."
TEXT_DIM = 384  # all-MiniLM-L6-v2


def pool_to_grid(tokens: jnp.ndarray, grid: int) -> jnp.ndarray:
  """Token map `[B, m, m, D]` -> region tokens `[B, G*G, D]`: mean over the
  tokens inside each tile when m is a multiple of G, else area/linear
  resampling of the token map to G x G."""
  B, m, _, D = tokens.shape
  if m % grid == 0:
    s = m // grid
    x = tokens.reshape(B, grid, s, grid, s, D).mean((2, 4))
  else:
    x = jax.image.resize(tokens, (B, grid, grid, D), "linear")
  return x.reshape(B, grid * grid, D)


def patch_mask(
    key: jax.Array, batch: int, side: int, ratio: float
) -> jnp.ndarray:
  """`[B, side*side]` bool: exactly round(ratio * side^2) masked patches per
  scene, chosen uniformly."""
  n = side * side
  k = int(round(ratio * n))
  r = jax.random.uniform(key, (batch, n))
  return selection.hard_topk_mask(r, k) > 0


def patchify(images: jnp.ndarray, p: int) -> jnp.ndarray:
  """`[B, h, w, C]` -> `[B, (h/p)*(w/p), p*p*C]` (row-major patches)."""
  B, h, w, C = images.shape
  x = images.reshape(B, h // p, p, w // p, p, C).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(B, (h // p) * (w // p), p * p * C)


def pair_sigmoid_loss(
    a: jnp.ndarray, b: jnp.ndarray, log_t, bias
) -> jnp.ndarray:
  """SigLIP loss of matched rows: a[i] <-> b[i] positive, every a[i], b[j]
  (i != j) negative. a, b: `[P, E]` L2-normalised."""
  logits = jnp.exp(log_t) * a @ b.T + bias  # [P, P]
  z = 2.0 * jnp.eye(a.shape[0], dtype=logits.dtype) - 1.0
  return -jax.nn.log_sigmoid(z * logits).sum() / a.shape[0]


def detail_weighted_tiles(
    key: jax.Array, hr: jnp.ndarray, grid: int, scale: int, n: int
) -> jnp.ndarray:
  """`[B, n]` distinct tile indices of `hr: [B, H, W, C]` drawn without
  replacement with probability proportional to each tile's HR detail energy
  (what an LR pixel at `scale` cannot hold): Gumbel top-n on its log."""
  energy = jnp.log(
      tile_grid.hr_detail(tile_grid.to_tiles(hr, grid), scale) + 1e-4
  )
  idx, _ = selection.topk_indices(
      energy + jax.random.gumbel(key, energy.shape), n
  )  # [B, n]
  return idx


def tile_views(
    key: jax.Array, tile_pixels: jnp.ndarray, max_shift: int
) -> jnp.ndarray:
  """A random view of each tile `[B, T, t, t, C]` of standardised pixels
  (same shape): per tile a sign flip about the band mean (p = 1/2), a
  per-channel gain in [0.6, 1.4] and offset in [-0.5, 0.5] std, and a
  cyclic shift of up to `max_shift` pixels per axis, drawn per tile.
  No flips or rotations: orientation is content (it tells stripes apart)."""
  B, T = tile_pixels.shape[:2]
  C = tile_pixels.shape[-1]
  k_inv, k_gain, k_off, k_shift = jax.random.split(key, 4)
  inv = jax.random.bernoulli(k_inv, 0.5, (B, T, 1, 1, 1))
  x = jnp.where(inv, -tile_pixels, tile_pixels)
  x = x * jax.random.uniform(k_gain, (B, T, 1, 1, C), minval=0.6, maxval=1.4)
  x = x + jax.random.uniform(k_off, (B, T, 1, 1, C), minval=-0.5, maxval=0.5)
  if max_shift:
    shifts = jax.random.randint(k_shift, (B * T, 2), -max_shift, max_shift + 1)
    roll = jax.vmap(lambda img, s: jnp.roll(img, (s[0], s[1]), axis=(0, 1)))
    x = roll(x.reshape((B * T,) + x.shape[2:]), shifts).reshape(x.shape)
  return x


def _normalize(x, eps=1e-6):
  return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + eps)


class PixelHead(nn.Module):
  """Tokens `[B, M, D]` -> patch pixels `[B, M, out_dim]` (linear)."""

  @nn.compact
  def __call__(self, tokens, out_dim: int):
    return layers.Dense(out_dim, axes=("embed", None))(tokens)


class CrossScalePretrain(nn.Module):
  """batch {"lr", "hr"[, "labels"]} -> {"aux_losses": {"align", "mim"[,
  "align_backbone"]}, "metrics": {...}[, "logits" (text)]}.

  lr_encoder / hr_encoder: as in the cross-scale model (same names and
  structure, so its `config.model_init` loads them). backbone: refseg's
  hierarchical backbone config (widths, depths) or None. text: class prompts
  from the frozen MiniLM (`class_text`, filled by `load_pretrained`, frozen
  by config.optim.frozen) give "logits" over classes = scaled cosine of the
  projected LR embedding and each class prompt: the trainer's task loss on
  them is the image-text objective; new prompts give zero-shot predictions.
  """

  grid: int
  num_classes: int = 0
  class_names: tuple = ()
  lr_encoder: dict | None = None
  hr_encoder: dict | None = None
  backbone: dict | None = None
  sampler: dict | None = None  # cross_scale.Sampler config, or None
  embed_dim: int = 128  # alignment space
  num_target_tiles: int = 8  # HR tiles encoded per scene (T)
  mask_ratio: float = 0.5  # LR patches masked for masked modelling
  contrast_tiles: int = 0  # C: HR tiles per scene in the tile
  # contrast (0: off)
  contrast_shift: int = 1  # max shift (px) between the two views
  text: bool = False  # class-prompt alignment (zero-shot)
  prompt: str = PROMPT
  minilm_path: str = ""

  def setup(self):
    self.lr_enc = vit.Encoder(**dict(self.lr_encoder or {}), name="lr_encoder")
    hr_cfg = dict(self.hr_encoder or {})
    self.hr_kind = hr_cfg.pop("kind", "cnn")
    if self.hr_kind == "vit":
      self.hr_enc = vit.Encoder(**hr_cfg, name="hr_encoder")
    elif self.hr_kind == "cnn":
      self.hr_enc = convnet.ConvEncoder(**hr_cfg, name="hr_encoder")
    else:
      raise ValueError(
          f"unknown HR tile encoder {self.hr_kind!r} "
          "(config.model.hr_encoder.kind); known: vit, cnn"
      )
    if self.sampler is not None:
      self.sampler_net = cross_scale.Sampler(
          self.grid, **dict(self.sampler), name="sampler"
      )
    if self.backbone is not None:
      from crossscale.models import refseg  # pylint: disable=g-import-not-at-top

      self.bb = refseg.Backbone(**dict(self.backbone), name="backbone")
      self.bb_proj = layers.Dense(
          self.embed_dim, axes=("embed_in", "embed"), name="backbone_proj"
      )
      self.bb_region = layers.Dense(
          self.embed_dim,
          axes=("embed_in", "embed"),
          name="backbone_region_proj",
      )
    self.mim_head = PixelHead(name="mim_head")
    self.detail_head = PixelHead(name="detail_head")
    self.lr_proj = layers.Dense(
        self.embed_dim, axes=("embed_in", "embed"), name="lr_proj"
    )
    self.hr_proj = layers.Dense(
        self.embed_dim, axes=("embed_in", "embed"), name="hr_proj"
    )
    if self.contrast_tiles:
      self.contrast_proj = layers.Dense(
          self.embed_dim, axes=("embed_in", "embed"), name="contrast_proj"
      )
      self.contrast_log_t = self.param(
          "contrast_log_t",
          layers.part(nn.initializers.constant(np.log(10.0)), ()),
          (),
      )
      self.contrast_bias = self.param(
          "contrast_bias", layers.part(nn.initializers.constant(-10.0), ()), ()
      )
    self.log_t = self.param(
        "log_t", layers.part(nn.initializers.constant(np.log(10.0)), ()), ()
    )
    self.bias = self.param(
        "bias", layers.part(nn.initializers.constant(-10.0), ()), ()
    )
    if self.text:
      if not self.num_classes:
        raise ValueError(
            "config.model.text=True needs a labelled dataset "
            "(class names for the prompts)."
        )
      self.text_proj = layers.Dense(
          TEXT_DIM, axes=("embed_in", "embed"), name="text_proj"
      )
      self.class_text = self.param(
          "class_text",
          layers.part(nn.initializers.normal(1.0), ("tokens", "embed")),
          (self.num_classes, TEXT_DIM),
      )
      self.text_log_t = self.param(
          "text_log_t",
          layers.part(nn.initializers.constant(np.log(10.0)), ()),
          (),
      )

  def lr_patch(self, lr) -> int:
    return self.lr_enc.patch_size or vit.auto_patch_size(
        min(lr.shape[1:3]), self.lr_enc.target_side
    )

  def encode_tiles(self, tile_pixels):
    """`[B, T, t, t, C]` -> `[B, T, D_hr]`."""
    B, T = tile_pixels.shape[:2]
    z = self.hr_enc(tile_pixels.reshape((B * T,) + tile_pixels.shape[2:]))
    if self.hr_kind == "vit":
      z = z.mean(1)
    return z.reshape(B, T, -1)

  def image_embedding(self, lr, train: bool = False):
    """Pooled LR tokens projected into the text space, `[B, 384]` unit."""
    return _normalize(self.text_proj(self.lr_enc(lr, train).mean(1)))

  def zero_shot_logits(self, emb, prompt_emb):
    """`[B, 384]` x `[K, 384]` (unit rows) -> `[B, K]` scaled cosines."""
    return jnp.exp(self.text_log_t) * emb @ _normalize(prompt_emb).T

  def features(self, lr):
    """Frozen-feature view for linear probes: mean LR token `[B, D_lr]`."""
    return self.lr_enc(lr).mean(1)

  def __call__(self, batch, train: bool = False):
    lr, hr = batch["lr"], batch["hr"]
    B = lr.shape[0]
    p = self.lr_patch(lr)
    side = lr.shape[1] // p
    # Evaluation scores the same objectives on a fixed draw of masks/tiles.
    key = self.make_rng("selection") if train else jax.random.key(0)
    mask_key, tile_key, contrast_key = jax.random.split(key, 3)
    masked = patch_mask(mask_key, B, side, self.mask_ratio)
    pix_mask = jnp.repeat(
        jnp.repeat(masked.reshape(B, side, side), p, 1), p, 2
    )[..., None]
    tok = self.lr_enc(jnp.where(pix_mask, 0.0, lr), train)  # [B, M, D]
    out = {"aux_losses": {}, "metrics": {}}

    # Masked modelling: reconstruct the masked LR patches (normalised pixels).
    target = patchify(lr, p)  # [B, M, p*p*C]
    target = (target - target.mean(-1, keepdims=True)) / (
        target.std(-1, keepdims=True) + 1e-3
    )
    recon = self.mim_head(tok, target.shape[-1])
    w = masked.astype(jnp.float32)
    mim = (jnp.abs(recon - target).mean(-1) * w).sum() / jnp.maximum(
        w.sum(), 1.0
    )

    # Alignment: LR regions <-> HR tiles (T random tiles per scene).
    regions = pool_to_grid(
        tok.reshape(B, side, side, -1), self.grid
    )  # [B, N, D]
    n = self.grid * self.grid
    T = min(self.num_target_tiles, n)
    tidx, _ = selection.topk_indices(
        jax.random.uniform(tile_key, (B, n)), T
    )  # [B, T]
    z_lr = _normalize(
        self.lr_proj(jnp.take_along_axis(regions, tidx[..., None], axis=1))
    ).reshape(B * T, -1)
    tile_px = tile_grid.gather_tiles(hr, tidx, self.grid)  # [B, T, t, t, C]
    hr_lat = self.encode_tiles(tile_px)  # [B, T, D_hr]
    z_hr = _normalize(self.hr_proj(hr_lat)).reshape(B * T, -1)
    align = pair_sigmoid_loss(z_lr, z_hr, self.log_t, self.bias)
    # HR detail: the tile latent must hold what LR lacks (the tile minus its
    # LR-pixel block means), so alignment cannot reduce it to LR content.
    detail = tile_grid.detail_residual(tile_px, hr.shape[1] // lr.shape[1])
    detail = detail.reshape(B, T, -1)
    detail = jax.lax.stop_gradient(detail / (detail.std() + 1e-3))
    hr_detail = jnp.abs(
        self.detail_head(hr_lat, detail.shape[-1]) - detail
    ).mean()
    if train:
      out["aux_losses"].update(align=align, mim=mim, hr_detail=hr_detail)
    hit = (
        (jnp.argmax(z_lr @ z_hr.T, 1) == jnp.arange(B * T))
        .astype(jnp.float32)
        .reshape(B, T)
        .mean(1)
    )
    out["metrics"].update(
        align_top1=hit,
        mim=jnp.full((B,), mim),
        hr_detail=jnp.full((B,), hr_detail),
    )

    if self.contrast_tiles:
      l_c, c_top1 = self.tile_contrast(
          contrast_key, hr, hr.shape[1] // lr.shape[1]
      )
      if train:
        out["aux_losses"]["hr_contrast"] = l_c
      out["metrics"].update(
          hr_contrast=jnp.full((B,), l_c), contrast_top1=jnp.full((B,), c_top1)
      )

    if self.sampler is not None:  # the cross-scale sampler, label-free
      s = self.sampler_net(lr, train)  # [B, N]
      l_s = sampler_lib.sampler_detail_loss(
          s, tidx, tile_px, hr.shape[1] // lr.shape[1]
      )
      if train:
        out["aux_losses"]["sampler"] = l_s
      out["metrics"]["sampler"] = jnp.full((B,), l_s)

    if self.backbone is not None:  # dense HR backbone, the same T tiles
      feat = self.bb(hr)[-1]  # [B, h', w', C]
      bb_tiles = jnp.take_along_axis(
          pool_to_grid(feat, self.grid), tidx[..., None], axis=1
      )  # [B, T, C]
      z_bb = _normalize(self.bb_proj(bb_tiles)).reshape(B * T, -1)
      z_reg = _normalize(
          self.bb_region(jnp.take_along_axis(regions, tidx[..., None], axis=1))
      ).reshape(B * T, -1)
      l_bb = pair_sigmoid_loss(z_reg, z_bb, self.log_t, self.bias)
      if train:
        out["aux_losses"]["align_backbone"] = l_bb

    if self.text:  # on the unmasked view, as at zero-shot inference
      emb = self.image_embedding(lr, train)
      out["logits"] = self.zero_shot_logits(emb, self.class_text)
    return out

  def tile_contrast(self, key, hr, scale: int):
    """Tile contrast on `contrast_tiles` detail-rich tiles per scene of
    `hr: [B, H, W, C_hr]`:
    (sigmoid pair loss, top-1 matching accuracy of view a -> view b)."""
    B = hr.shape[0]
    nc = min(self.contrast_tiles, self.grid * self.grid)
    pick_key, view_a, view_b = jax.random.split(key, 3)
    cidx = detail_weighted_tiles(pick_key, hr, self.grid, scale, nc)
    px = jax.lax.stop_gradient(tile_grid.gather_tiles(hr, cidx, self.grid))
    z = [
        _normalize(
            self.contrast_proj(
                self.encode_tiles(tile_views(k, px, self.contrast_shift))
            )
        ).reshape(B * nc, -1)
        for k in (view_a, view_b)
    ]
    loss = pair_sigmoid_loss(
        z[0], z[1], self.contrast_log_t, self.contrast_bias
    )
    top1 = (jnp.argmax(z[0] @ z[1].T, 1) == jnp.arange(B * nc)).mean()
    return loss, top1

  @nn.nowrap
  def load_pretrained(self, params):
    """Host params -> the same with `class_text` = MiniLM embeddings of the
    class prompts (frozen by config.optim.frozen)."""
    if not self.text:
      return params
    params = dict(params)
    params["class_text"] = prompt_embeddings(
        [self.prompt.format(readable(c)) for c in self.class_names],
        self.minilm_path or None,
    ).astype(np.asarray(params["class_text"]).dtype)
    return params


def readable(class_name: str) -> str:
  """A folder-style class name as words: "fResident" -> "resident",
  "SeaLake" -> "sea lake", "Annual_Crop" -> "annual crop"."""
  import re  # pylint: disable=g-import-not-at-top

  s = re.sub(r"^[a-z](?=[A-Z])", "", class_name)  # RSSCN7's a..g prefix
  s = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", s).replace("_", " ")
  return " ".join(s.lower().split())


def prompt_embeddings(texts, minilm_path: str | None = None) -> np.ndarray:
  """MiniLM sentence embeddings `[K, 384]` (unit rows) of `texts`."""
  from crossscale.models import text_encoder as te  # pylint: disable=g-import-not-at-top

  module, params, tok = te.load_minilm(minilm_path)
  enc = te.tokenize(tok, texts, 32)
  emb = module.apply(
      {"params": params},
      jnp.asarray(enc["input_ids"]),
      jnp.asarray(enc["attention_mask"]),
  )["pooled"]
  return np.asarray(_normalize(emb), np.float32)


FROZEN = (r"^class_text$",)  # config.optim.frozen when text=True
