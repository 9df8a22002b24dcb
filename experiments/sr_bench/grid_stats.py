"""The SR grid's statistics: the task scores of predictions, the share of the
LR -> HR gap an SR model recovers, and the correlations (Pearson, Spearman)
between SR fidelity and the downstream score."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from crossscale import bootstrap, fidelity
from crossscale import metrics as metrics_lib

# Correlation verdicts need this many distinct SR models: the bootstrap
# resamples test windows, not models, so 3 models' rank order can look
# certain while saying little about SR models in general.
MIN_SR_MODELS = 4
SCORES = {
    "segmentation": "mIoU",
    "classification": "accuracy",
    "regression": "neg_rmse",
}
FIDELITY = (
    "psnr",
    "ssim",
    "randfeat_dist",
    "hrenc_dist",
    "fid_randfeat",
    "fid_hrenc",
)


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


# ------------------------------------------------- per-window bootstrap


def window_stats(
    task: str, pred: np.ndarray, split: dict, num_classes: int | None
) -> dict[str, np.ndarray]:
  """Per-window sufficient statistics of a task score (`weighted_scores`
  of all-ones weights = `task_metrics(...)["score"]`): classification
  {"correct": [N]}, segmentation {"confusion": [N, K, K]} (targets outside
  [0, K) ignored), regression {"sse": [N], "count": [N]} (finite targets)."""
  if task == "classification":
    return {"correct": (np.asarray(pred) == split["cls"]).astype(np.float64)}
  if task == "segmentation":
    k, t = int(num_classes), np.asarray(split["seg"]).astype(np.int64)
    p = np.asarray(pred).astype(np.int64)
    n = len(t)
    ok = (t >= 0) & (t < k)
    win = np.broadcast_to(
        np.arange(n).reshape((n,) + (1,) * (t.ndim - 1)), t.shape
    )
    idx = (win * k * k + t * k + p)[ok]
    return {"confusion": np.bincount(idx, minlength=n * k * k).reshape(n, k, k)}
  true = np.asarray(split["reg"], np.float64).reshape(len(pred), -1)
  d = np.asarray(pred, np.float64).reshape(len(pred), -1) - true
  ok = np.isfinite(true)
  return {
      "sse": np.where(ok, d * d, 0.0).sum(1),
      "count": ok.sum(1).astype(np.float64),
  }


def weighted_scores(task: str, st: dict, w: np.ndarray) -> np.ndarray:
  """The task score (higher is better) under window weights `w` `[D, N]`
  (bootstrap repeat counts) from `window_stats` -> `[D]`."""
  w = np.asarray(w, np.float64)
  if task == "classification":
    return w @ st["correct"] / w.sum(1)
  if task == "segmentation":
    conf = np.tensordot(w, st["confusion"], 1)  # [D, K, K]
    tp = np.diagonal(conf, axis1=1, axis2=2)
    denom = conf.sum(1) + conf.sum(2) - tp
    present = denom > 0
    iou = np.where(present, tp / np.maximum(denom, 1), 0.0)
    return iou.sum(1) / np.maximum(present.sum(1), 1)
  return -np.sqrt((w @ st["sse"]) / (w @ st["count"]))


def fidelity_replicates(
    win: dict, feats: dict, hr_feats: dict, counts: np.ndarray
) -> dict[str, dict[str, np.ndarray]]:
  """Per SR family and fidelity metric, its value under each row of
  `counts` `[D, N]` (window repeat counts): the weighted mean of the
  per-window metrics `win[family]` ({name: [N]}), and "fid_<enc>" = the
  Frechet distance (crossscale.fidelity) between the weighted HR features
  `hr_feats[enc]` `[N, F]` and the family's `feats[family][enc]` (same
  windows) -> {family: {name: [D]}}. Encoders whose F needs more windows
  than N (fidelity.frechet_min_samples) are left out."""
  w = np.asarray(counts, np.float64)
  out = {
      f: {k: w @ np.asarray(v, np.float64) / w.sum(1) for k, v in m.items()}
      for f, m in win.items()
  }
  n = counts.shape[1]
  for enc, hr in hr_feats.items():
    if n < fidelity.frechet_min_samples(hr.shape[1]):
      continue
    fams = [f for f in feats if enc in feats[f]]
    fd = np.empty((len(fams), len(w)))
    for d, wd in enumerate(counts):
      mu_h, cov_h = fidelity.gaussian_stats(hr, wd)
      root = fidelity.psd_sqrt(cov_h)
      for j, f in enumerate(fams):
        fd[j, d] = fidelity.frechet_gaussians(
            mu_h, cov_h, *fidelity.gaussian_stats(feats[f][enc], wd), root
        )
    for j, f in enumerate(fams):
      out.setdefault(f, {})[f"fid_{enc}"] = fd[j]
  return out


def _interval(rep: np.ndarray, level: float) -> list | None:
  lo, hi = bootstrap.percentile_interval(rep[1:], level)
  return None if lo is None else [lo, hi]


def _span(iv: list | None) -> str:
  return "undefined" if iv is None else f"[{iv[0]:.3g}, {iv[1]:.3g}]"


def _finite(x) -> float | None:
  return float(x) if np.isfinite(x) else None


def vs_bicubic(
    family: str,
    reps: dict,
    bicubic: dict,
    level: float = 0.95,
    base: str = "bicubic",
) -> dict:
  """Paired differences of `family`'s fidelity replicates `reps` ({metric:
  [D + 1]}, row 0 the point estimate) against those of `base` (default
  bicubic, `bicubic` its replicates) on the same draws: "psnr_gain" (SR -
  bicubic, dB, higher is better) and, per
  Frechet distance "fid_<enc>" both have, "fid_<enc>_diff" (SR - bicubic,
  lower is better: negative = closer to the HR distribution), each with
  its `_interval` and a verdict ("psnr_verdict", "fid_<enc>_verdict",
  bootstrap.finding)."""
  out = {}
  for m in ["psnr"] + [k for k in sorted(reps) if k.startswith("fid_")]:
    if m not in reps or m not in bicubic:
      continue
    d = np.asarray(reps[m]) - np.asarray(bicubic[m])
    iv = _interval(d, level)
    if m == "psnr":
      key, vkey, subject = "psnr_gain", "psnr_verdict", f"PSNR - {base} PSNR"
      subject += " (dB)"
      words = (f"above {base}", f"below {base}")
    else:
      key, vkey, subject = f"{m}_diff", f"{m}_verdict", f"{m} - {base} {m}"
      words = (f"further from HR than {base}", f"closer to HR than {base}")
    out[key] = float(d[0])
    out[f"{key}_interval"] = iv
    out[vkey] = bootstrap.finding(
        f"{family} {subject}", *(iv or (None, None)), *words
    )
  return out


def best_psnr_vs_best_score(
    srs: Sequence[str],
    psnr: dict[str, np.ndarray],
    score: dict[str, np.ndarray],
    level: float = 0.95,
    subject: str = "",
) -> dict:
  """Is the best-PSNR SR model also the best downstream one (GeoSR-Bench's
  question)? srs: the SR models of one (task, downstream); psnr / score:
  {sr: [D+1]} replicates (row 0 the point estimate, then paired draws over
  the same windows). Returns {"best_psnr", "best_score", "same", and when
  they differ "score_diff" / "score_diff_interval" (best_score minus
  best_psnr, paired), "psnr_diff" / "psnr_diff_interval" (best_psnr minus
  best_score), "score_intervals_overlap", "verdict"}: an inversion is
  stated only when both paired intervals lie above 0 (the PSNR order and
  the reversed downstream order both hold under resampling)."""
  best_psnr = max(srs, key=lambda s: psnr[s][0])
  best_score = max(srs, key=lambda s: score[s][0])
  out = {"best_psnr": best_psnr, "best_score": best_score}
  out["same"] = best_psnr == best_score
  if out["same"]:
    out["verdict"] = (
        f"{subject}: the best-PSNR model ({best_psnr}) is also the best "
        "downstream"
    )
    return out
  ds = score[best_score] - score[best_psnr]
  dp = psnr[best_psnr] - psnr[best_score]
  si, pi = _interval(ds, level), _interval(dp, level)
  a, b = _interval(score[best_score], level), _interval(score[best_psnr], level)
  out.update(
      score_diff=float(ds[0]),
      score_diff_interval=si,
      psnr_diff=float(dp[0]),
      psnr_diff_interval=pi,
      score_intervals_overlap=None if a is None or b is None else a[0] <= b[1],
  )
  held = si is not None and pi is not None and si[0] > 0 and pi[0] > 0
  out["verdict"] = (
      f"{subject}: {best_score} is the best downstream, {best_psnr} the best "
      f"in PSNR: "
      + (
          "an inversion (both paired 95% intervals above 0: score "
          f"{_span(si)}, PSNR {_span(pi)})"
          if held
          else "no finding (a paired 95% interval reaches 0: score "
          f"{_span(si)}, PSNR {_span(pi)})"
      )
  )
  return out


def bootstrap_grid(
    cells: list[dict],
    cell_windows: list[dict],
    fid_windows: dict,
    features: dict,
    hr_features: dict,
    *,
    draws: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    top_k: int = 3,
    fidelity_metrics: Sequence[str] | None = None,
    pairs: dict[str, str] | None = None,
) -> dict:
  """Bootstrap intervals over the test windows for the grid's numbers.

  Each draw resamples the N test windows with replacement (the same
  windows for every SR and downstream model: paired) and recomputes every
  SR model's fidelity, every cell's scores (SR, HR, LR-up), gap recovered
  and the fidelity-vs-score correlations. One seed per grid run: windows
  are the only resampled axis.

  cells: the grid's cell dicts ("sr", "downstream", "task", "score_name");
  cell_windows: per cell {"sr", "hr", "lr_up": window_stats}; fid_windows:
  {family: {metric: [N]}}; features: {family: {enc: [N, F]}}; hr_features:
  {enc: [N, F]}. Returns {"sr_models": {family: {metric, metric_interval,
  and vs bicubic (`vs_bicubic`): psnr_gain, fid_<enc>_diff with
  intervals and verdicts, and "vs_<base>": the same against each family
  `pairs` ({family: base}, e.g. {"gan": "gan_psnr"}) names}}, "cells":
  [{"score_interval", "score_gain", "score_gain_interval",
  "gap_recovered_interval", "gap_verdict"}], "correlation": {task: {block:
  {metric: {"pearson", "pearson_interval", "spearman",
  "spearman_interval", "verdicts"}}}}, "best_psnr_vs_best_score": {task:
  {downstream: `best_psnr_vs_best_score`}}, "draws", "level", "windows"};
  point values come from all windows once.
  """
  n = len(next(iter(next(iter(fid_windows.values())).values())))
  counts = np.concatenate(
      [np.ones((1, n), np.int64), bootstrap.resample_counts(n, draws, seed)]
  )  # row 0: every window once (the point estimate)
  fam = fidelity_replicates(fid_windows, features, hr_features, counts)
  metrics = list(
      fidelity_metrics or sorted({m for f in fam.values() for m in f})
  )
  sr_models = {}
  for f, reps in fam.items():
    sr_models[f] = {}
    for m, r in reps.items():
      sr_models[f][m] = float(r[0])
      sr_models[f][f"{m}_interval"] = _interval(r, level)
    if "bicubic" in fam and f != "bicubic":
      sr_models[f].update(vs_bicubic(f, reps, fam["bicubic"], level))
    base = (pairs or {}).get(f)
    if base in fam:
      sr_models[f][f"vs_{base}"] = vs_bicubic(f, reps, fam[base], level, base)
  scores, out_cells = [], []
  for c, cw in zip(cells, cell_windows):
    sc = {k: weighted_scores(c["task"], cw[k], counts) for k in cw}
    scores.append(sc["sr"])
    den = sc["hr"] - sc["lr_up"]
    with np.errstate(divide="ignore", invalid="ignore"):
      gap = np.where(np.abs(den) > 1e-9, (sc["sr"] - sc["lr_up"]) / den, np.nan)
    gain = sc["sr"] - sc["lr_up"]
    name = f"{c['sr']} x {c['downstream']} ({c['task']})"
    giv = _interval(gap, level)
    verdict = bootstrap.finding(
        f"{name} gap recovered",
        *(giv or (None, None)),
        "recovers part of the LR-up -> HR gap",
        "worse than LR-up",
    )
    if np.mean(den[1:] <= 0) > (1 - level) / 2:
      verdict += "; HR is not above LR-up in every draw: ratio unreliable"
    out_cells.append(
        {
            "score_interval": _interval(sc["sr"], level),
            "score_hr_interval": _interval(sc["hr"], level),
            "score_lr_up_interval": _interval(sc["lr_up"], level),
            "score_gain": float(gain[0]),
            "score_gain_interval": _interval(gain, level),
            "gap_recovered_interval": giv,
            "gap_verdict": verdict,
            "gap_undefined_draws": int(np.isnan(gap[1:]).sum()),
        }
    )
  corr = {}
  for task in sorted({c["task"] for c in cells}):
    idx = [i for i, c in enumerate(cells) if c["task"] == task]
    psnr_of = {cells[i]["sr"]: fam[cells[i]["sr"]]["psnr"][0] for i in idx}
    top = sorted(psnr_of, key=lambda s: -psnr_of[s])[:top_k]

    def block(sel, label, task=task):
      res = {}
      for m in metrics:
        sel_m = [i for i in sel if m in fam[cells[i]["sr"]]]
        if len(sel_m) < 3:
          continue
        n_sr = len({cells[i]["sr"] for i in sel_m})
        x = np.stack([fam[cells[i]["sr"]][m] for i in sel_m], 1)  # [D+1, m]
        y = np.stack([scores[i] for i in sel_m], 1)
        r = {}
        for kind, fn in (
            ("pearson", bootstrap.pearson_rows),
            ("spearman", bootstrap.spearman_rows),
        ):
          rep = fn(x, y)
          r[kind] = _finite(rep[0])
          r[f"{kind}_interval"] = _interval(rep, level)
          r[f"{kind}_undefined_draws"] = int(np.isnan(rep[1:]).sum())
          subject = (
              f"{task} {label}: {kind} {m} vs "
              f"{cells[sel_m[0]]['score_name']} ({len(sel_m)} cells, "
              f"{n_sr} SR models)"
          )
          r[f"{kind}_verdict"] = (
              bootstrap.finding(
                  subject,
                  *(r[f"{kind}_interval"] or (None, None)),
                  "positive",
                  "negative",
              )
              if n_sr >= MIN_SR_MODELS
              else f"{subject}: no finding (fewer than {MIN_SR_MODELS} SR "
              "models: the windows' interval leaves out which models were "
              "drawn)"
          )
        res[m] = {"n": len(sel_m), **r}
      return res

    ds_names = sorted({cells[i]["downstream"] for i in idx})
    top_sel = [i for i in idx if cells[i]["sr"] in top]
    corr[task] = {
        "all": block(idx, "all"),
        f"top{top_k}": block(top_sel, f"top{top_k}"),
        "by_downstream": {
            ds: {
                "all": block(
                    [i for i in idx if cells[i]["downstream"] == ds],
                    f"{ds} all",
                ),
                f"top{top_k}": block(
                    [i for i in top_sel if cells[i]["downstream"] == ds],
                    f"{ds} top{top_k}",
                ),
            }
            for ds in ds_names
        },
    }
  by_task = {}  # {task: {downstream: {sr: score replicates}}}
  for c, sc in zip(cells, scores):
    by_task.setdefault(c["task"], {}).setdefault(c["downstream"], {})[
        c["sr"]
    ] = sc
  best = {
      task: {
          ds: best_psnr_vs_best_score(
              sorted(by_sr),
              {f: fam[f]["psnr"] for f in by_sr},
              by_sr,
              level,
              f"{task} x {ds}",
          )
          for ds, by_sr in by_ds.items()
      }
      for task, by_ds in by_task.items()
  }
  return {
      "sr_models": sr_models,
      "cells": out_cells,
      "correlation": corr,
      "best_psnr_vs_best_score": best,
      "draws": int(draws),
      "level": level,
      "windows": int(n),
      "seed": seed,
      "unit": "test windows (paired across models); one training seed",
  }


def merge_intervals(results: dict, boot: dict) -> None:
  """Writes `bootstrap_grid`'s intervals into the grid's results in place:
  cells[i] gains its cell entries, correlation[task][block][metric] the
  interval keys, results["sr_models"] the per-family fidelity."""
  for c, b in zip(results["cells"], boot["cells"]):
    c.update(b)
  for task, blocks in boot["correlation"].items():
    dst = results["correlation"].setdefault(task, {})
    for name, block in blocks.items():
      if name == "by_downstream":
        for ds, sub in block.items():
          for bn, mets in sub.items():
            for m, v in mets.items():
              dst["by_downstream"][ds][bn].setdefault(m, {}).update(v)
      else:
        for m, v in block.items():
          dst.setdefault(name, {}).setdefault(m, {}).update(v)
  results["sr_models"] = boot["sr_models"]
  results["best_psnr_vs_best_score"] = boot["best_psnr_vs_best_score"]
  results["bootstrap"] = {
      k: boot[k] for k in ("draws", "level", "windows", "seed", "unit")
  }
