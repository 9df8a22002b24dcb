"""Plain-JAX reference of the tile-selection hot path (the kernel's contract).

Order: higher score first, ties to the lowest tile index, NaN last (never
before a finite score). From tile logits `[B, N]` (N = G*G tiles of a
row-major grid):

- `topk_indices`: the k_max best tiles `[B, k_max]` and their validity under
  a count budget (static k_max, optional per-scene `k: [B]`);
- `select_under_cost`, `price_budget`: a price budget (greedy by score per
  price under a total) turned into that same count-budget form;
- `budgeted`: either budget as (logits, k) for `topk_indices`;
- `reference`: `topk_indices` + the gather of the selected HR tiles
  `[B, k_max, t, t, C]`, the contract of the Pallas kernel.

Depends on nothing of crossscale but `budgets` (host-side validators).
"""

from __future__ import annotations

import functools

import einops
import jax
import jax.numpy as jnp

from crossscale import budgets


def descending_order(logits: jnp.ndarray) -> jnp.ndarray:
  """`order: [..., N]` tile indices by descending score, ties lowest index.

  A stable ascending sort of -score is the sort on (-score, index); -0.0 and
  0.0 compare equal and NaN sorts last (lax.sort canonicalises both).
  """
  dtype = jnp.promote_types(logits.dtype, jnp.float32)  # bf16, int -> f32
  return jnp.argsort(-logits.astype(dtype), axis=-1, stable=True)


def ranks(order: jnp.ndarray) -> jnp.ndarray:
  """Inverse permutation: `ranks[..., i]` = position of tile i in `order`."""
  return jnp.argsort(order, axis=-1)


def topk_indices(logits: jnp.ndarray, k_max: int, k=None):
  """The k_max best tiles, best first.

  logits: `[..., N]`; k_max: static int <= N; k: optional int or `[...]`
  per-sample counts <= k_max.
  Returns (idx: `[..., k_max]` int32 by descending score, ties lowest index;
  valid: `[..., k_max]` bool, slot j valid where j < k).
  """
  budgets.check_k(k_max, logits.shape[-1], "k_max")
  idx = descending_order(logits)[..., :k_max].astype(jnp.int32)
  if k is None:
    valid = jnp.ones(idx.shape, bool)
  else:
    k = jnp.asarray(k, jnp.int32)
    valid = jnp.arange(k_max) < k[..., None]
    valid = jnp.broadcast_to(valid, idx.shape)
  return idx, valid


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
  validate on the host with `budgets.check_cost_budget`.
  """
  scores = scores.astype(jnp.float32)
  prices = prices.astype(jnp.float32)
  total = jnp.broadcast_to(jnp.asarray(total, jnp.float32), scores.shape[:-1])
  ratio = jnp.where(
      prices > 0, scores / jnp.where(prices > 0, prices, 1.0), jnp.inf
  )  # [B, N]
  order = descending_order(ratio)  # [B, N]
  p_sorted = jnp.take_along_axis(prices, order, axis=-1)  # [B, N]
  if fill:

    def step(remaining, p):  # remaining, p: [B]
      take = p <= remaining
      return remaining - jnp.where(take, p, 0.0), take

    _, take_t = jax.lax.scan(step, total, jnp.moveaxis(p_sorted, -1, 0))
    take_sorted = jnp.moveaxis(take_t, 0, -1)  # [B, N]
  else:
    take_sorted = jnp.cumsum(p_sorted, axis=-1) <= total[..., None]
  return jnp.take_along_axis(take_sorted, ranks(order), axis=-1)


def price_budget(logits, prices, total, k_max: int, fill: bool = False):
  """A price budget as a count budget: (ranked `[B, N]` float32, k `[B]`).

  The tiles bought by `select_under_cost(sigmoid(logits), prices, total)`
  keep their logits and the others become NaN (ranked last), so the
  count-budget selection of `ranked` with k = min(#bought, k_max) returns
  exactly the bought tiles, by descending logit.
  """
  x = logits.astype(jnp.float32)
  bought = select_under_cost(jax.nn.sigmoid(x), prices, total, fill=fill)
  k = jnp.minimum(bought.sum(-1), k_max).astype(jnp.int32)
  return jnp.where(bought, x, jnp.nan), k


def budgeted(logits, k_max: int, k=None, prices=None, total=None, fill=False):
  """(logits, k) for the count-budget selection: as given, or the price
  budget's (`price_budget`) when `prices` are given (then k must be None)."""
  if prices is None:
    return logits, k
  if k is not None or total is None:
    raise ValueError(
        "a price budget takes prices and a total and no tile count k "
        "(config.model.cost: set enabled=False for a count budget)"
    )
  return price_budget(logits, prices, total, k_max, fill)


def reference(
    logits: jax.Array,
    hr: jax.Array,
    grid: int,
    k_max: int,
    k: jax.Array | None = None,
):
  """Plain-JAX select + gather under a count budget.

  logits: `[B, N]` any float dtype; hr: `[B, H, W, C]`, H = W = grid * t;
  k_max: static int in 0..N; k: optional `[B]` int32 counts <= k_max.
  Returns (idx `[B, k_max]` int32, valid `[B, k_max]` bool,
  tiles `[B, k_max, t, t, C]` in hr's dtype, zeros where not valid).
  """
  idx, valid = topk_indices(logits, k_max, k)
  t = hr.shape[1] // grid
  tiles = einops.rearrange(
      hr, "b (gy t1) (gx t2) c -> b (gy gx) t1 t2 c", gy=grid, gx=grid
  )
  picked = jnp.take_along_axis(tiles, idx[:, :, None, None, None], axis=1)
  picked = jnp.where(
      valid[:, :, None, None, None], picked, jnp.zeros((), hr.dtype)
  )
  return idx, valid, picked.reshape(hr.shape[0], k_max, t, t, hr.shape[-1])
