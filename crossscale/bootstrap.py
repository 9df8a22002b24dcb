"""Paired bootstrap intervals over test scenes and seeds.

Two methods evaluated on the same scenes with the same seeds differ by
`metric(a) - metric(b)`; its 95% interval comes from resampling both axes
together (a hierarchical bootstrap): each draw picks n scenes and S seeds
with replacement, the same for both methods, and averages the per-seed
difference of the metric computed on the drawn scenes. An interval that
contains 0 is a tie.

Any statistic of n test windows can also be bootstrapped through integer
window weights: `resample_counts` draws `[D, n]` repeat counts (draw d uses
window i counts[d, i] times), a statistic computed with those weights is one
bootstrap replicate, `percentile_interval` reads the interval off the
replicates and `finding` turns it into a verdict string. `pearson_rows` /
`spearman_rows` correlate many paired samples at once (one per draw).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from crossscale import metrics

METRICS = ("accuracy", "mAP_macro")


def batched_metric(
    name: str, scores: np.ndarray, labels: np.ndarray
) -> np.ndarray:
  """`name` in METRICS of D resampled splits: `[D, n, K]` scores (logits) and
  labels (one-hot / multi-hot) -> `[D]`."""
  if name == "accuracy":
    top = scores.argmax(-1)[..., None]  # [D, n, 1]
    return (np.take_along_axis(labels, top, axis=-1)[..., 0] > 0).mean(-1)
  if name == "mAP_macro":
    return metrics.macro_ap_batched(scores, labels)
  raise ValueError(f"unknown metric {name!r}; known: {METRICS}")


def paired_difference(
    a: list[tuple[np.ndarray, np.ndarray]],
    b: list[tuple[np.ndarray, np.ndarray]],
    metric: str,
    *,
    draws: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
  """`metric(a) - metric(b)` with a paired bootstrap interval.

  a, b: per seed (same seeds, same order), `(scores [n, K], labels [n, K])`
  of the same n scenes in the same order (labels must agree). Returns
  {"diff": mean over seeds of the full-split difference, "low", "high":
  the `level` percentile interval, "seeds", "scenes", "draws"}; one seed
  resamples scenes only.
  """
  if len(a) != len(b) or not a:
    raise ValueError(f"paired seeds differ: {len(a)} vs {len(b)}")
  for (sa, la), (sb, lb) in zip(a, b):
    if sa.shape != sb.shape or not np.array_equal(la > 0, lb > 0):
      raise ValueError(
          "the two methods were not evaluated on the same scenes "
          f"(scores {sa.shape} vs {sb.shape}, or different labels)"
      )
  n, S = a[0][0].shape[0], len(a)
  full = np.arange(n)[None]
  per_seed = [
      batched_metric(metric, sa[full], la[full])[0]
      - batched_metric(metric, sb[full], lb[full])[0]
      for (sa, la), (sb, lb) in zip(a, b)
  ]
  drawn = _scene_seed_draws(
      lambda s, i: batched_metric(metric, a[s][0][i], a[s][1][i])
      - batched_metric(metric, b[s][0][i], b[s][1][i]),
      n, S, draws, seed,
  )  # fmt: skip
  low, high = _percentiles(drawn, level)
  return {
      "diff": float(np.mean(per_seed)),
      "low": float(low),
      "high": float(high),
      "seeds": S,
      "scenes": int(n),
      "draws": draws,
  }


def interval(
    a: list[tuple[np.ndarray, np.ndarray]],
    metric: str,
    *,
    draws: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> list[float]:
  """[low, high]: the `level` bootstrap interval of `metric` over scenes
  and seeds (`a` as in `paired_difference`, one method)."""
  n, S = a[0][0].shape[0], len(a)
  drawn = _scene_seed_draws(
      lambda s, i: batched_metric(metric, a[s][0][i], a[s][1][i]),
      n, S, draws, seed,
  )  # fmt: skip
  return list(_percentiles(drawn, level))


def _scene_seed_draws(stat, n: int, S: int, draws: int, seed: int):
  """`[D]` bootstrap draws: scenes resampled per draw (the same for every
  seed), then seeds resampled and `stat(seed, scene_idx [d, n]) -> [d]`
  averaged over them. Chunks of 200 draws bound memory ([200, n, K])."""
  rng = np.random.default_rng(seed)
  scene_idx = rng.integers(0, n, size=(draws, n))  # [D, n]
  seed_idx = rng.integers(0, S, size=(draws, S))  # [D, S]
  boot = np.asarray(
      [
          np.concatenate(
              [stat(s, scene_idx[lo : lo + 200]) for lo in range(0, draws, 200)]
          )
          for s in range(S)
      ]
  )  # [S, D]
  return np.take_along_axis(boot.T, seed_idx, axis=1).mean(1)


def _percentiles(drawn: np.ndarray, level: float) -> tuple[float, float]:
  tail = 100 * (1 - level) / 2
  low, high = np.nanpercentile(drawn, [tail, 100 - tail])
  return float(low), float(high)


def verdict(low: float, high: float) -> str:
  """ "ahead" (interval above 0), "behind" (below) or "tie"."""
  return "ahead" if low > 0 else "behind" if high < 0 else "tie"


def resample_counts(n: int, draws: int, seed: int = 0) -> np.ndarray:
  """`[draws, n]` int64 repeat counts of n windows drawn n times with
  replacement per draw (each row sums to n)."""
  if n < 1 or draws < 1:
    raise ValueError(f"resample_counts needs n, draws >= 1; got {n}, {draws}")
  idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
  offset = np.arange(draws)[:, None] * n
  return np.bincount((idx + offset).ravel(), minlength=draws * n).reshape(
      draws, n
  )


def percentile_interval(
    values: np.ndarray, level: float = 0.95
) -> tuple[float | None, float | None]:
  """The `level` percentile interval of bootstrap replicates `[D]` (NaN
  replicates left out; (None, None) when all are NaN)."""
  v = np.asarray(values, np.float64)
  v = v[np.isfinite(v)]
  if not len(v):
    return None, None
  tail = 100 * (1 - level) / 2
  low, high = np.percentile(v, [tail, 100 - tail])
  return float(low), float(high)


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Pearson r of each row pair of `x`, `y` `[D, m]` -> `[D]` (NaN where a
  row is constant or has fewer than 3 points)."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  xc = x - x.mean(-1, keepdims=True)
  yc = y - y.mean(-1, keepdims=True)
  den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
  scale = np.maximum(np.abs(x).max(-1), np.abs(y).max(-1)) + 1e-300
  ok = (den > 1e-12 * scale**2) & (x.shape[-1] >= 3)
  r = np.where(ok, (xc * yc).sum(-1) / np.where(ok, den, 1.0), np.nan)
  return np.clip(r, -1.0, 1.0)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Spearman rho of each row pair `[D, m]` -> `[D]`: Pearson of the ranks
  (ties averaged, as scipy.stats.spearmanr)."""
  return pearson_rows(stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1))


def finding(
    subject: str,
    low: float | None,
    high: float | None,
    above: str,
    below: str,
    null: float = 0.0,
) -> str:
  """A verdict string that states `above` / `below` only when the interval
  [low, high] lies entirely above / below `null`, else "no finding"."""
  if low is None or high is None:
    return f"{subject}: no interval (undefined in every draw)"
  span = f"95% interval [{low:.3g}, {high:.3g}]"
  if low > null:
    return f"{subject}: {above} ({span} > {null:g})"
  if high < null:
    return f"{subject}: {below} ({span} < {null:g})"
  return f"{subject}: no finding ({span} contains {null:g})"
