"""Tests of crossscale.selection (hard and differentiable top-k), the host
budgets of crossscale.budgets and the cost-aware greedy of the tile-select
reference; every config key the errors name exists. References are
independent: numpy stable argsort, hand-worked cases, 1-D Gauss quadrature of
the perturbed top-k expectation, finite differences with common random
numbers, and Gumbel sampling frequencies."""

import ast
import functools
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtr

from crossscale import budgets
from crossscale import selection as sel
from crossscale.kernels import tile_select_reference as ref
from experiments.configs import cross_scale as cross_scale_config
from tests.conftest import ROOT


def _np_topk_mask(x, k):
  """Reference: stable argsort of -x, so ties go to the lowest index."""
  x = np.asarray(x, np.float64)
  k = np.broadcast_to(np.asarray(k), x.shape[:-1])
  out = np.zeros(x.shape, np.float32)
  for b in np.ndindex(x.shape[:-1]):
    out[b][np.argsort(-x[b], kind="stable")[: k[b]]] = 1.0
  return out


# ------------------------------------------------------------ hard top-k


@pytest.mark.parametrize(
    "logits,k,want",
    [
        ([3.0, 1.0, 3.0, 2.0], 2, [1, 0, 1, 0]),
        ([1.0, 1.0, 1.0, 1.0], 2, [1, 1, 0, 0]),  # all tied
        ([0.0, 2.0, 2.0, 2.0], 2, [0, 1, 1, 0]),  # tie at the cut
        (
            [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0],
            3,
            [1, 1, 1, 0, 0, 0, 0],
        ),  # odd N
        ([0.5, -1.0, 2.0, 0.1, 0.3, 9.0, 0.0], 0, [0] * 7),  # k = 0
        ([0.5, -1.0, 2.0, 0.1, 0.3, 9.0, 0.0], 7, [1] * 7),  # k = N
        ([-0.0, 0.0], 1, [1, 0]),  # -0.0 ties 0.0
        ([np.nan, 1.0, 0.0], 1, [0, 1, 0]),  # NaN ranks last
    ],
)
def test_hard_topk_hand_cases(logits, k, want):
  mask = sel.hard_topk_mask(jnp.asarray([logits], jnp.float32), k)
  assert mask.dtype == jnp.float32
  np.testing.assert_array_equal(mask[0], want)


def test_hard_topk_per_sample_k():
  x = jnp.asarray([[0.1, 0.4, 0.3, 0.2, 0.5]] * 3)
  mask = sel.hard_topk_mask(x, jnp.asarray([0, 2, 5]))
  np.testing.assert_array_equal(
      mask, [[0, 0, 0, 0, 0], [0, 1, 0, 0, 1], [1, 1, 1, 1, 1]]
  )


@pytest.mark.parametrize("n", [6, 7, 16])
def test_hard_topk_matches_numpy_stable_argsort(n):
  rng = np.random.default_rng(n)
  x = rng.integers(0, 4, (32, n)).astype(np.float32)  # many ties
  x[:16] += rng.normal(size=(16, n)).astype(np.float32)
  k = rng.integers(0, n + 1, 32)
  np.testing.assert_array_equal(
      sel.hard_topk_mask(jnp.asarray(x), k), _np_topk_mask(x, k)
  )
  np.testing.assert_array_equal(
      sel.hard_topk_mask(jnp.asarray(x), 3), _np_topk_mask(x, 3)
  )


def test_hard_topk_jit_vmap_bf16():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 3, (4, 5, 8)).astype(np.float32)  # [T, B, N]
  k = rng.integers(0, 9, (4, 5))
  got = jax.jit(sel.hard_topk_mask)(jnp.asarray(x), jnp.asarray(k))
  np.testing.assert_array_equal(got, _np_topk_mask(x, k))
  got = jax.vmap(sel.hard_topk_mask)(jnp.asarray(x), jnp.asarray(k))
  np.testing.assert_array_equal(got, _np_topk_mask(x, k))
  # bf16: 1.001 rounds to 1.0 (8-bit mantissa), a tie that index 0 wins.
  xb = jnp.asarray([[1.0, 1.001, 0.5, 0.75]], jnp.bfloat16)
  mask = jax.jit(sel.hard_topk_mask, static_argnums=1)(xb, 1)
  assert mask.dtype == jnp.float32
  np.testing.assert_array_equal(mask, [[1, 0, 0, 0]])


def test_hard_topk_static_k_out_of_range():
  with pytest.raises(ValueError, match="outside 0..4"):
    sel.hard_topk_mask(jnp.zeros((1, 4)), 5)
  with pytest.raises(ValueError, match="outside 0..4"):
    sel.hard_topk_mask(jnp.zeros((1, 4)), -1)


def test_topk_indices_order_and_valid():
  x = jnp.asarray([[0.1, 0.9, 0.5, 0.9, 0.2], [3.0, 2.0, 1.0, 0.0, -1.0]])
  idx, valid = sel.topk_indices(x, 3, k=jnp.asarray([1, 3]))
  assert idx.dtype == jnp.int32 and idx.shape == valid.shape == (2, 3)
  np.testing.assert_array_equal(idx, [[1, 3, 2], [0, 1, 2]])
  np.testing.assert_array_equal(valid, [[1, 0, 0], [1, 1, 1]])
  idx, valid = jax.jit(sel.topk_indices, static_argnums=1)(x, 2)
  np.testing.assert_array_equal(idx, [[1, 3], [0, 1]])
  assert bool(valid.all())
  # The valid indices are exactly the hard top-k mask.
  rng = np.random.default_rng(1)
  xr = jnp.asarray(rng.integers(0, 3, (16, 9)).astype(np.float32))
  k = jnp.asarray(rng.integers(0, 5, 16))
  idx, valid = sel.topk_indices(xr, 4, k)
  mask = np.zeros((16, 9))
  for b in range(16):
    mask[b, np.asarray(idx[b])[np.asarray(valid[b])]] = 1
  np.testing.assert_array_equal(mask, sel.hard_topk_mask(xr, k))
  with pytest.raises(ValueError, match="k_max"):
    sel.topk_indices(x, 6)


# ---------------------------------------------------------------- budgets


def test_k_from_budget():
  assert budgets.k_from_budget(12, 100) == 12
  assert budgets.k_from_budget(np.int64(0), 100) == 0
  assert budgets.k_from_budget(100, 100) == 100
  assert budgets.k_from_budget(0.12, 100) == 12
  assert budgets.k_from_budget(0.125, 100) == 13  # half rounds up
  assert budgets.k_from_budget(0.0, 100) == 0
  assert budgets.k_from_budget(1.0, 100) == 100
  assert budgets.k_from_budget(1, 100) == 1  # an int is a count
  assert budgets.k_from_budget(0.5, 7) == 4  # 3.5 -> 4
  k = budgets.k_from_budget(0.25, 16, batch_size=3)
  assert k.dtype == np.int32
  np.testing.assert_array_equal(k, [4, 4, 4])


@pytest.mark.parametrize(
    "budget,n,msg",
    [
        (
            120,
            100,
            r"budget 120 > 100 tiles of the 10x10 grid .*use at most 100 "
            r"or a ratio <= 1",
        ),
        (13, 12, r"budget 13 > 12 tiles .*use at most 12"),
        (-1, 100, r"budget -1 is negative \(config\.model\.budget\)"),
        (
            1.5,
            100,
            r"ratio 1.5 is outside \[0, 1\] for the 100 tiles of the "
            r"10x10 grid",
        ),
        (12.0, 100, r"ratio 12.0 is outside \[0, 1\]"),
        (-0.1, 100, r"ratio -0.1 is outside"),
        (float("nan"), 100, r"ratio nan is outside"),
        (True, 100, r"not a number \(config\.model\.budget\)"),
        ("12", 100, r"not a number"),
    ],
)
def test_k_from_budget_errors(budget, n, msg):
  with pytest.raises(ValueError, match=msg):
    budgets.k_from_budget(budget, n)


def test_per_class_k_hand_case():
  labels = jnp.asarray([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
  p = [5, 12, 20, 8]
  np.testing.assert_array_equal(sel.per_class_k(labels, p, 100), [20, 12, 5])
  np.testing.assert_array_equal(
      sel.per_class_k(labels, p, 100, mode="mean"), [13, 12, 5]
  )  # 12.5 -> 13
  np.testing.assert_array_equal(
      sel.per_class_k(labels, p, 100, empty_k=0), [20, 12, 0]
  )
  # Predicted probabilities: present where >= threshold; the empty row falls
  # back to its most probable class (index 3 -> 8 tiles).
  probs = jnp.asarray([[0.9, 0.1, 0.6, 0.2], [0.2, 0.3, 0.1, 0.4]])
  k = jax.jit(functools.partial(sel.per_class_k, n_tiles=100))(
      probs, jnp.asarray(p)
  )
  assert k.dtype == jnp.int32
  np.testing.assert_array_equal(k, [20, 8])


def test_per_class_k_errors():
  labels = jnp.ones((2, 3))
  with pytest.raises(
      ValueError, match=r"mode 'min'.*config\.model\.class_budgets"
  ):
    sel.per_class_k(labels, [1, 2, 3], 100, mode="min")
  with pytest.raises(
      ValueError, match=r"must lie in 0..100 .*config\.model\.class_budgets"
  ):
    sel.per_class_k(labels, [1, 2, 300], 100)
  with pytest.raises(ValueError, match=r"do not match 2 class budgets"):
    sel.per_class_k(labels, [1, 2], 100)


def test_observation_budget_ratio():
  assert budgets.observation_budget_ratio([12] * 66, 100) == pytest.approx(0.12)
  assert budgets.observation_budget_ratio([10, 20], 100) == pytest.approx(0.15)
  assert budgets.observation_budget_ratio(
      np.array([4, 4, 1]), 9
  ) == pytest.approx(9 / 27)
  with pytest.raises(ValueError, match="class_budgets"):
    budgets.observation_budget_ratio([-1, 5], 100)


# ------------------------------------------------------------- cost-aware


def _np_greedy_cost(scores, prices, total, fill):
  """Reference greedy (float64), same ranking: ratio desc, free first."""
  out = np.zeros(scores.shape, bool)
  for b in range(scores.shape[0]):
    ratio = np.where(
        prices[b] > 0, scores[b] / np.where(prices[b] > 0, prices[b], 1), np.inf
    )
    left = float(np.broadcast_to(total, scores.shape[:1])[b])
    for i in np.argsort(-ratio, kind="stable"):
      if prices[b, i] <= left:
        out[b, i] = True
        left -= prices[b, i]
      elif not fill:
        break
  return out


def test_select_under_cost_hand_case():
  # ratios 0.25, 0.5, 0.25, 0.25 (exact in float32): order 1, 0, 2, 3.
  scores = jnp.asarray([[0.75, 0.5, 0.25, 0.5]])
  prices = jnp.asarray([[3.0, 1.0, 1.0, 2.0]])
  np.testing.assert_array_equal(
      ref.select_under_cost(scores, prices, 4.0), [[1, 1, 0, 0]]
  )  # 1 + 3 = 4 <= 4
  # Total 3: the prefix stops at tile 0 (1 + 3 > 3); fill skips it, takes 2.
  np.testing.assert_array_equal(
      ref.select_under_cost(scores, prices, 3.0), [[0, 1, 0, 0]]
  )
  np.testing.assert_array_equal(
      ref.select_under_cost(scores, prices, 3.0, fill=True), [[0, 1, 1, 0]]
  )
  # Per-sample totals; a free tile is always taken.
  scores2 = jnp.concatenate([scores, scores])
  prices2 = jnp.asarray([[3.0, 1.0, 1.0, 2.0], [3.0, 1.0, 0.0, 2.0]])
  np.testing.assert_array_equal(
      ref.select_under_cost(scores2, prices2, jnp.asarray([0.0, 0.0])),
      [[0, 0, 0, 0], [0, 0, 1, 0]],
  )


@pytest.mark.parametrize("fill", [False, True])
def test_select_under_cost_random(fill):
  rng = np.random.default_rng(int(fill))
  scores = rng.uniform(0, 1, (64, 12)).astype(np.float32)
  prices = (rng.integers(0, 9, (64, 12)) / 4).astype(np.float32)  # exact
  total = (rng.integers(0, 40, 64) / 4).astype(np.float32)
  f = jax.jit(ref.select_under_cost, static_argnames="fill")
  mask = np.asarray(f(scores, prices, total, fill=fill))
  assert mask.dtype == bool
  assert ((mask * prices).sum(-1) <= total).all()
  np.testing.assert_array_equal(
      mask, _np_greedy_cost(scores, prices, total, fill)
  )
  # Zero total with positive prices: nothing is selected.
  mask0 = f(scores, prices + 0.25, 0.0, fill=fill)
  assert not bool(mask0.any())
  # Inside jit nothing raises: a negative total just selects nothing.
  assert not bool(f(scores, prices + 0.25, -1.0, fill=fill).any())


def test_check_cost_budget():
  prices = np.ones((2, 4))
  budgets.check_cost_budget(prices, 2.0)
  budgets.check_cost_budget(prices, np.array([0.0, 3.0]), scores=prices)
  with pytest.raises(ValueError, match=r"prices must be finite and >= 0"):
    budgets.check_cost_budget(np.array([[1.0, -1.0]]), 1.0)
  with pytest.raises(ValueError, match=r"prices must be finite and >= 0"):
    budgets.check_cost_budget(np.array([[1.0, np.nan]]), 1.0)
  with pytest.raises(ValueError, match=r"config\.model\.cost\.total"):
    budgets.check_cost_budget(prices, -1.0)
  with pytest.raises(ValueError, match=r"config\.model\.cost\.total"):
    budgets.check_cost_budget(prices, np.nan)
  with pytest.raises(ValueError, match=r"scalar or \[B=2\]"):
    budgets.check_cost_budget(prices, np.ones(3))
  with pytest.raises(ValueError, match=r"sigmoid"):
    budgets.check_cost_budget(prices, 1.0, scores=-prices)
  with pytest.raises(ValueError, match=r"\[B, N\]"):
    budgets.check_cost_budget(np.ones(4), 1.0)


# -------------------------------------------------------- perturbed top-k

_S = 200  # samples where the value is not checked against a reference


def _argmax_prob(x, sigma, largest=True):
  """P(i is the arg-max (arg-min) of x + sigma Z) by 1-D quadrature:
  int phi(z) prod_{j != i} Phi(+-(x_i - x_j) / sigma + z) dz."""
  z = np.linspace(-9, 9, 6001)
  phi = np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)
  sgn = 1.0 if largest else -1.0
  out = []
  for i in range(len(x)):
    prod = np.ones_like(z)
    for j in range(len(x)):
      if j != i:
        prod *= ndtr(sgn * (x[i] - x[j]) / sigma + z)
    out.append(np.trapezoid(phi * prod, z))
  return np.array(out)


def _exact_perturbed_topk(x, k, sigma):
  """E[topk(x + sigma Z)] for k = 1 (arg-max) or k = N-1 (not the arg-min)."""
  if k == 1:
    return _argmax_prob(x, sigma)
  assert k == len(x) - 1
  return 1.0 - _argmax_prob(x, sigma, largest=False)


def test_perturbed_topk_small_sigma_is_hard():
  x = jnp.tile(jnp.arange(9.0), (4, 1)) * jnp.asarray(
      [[1.0], [-1.0], [2.0], [0.5]]
  )
  got = sel.perturbed_topk(x, 2, jax.random.key(0), _S, sigma=1e-3)
  np.testing.assert_array_equal(got, sel.hard_topk_mask(x, 2))


def test_perturbed_topk_sums_to_k():
  x = jax.random.normal(jax.random.key(1), (4, 9))
  key = jax.random.key(2)
  y = sel.perturbed_topk(x, 3, key, _S, 0.5)
  assert y.shape == (4, 9) and y.dtype == jnp.float32
  np.testing.assert_allclose(y.sum(-1), 3.0, rtol=1e-5)
  assert float(y.min()) >= 0 and float(y.max()) <= 1
  y = sel.perturbed_topk(x, jnp.asarray([0, 1, 4, 9]), key, _S, 0.5)
  np.testing.assert_allclose(y.sum(-1), [0, 1, 4, 9], rtol=1e-5)


# Monte-Carlo bound: each term mask_i Z_j / sigma has std <= 1 / sigma, so a
# Jacobian entry from S samples has standard error <= 1 / (sigma sqrt(S)) =
# 0.0045 for sigma = 0.5, S = 200k; tolerance 0.025 is ~5.5 standard errors
# (max error over 25 entries seen with 10 keys: 0.004-0.010).
@pytest.mark.parametrize("k", [1, 4])
def test_perturbed_topk_jacobian_matches_quadrature(k):
  sigma, s = 0.5, 200_000
  x = np.array([0.3, -0.2, 0.5, 0.1, -0.4])
  h = 1e-4  # finite differences of the deterministic quadrature
  want = np.stack(
      [
          (
              _exact_perturbed_topk(x + h * e, k, sigma)
              - _exact_perturbed_topk(x - h * e, k, sigma)
          )
          / (2 * h)
          for e in np.eye(5)
      ],
      axis=1,
  )  # want[i, j] = d y_i / d x_j
  f = lambda v: sel.perturbed_topk(v[None], k, jax.random.key(3), s, sigma)[0]
  xj = jnp.asarray(x, jnp.float32)
  np.testing.assert_allclose(
      f(xj), _exact_perturbed_topk(x, k, sigma), atol=0.005
  )
  jac = np.asarray(jax.jacrev(f)(xj))
  np.testing.assert_allclose(jac, want, atol=0.025)
  # The element-wise formula (Flax bug) keeps only diag(J): badly wrong.
  assert np.abs(np.diag(np.diag(jac)) - want).max() > 0.2


# Finite differences of the Monte-Carlo expectation itself, with common random
# numbers (the same key, hence the same Z, at x + h e_j and x - h e_j).
# Gradient magnitudes ~1; max |ours - fd| seen with 10 keys: 0.011-0.027 (MC
# error of both estimators, FD bias O(h^2)); tolerance 0.05. The element-wise
# formula is off by ~0.4.
def test_perturbed_topk_grad_matches_finite_differences():
  sigma, s, k, h = 0.5, 200_000, 2, 0.1
  x = jnp.asarray([0.4, -0.1, 0.2, 0.0, -0.3, 0.1], jnp.float32)
  w = jnp.asarray([1.0, -0.5, 0.3, 2.0, -1.0, 0.7])
  key = jax.random.key(4)
  y = lambda v: sel.perturbed_topk(v[None], k, key, s, sigma)[0]
  loss = lambda v: (y(v) * w).sum()
  steps = jnp.concatenate([x + h * jnp.eye(6), x - h * jnp.eye(6)])
  vals = np.asarray(jax.jit(jax.vmap(loss))(steps))
  fd = (vals[:6] - vals[6:]) / (2 * h)
  jac = np.asarray(jax.jit(jax.jacrev(y))(x))  # rows: VJPs of basis vectors
  grad = np.asarray(w) @ jac  # the VJP of sum(w * y)
  np.testing.assert_allclose(grad, fd, atol=0.05)
  elementwise = np.asarray(w) * np.diag(jac)
  assert np.abs(elementwise - fd).max() > 0.2
  assert np.abs(elementwise - grad).max() > 0.2


def test_perturbed_topk_under_jit_vmap_grad_traced_sigma():
  x = jax.random.normal(jax.random.key(5), (4, 9))
  keys = jax.random.split(jax.random.key(7), 3)

  def loss(v, key, sigma):  # sigma traced, as with a decayed schedule
    y = sel.perturbed_topk(v, 2, key, _S, sigma)
    return (y * jnp.arange(9.0)).sum(), y

  f = jax.jit(
      jax.vmap(jax.value_and_grad(loss, has_aux=True), in_axes=(None, 0, None))
  )
  (_, ys), gs = f(x, keys, 0.05)
  assert ys.shape == gs.shape == (3, 4, 9)
  np.testing.assert_allclose(ys.sum(-1), 2.0, rtol=1e-5)
  assert bool(jnp.isfinite(gs).all()) and float(jnp.abs(gs).max()) > 0
  # Deterministic given the key; another key gives other noise.
  _, gs2 = f(x, keys, 0.05)
  np.testing.assert_array_equal(gs, gs2)
  assert float(jnp.abs(gs[0] - gs[1]).max()) > 0


def test_perturbed_topk_errors():
  x, key = jnp.zeros((1, 4)), jax.random.key(0)
  with pytest.raises(ValueError, match=r"config\.model\.selection\.sigma"):
    sel.perturbed_topk(x, 1, key, 10, 0.0)
  with pytest.raises(
      ValueError, match=r"config\.model\.selection\.num_samples"
  ):
    sel.perturbed_topk(x, 1, key, 0, 0.1)


# ------------------------------------------------------------ Gumbel ST


def test_gumbel_topk_st_forward_is_k_hot_and_grad():
  x = jax.random.normal(jax.random.key(8), (4, 10))
  key = jax.random.key(9)
  w = jnp.arange(10.0)

  def loss(v):
    m = sel.gumbel_topk_st(v, 3, key)
    return (m * w).sum(), m

  (_, m), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(x)
  assert m.dtype == jnp.float32
  assert set(np.unique(np.asarray(m))) <= {0.0, 1.0}
  np.testing.assert_array_equal(m.sum(-1), 3.0)
  assert bool(jnp.isfinite(grad).all()) and float(jnp.abs(grad).max()) > 1e-3

  @jax.jit
  def reference(v):  # hard top-k of v + g; the relaxation's gradient there
    g = jax.random.gumbel(key, v.shape)
    relaxed = lambda u: (sel.relaxed_topk(u + g, 3, 1.0) * w).sum()
    return sel.hard_topk_mask(v + g, 3), jax.grad(relaxed)(v)

  want_m, want = reference(x)
  np.testing.assert_array_equal(m, want_m)
  np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6)
  # Per-sample k.
  m = sel.gumbel_topk_st(x, jnp.asarray([0, 1, 5, 10]), key)
  np.testing.assert_array_equal(m.sum(-1), [0, 1, 5, 10])


def test_relaxed_topk_sums_to_k_and_sharpens():
  x = jnp.asarray([[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]])
  soft = sel.relaxed_topk(x, 2, tau=1.0)
  np.testing.assert_allclose(soft.sum(-1), 2.0, rtol=1e-5)
  np.testing.assert_allclose(
      sel.relaxed_topk(x, 2, tau=0.01), sel.hard_topk_mask(x, 2), atol=1e-6
  )
  soft = sel.relaxed_topk(x, jnp.asarray([3]), tau=0.5)  # k_max = N
  np.testing.assert_allclose(soft.sum(-1), 3.0, rtol=1e-5)


def test_gumbel_top1_frequencies_follow_softmax():
  # Gumbel-max: P(tile i chosen) = softmax(logits)_i; 20k draws give a
  # standard error <= 0.0036 per frequency; tolerance 0.015.
  logits = jnp.asarray([[0.5, -1.0, 1.0, 0.0, 0.2, -0.3]])
  keys = jax.random.split(jax.random.key(10), 20_000)
  m = jax.jit(jax.vmap(lambda kk: sel.gumbel_topk_st(logits, 1, kk)[0]))(keys)
  np.testing.assert_allclose(m.mean(0), jax.nn.softmax(logits[0]), atol=0.015)


# ---------------------------------------------------------------- select


def test_select_dispatch():
  x = jax.random.normal(jax.random.key(11), (4, 9))
  key = jax.random.key(12)
  hard = sel.hard_topk_mask(x, 2)
  for mode in sel.MODES:
    np.testing.assert_array_equal(
        sel.select(x, 2, mode=mode, key=key, train=False), hard
    )
  soft = sel.select(
      x, 2, mode="perturbed", key=key, train=True, num_samples=_S, sigma=0.5
  )
  assert soft.dtype == jnp.float32 and soft.shape == (4, 9)
  np.testing.assert_allclose(soft.sum(-1), 2.0, rtol=1e-5)
  f = jax.jit(
      functools.partial(sel.select, mode="gumbel_st", train=True, tau=0.5),
      static_argnums=1,
  )
  st = f(x, 2, key=key)
  np.testing.assert_array_equal(st.sum(-1), 2.0)


def test_select_errors():
  x = jnp.zeros((1, 4))
  with pytest.raises(ValueError, match=r"config\.model\.selection\.mode"):
    sel.select(x, 1, mode="topk")
  with pytest.raises(ValueError, match=r"\['tau'\] do not apply .*perturbed"):
    sel.select(x, 1, mode="perturbed", tau=1.0)
  with pytest.raises(ValueError, match="needs an RNG key"):
    sel.select(x, 1, mode="gumbel_st", train=True)


# ------------------------------------------------------------- config keys

_KEY_MODULES = (
    "crossscale/budgets.py",
    "crossscale/selection.py",
    "crossscale/kernels/tile_select.py",
    "crossscale/kernels/tile_select_reference.py",
    "crossscale/models/cross_scale.py",
)


def _config_keys(path):
  """Every `config.a.b` named in a string of `path` (messages, docstrings);
  `config.a.{b,c}` names config.a.b and config.a.c."""
  tree = ast.parse(open(os.path.join(ROOT, path)).read(), path)
  keys = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
      pat = r"config((?:\.[A-Za-z_]\w*)+)(?:\.\{([\w, ]+)\})?"
      for base, alts in re.findall(pat, node.value):
        for alt in alts.split(",") if alts else [""]:
          keys.add("config" + base + (f".{alt.strip()}" if alt else ""))
  return keys


def _missing(keys, config):
  """The dotted `config.…` keys that do not resolve in `config`."""
  out = []
  for key in sorted(keys):
    node = config
    for part in key.split(".")[1:]:
      if not (hasattr(node, "keys") and part in node):
        out.append(key)
        break
      node = node[part]
  return out


def test_config_keys_named_in_messages_exist():
  """Errors name config keys a user can set: each resolves in the
  cross_scale config (whose model these modules serve)."""
  config = cross_scale_config.get_config()
  found = {p: _config_keys(p) for p in _KEY_MODULES}
  missing = {p: _missing(keys, config) for p, keys in found.items()}
  assert not any(missing.values()), missing
  # The scan sees the keys the budget and selection errors name ...
  assert {
      "config.model.budget",
      "config.model.class_budgets",
      "config.model.cost.total",
      "config.model.select_impl",
      "config.model.selection.mode",
  } <= set().union(*found.values())
  # ... and the keys the messages named before (issue 20) do not resolve.
  old = {
      "config.selection.budget",
      "config.selection.class_budget_mode",
      "config.model.selection.impl",
  }
  assert _missing(old, config) == sorted(old)
