"""The SR grid's statistics: the task scores of predictions, the share of the
LR -> HR gap an SR model recovers, and the correlations (Pearson, Spearman)
between SR fidelity and the downstream score."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from crossscale import metrics as metrics_lib

SCORES = {
    "segmentation": "mIoU",
    "classification": "accuracy",
    "regression": "neg_rmse",
}
FIDELITY = ("psnr", "ssim", "randfeat_dist")


def gap_recovered(
    score_sr: float, score_lr: float, score_hr: float, eps: float = 1e-9
) -> tuple[float | None, str | None]:
  """(score_SR - score_LR) / (score_HR - score_LR): 0 = no better than
  bicubic LR, 1 = as good as true HR, < 0 worse than LR, > 1 better than
  HR. (None, note) when |score_HR - score_LR| <= eps; a note too when
  score_HR < score_LR (the ratio's sign is then inverted)."""
  gap = score_hr - score_lr
  if not np.isfinite(gap) or abs(gap) <= eps:
    return None, (
        f"score_hr ({score_hr:.4g}) == score_lr_up "
        f"({score_lr:.4g}): no gap to recover"
    )
  note = None
  if gap < 0:
    note = (
        f"score_hr ({score_hr:.4g}) < score_lr_up ({score_lr:.4g}): the "
        "downstream model does not profit from HR; the ratio is not "
        "meaningful"
    )
  return float((score_sr - score_lr) / gap) + 0.0, note  # no -0.0


def correlate(x: Sequence[float], y: Sequence[float]) -> dict:
  """Pearson and Spearman of paired values (scipy.stats); None with a note
  when fewer than 3 pairs or either side is constant."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  ok = np.isfinite(x) & np.isfinite(y)
  x, y = x[ok], y[ok]
  out = {
      "n": int(len(x)),
      "pearson": None,
      "pearson_p": None,
      "spearman": None,
      "spearman_p": None,
  }
  if len(x) < 3:
    return {**out, "note": "fewer than 3 points"}
  if np.ptp(x) == 0 or np.ptp(y) == 0:
    return {**out, "note": "constant input"}
  p = stats.pearsonr(x, y)
  s = stats.spearmanr(x, y)
  return {
      **out,
      "pearson": float(p.statistic),
      "pearson_p": float(p.pvalue),
      "spearman": float(s.statistic),
      "spearman_p": float(s.pvalue),
  }


def correlations(cells: list[dict], fidelity=FIDELITY, top_k: int = 3) -> dict:
  """Per task: fidelity metric vs score over all cells ("all"), over the
  cells of the top-k SR models by PSNR ("top{k}"), and the same per
  downstream model ("by_downstream")."""
  out = {}
  for task in sorted({c["task"] for c in cells}):
    tc = [c for c in cells if c["task"] == task]
    psnr_of = {}
    for c in tc:
      psnr_of[c["sr"]] = c["psnr"]
    top = sorted(psnr_of, key=lambda s: -psnr_of[s])[:top_k]

    def block(cs):
      res = {}
      for metric in fidelity:
        pairs = [
            (c[metric], c["score"]) for c in cs if c.get(metric) is not None
        ]
        res[metric] = correlate(*zip(*pairs)) if pairs else correlate([], [])
      return res

    out[task] = {
        "all": block(tc),
        f"top{top_k}": block([c for c in tc if c["sr"] in top]),
        f"top{top_k}_sr_models": top,
        "by_downstream": {
            ds: {
                "all": block([c for c in tc if c["downstream"] == ds]),
                f"top{top_k}": block(
                    [c for c in tc if c["downstream"] == ds and c["sr"] in top]
                ),
            }
            for ds in sorted({c["downstream"] for c in tc})
        },
    }
  return out


def task_metrics(
    task: str, pred: np.ndarray, split: dict, num_classes: int | None
) -> dict:
  """The task's metrics of predictions on a split; "score" = the main one
  (higher is better)."""
  if task == "segmentation":
    m = metrics_lib.segmentation_metrics(
        metrics_lib.confusion_matrix(pred, split["seg"], num_classes)
    )
  elif task == "classification":
    m = {"accuracy": metrics_lib.accuracy(pred, split["cls"])}
  else:
    m = metrics_lib.regression_metrics(pred, split["reg"])
    m["neg_rmse"] = -m["rmse"]
  m["score"] = m[SCORES[task]]
  return m
