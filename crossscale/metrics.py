"""Task losses and metrics. Losses are jnp (inside jit); ranking metrics are
numpy over a whole split (they do not decompose over batches)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

TASKS = ("single_label", "multi_label")


def task_loss(logits: jnp.ndarray, labels: jnp.ndarray, task: str,
              valid: jnp.ndarray | None = None) -> jnp.ndarray:
  """Mean loss over valid examples. logits, labels: `[B, K]`; valid: `[B]`.

  single_label: softmax cross-entropy against one-hot labels;
  multi_label: sigmoid binary cross-entropy, mean over classes.
  """
  if task == "single_label":
    per_example = optax.softmax_cross_entropy(logits, labels)
  elif task == "multi_label":
    per_example = optax.sigmoid_binary_cross_entropy(logits, labels).mean(-1)
  else:
    raise ValueError(f"unknown task {task!r} (config.task); known: {TASKS}")
  if valid is None:
    return per_example.mean()
  w = valid.astype(per_example.dtype)
  return (per_example * w).sum() / jnp.maximum(w.sum(), 1.0)


def correct(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """`[B]` 1.0 where the top-1 class is a true label (single-label accuracy)."""
  top = jnp.argmax(logits, -1)
  return jnp.take_along_axis(labels, top[:, None], axis=-1)[:, 0]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
  """Tie-aware, non-interpolated AP of one ranking (`[N]` each).

  Items with equal scores form one threshold: precision is taken once per
  distinct score, weighted by the recall it adds (scikit-learn's definition).
  Returns nan when there are no positives.
  """
  labels = np.asarray(labels, bool)
  npos = labels.sum()
  if npos == 0:
    return float("nan")
  order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
  s, y = np.asarray(scores)[order], labels[order]
  tp = np.cumsum(y)
  # Last index of each run of equal scores.
  ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
  tp_at = tp[ends]
  precision = tp_at / (ends + 1)
  recall_gain = np.diff(np.r_[0, tp_at]) / npos
  return float((precision * recall_gain).sum())


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> dict:
  """Macro, support-weighted and micro mAP for `[N, K]` scores/labels.

  Classes with no positives are left out of macro/weighted averages.
  """
  labels = np.asarray(labels, bool)
  ap = np.array([average_precision(scores[:, k], labels[:, k])
                 for k in range(labels.shape[1])])
  support = labels.sum(0)
  ok = support > 0
  return {
      "mAP_macro": float(ap[ok].mean()) if ok.any() else float("nan"),
      "mAP_weighted": float((ap[ok] * support[ok]).sum() / support[ok].sum())
                      if ok.any() else float("nan"),
      "mAP_micro": average_precision(scores.ravel(), labels.ravel()),
  }


def retrieval_metrics(emb: np.ndarray, labels: np.ndarray,
                      ks=(10,)) -> dict[str, float]:
  """Scene-to-scene retrieval: each item queries all others.

  emb: `[N, E]` L2-normalised; labels: `[N, K]` multi-hot; a gallery item is
  relevant when it shares a label with the query. AP@k = sum over relevant
  ranks r <= k of precision@r, divided by min(#relevant, k); recall@k =
  relevant in top k / #relevant. Queries with no relevant item are skipped.
  """
  emb = np.asarray(emb, np.float64)
  lab = np.asarray(labels) > 0
  sim = emb @ emb.T
  np.fill_diagonal(sim, -np.inf)
  rel = (lab.astype(np.int64) @ lab.T.astype(np.int64)) > 0
  np.fill_diagonal(rel, False)
  order = np.argsort(-sim, axis=1, kind="stable")
  ranked = np.take_along_axis(rel, order, axis=1)          # [N, N-1+1]
  npos = rel.sum(1)
  ok = npos > 0
  out = {}
  for k in ks:
    top = ranked[:, :k].astype(np.float64)
    prec = np.cumsum(top, 1) / np.arange(1, top.shape[1] + 1)
    ap = (prec * top).sum(1) / np.minimum(npos, k).clip(min=1)
    out[f"AP@{k}"] = float(ap[ok].mean()) if ok.any() else float("nan")
    out[f"recall@{k}"] = float((top.sum(1)[ok] / npos[ok]).mean()
                               ) if ok.any() else float("nan")
  return out
