"""Paired bootstrap intervals over test scenes and seeds.

Two methods evaluated on the same scenes with the same seeds differ by
`metric(a) - metric(b)`; its 95% interval comes from resampling both axes
together (a hierarchical bootstrap): each draw picks n scenes and S seeds
with replacement, the same for both methods, and averages the per-seed
difference of the metric computed on the drawn scenes. An interval that
contains 0 is a tie.
"""

from __future__ import annotations

import numpy as np

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
  rng = np.random.default_rng(seed)
  scene_idx = rng.integers(0, n, size=(draws, n))  # [D, n]
  seed_idx = rng.integers(0, S, size=(draws, S))  # [D, S]
  full = np.arange(n)[None]
  per_seed, boot = [], []  # [S] and [S, D] differences
  for (sa, la), (sb, lb) in zip(a, b):
    per_seed.append(
        batched_metric(metric, sa[full], la[full])[0]
        - batched_metric(metric, sb[full], lb[full])[0]
    )
    d = np.empty(draws)
    for lo in range(0, draws, 200):  # bounded memory: [200, n, K] at a time
      i = scene_idx[lo : lo + 200]
      d[lo : lo + 200] = batched_metric(metric, sa[i], la[i]) - (
          batched_metric(metric, sb[i], lb[i])
      )
    boot.append(d)
  boot = np.asarray(boot)  # [S, D]
  drawn = np.take_along_axis(boot.T, seed_idx, axis=1).mean(1)  # [D]
  tail = 100 * (1 - level) / 2
  low, high = np.nanpercentile(drawn, [tail, 100 - tail])
  return {
      "diff": float(np.mean(per_seed)),
      "low": float(low),
      "high": float(high),
      "seeds": S,
      "scenes": int(n),
      "draws": draws,
  }


def verdict(low: float, high: float) -> str:
  """ "ahead" (interval above 0), "behind" (below) or "tie"."""
  return "ahead" if low > 0 else "behind" if high < 0 else "tie"
