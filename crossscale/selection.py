"""Budgeted tile selection: which HR tiles of a scene to acquire.

A sampler scores every HR tile of a scene, `logits: [B, N]` with N = G*G tiles.
This module turns scores into an acquisition mask `[B, N]` under a budget:

- budgets: a tile count or ratio (`k_from_budget`), a per-class budget P_c
  (`per_class_k`, `observation_budget_ratio`), or a price budget
  (`select_under_cost`, validated on the host by `check_cost_budget`);
- hard top-k for inference (`hard_topk_mask`, `topk_indices`);
- differentiable top-k for training: perturbed top-k (`perturbed_topk`,
  Cordonnier et al. 2021) and Gumbel top-k straight-through (`gumbel_topk_st`);
- `select`, one dispatch on `config.selection.mode`.

Pure JAX, jit- and vmap-compatible; no Flax. Ordering is deterministic
everywhere: higher score first, ties to the lowest tile index, NaN scores last
(never chosen before a finite score). Host-side checks (plain Python / numpy)
raise ValueError; inside jit nothing can raise, so traced values are not
checked.

Config keys named in errors: `config.selection.budget`,
`config.selection.class_budgets`, `config.selection.mode`,
`config.selection.{sigma,num_samples,tau}`, `config.selection.cost.total`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("hard", "perturbed", "gumbel_st")
_MODE_OPTS = {
    "hard": (),
    "perturbed": ("num_samples", "sigma"),
    "gumbel_st": ("tau", "k_max"),
}


# ----------------------------------------------------------------- budgets


def _grid_words(n_tiles: int) -> str:
  g = math.isqrt(n_tiles)
  return (
      f"{n_tiles} tiles of the {g}x{g} grid"
      if g * g == n_tiles
      else f"{n_tiles} tiles"
  )


def k_from_budget(
    budget: int | float, n_tiles: int, batch_size: int | None = None
) -> int | np.ndarray:
  """Tile count k for a budget (`config.selection.budget`). Host-side.

  An int is a count, 0 <= k <= n_tiles; a float is a ratio in [0, 1] rounded
  half up: k = floor(ratio * n_tiles + 0.5). (So `1` means one tile and `1.0`
  means all tiles.) Returns an int, or `k: [batch_size]` int32 when
  `batch_size` is given.
  """
  if isinstance(budget, (bool, np.bool_)) or not isinstance(
      budget, (int, float, np.integer, np.floating)
  ):
    raise ValueError(
        f"budget {budget!r} is not a number (config.selection.budget); use a "
        f"tile count (int) or a ratio in [0, 1] (float)"
    )
  if isinstance(budget, (int, np.integer)):
    k = int(budget)
    if k > n_tiles:
      raise ValueError(
          f"budget {k} > {_grid_words(n_tiles)} (config.selection.budget); "
          f"use at most {n_tiles} or a ratio <= 1"
      )
    if k < 0:
      raise ValueError(
          f"budget {k} is negative (config.selection.budget); use a tile count "
          f"in 0..{n_tiles} or a ratio in [0, 1]"
      )
  else:
    ratio = float(budget)
    if not math.isfinite(ratio) or ratio < 0 or ratio > 1:
      raise ValueError(
          f"budget ratio {ratio} is outside [0, 1] for the "
          f"{_grid_words(n_tiles)} (config.selection.budget); use a ratio in "
          f"[0, 1] or an int tile count in 0..{n_tiles}"
      )
    k = int(math.floor(ratio * n_tiles + 0.5))
  if batch_size is None:
    return k
  return np.full((batch_size,), k, np.int32)


def _check_class_budgets(class_budgets, n_tiles: int) -> None:
  """Host check of `class_budgets: [C]`, skipped when traced."""
  if isinstance(class_budgets, jax.core.Tracer):
    return
  p = np.asarray(class_budgets)
  if p.ndim != 1:
    raise ValueError(
        f"class budgets must be one value per class, got shape {p.shape} "
        "(config.selection.class_budgets)"
    )
  if (
      np.isnan(p.astype(np.float64)).any()
      or (p < 0).any()
      or (p > n_tiles).any()
  ):
    raise ValueError(
        f"class budgets {p.tolist()} must lie in 0..{n_tiles} "
        f"({_grid_words(n_tiles)}) (config.selection.class_budgets); "
        f"clip them to that range"
    )


def per_class_k(
    labels_or_probs: jnp.ndarray,
    class_budgets,
    n_tiles: int,
    mode: str = "max",
    threshold: float = 0.5,
    empty_k: int | None = None,
) -> jnp.ndarray:
  """Per-sample k from per-class budgets P_c (paper 1's sampler budget).

  labels_or_probs: `[B, C]` multi-hot labels or class probabilities; a class
  is present where the value >= `threshold`.
  class_budgets: `[C]` tile counts P_c in 0..n_tiles.
  mode: "max" -> k = max of P_c over present classes; "mean" -> their mean,
  rounded half up.
  A sample with no present class gets `empty_k`, or, when None, the budget
  of its highest-scoring class.
  Returns k: `[B]` int32. jit-compatible (checks run only on concrete values).
  """
  if mode not in ("max", "mean"):
    raise ValueError(
        f"unknown per-class budget mode {mode!r} "
        "(config.selection.class_budget_mode); known: max, mean"
    )
  _check_class_budgets(class_budgets, n_tiles)
  p = jnp.asarray(class_budgets, jnp.int32)  # [C]
  if labels_or_probs.ndim != 2 or labels_or_probs.shape[-1] != p.shape[0]:
    raise ValueError(
        f"labels/probs of shape {labels_or_probs.shape} do not match "
        f"{p.shape[0]} class budgets (config.selection.class_budgets); give "
        "one budget per class"
    )
  present = labels_or_probs >= threshold  # [B, C]
  count = present.sum(-1)  # [B]
  if mode == "max":
    k = jnp.max(jnp.where(present, p, 0), axis=-1)
  else:
    total = jnp.sum(jnp.where(present, p, 0), axis=-1).astype(jnp.float32)
    k = jnp.floor(total / jnp.maximum(count, 1) + 0.5).astype(jnp.int32)
  if empty_k is None:
    fallback = p[jnp.argmax(labels_or_probs, axis=-1)]
  else:
    fallback = jnp.full_like(k, empty_k)
  k = jnp.where(count > 0, k, fallback)
  return jnp.clip(k, 0, n_tiles).astype(jnp.int32)


def observation_budget_ratio(class_budgets, n_tiles: int) -> float:
  """OBR = sum_c P_c / (n_tiles * C). E.g. P_c = 12 of 100 tiles -> 0.12."""
  _check_class_budgets(class_budgets, n_tiles)
  p = np.asarray(class_budgets, np.float64)
  if p.size == 0:
    raise ValueError(
        "no class budgets given (config.selection.class_budgets);"
        " give one tile count per class"
    )
  return float(p.sum() / (n_tiles * p.size))


# ----------------------------------------------------------- hard ordering


def _desc_order(logits: jnp.ndarray) -> jnp.ndarray:
  """`order: [..., N]` tile indices by descending score, ties lowest index.

  A stable ascending sort of -score is the sort on (-score, index); -0.0 and
  0.0 compare equal and NaN sorts last (lax.sort canonicalises both).
  """
  dtype = jnp.promote_types(logits.dtype, jnp.float32)  # bf16, int -> f32
  return jnp.argsort(-logits.astype(dtype), axis=-1, stable=True)


def _ranks(order: jnp.ndarray) -> jnp.ndarray:
  """Inverse permutation: `ranks[..., i]` = position of tile i in `order`."""
  return jnp.argsort(order, axis=-1)


def _check_static_k(k, n_tiles: int, name: str = "k") -> None:
  if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
    if not 0 <= int(k) <= n_tiles:
      raise ValueError(
          f"{name} = {int(k)} is outside 0..{n_tiles} "
          f"({_grid_words(n_tiles)}) (config.selection.budget); resolve the "
          "budget with k_from_budget"
      )


def hard_topk_mask(logits: jnp.ndarray, k) -> jnp.ndarray:
  """Hard top-k mask over the last axis.

  logits: `[..., N]` (any float dtype, bf16 included).
  k: int, or `[...]` per-sample counts (e.g. `[B]`); k >= N selects all.
  Returns mask: `[..., N]` float32, exactly k ones per row; ties go to the
  lowest index.
  """
  _check_static_k(k, logits.shape[-1])
  return _hard_topk_mask(logits, jnp.asarray(k, jnp.int32))


@jax.jit
def _hard_topk_mask(logits, k):
  ranks = _ranks(_desc_order(logits))  # [..., N]
  return (ranks < k[..., None]).astype(jnp.float32)


def topk_indices(logits: jnp.ndarray, k_max: int, k=None):
  """The k_max best tiles, best first.

  logits: `[..., N]`; k_max: static int <= N; k: optional int or `[...]`
  per-sample counts <= k_max.
  Returns (idx: `[..., k_max]` int32 by descending score, ties lowest index;
  valid: `[..., k_max]` bool, slot j valid where j < k).
  """
  _check_static_k(k_max, logits.shape[-1], "k_max")
  idx = _desc_order(logits)[..., :k_max].astype(jnp.int32)
  if k is None:
    valid = jnp.ones(idx.shape, bool)
  else:
    k = jnp.asarray(k, jnp.int32)
    valid = jnp.arange(k_max) < k[..., None]
    valid = jnp.broadcast_to(valid, idx.shape)
  return idx, valid


# ------------------------------------------------------------- cost-aware


def check_cost_budget(prices, total, scores=None) -> None:
  """Host-side (numpy) validation of a price budget; raises ValueError.

  prices: `[B, N]` finite, >= 0; total: scalar or `[B]`, finite, >= 0;
  scores (optional): `[B, N]` finite, >= 0 (score-per-price ranks are only
  meaningful for non-negative utilities: pass sigmoid(logits), not logits).
  `select_under_cost` cannot raise inside jit; call this before it.
  """
  prices = np.asarray(prices, np.float64)
  total = np.asarray(total, np.float64)
  if prices.ndim != 2:
    raise ValueError(
        f"prices must be [B, N], got shape {prices.shape} "
        "(config.selection.cost.prices)"
    )
  if not np.isfinite(prices).all() or (prices < 0).any():
    bad = prices[~(np.isfinite(prices) & (prices >= 0))]
    raise ValueError(
        f"tile prices must be finite and >= 0; found {bad[:5].tolist()} "
        "(config.selection.cost.prices); fix the price table"
    )
  if total.ndim > 1 or (total.ndim == 1 and total.shape[0] != prices.shape[0]):
    raise ValueError(
        f"cost total must be a scalar or [B={prices.shape[0]}], got shape "
        f"{total.shape} (config.selection.cost.total)"
    )
  if not np.isfinite(total).all() or (total < 0).any():
    raise ValueError(
        f"cost total {total.tolist()} must be finite and >= 0 "
        "(config.selection.cost.total); set a non-negative spend per scene"
    )
  if scores is not None:
    scores = np.asarray(scores, np.float64)
    if scores.shape != prices.shape:
      raise ValueError(
          f"scores {scores.shape} and prices {prices.shape} "
          "must have the same shape [B, N]"
      )
    if not np.isfinite(scores).all() or (scores < 0).any():
      raise ValueError(
          "scores for cost-aware selection must be finite and >= 0 "
          "(score-per-price ranking); pass sigmoid(logits) or probabilities"
      )


@functools.partial(jax.jit, static_argnames="fill")
def select_under_cost(
    scores: jnp.ndarray, prices: jnp.ndarray, total, fill: bool = False
) -> jnp.ndarray:
  """Greedy selection by score-per-price under a price total.

  scores: `[B, N]` non-negative utilities (e.g. sigmoid of logits);
  prices: `[B, N]` >= 0; total: scalar or `[B]`.
  Tiles are ranked by scores / prices descending (free tiles, price 0, first;
  ties lowest index) and taken while the cumulative price stays <= total.
  fill=False stops at the first tile that does not fit (a prefix of the
  ranking); fill=True skips it and keeps taking later tiles that still fit
  (the classic greedy knapsack; a scan over N).
  Returns mask: `[B, N]` bool. Inside jit no error is raised: a negative or
  NaN total selects nothing (free tiles aside) and NaN scores rank last;
  validate on the host with `check_cost_budget`.
  """
  scores = scores.astype(jnp.float32)
  prices = prices.astype(jnp.float32)
  total = jnp.broadcast_to(jnp.asarray(total, jnp.float32), scores.shape[:-1])
  ratio = jnp.where(
      prices > 0, scores / jnp.where(prices > 0, prices, 1.0), jnp.inf
  )  # [B, N]
  order = _desc_order(ratio)  # [B, N]
  p_sorted = jnp.take_along_axis(prices, order, axis=-1)  # [B, N]
  if fill:

    def step(remaining, p):  # remaining, p: [B]
      take = p <= remaining
      return remaining - jnp.where(take, p, 0.0), take

    _, take_t = jax.lax.scan(step, total, jnp.moveaxis(p_sorted, -1, 0))
    take_sorted = jnp.moveaxis(take_t, 0, -1)  # [B, N]
  else:
    take_sorted = jnp.cumsum(p_sorted, axis=-1) <= total[..., None]
  return jnp.take_along_axis(take_sorted, _ranks(order), axis=-1)


# ---------------------------------------------------------- perturbed top-k


def _perturbed_masks(x, k, sigma, key, num_samples):
  """Noise `z: [B, S, N]` and masks `[B, S, N]` of top-k(x + sigma z)."""
  z = jax.random.normal(key, (x.shape[0], num_samples, x.shape[1]), jnp.float32)
  masks = _hard_topk_mask(x[:, None, :] + sigma * z, k[:, None])
  return z, masks


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _perturbed_topk(x, k, sigma, key, num_samples):
  _, masks = _perturbed_masks(x, k, sigma, key, num_samples)
  return masks.mean(axis=1)


def _perturbed_topk_fwd(x, k, sigma, key, num_samples):
  _, masks = _perturbed_masks(x, k, sigma, key, num_samples)
  # Residuals: the key, not the noise; backward regenerates the same z.
  return masks.mean(axis=1), (x, k, sigma, key)


def _perturbed_topk_bwd(num_samples, res, g):
  x, k, sigma, key = res
  z, masks = _perturbed_masks(x, k, sigma, key, num_samples)
  # g @ J with J[i, j] = E[mask_i z_j] / sigma: project each sampled mask on
  # g (a scalar per sample), then weight that sample's whole noise vector.
  gm = jnp.einsum("bsn,bn->bs", masks, g)
  gx = jnp.einsum("bs,bsn->bn", gm, z) / (num_samples * sigma)
  return gx, None, None, None


_perturbed_topk.defvjp(_perturbed_topk_fwd, _perturbed_topk_bwd)


def perturbed_topk(
    logits: jnp.ndarray, k, key: jax.Array, num_samples: int = 500, sigma=0.05
) -> jnp.ndarray:
  """Perturbed top-k (Cordonnier et al. 2021): soft indicators `[B, N]`.

  y(x) = E_Z[topk(x + sigma Z)], Z ~ N(0, I_N), by Monte Carlo over
  `num_samples` draws from `key`; each row sums to k (up to rounding).
  logits: `[B, N]` (cast to float32); k: int or `[B]`; sigma: float or a
  traced scalar (e.g. linearly decayed with the step).

  Gradient (custom VJP), with p(y) the N(x, sigma^2 I) density:
    dE[topk(x+sZ)]_i/dx_j = int topk(y)_i dp(y)/dx_j dy
        = int topk(y)_i p(y) (y_j - x_j)/s^2 dy = E[topk(x+sZ)_i Z_j] / s.
  So J[i, j] = E[mask_i Z_j] / sigma, an OUTER product over N (not the
  element-wise mask_j Z_j of the public Flax code), and the VJP is g @ J per
  sample, estimated with the same noise as the forward (the key is the
  residual). No gradient flows to k or sigma.
  """
  if isinstance(sigma, (int, float)) and not sigma > 0:
    raise ValueError(f"sigma {sigma} must be > 0 (config.selection.sigma)")
  if not isinstance(num_samples, int) or num_samples < 1:
    raise ValueError(
        f"num_samples {num_samples!r} must be an int >= 1 "
        "(config.selection.num_samples)"
    )
  if logits.ndim != 2:
    raise ValueError(f"logits must be [B, N], got shape {logits.shape}")
  _check_static_k(k, logits.shape[-1])
  x = logits.astype(jnp.float32)
  k = jnp.broadcast_to(jnp.asarray(k, jnp.int32), x.shape[:1])
  sigma = jnp.asarray(sigma, jnp.float32)
  return _perturbed_topk_jit(x, k, sigma, key, num_samples)


_perturbed_topk_jit = jax.jit(_perturbed_topk, static_argnums=4)


# ----------------------------------------------- Gumbel top-k, straight-through


def relaxed_topk(
    scores: jnp.ndarray, k, tau=1.0, k_max: int | None = None
) -> jnp.ndarray:
  """Successive-softmax relaxation of top-k (Xie & Ermon 2019; Ploetz & Roth).

  scores: `[..., N]`; k: int or `[...]`. k_max (static) rounds of
    p_t = softmax(a_t / tau);  khot += p_t;  a_{t+1} = a_t + log(1 - p_t),
  rounds t >= k (per sample) adding nothing. Returns khot: `[..., N]` float32,
  rows summing to k, entries ~in [0, 1]; -> hard top-k as tau -> 0.
  k_max defaults to k when k is an int, else N.
  """
  if k_max is None:
    k_max = int(k) if isinstance(k, (int, np.integer)) else scores.shape[-1]
  return _relaxed_topk(scores, jnp.asarray(k, jnp.int32), tau, k_max)


@functools.partial(jax.jit, static_argnums=3)
def _relaxed_topk(scores, kk, tau, k_max):
  scores = scores.astype(jnp.float32)
  tiny = jnp.finfo(jnp.float32).tiny

  def step(carry, t):
    a, khot = carry
    p = jax.nn.softmax(a / tau, axis=-1) * (t < kk)[..., None]
    return (a + jnp.log(jnp.maximum(1.0 - p, tiny)), khot + p), None

  (_, khot), _ = jax.lax.scan(
      step, (scores, jnp.zeros_like(scores)), jnp.arange(k_max)
  )
  return khot


def gumbel_topk_st(
    logits: jnp.ndarray, k, key: jax.Array, tau=1.0, k_max: int | None = None
) -> jnp.ndarray:
  """Gumbel top-k with a straight-through gradient. logits: `[..., N]`.

  Forward: the hard top-k mask of (logits + g), g ~ Gumbel(0, 1) i.i.d.
  (a sample of k tiles without replacement from softmax(logits)); exactly
  k-hot. Backward: the gradient of `relaxed_topk(logits + g, k, tau)`, the
  successive-softmax relaxation with the same g. k: int or `[...]`.
  Returns mask: `[..., N]` float32.
  """
  if isinstance(tau, (int, float)) and not tau > 0:
    raise ValueError(f"tau {tau} must be > 0 (config.selection.tau)")
  _check_static_k(k, logits.shape[-1])
  if k_max is None:
    k_max = int(k) if isinstance(k, (int, np.integer)) else logits.shape[-1]
  return _gumbel_topk_st(logits, jnp.asarray(k, jnp.int32), key, tau, k_max)


@functools.partial(jax.jit, static_argnums=4)
def _gumbel_topk_st(logits, k, key, tau, k_max):
  y = logits.astype(jnp.float32) + jax.random.gumbel(
      key, logits.shape, jnp.float32
  )
  hard = _hard_topk_mask(y, k)
  soft = _relaxed_topk(y, k, tau, k_max)
  # soft - stop_gradient(soft) is exactly 0, so the value is exactly `hard`.
  return hard + (soft - jax.lax.stop_gradient(soft))


# ---------------------------------------------------------------- dispatch


def select(
    logits: jnp.ndarray,
    k,
    *,
    mode: str = "hard",
    key: jax.Array | None = None,
    train: bool = False,
    **opts: Any,
) -> jnp.ndarray:
  """Acquisition mask `[B, N]` float32 from tile logits `[B, N]`.

  mode (`config.selection.mode`): "hard" | "perturbed" | "gumbel_st"; with
  train=False every mode is hard top-k. opts: perturbed -> num_samples,
  sigma; gumbel_st -> tau, k_max. k: int or `[B]`.
  """
  if mode not in MODES:
    raise ValueError(
        f"unknown selection mode {mode!r} "
        f"(config.selection.mode); known: {', '.join(MODES)}"
    )
  unknown = sorted(set(opts) - set(_MODE_OPTS[mode]))
  if unknown:
    raise ValueError(
        f"options {unknown} do not apply to selection mode {mode!r} "
        f"(config.selection); it takes {list(_MODE_OPTS[mode]) or 'none'}"
    )
  if not train or mode == "hard":
    return hard_topk_mask(logits, k)
  if key is None:
    raise ValueError(
        f"selection mode {mode!r} needs an RNG key when training "
        "(pass key=...; e.g. fold_in(rng, step))"
    )
  if mode == "perturbed":
    return perturbed_topk(logits, k, key, **opts)
  return gumbel_topk_st(logits, k, key, **opts)
