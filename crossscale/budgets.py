"""Tile budgets on the host: resolve them to tile counts and validate them.

Plain Python / numpy, run before jit (inside jit nothing can raise); shared
by `crossscale.selection`, the tile-select kernel module and the models.
Errors (ConfigError of crossscale.run_config, a ValueError) name the
config key that set the value: `config.model.budget` (a ratio of the G*G grid),
`config.model.budget_tiles` (a tile count; replaces the ratio when >= 0),
`config.model.class_budgets`, `config.model.cost.{price,total,k_max}`.

  k = budgets.k_from_budget(0.125, 16 * 16)          # ratio -> 32 tiles
  budgets.model_budget({"budget": 0.125, "budget_tiles": 8})   # -> 8
  budgets.check_cost_budget(prices, total=8.0)       # raises ValueError
"""

from __future__ import annotations

import math

import jax
import numpy as np

from crossscale.run_config import ConfigError

BUDGET_KEY = "config.model.budget"
TILES_KEY = "config.model.budget_tiles"
CLASS_BUDGETS_KEY = "config.model.class_budgets"


def grid_words(n_tiles: int) -> str:
  """'64 tiles of the 8x8 grid' (or '60 tiles' for a non-square count)."""
  g = math.isqrt(n_tiles)
  return (
      f"{n_tiles} tiles of the {g}x{g} grid"
      if g * g == n_tiles
      else f"{n_tiles} tiles"
  )


def k_from_budget(
    budget: int | float,
    n_tiles: int,
    batch_size: int | None = None,
    key: str = BUDGET_KEY,
) -> int | np.ndarray:
  """Tile count k for a budget set by config key `key`.

  An int is a count, 0 <= k <= n_tiles; a float is a ratio in [0, 1] rounded
  half up: k = floor(ratio * n_tiles + 0.5). (So `1` means one tile and `1.0`
  means all tiles.) Returns an int, or `k: [batch_size]` int32 when
  `batch_size` is given.
  """
  if isinstance(budget, (bool, np.bool_)) or not isinstance(
      budget, (int, float, np.integer, np.floating)
  ):
    raise ConfigError(
        f"budget {budget!r} is not a number ({key}); use a "
        f"tile count (int) or a ratio in [0, 1] (float)"
    )
  if isinstance(budget, (int, np.integer)):
    k = int(budget)
    if k > n_tiles:
      raise ConfigError(
          f"budget {k} > {grid_words(n_tiles)} ({key}); "
          f"use at most {n_tiles} or a ratio <= 1"
      )
    if k < 0:
      raise ConfigError(
          f"budget {k} is negative ({key}); use a tile count "
          f"in 0..{n_tiles} or a ratio in [0, 1]"
      )
  else:
    ratio = float(budget)
    if not math.isfinite(ratio) or ratio < 0 or ratio > 1:
      count = (
          f"; for a count of {ratio:g} tiles give --"
          f"{TILES_KEY}={ratio:g} instead"
          if ratio.is_integer() and 1 < ratio <= n_tiles
          else ""
      )
      raise ConfigError(
          f"budget ratio {ratio} is outside [0, 1] for the "
          f"{grid_words(n_tiles)} ({key}); use a ratio in [0, 1] "
          f"or a tile count in 0..{n_tiles} ({TILES_KEY}){count}"
      )
    k = int(math.floor(ratio * n_tiles + 0.5))
  if batch_size is None:
    return k
  return np.full((batch_size,), k, np.int32)


def model_budget(model_config) -> int | float:
  """The budget a model config asks for: the tile count
  `budget_tiles` when it is set (>= 0), else the ratio `budget`.

  Command-line values keep the type of the config's default, so
  `--config.model.budget=8` is the ratio 8.0 (refused) and a count needs
  its own key: `--config.model.budget_tiles=8`.
  """
  tiles = model_config.get("budget_tiles", -1)
  if tiles is None or (isinstance(tiles, (int, np.integer)) and tiles < 0):
    return model_config.get("budget", 0.125)
  if isinstance(tiles, bool) or not float(tiles).is_integer():
    raise ConfigError(
        f"budget_tiles {tiles!r} is not a whole number ({TILES_KEY}); give "
        f"a tile count, or a ratio in [0, 1] with {BUDGET_KEY}"
    )
  return int(tiles)


def resolve_tiles(model_kwargs: dict, grid: int) -> dict:
  """`model_kwargs` (config.model's fields) with `budget_tiles` folded into
  `budget` (`model_budget`), checked against the G*G grid."""
  kwargs = dict(model_kwargs)
  kwargs["budget"] = model_budget(kwargs)
  count = kwargs.pop("budget_tiles") >= 0
  k_from_budget(
      kwargs["budget"], grid * grid, key=TILES_KEY if count else BUDGET_KEY
  )
  return kwargs


def check_k(k, n_tiles: int, name: str = "k", key: str = BUDGET_KEY) -> None:
  """A static tile count must lie in 0..n_tiles; traced or array k pass."""
  if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
    if not 0 <= int(k) <= n_tiles:
      raise ConfigError(
          f"{name} = {int(k)} is outside 0..{n_tiles} "
          f"({grid_words(n_tiles)}) ({key}); resolve the "
          "budget with k_from_budget"
      )


def check_class_budgets(class_budgets, n_tiles: int) -> None:
  """`class_budgets: [C]` tile counts in 0..n_tiles; skipped when traced."""
  if isinstance(class_budgets, jax.core.Tracer):
    return
  p = np.asarray(class_budgets)
  if p.ndim != 1:
    raise ConfigError(
        f"class budgets must be one value per class, got shape {p.shape} "
        f"({CLASS_BUDGETS_KEY})"
    )
  if (
      np.isnan(p.astype(np.float64)).any()
      or (p < 0).any()
      or (p > n_tiles).any()
  ):
    raise ConfigError(
        f"class budgets {p.tolist()} must lie in 0..{n_tiles} "
        f"({grid_words(n_tiles)}) ({CLASS_BUDGETS_KEY}); "
        f"clip them to that range"
    )


def observation_budget_ratio(class_budgets, n_tiles: int) -> float:
  """OBR = sum_c P_c / (n_tiles * C). E.g. P_c = 12 of 100 tiles -> 0.12."""
  check_class_budgets(class_budgets, n_tiles)
  p = np.asarray(class_budgets, np.float64)
  if p.size == 0:
    raise ConfigError(
        f"no class budgets given ({CLASS_BUDGETS_KEY});"
        " give one tile count per class"
    )
  return float(p.sum() / (n_tiles * p.size))


def check_cost_budget(prices, total, scores=None) -> None:
  """Validates a price budget; raises ValueError.

  prices: `[B, N]` finite, >= 0; total: scalar or `[B]`, finite, >= 0;
  scores (optional): `[B, N]` finite, >= 0 (score-per-price ranks are only
  meaningful for non-negative utilities: pass sigmoid(logits), not logits).
  The greedy selection cannot raise inside jit; call this before it.
  """
  prices = np.asarray(prices, np.float64)
  total = np.asarray(total, np.float64)
  where = "batch['tile_prices'] or config.model.cost.price"
  if prices.ndim != 2:
    raise ConfigError(
        f"prices must be [B, N], got shape {prices.shape} ({where})"
    )
  if not np.isfinite(prices).all() or (prices < 0).any():
    bad = prices[~(np.isfinite(prices) & (prices >= 0))]
    raise ConfigError(
        f"tile prices must be finite and >= 0; found {bad[:5].tolist()} "
        f"({where}); fix the price table"
    )
  if total.ndim > 1 or (total.ndim == 1 and total.shape[0] != prices.shape[0]):
    raise ConfigError(
        f"cost total must be a scalar or [B={prices.shape[0]}], got shape "
        f"{total.shape} (config.model.cost.total)"
    )
  if not np.isfinite(total).all() or (total < 0).any():
    raise ConfigError(
        f"cost total {total.tolist()} must be finite and >= 0 "
        "(config.model.cost.total); set a non-negative spend per scene"
    )
  if scores is not None:
    scores = np.asarray(scores, np.float64)
    if scores.shape != prices.shape:
      raise ConfigError(
          f"scores {scores.shape} and prices {prices.shape} "
          "must have the same shape [B, N]"
      )
    if not np.isfinite(scores).all() or (scores < 0).any():
      raise ConfigError(
          "scores for cost-aware selection must be finite and >= 0 "
          "(score-per-price ranking); pass sigmoid(logits) or probabilities"
      )
