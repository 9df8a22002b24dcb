"""Task losses and metrics. Losses are jnp (inside jit); ranking metrics are
numpy over a whole split (they do not decompose over batches)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

TASKS = ("single_label", "multi_label")


def example_losses(
    logits: jnp.ndarray, labels: jnp.ndarray, task: str
) -> jnp.ndarray:
  """`[B]` loss per example. logits, labels: `[B, K]`.

  single_label: softmax cross-entropy against one-hot labels;
  multi_label: sigmoid binary cross-entropy, summed over classes (a mean
  over K classes shrinks each class's gradient K-fold against the auxiliary
  losses: on geoworld's val regions the HR-only object classes then stayed
  at chance; experiments/cross_scale/README.md).
  """
  if task == "single_label":
    return optax.softmax_cross_entropy(logits, labels)
  if task == "multi_label":
    return optax.sigmoid_binary_cross_entropy(logits, labels).sum(-1)
  raise ValueError(f"unknown task {task!r} (config.task); known: {TASKS}")


def task_loss(
    logits: jnp.ndarray,
    labels: jnp.ndarray,
    task: str,
    valid: jnp.ndarray | None = None,
) -> jnp.ndarray:
  """Mean `example_losses` over valid examples (valid: `[B]`)."""
  per_example = example_losses(logits, labels, task)
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


def _score_matrix(scores, labels, fn: str) -> tuple[np.ndarray, np.ndarray]:
  """`[N, K]` float64 scores and bool labels, or a clear error."""
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0
  if scores.ndim != 2 or scores.shape != labels.shape:
    raise ValueError(
        f"{fn}: scores {scores.shape} and labels {labels.shape} must both be "
        "[N scenes, K classes]: pass the split's logits and multi-hot labels."
    )
  return scores, labels


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> dict:
  """Macro, support-weighted and micro mAP for `[N, K]` scores/labels.

  Only classes with positives in the split count, in all three: macro is
  the mean of per-class AP, weighted weighs it by #positives, micro is one
  AP over the pooled (scene, class) pairs of those classes (an absent
  class's scores would only add negatives). nan when no class has one.
  """
  scores, labels = _score_matrix(scores, labels, "mean_average_precision")
  support = labels.sum(0)
  ok = support > 0
  if not ok.any():
    return {k: float("nan") for k in ("mAP_macro", "mAP_weighted", "mAP_micro")}
  ap = np.array(
      [average_precision(scores[:, k], labels[:, k]) for k in ok.nonzero()[0]]
  )
  return {
      "mAP_macro": float(ap.mean()),
      "mAP_weighted": float((ap * support[ok]).sum() / support[ok].sum()),
      "mAP_micro": average_precision(
          scores[:, ok].ravel(), labels[:, ok].ravel()
      ),
  }


def macro_ap_batched(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Macro mAP of D resampled splits at once: `[D, N, K]` scores and labels
  -> `[D]`, `mean_average_precision`'s "mAP_macro" of each (tie-aware AP,
  classes with positives in that resample; nan where none has one)."""
  scores, labels = np.asarray(scores, np.float64), np.asarray(labels) > 0
  order = np.argsort(-scores, axis=1, kind="stable")
  s = np.take_along_axis(scores, order, axis=1)
  y = np.take_along_axis(labels, order, axis=1)
  tp = np.cumsum(y, axis=1, dtype=np.float64)  # [D, N, K]
  end = np.ones_like(y)  # last item of each run of equal scores
  end[:, :-1] = s[:, 1:] != s[:, :-1]
  tp_end = np.where(end, tp, 0.0)
  before = np.maximum.accumulate(tp_end, axis=1)  # tp at the latest end
  gain = tp_end - np.concatenate(
      [np.zeros_like(before[:, :1]), before[:, :-1]], 1
  )
  rank = np.arange(1, scores.shape[1] + 1, dtype=np.float64)[None, :, None]
  npos = labels.sum(1)  # [D, K]
  ap = np.where(end, tp / rank * gain, 0.0).sum(1) / np.maximum(npos, 1)
  ok = npos > 0
  with np.errstate(invalid="ignore"):
    return np.where(ok, ap, 0.0).sum(1) / ok.sum(1)


def class_retrieval_metrics(
    scores: np.ndarray, labels: np.ndarray, ks=(10,)
) -> dict[str, float]:
  """The paper's retrieval mAP@k: each class queries the split's scenes.

  scores: `[N, K]` per-class scores (logits, or a scene's similarity to the
  class's text embedding); labels: `[N, K]` multi-hot. Per class, scenes are
  ranked by its score (ties keep scene order: a stable sort); AP@k = sum
  over relevant ranks r <= k of precision@r, divided by min(#positives, k);
  "mAP@k" is the mean over classes with positives (nan if none).
  """
  scores, labels = _score_matrix(scores, labels, "class_retrieval_metrics")
  order = np.argsort(-scores, axis=0, kind="stable")  # [N, K]
  ranked = np.take_along_axis(labels, order, axis=0).astype(np.float64)
  npos = labels.sum(0)
  ok = npos > 0
  out = {}
  for k in ks:
    top = ranked[:k]  # [min(k, N), K]
    prec = np.cumsum(top, 0) / np.arange(1, top.shape[0] + 1)[:, None]
    ap = (prec * top).sum(0) / np.minimum(npos, k).clip(min=1)
    out[f"mAP@{k}"] = float(ap[ok].mean()) if ok.any() else float("nan")
  return out


def retrieval_metrics(
    emb: np.ndarray, labels: np.ndarray, ks=(10,)
) -> dict[str, float]:
  """Scene-to-scene retrieval ("scene_AP@k", "scene_recall@k"): each item
  queries all others. Not the paper's protocol (class_retrieval_metrics);
  older results JSONs call these "AP@k" / "recall@k".

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
  ranked = np.take_along_axis(rel, order, axis=1)  # [N, N-1+1]
  npos = rel.sum(1)
  ok = npos > 0
  out = {}
  for k in ks:
    top = ranked[:, :k].astype(np.float64)
    prec = np.cumsum(top, 1) / np.arange(1, top.shape[1] + 1)
    ap = (prec * top).sum(1) / np.minimum(npos, k).clip(min=1)
    out[f"scene_AP@{k}"] = float(ap[ok].mean()) if ok.any() else float("nan")
    out[f"scene_recall@{k}"] = (
        float((top.sum(1)[ok] / npos[ok]).mean()) if ok.any() else float("nan")
    )
  return out


# --- Referring segmentation (RRSIS-D / RefSegRS protocol) -------------------
#
# One sample is one image-expression pair with a thresholded predicted mask
# and the true mask. Conventions (those of LAVT/RMSIN's evaluation code):
#   IoU_i = I_i / U_i, and IoU_i = 0 when U_i = 0 (both masks empty): an empty
#   target predicted empty scores 0, not 1 (referring sets have no empty
#   targets, so this only matters for degenerate data);
#   oIoU = sum_i I_i / sum_i U_i over the split (0 when every U_i = 0);
#   mIoU = mean_i IoU_i;  Prec@X = share of samples with IoU_i >= X.

PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _binary(mask, what: str, i: int) -> np.ndarray:
  """A 0/1 or bool mask as bool; anything else is refused (threshold first)."""
  m = np.asarray(mask)
  if m.dtype != bool:
    if not np.isin(m, (0, 1)).all():
      raise ValueError(
          f"{what} mask {i} has values other than 0/1 (e.g. probabilities or "
          "255): threshold it first, e.g. `pred > 0.5` or `mask > 0`."
      )
    m = m.astype(bool)
  return m


def intersection_union(pred, true) -> tuple[np.ndarray, np.ndarray]:
  """Per-sample pixel counts `(I: [N], U: [N])` (int64).

  pred, true: `[N, H, W]` binary arrays, or equal-length sequences of `[H_i,
  W_i]` masks of per-sample sizes (pred i and true i must match).
  """
  if len(pred) != len(true):
    raise ValueError(
        f"{len(pred)} predicted masks but {len(true)} true "
        "masks: pass one prediction per image-expression pair."
    )
  inter = np.zeros(len(pred), np.int64)
  union = np.zeros(len(pred), np.int64)
  for i, (p, t) in enumerate(zip(pred, true)):
    p, t = _binary(p, "predicted", i), _binary(t, "true", i)
    if p.shape != t.shape:
      raise ValueError(
          f"sample {i}: predicted mask {p.shape} vs true mask "
          f"{t.shape}: resize the prediction to the mask size."
      )
    inter[i] = np.count_nonzero(p & t)
    union[i] = np.count_nonzero(p | t)
  return inter, union


def refseg_metrics_from_counts(
    inter, union, thresholds=PREC_THRESHOLDS
) -> dict[str, float]:
  """oIoU, mIoU and Prec@X from per-sample counts `[N]` (see the header)."""
  inter = np.asarray(inter, np.float64)
  union = np.asarray(union, np.float64)
  if inter.size == 0:
    raise ValueError(
        "no samples: referring metrics need at least one "
        "image-expression pair."
    )
  iou = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
  total_u = union.sum()
  out = {
      "oIoU": float(inter.sum() / total_u) if total_u > 0 else 0.0,
      "mIoU": float(iou.mean()),
      "num_samples": int(iou.size),
  }
  for x in thresholds:
    out[f"Prec@{x:g}"] = float((iou >= x).mean())
  return out


def refseg_metrics(pred, true, thresholds=PREC_THRESHOLDS) -> dict[str, float]:
  """Referring-segmentation metrics of binary masks (`[N, H, W]` or lists).

  Returns {"oIoU", "mIoU", "Prec@0.5", ..., "Prec@0.9", "num_samples"}, all
  as fractions in [0, 1] (papers report them x100).
  """
  return refseg_metrics_from_counts(
      *intersection_union(pred, true), thresholds=thresholds
  )


# --- Dense downstream tasks (segmentation, regression) and scene accuracy ----
#
# Segmentation metrics come from one confusion matrix over all pixels of a
# split (rows: true class, columns: predicted). Per class k:
#   IoU_k = TP / (TP + FP + FN),  F1_k = 2 TP / (2 TP + FP + FN);
# a class absent from both truth and prediction (TP + FP + FN = 0) has no
# IoU/F1 and is left out of the means (mIoU, mean_f1), as in mmseg.
# Pixels whose true id is outside [0, K) (e.g. 255 = unlabelled) are ignored.


def confusion_matrix(pred, true, num_classes: int) -> np.ndarray:
  """`[K, K]` int64 counts of (true, pred) pixel pairs.

  pred, true: integer class ids of one shape (e.g. `[N, H, W]`); pixels whose
  true id is outside [0, K) are ignored; predicted ids must be in [0, K).
  """
  pred = np.asarray(pred).ravel().astype(np.int64)
  true = np.asarray(true).ravel().astype(np.int64)
  if pred.shape != true.shape:
    raise ValueError(
        f"{pred.size} predicted ids but {true.size} true ids: "
        "predictions and targets must have one shape."
    )
  ok = (true >= 0) & (true < num_classes)
  if ((pred[ok] < 0) | (pred[ok] >= num_classes)).any():
    raise ValueError(
        f"predicted ids outside [0, {num_classes}): take the "
        "argmax of the logits over the class axis first."
    )
  idx = true[ok] * num_classes + pred[ok]
  return np.bincount(idx, minlength=num_classes**2).reshape(
      num_classes, num_classes
  )


def segmentation_metrics(conf: np.ndarray) -> dict:
  """Pixel accuracy, mIoU, mean F1 and per-class IoU / F1 (lists, None where
  a class is absent from truth and prediction) of a `[K, K]` confusion."""
  conf = np.asarray(conf, np.float64)
  tp = np.diag(conf)
  fp = conf.sum(0) - tp
  fn = conf.sum(1) - tp
  denom = tp + fp + fn
  present = denom > 0
  iou = np.where(present, tp / np.maximum(denom, 1), np.nan)
  f1 = np.where(present, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
  total = conf.sum()
  return {
      "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
      "mIoU": float(iou[present].mean()) if present.any() else float("nan"),
      "mean_f1": float(f1[present].mean()) if present.any() else float("nan"),
      "iou_per_class": [None if np.isnan(v) else float(v) for v in iou],
      "f1_per_class": [None if np.isnan(v) else float(v) for v in f1],
  }


def regression_metrics(pred, true) -> dict[str, float]:
  """MAE and RMSE over all finite targets (pred and true of one shape, e.g.
  `[N, H, W, 1]`); NaN targets (no data) are ignored."""
  pred = np.asarray(pred, np.float64).ravel()
  true = np.asarray(true, np.float64).ravel()
  if pred.shape != true.shape:
    raise ValueError(f"{pred.size} predictions but {true.size} targets.")
  ok = np.isfinite(true)
  if not ok.any():
    raise ValueError("no finite regression targets: nothing to score.")
  d = pred[ok] - true[ok]
  return {
      "mae": float(np.abs(d).mean()),
      "rmse": float(np.sqrt(np.square(d).mean())),
  }


def accuracy(pred, true) -> float:
  """Share of `[N]` predicted class ids equal to the true ids."""
  pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
  if pred.shape != true.shape or not pred.size:
    raise ValueError(
        f"accuracy needs equal, non-empty id arrays; got "
        f"{pred.size} and {true.size}."
    )
  return float((pred == true).mean())
