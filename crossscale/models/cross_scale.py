"""Cost-aware cross-scale observation model (pure Flax linen).

  LR view [B, h, w, C_lr] ──> Sampler ──> tile logits [B, N]      (N = G*G)
        │                                   │ selection policy + budget k
        │                                   v
        │              HR scene [B, H, W, C_hr] ──gather──> tiles [B,k,t,t,C]
        │                                                     │ HR tile encoder
        v                                                     v
  LR encoder ──> LR context [B, M+1, D] ──> Latent predictor <── tile latents
                                              │ (mask token at unobserved tiles)
                                              v
                                 completed tile latents [B, N, D] ──> heads

Only the k selected tiles are gathered and encoded, so a step's cost grows
with the budget, not the grid. Baselines run through this same module by
config: `config.model.policy` in {learned, random, uniform, heuristic,
oracle} (the oracle buys the tiles of the generator's object map, batch
["mask_objects"]; `config.model.budget` 0 is LR-only, 1.0 is dense HR), and
`config.model.predictor.lr_guidance=False` is HR-only completion.

Learning to select: the sampler's tiles are picked by hard top-k in the
forward pass; with `config.model.selection.mode` "perturbed" (or
"gumbel_st") the observed latent of each selected tile enters the predictor as
  mask_token + w * (latent - mask_token),  w = 1 + m - stop_gradient(m),
where m is the soft (relaxed) indicator of that tile, so the forward pass is
exactly the hard selection while d loss / d m = <g, latent - mask_token>
reaches every tile logit through the relaxation's Jacobian.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from crossscale import bands as bands_lib
from crossscale import budgets, selection, tile_grid
from crossscale.kernels import tile_select
from crossscale.models import convnet, layers, vit
from crossscale.models import sampler as sampler_lib
from crossscale.models.sampler import Sampler, lr_detail_prior  # noqa: F401

POLICIES = ("learned", "random", "uniform", "heuristic", "oracle")
SAMPLER_TARGETS = ("detail", "completion", "evidence", "objects")
# The oracle reads the generator's object map (geoworld's masks["objects"]).
ORACLE_FIELD = "mask_objects"


class PredictorBlock(nn.Module):
  """Self-attention over tiles -> cross-attention to LR context -> MLP."""

  num_heads: int
  mlp_dim: int
  lr_guidance: bool = True
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, context, train: bool):
    y = layers.LayerNorm()(x)
    x = x + layers.Attention(self.num_heads, name="self_attn")(y, y)
    if self.lr_guidance:
      y = layers.LayerNorm()(x)
      x = x + layers.Attention(self.num_heads, name="cross_attn")(y, context)
    return x + vit.MlpBlock(self.mlp_dim, self.dropout)(
        layers.LayerNorm()(x), train
    )


class MAPHead(nn.Module):
  """Multi-head attention pooling: a learned probe attends over tokens."""

  num_heads: int = 4

  @nn.compact
  def __call__(self, x):
    probe = self.param(
        "probe",
        layers.part(nn.initializers.normal(0.02), (None, None, "embed")),
        (1, 1, x.shape[-1]),
    )
    probe = jnp.broadcast_to(probe, (x.shape[0], 1, x.shape[-1]))
    y = layers.Attention(self.num_heads)(probe, x)
    return layers.LayerNorm()(y[:, 0])


def cosine_distance(a, b, eps=1e-6):
  """1 - cos(a, b) over the last axis."""
  a = a / (jnp.linalg.norm(a, axis=-1, keepdims=True) + eps)
  b = b / (jnp.linalg.norm(b, axis=-1, keepdims=True) + eps)
  return 1.0 - (a * b).sum(-1)


def siglip_loss(emb, labels, log_t, bias):
  """Sigmoid pairwise loss over the batch: pairs sharing a label are
  positives. emb: `[B, E]` L2-normalised; labels: `[B, K]`."""
  pos = (labels @ labels.T > 0).astype(emb.dtype)  # [B, B]
  logits = jnp.exp(log_t) * emb @ emb.T + bias
  z = 2.0 * pos - 1.0
  off_diag = 1.0 - jnp.eye(emb.shape[0], dtype=emb.dtype)
  return -(jax.nn.log_sigmoid(z * logits) * off_diag).sum() / emb.shape[0]


def uniform_indices(n_tiles: int, k: int) -> jnp.ndarray:
  """k tile indices spread evenly over the row-major grid `[k]`."""
  if k == 0:
    return jnp.zeros((0,), jnp.int32)
  return jnp.floor((jnp.arange(k) + 0.5) * n_tiles / k).astype(jnp.int32)


class CrossScaleModel(nn.Module):
  """batch {"lr": [B,h,w,C], "hr": [B,H,W,C], "labels": [B,K]} ->
  {"logits": [B, K], "aux_losses": {...}, "metrics": {name: [B]}, ...}."""

  num_classes: int
  grid: int
  budget: Any = 0.125  # tiles: int k, or ratio of G*G
  class_budgets: Any = ()  # per-class tile counts P_c (see scene_budget)
  cost: dict = None  # {"enabled", "total", "price", "k_max"}
  policy: str = "learned"
  selection: dict = None  # mode, sigma, num_samples, tau
  lr_encoder: dict = None
  hr_encoder: dict = None
  sampler: dict = None
  predictor: dict = None  # width, depth, num_heads, mlp_dim, lr_guidance
  num_target_tiles: int = -1  # unobserved tiles with a latent target; -1: k
  # {"detail": w, "completion": w} (latent_losses), "evidence": w (MIL head
  # only), "objects": w (an upper reference) (label_sampler_loss).
  sampler_target: dict = None
  embed_dim: int = 64  # retrieval embedding
  zero_hr_gain: float = 0.0  # residual fusion s = s_P + g (s_P - s_0HR)
  head_type: str = "map"  # map | mil (see head_logits)
  mil_sharpness: float = 1.0  # r of the MIL's LSE pooling (-> max as r grows)
  select_impl: str = "auto"  # tile select+gather: auto|kernel|reference
  remat: bool = False  # recompute block activations in backward
  # Issue 22 (docs/design.md#ground-resolution-and-bands), off by default:
  # positions from ground coordinates (units of reference_gsd metres) of
  # each scene's GSD (batch "lr_gsd"/"hr_gsd" [B], else lr_gsd/hr_gsd here,
  # which train.make_model fills from the manifest).
  gsd_positions: bool = False
  reference_gsd: float = 1.0
  # > 0: every sin-cos position embedding gets a learned scalar gain
  # starting here (layers.position_gain); 0: unit amplitude, fixed.
  position_gain: float = 0.0
  lr_gsd: float = 0.0  # metres per LR pixel when the batch carries none
  hr_gsd: float = 0.0
  # "learned" (per-channel kernels) | "wavelength" (any bands, by name).
  band_embedding: str = "learned"
  lr_bands: tuple[str, ...] = ()  # band names; make_model: the manifest's
  hr_bands: tuple[str, ...] = ()

  def setup(self):
    if self.head_type not in ("map", "mil"):
      raise ValueError(
          f"unknown head_type {self.head_type!r} (config.model.head_type); "
          "known: map, mil ('auto' is resolved by train.make_model)"
      )
    if not self.mil_sharpness > 0:
      raise ValueError(
          f"model.mil_sharpness must be > 0, got {self.mil_sharpness!r}"
      )
    if self.policy not in POLICIES:
      raise ValueError(
          f"unknown selection policy {self.policy!r} "
          f"(config.model.policy); known: {POLICIES}"
      )
    unknown = set(self.sampler_target or {}) - set(SAMPLER_TARGETS)
    if unknown:
      raise ValueError(
          f"unknown sampler targets {sorted(unknown)} "
          f"(config.model.sampler_target); known: {SAMPLER_TARGETS}"
      )
    if (self.sampler_target or {}).get("evidence") and self.head_type != "mil":
      raise ValueError(
          "config.model.sampler_target.evidence needs per-tile class "
          f"evidence: set model.head_type='mil' (got {self.head_type!r})"
      )
    negative = [k for k, w in (self.sampler_target or {}).items() if w < 0]
    if negative:
      raise ValueError(
          f"config.model.sampler_target {negative} < 0: -1 ('by the "
          "labels') is resolved by train.make_model; give weights >= 0"
      )
    if self.cost_budget:
      budgets.check_cost_budget(
          np.full((1, self.n_tiles), self.cost.get("price", 1.0)),
          self.cost.get("total", -1.0),
      )
    self.check_scale_options()
    p = dict(self.predictor or {})
    self.width = p.get("width", 96)
    pos = dict(
        gsd_positions=self.gsd_positions,
        reference_gsd=self.reference_gsd,
        position_gain=self.position_gain,
    )
    lr_bands = dict(band_embedding=self.band_embedding, bands=self.lr_bands)
    hr_bands = dict(band_embedding=self.band_embedding, bands=self.hr_bands)
    self.lr_enc = vit.Encoder(
        **{"remat": self.remat, **(self.lr_encoder or {}), **pos, **lr_bands},
        name="lr_encoder",
    )
    hr_cfg = dict(self.hr_encoder or {})
    self.hr_kind = hr_cfg.pop("kind", "vit")
    if self.hr_kind == "vit":
      self.hr_enc = vit.Encoder(
          **{"remat": self.remat, **hr_cfg, **pos, **hr_bands},
          name="hr_encoder",
      )
    elif self.hr_kind == "cnn":
      self.hr_enc = convnet.ConvEncoder(**hr_cfg, **hr_bands, name="hr_encoder")
    else:
      raise ValueError(
          f"unknown HR tile encoder {self.hr_kind!r} "
          "(config.model.hr_encoder.kind); known: vit, cnn"
      )
    self.sampler_net = Sampler(
        self.grid, **{**(self.sampler or {}), **pos, **lr_bands}, name="sampler"
    )
    self.lr_proj = layers.Dense(
        self.width, axes=("embed_in", "embed"), name="lr_proj"
    )
    self.hr_proj = layers.Dense(
        self.width, axes=("embed_in", "embed"), name="hr_proj"
    )
    block = (
        nn.remat(PredictorBlock, static_argnums=(3,))
        if self.remat
        else PredictorBlock
    )
    self.blocks = [
        block(
            p.get("num_heads", 4),
            p.get("mlp_dim", 2 * self.width),
            p.get("lr_guidance", True),
            name=f"predictor{i}",
        )
        for i in range(p.get("depth", 2))
    ]
    n = self.grid * self.grid
    self.mask_token = self.param(
        "mask_token",
        layers.part(nn.initializers.normal(0.02), (None, None, "embed")),
        (1, 1, self.width),
    )
    if not self.gsd_positions:  # else from ground positions (tile_positions)
      self.tile_pos = self.param(
          "tile_pos",
          layers.part(nn.initializers.normal(0.02), (None, "tokens", "embed")),
          (1, n, self.width),
      )
    else:
      self.tile_pos_gain = layers.position_gain(
          self, self.position_gain, "tile_pos_gain"
      )
    self.out_norm = layers.LayerNorm(name="out_norm")
    self.to_latent = layers.Dense(
        self.hr_enc.width, axes=("embed", "embed_out"), name="to_latent"
    )
    self.pool = MAPHead(name="pool")
    self.head = layers.Dense(
        self.num_classes, axes=("embed", "tokens"), name="head"
    )
    self.embed = layers.Dense(
        self.embed_dim, axes=("embed", "embed_out"), name="embed"
    )
    if len(self.class_budgets):
      self.budget_head = layers.Dense(
          self.num_classes, axes=("embed", "tokens"), name="budget_head"
      )
    self.siglip_t = self.param(
        "siglip_log_t",
        layers.part(nn.initializers.constant(jnp.log(10.0)), ()),
        (),
    )
    self.siglip_b = self.param(
        "siglip_bias", layers.part(nn.initializers.constant(-10.0), ()), ()
    )

  @property
  def n_tiles(self) -> int:
    return self.grid * self.grid

  def check_scale_options(self) -> None:
    """Clear errors for the GSD and band options (issue 22)."""
    if self.band_embedding not in layers.BAND_EMBEDDINGS:
      raise ValueError(
          f"unknown band_embedding {self.band_embedding!r} "
          f"(config.model.band_embedding); known: {layers.BAND_EMBEDDINGS}"
      )
    if self.band_embedding == "wavelength":
      for key in ("lr_bands", "hr_bands"):
        if not getattr(self, key):
          raise ValueError(
              f"band_embedding='wavelength' needs config.model.{key} (the "
              "input's band names; train.make_model takes the manifest's)"
          )
        bands_lib.wavelengths(getattr(self, key))  # unknown band: an error
    if self.gsd_positions and not self.reference_gsd > 0:
      raise ValueError(
          f"config.model.reference_gsd must be > 0 metres, got "
          f"{self.reference_gsd!r}"
      )

  def scene_gsd(self, batch, side: str):
    """`[B]` metres per pixel of `side` ("lr" | "hr"): the batch's
    `{side}_gsd` field (per scene, e.g. after GSD augmentation), else the
    model's `{side}_gsd` (the dataset's); None without gsd_positions."""
    if not self.gsd_positions:
      return None
    B = batch["lr"].shape[0]
    key = f"{side}_gsd"
    if key in batch:
      return jnp.asarray(batch[key], jnp.float32).reshape(B)
    default = getattr(self, key)
    if not default > 0:
      raise ValueError(
          f"gsd_positions=True needs each scene's GSD: batch[{key!r}] (add "
          f"{key!r} to config.data.fields) or config.model.{key} (> 0; "
          "train.make_model fills it from the manifest)"
      )
    return jnp.full((B,), default, jnp.float32)

  def tile_positions(self, batch):
    """The predictor's tile position embeddings: the learned `[1, N, D]`,
    or with gsd_positions the sin-cos embedding of each tile's centre on
    the ground `[B, N, D]` (tile width: LR pixels per tile x LR GSD)."""
    if not self.gsd_positions:
      return self.tile_pos
    tile_m = self.scene_gsd(batch, "lr") * (batch["lr"].shape[1] / self.grid)
    return self.tile_pos_gain * layers.gsd_positions(
        self.grid, self.grid, tile_m, self.width, self.reference_gsd
    )

  @property
  def cost_budget(self) -> bool:
    return bool(self.cost) and self.cost.get("enabled", True)

  def k(self) -> int:
    """Static tile slots per scene: k, max P_c, or the price budget's cap."""
    if self.cost_budget:
      return budgets.k_from_budget(
          self.cost.get("k_max") or self.n_tiles,
          self.n_tiles,
          key="config.model.cost.k_max",
      )
    if len(self.class_budgets):
      return int(max(self.class_budgets))
    return budgets.k_from_budget(self.budget, self.n_tiles)

  def scene_budget(self, batch, budget_logits, train):
    """Tiles each scene may buy, `[B]` int32, or None for the fixed k.

    class_budgets P_c: k_b = P_c of the scene's class (max over present
    classes), the class read from the true labels in training and from the
    LR-only budget head at inference (sigmoid >= 0.5, else its best class),
    since no HR tile has been bought yet.
    """
    if not len(self.class_budgets):
      return None
    present = batch["labels"] if train else jax.nn.sigmoid(budget_logits)
    return selection.per_class_k(
        present, tuple(self.class_budgets), self.n_tiles
    )

  def tile_budget(self, batch, s, budget_logits, train) -> dict:
    """The budget keywords of `tile_select` for this batch: a price budget
    {"prices": [B, N] (batch["tile_prices"] or uniform), "total"}, else
    {"k": per-scene counts [B] or None for the fixed k} (`scene_budget`)."""
    if not self.cost_budget:
      return {"k": self.scene_budget(batch, budget_logits, train)}
    prices = batch.get("tile_prices")  # [B, N] or None
    if prices is None:
      prices = jnp.full(s.shape, float(self.cost.get("price", 1.0)))
    return {"prices": prices, "total": float(self.cost["total"])}

  def select_tiles(self, s, batch, budget):
    """Hard selection + gather under `budget` (`tile_budget`): idx `[B, k]`,
    valid `[B, k]`, tiles `[B, k, t, t, C]`."""
    return tile_select.select_and_gather(
        jax.lax.stop_gradient(s),
        batch["hr"],
        self.grid,
        self.k(),
        impl=self.select_impl,
        **budget,
    )

  def encode_tiles(self, tile_pixels, hr_gsd=None):
    """`[B, k, t, t, C]` -> tile latents `[B, k, D_hr]` (`hr_gsd: [B]`
    metres per HR pixel, for a ViT tile encoder with gsd_positions)."""
    B, k = tile_pixels.shape[:2]
    if k == 0:
      return jnp.zeros((B, 0, self.hr_enc.width), tile_pixels.dtype)
    flat = tile_pixels.reshape((B * k,) + tile_pixels.shape[2:])
    gsd = None if hr_gsd is None else jnp.repeat(hr_gsd, k)  # [B*k]
    z = self.hr_enc(flat, gsd=gsd)
    if self.hr_kind == "vit":
      z = z.mean(1)  # tokens -> tile
    return z.reshape(B, k, -1)

  def scores(self, batch, train):
    """Tile scores `[B, N]` of the policy (logits for "learned")."""
    lr = batch["lr"]
    B = lr.shape[0]
    if self.policy == "learned":
      return self.sampler_net(lr, train, gsd=self.scene_gsd(batch, "lr"))
    if self.policy == "random":
      return jax.random.uniform(self.make_rng("selection"), (B, self.n_tiles))
    if self.policy == "heuristic":
      return tile_grid.tile_statistic(lr, self.grid)
    if self.policy == "oracle":  # object pixels per tile; random tie-break
      if ORACLE_FIELD not in batch:
        raise ValueError(
            f"policy 'oracle' reads batch[{ORACLE_FIELD!r}], the generator's "
            f"object map: add {ORACLE_FIELD!r} to config.data.fields (only "
            "records with masks['objects'], e.g. geoworld, carry it)"
        )
      noise = jax.random.uniform(self.make_rng("selection"), (B, self.n_tiles))
      return tile_grid.mask_fraction(batch[ORACLE_FIELD], self.grid) + (
          1e-3 * noise
      )
    order = uniform_indices(self.n_tiles, self.k())  # uniform
    s = jnp.zeros((self.n_tiles,)).at[order].set(1.0)
    return jnp.broadcast_to(s, (B, self.n_tiles))

  def complete(self, context, idx, weight, observed, train=False, pos=None):
    """Predictor: tile tokens with observed latents at `idx: [B, k]`
    (blended by `weight: [B, k]`) and mask tokens elsewhere -> `[B, N, D]`.
    `pos`: tile position embeddings (`tile_positions`; None: the learned
    table)."""
    B = context.shape[0]
    x = jnp.broadcast_to(self.mask_token, (B, self.n_tiles, self.width))
    if idx.shape[1]:
      onehot = jax.nn.one_hot(idx, self.n_tiles, dtype=x.dtype)  # [B, k, N]
      delta = (self.hr_proj(observed) - self.mask_token) * weight[..., None]
      x = x + jnp.einsum("bkn,bkd->bnd", onehot, delta)
    x = x + (self.tile_pos if pos is None else pos)
    for blk in self.blocks:
      x = blk(x, context, train)
    return self.out_norm(x)

  def head_logits(self, tokens, context):
    """Class logits `[B, K]` and pooled features `[B, D]` from the completed
    tile tokens (and the LR context, unless HR-only: lr_guidance=False).

    head="map": a learned probe attends over the tokens, then a linear
    classifier. head="mil": every token scores every class and a scene's
    score is the LSE pooling over its T tokens, (logsumexp(r x) - log T) / r
    (multiple-instance pooling: a class is present if some tile shows it),
    which suits labels carried by small objects in a few tiles; r =
    `mil_sharpness` moves it from the mean (r -> 0) to the max (r -> inf).
    """
    if (self.predictor or {}).get("lr_guidance", True):
      tokens = jnp.concatenate([tokens, context], axis=1)
    pooled = self.pool(tokens)
    if self.head_type == "mil":
      r = self.mil_sharpness
      per_token = self.head(tokens)  # [B, T, K]
      lse = jax.nn.logsumexp(r * per_token, axis=1)  # [B, K]
      return (lse - jnp.log(tokens.shape[1])) / r, pooled
    return self.head(pooled), pooled

  def lr_context(self, lr, train: bool = False, gsd=None):
    """LR context tokens `[B, M+1, D]` (M LR tokens + their mean) and the
    budget head's class logits `[B, K]` (None without class budgets);
    `gsd: [B]` metres per LR pixel (with gsd_positions)."""
    lr_tok = self.lr_enc(lr, train, gsd=gsd)  # [B, M, D_lr]
    context = self.lr_proj(
        jnp.concatenate([lr_tok, lr_tok.mean(1, keepdims=True)], axis=1)
    )  # [B, M+1, D]
    budget_logits = (
        self.budget_head(context.mean(1))  # [B, K], LR only
        if len(self.class_budgets)
        else None
    )
    return context, budget_logits

  def plan(self, batch):
    """Which HR tiles to buy, from the LR view alone (before any purchase):
    {"tile_logits": [B, N], "tile_indices": [B, k] best first,
    "tile_valid": [B, k] (slot bought: per-class budgets and price budgets
    buy fewer than k)}. The selection `__call__` makes at inference, from
    the same budget, without the gather."""
    s = self.scores(batch, False)
    budget_logits = None
    if len(self.class_budgets) and not self.cost_budget:
      _, budget_logits = self.lr_context(
          batch["lr"], gsd=self.scene_gsd(batch, "lr")
      )
    budget = self.tile_budget(batch, s, budget_logits, False)
    idx, valid = tile_select.select(s, self.k(), **budget)
    return {"tile_logits": s, "tile_indices": idx, "tile_valid": valid}

  def __call__(self, batch, train: bool = False):
    lr, hr = batch["lr"], batch["hr"]
    B = lr.shape[0]
    k = self.k()
    lr_gsd, hr_gsd = self.scene_gsd(batch, "lr"), self.scene_gsd(batch, "hr")
    context, budget_logits = self.lr_context(lr, train, lr_gsd)
    pos = self.tile_positions(batch)  # [1 or B, N, D]

    s = self.scores(batch, train)  # [B, N]
    budget = self.tile_budget(batch, s, budget_logits, train)
    idx, valid, tile_px = self.select_tiles(
        s, batch, budget
    )  # [B, k], .., [B, k, t, t, C]
    weight = valid.astype(jnp.float32)
    observed = self.encode_tiles(tile_px, hr_gsd)  # [B, k, D_hr]
    observed_mask = jnp.zeros((B, self.n_tiles), bool)
    if k:
      observed_mask = observed_mask.at[jnp.arange(B)[:, None], idx].set(valid)
    sel = dict(self.selection or {})
    mode = sel.pop("mode", "perturbed")
    counterfactual = sel.pop("counterfactual", False)
    soft = None
    if train and self.policy == "learned" and k and mode != "hard":
      soft = selection.select(
          s,
          valid.sum(1),
          mode=mode,
          key=self.make_rng("selection"),
          train=True,
          **sel,
      )  # [B, N]
      m = jnp.take_along_axis(soft, idx, axis=1)
      weight = weight * (1.0 + m - jax.lax.stop_gradient(m))
    # Latent targets: T unobserved tiles, encoded (stop-gradient) in training.
    targets = self.latent_targets(hr, observed_mask, hr_gsd) if train else None
    pred_idx, pred_weight, pred_obs = idx, weight, observed
    if counterfactual and soft is not None and targets is not None:
      # Tiles not bought enter with weight m - sg(m) = 0: the forward is
      # unchanged, and the task gradient at that weight, <dL/dx_i,
      # latent_i - mask>, is the first-order value of buying tile i.
      tidx, _, target = targets
      mt = jnp.take_along_axis(soft, tidx, axis=1)  # [B, T]
      pred_idx = jnp.concatenate([idx, tidx], axis=1)
      pred_weight = jnp.concatenate(
          [weight, mt - jax.lax.stop_gradient(mt)], axis=1
      )
      pred_obs = jnp.concatenate([observed, target], axis=1)
    tokens = self.complete(
        context, pred_idx, pred_weight, pred_obs, train, pos
    )  # [B, N, D]
    logits, pooled = self.head_logits(tokens, context)
    if self.zero_hr_gain:
      zero = self.complete(
          context, idx[:, :0], weight[:, :0], observed[:, :0], pos=pos
      )
      logits0, _ = self.head_logits(zero, context)
      logits = logits + self.zero_hr_gain * (logits - logits0)
    emb = self.embed(pooled)
    emb = emb / (jnp.linalg.norm(emb, axis=-1, keepdims=True) + 1e-6)
    pred = self.to_latent(tokens)  # [B, N, D_hr]
    bought = valid.sum(1).astype(jnp.float32)  # [B] HR tiles
    out = {
        "logits": logits,
        "embedding": emb,
        "aux_losses": {},
        "tile_indices": idx,
        "tile_valid": valid,
        "metrics": {
            "hr_tiles": bought,
            "hr_pixels": bought * (hr.shape[1] // self.grid) ** 2,
            "budget_ratio": bought / self.n_tiles,
        },
    }
    if budget_logits is not None and train:
      out["aux_losses"]["budget_cls"] = optax.sigmoid_binary_cross_entropy(
          budget_logits, batch["labels"]
      ).mean()
    if train:
      latent, sampler = self.latent_losses(
          hr, pred, observed_mask, s, lr.shape[1], targets
      )
      out["aux_losses"]["latent"] = latent
      if self.policy == "learned" and k < self.n_tiles:
        out["aux_losses"]["sampler"] = sampler + self.label_sampler_loss(
            batch, s, idx, valid, tokens
        )
      out["aux_losses"]["retrieval"] = siglip_loss(
          emb, batch["labels"], self.siglip_t, self.siglip_b
      )
    else:
      # Semantic drift: predicted vs true HR latents of the unobserved tiles.
      true = jax.lax.stop_gradient(
          self.encode_tiles(tile_grid.to_tiles(hr, self.grid), hr_gsd)
      )
      d = cosine_distance(pred, true)  # [B, N]
      unobs = (~observed_mask).astype(d.dtype)
      out["metrics"]["drift"] = (d * unobs).sum(1) / jnp.maximum(
          unobs.sum(1), 1.0
      )
    return out

  def label_sampler_loss(self, batch, s, idx, valid, tokens):
    """The sampler's targets from labels (`sampler_target`, 0 without):
    "evidence", its logits `s` `[B, N]` at the bought tiles `idx` `[B, k]`
    (`valid`) regress onto their share of the positive classes' MIL
    evidence in the completed `tokens` `[B, N, D]` (`sampler.
    evidence_target`); "objects", an upper reference that reads the
    generator's object map: every tile's logit regresses onto whether it
    holds an object (standardised): the best this LR sampler can learn."""
    w = self.sampler_target or {}
    loss = jnp.zeros(())
    if w.get("evidence") and idx.shape[1]:
      z = sampler_lib.evidence_target(
          self.head(tokens), batch["labels"], idx, self.mil_sharpness
      )  # [B, k]
      sq = (jnp.take_along_axis(s, idx, axis=1) - z) ** 2
      n = jnp.maximum(valid.sum(), 1)
      loss += w["evidence"] * jnp.where(valid, sq, 0).sum() / n
    if w.get("objects"):
      if ORACLE_FIELD not in batch:
        raise ValueError(
            f"sampler_target.objects reads batch[{ORACLE_FIELD!r}]: add it "
            "to config.data.fields (records with masks['objects'] only)"
        )
      has = tile_grid.mask_fraction(batch[ORACLE_FIELD], self.grid) > 0
      z = sampler_lib.batch_standardise(has.astype(jnp.float32))  # [B, N]
      loss += w["objects"] * ((s - z) ** 2).mean()
    return loss

  def latent_targets(self, hr, observed_mask, hr_gsd=None):
    """T random unobserved tiles per scene (`num_target_tiles`, default k;
    the subset keeps the cost proportional to k): their indices `[B, T]`,
    pixels `[B, T, t, t, C]` and stop-gradient HR latents `[B, T, D_hr]`;
    None when every tile is observed."""
    k = self.k()
    T = self.num_target_tiles if self.num_target_tiles >= 0 else max(k, 1)
    T = min(T, self.n_tiles - k)
    if T <= 0:
      return None
    r = jax.random.uniform(
        self.make_rng("selection"), (hr.shape[0], self.n_tiles)
    )
    r = jnp.where(observed_mask, -1.0, r)
    tidx, _ = selection.topk_indices(r, T)  # [B, T]
    target_px = tile_grid.gather_tiles(hr, tidx, self.grid)  # [B, T, t, t, C]
    return (
        tidx,
        target_px,
        jax.lax.stop_gradient(self.encode_tiles(target_px, hr_gsd)),
    )

  def latent_losses(
      self, hr, pred, observed_mask, logits, lr_size, targets=None
  ):
    """(latent loss, sampler loss) on T random unobserved tiles (`targets`
    from `latent_targets`, drawn here if None).

    latent: cosine distance of the predicted latents to stop-gradient HR
      latents of those tiles.
    sampler: the sampler's logits on those tiles regress onto a weighted sum
      (`sampler_target`, default {"detail": 1}) of standardised targets:
      "detail", the tiles' sub-LR-pixel HR detail energy (`detail_target`),
      a target from the data alone, informative from the first step;
      "completion", the log of the predictor's own completion error there
      (cosine distance to the HR latent): where LR and the tiles bought
      leave the HR content least predictable, which is what buying a tile
      fixes (a high-detail but predictable texture scores low). It is noise
      while the encoders are untrained, so it is meant beside "detail"
      (measured on RSSCN7: worse than "detail" alone; README).
    """
    if targets is None:
      targets = self.latent_targets(hr, observed_mask)
    if targets is None:
      return jnp.zeros(()), jnp.zeros(())
    tidx, target_px, target = targets
    T = tidx.shape[1]
    p = jnp.take_along_axis(pred, tidx[..., None], axis=1)
    err = cosine_distance(p, target)  # [B, T]
    latent = err.mean()
    if T < 2:
      return latent, jnp.zeros(())
    weights = dict(self.sampler_target or {"detail": 1.0})
    z = jnp.zeros_like(err)
    if weights.get("detail"):
      z = z + weights["detail"] * sampler_lib.detail_target(
          target_px, hr.shape[1] // lr_size
      )
    if weights.get("completion"):
      z = z + weights["completion"] * sampler_lib.batch_standardise(
          jnp.log(err + 1e-4)
      )
    return latent, sampler_lib.sampler_regression_loss(logits, tidx, z)
