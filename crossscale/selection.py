"""Budgeted tile selection: which HR tiles of a scene to acquire.

A sampler scores every HR tile of a scene, `logits: [B, N]` with N = G*G tiles.
This module turns scores into an acquisition mask `[B, N]` under a budget:

- per-class budgets P_c (`per_class_k`); counts, ratios and price budgets are
  resolved and validated on the host by `crossscale.budgets`;
- hard top-k for inference (`hard_topk_mask`, `topk_indices`: the ordering of
  `crossscale.kernels.tile_select_reference`);
- differentiable top-k for training: perturbed top-k (`perturbed_topk`,
  Cordonnier et al. 2021) and Gumbel top-k straight-through (`gumbel_topk_st`);
- `select`, one dispatch on `config.model.selection.mode`.

Pure JAX, jit- and vmap-compatible; no Flax. Ordering is deterministic
everywhere: higher score first, ties to the lowest tile index, NaN scores last.
Host-side checks raise ValueError; traced values are not checked.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from crossscale import budgets
from crossscale.kernels import tile_select_reference as ref
from crossscale.kernels.tile_select_reference import topk_indices

__all__ = [
    "MODES",
    "per_class_k",
    "hard_topk_mask",
    "topk_indices",
    "perturbed_topk",
    "relaxed_topk",
    "gumbel_topk_st",
    "select",
]

MODES = ("hard", "perturbed", "gumbel_st")
_MODE_OPTS = {
    "hard": (),
    "perturbed": ("num_samples", "sigma"),
    "gumbel_st": ("tau", "k_max"),
}


# ----------------------------------------------------------------- budgets


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
        f"unknown per-class budget mode {mode!r}: how the budgets of a "
        "scene's classes (config.model.class_budgets) combine; known: max, "
        "mean"
    )
  budgets.check_class_budgets(class_budgets, n_tiles)
  p = jnp.asarray(class_budgets, jnp.int32)  # [C]
  if labels_or_probs.ndim != 2 or labels_or_probs.shape[-1] != p.shape[0]:
    raise ValueError(
        f"labels/probs of shape {labels_or_probs.shape} do not match "
        f"{p.shape[0]} class budgets (config.model.class_budgets); give "
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


# ----------------------------------------------------------- hard ordering


def hard_topk_mask(logits: jnp.ndarray, k) -> jnp.ndarray:
  """Hard top-k mask over the last axis.

  logits: `[..., N]` (any float dtype, bf16 included).
  k: int, or `[...]` per-sample counts (e.g. `[B]`); k >= N selects all.
  Returns mask: `[..., N]` float32, exactly k ones per row; ties go to the
  lowest index.
  """
  budgets.check_k(k, logits.shape[-1])
  return _hard_topk_mask(logits, jnp.asarray(k, jnp.int32))


@jax.jit
def _hard_topk_mask(logits, k):
  ranks = ref.ranks(ref.descending_order(logits))  # [..., N]
  return (ranks < k[..., None]).astype(jnp.float32)


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
    raise ValueError(
        f"sigma {sigma} must be > 0 (config.model.selection.sigma)"
    )
  if not isinstance(num_samples, int) or num_samples < 1:
    raise ValueError(
        f"num_samples {num_samples!r} must be an int >= 1 "
        "(config.model.selection.num_samples)"
    )
  if logits.ndim != 2:
    raise ValueError(f"logits must be [B, N], got shape {logits.shape}")
  budgets.check_k(k, logits.shape[-1])
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
    raise ValueError(
        f"tau {tau} must be > 0 (option tau of config.model.selection)"
    )
  budgets.check_k(k, logits.shape[-1])
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

  mode (`config.model.selection.mode`): "hard" | "perturbed" | "gumbel_st"; with
  train=False every mode is hard top-k. opts: perturbed -> num_samples,
  sigma; gumbel_st -> tau, k_max. k: int or `[B]`.
  """
  if mode not in MODES:
    raise ValueError(
        f"unknown selection mode {mode!r} "
        f"(config.model.selection.mode); known: {', '.join(MODES)}"
    )
  unknown = sorted(set(opts) - set(_MODE_OPTS[mode]))
  if unknown:
    raise ValueError(
        f"options {unknown} do not apply to selection mode {mode!r} "
        f"(config.model.selection); it takes {list(_MODE_OPTS[mode]) or 'none'}"
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
