"""Downstream models (shapes, a loss that decreases, the class-balanced
losses by hand), their metrics and evaluator on hand-worked cases, and the
SR grid runner: gap / correlation math and the cache (a rerun trains
nothing; a deleted cell alone is recomputed)."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from crossscale import evaluators, metrics, partitioning, shards, train
from crossscale import fidelity as im
from crossscale.models import dense_backbones
from experiments.configs import downstream as ds_config
from experiments.sr_bench import grid_data, grid_plot, grid_stats, sr_grid

# ------------------------------------------------------------------ models


@pytest.mark.parametrize("backbone", dense_backbones.BACKBONES)
@pytest.mark.parametrize("pooled", [False, True])
def test_backbone_shapes(backbone, pooled):
  """eval_shape (no compile): dense `[B, H, W, K]` on a grid that is not a
  stride multiple, and `[B, K]` when pooled."""
  net = dense_backbones.make_backbone(
      backbone, 5, pooled, **ds_config.SIZES[backbone]["tiny"]
  )
  x = jnp.zeros((2, 30, 22, 3))
  v = jax.eval_shape(net.init, jax.random.key(0), x)
  out = jax.eval_shape(net.apply, v, x)
  assert out.shape == ((2, 5) if pooled else (2, 30, 22, 5))


def test_model_contract_and_registry():
  from crossscale import models

  x = jnp.zeros((2, 16, 16, 1))
  for task, target, key in (
      ("segmentation", jnp.zeros((2, 16, 16), jnp.int32), "seg_logits"),
      ("regression", jnp.zeros((2, 16, 16, 1)), "pred"),
      ("classification", jnp.zeros((2, 4)), "logits"),
  ):
    cfg = ds_config.model_config("unet", task, 4, "tiny", target_key="t")
    model = models.get_model(cfg.pop("name"), **cfg)
    batch = {"hr": x, "t": target, "labels": target}
    v = jax.eval_shape(model.init, jax.random.key(0), batch)
    out = jax.eval_shape(model.apply, v, batch)
    assert (
        out[key].shape
        == {
            "segmentation": (2, 16, 16, 4),
            "regression": (2, 16, 16, 1),
            "classification": (2, 4),
        }[task]
    )
    if task != "classification":  # dense losses travel in aux_losses
      assert all(l.shape == () for l in out["aux_losses"].values())
      assert out["aux_losses"]


def test_config_builds():
  c = ds_config.get_config("backbone=swin,task=classification,runlocal")
  assert c.model.backbone == "swin" and c.task == "single_label"
  assert c.data.fields == ("hr", "labels")
  with pytest.raises(ValueError, match="known"):
    ds_config.get_config("backbone=vgg")


def test_segmentation_loss_decreases_on_tiny_batch():
  """The grid's training loop (the shared train step) on 4 images whose
  class is a function of brightness: CE must fall."""
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
  seg = (x[..., 0] > 0.5).astype(np.int32)
  model = dense_backbones.DownstreamModel(
      task="segmentation",
      backbone="unet",
      num_classes=2,
      backbone_kwargs=dict(widths=(4,)),
      target_key="seg",
  )
  batch = {"hr": x, "seg": seg}
  params = train.init_params(model, batch)
  _, losses = train.fit_arrays(
      model,
      params,
      batch,
      steps=25,
      batch_size=4,
      lr=1e-2,
      seed=0,
      task="segmentation",
  )
  assert losses[-1] < 0.7 * losses[0], losses


def test_losses_by_hand():
  seg_loss = jax.jit(dense_backbones.segmentation_loss)
  reg_loss = jax.jit(dense_backbones.regression_loss, static_argnums=2)
  logits = jnp.log(jnp.asarray([[[[0.75, 0.25], [0.5, 0.5]]]]))  # [1,1,2,2]
  target = jnp.asarray([[[0, 255]]])  # second pixel unlabelled
  np.testing.assert_allclose(seg_loss(logits, target), -np.log(0.75), rtol=1e-6)
  pred = jnp.asarray([[[[1.0], [3.0]]]])
  t = jnp.asarray([[[2.0, jnp.nan]]])  # NaN target ignored
  np.testing.assert_allclose(reg_loss(pred, t, "l1"), 1.0)
  np.testing.assert_allclose(reg_loss(pred, t, "l2"), 1.0)
  np.testing.assert_allclose(
      reg_loss(pred, jnp.asarray([[[2.0, 1.0]]]), "l2"), (1 + 4) / 2
  )


def test_balanced_losses_by_hand():
  # Inverse frequencies: 3 pixels of class 0, 1 of class 1, none of class 2
  # (and one ignored pixel): n = 4, K' = 2 -> w = 4 / (2 n_k).
  target = jnp.asarray([[[0, 0, 0, 1, 255]]])
  k = 3
  t = jnp.where(target < k, target, k)
  np.testing.assert_allclose(
      dense_backbones.inverse_frequency_weights(t, k),
      [2 / 3, 2.0, 0.0],
      rtol=1e-6,
  )
  p = np.array(
      [
          [0.7, 0.2, 0.1],
          [0.6, 0.3, 0.1],
          [0.5, 0.25, 0.25],
          [0.8, 0.1, 0.1],
          [0.2, 0.2, 0.6],
      ]
  )
  logits = jnp.log(jnp.asarray(p))[None, None]  # [1, 1, 5, 3]
  ce = -np.log([0.7, 0.6, 0.5, 0.1])
  w = np.array([2 / 3] * 3 + [2.0])
  terms = jax.jit(dense_backbones.segmentation_losses, static_argnums=(2, 3))(
      logits, target, "balanced_ce+dice", ()
  )
  # The rare class carries half the weight: (sum_bg 2/3 ce + 2 ce_1) / 4.
  np.testing.assert_allclose(terms["ce"], (w * ce).sum() / w.sum(), rtol=1e-5)
  # Soft Dice over the 4 labelled pixels, smooth 1, mean over 3 classes.
  q, y = p[:4], np.eye(3)[[0, 0, 0, 1]]
  dice = 1 - (2 * (q * y).sum(0) + 1) / (q.sum(0) + y.sum(0) + 1)
  np.testing.assert_allclose(terms["dice"], dice.mean(), rtol=1e-5)
  # Fixed weights replace the batch's; plain "ce" is the unweighted mean.
  fixed = dense_backbones.segmentation_losses(
      logits, target, "balanced_ce", (1.0, 3.0, 1.0)
  )
  np.testing.assert_allclose(
      fixed["ce"], (ce * [1, 1, 1, 3]).sum() / 6, rtol=1e-5
  )
  assert set(fixed) == {"ce"}
  plain = dense_backbones.segmentation_losses(logits, target, "ce")
  np.testing.assert_allclose(plain["ce"], ce.mean(), rtol=1e-5)
  with pytest.raises(ValueError, match="known"):
    dense_backbones.segmentation_losses(logits, target, "focal")


def test_balanced_ce_removes_the_majority_prior():
  """A class on 1% of the pixels: among constant predictors, plain CE is
  lowest at the class frequencies (0.99, 0.01: background everywhere after
  argmax, the collapse), balanced CE at the uniform (0.5, 0.5), as each
  class then counts half: 0.5 (-ln p_0) + 0.5 (-ln p_1)."""
  target = jnp.zeros((1, 10, 10), jnp.int32).at[0, 0, 0].set(1)

  def losses(p):
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(p)), (1, 10, 10, 2))
    return (
        dense_backbones.segmentation_losses(logits, target, "ce")["ce"],
        dense_backbones.segmentation_losses(logits, target, "balanced_ce")[
            "ce"
        ],
    )

  (ce_prior, bal_prior), (ce_unif, bal_unif) = losses([0.99, 0.01]), losses(
      [0.5, 0.5]
  )
  assert ce_prior == pytest.approx(
      -0.99 * np.log(0.99) - 0.01 * np.log(0.01), rel=1e-5
  )
  assert bal_prior == pytest.approx(
      -0.5 * np.log(0.99) - 0.5 * np.log(0.01), rel=1e-5
  )
  assert bal_unif == pytest.approx(np.log(2), rel=1e-5)
  assert ce_prior < ce_unif and bal_unif < bal_prior


def test_upsample_matches_jax_resize():
  x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
  np.testing.assert_allclose(
      dense_backbones.upsample(x, (20, 28)),
      jax.image.resize(x, (2, 20, 28, 3), "linear"),
      atol=1e-5,
  )


# ----------------------------------------------------------------- metrics


def test_segmentation_metrics_by_hand():
  true = np.array([[0, 0, 1, 1], [2, 2, 2, 255]])
  pred = np.array([[0, 1, 1, 1], [2, 2, 0, 1]])
  conf = metrics.confusion_matrix(pred, true, 4)
  # class 0: TP 1, FP 1 (the true-2 pixel), FN 1; class 1: TP 2, FP 1, FN 0;
  # class 2: TP 2, FP 0, FN 1; class 3: absent (left out of the means).
  np.testing.assert_array_equal(conf[:3, :3], [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
  m = metrics.segmentation_metrics(conf)
  assert m["pixel_accuracy"] == pytest.approx(5 / 7)
  iou = [1 / 3, 2 / 3, 2 / 3]
  f1 = [2 / 4, 4 / 5, 4 / 5]
  assert m["iou_per_class"][:3] == pytest.approx(iou)
  assert m["iou_per_class"][3] is None
  assert m["mIoU"] == pytest.approx(np.mean(iou))
  assert m["mean_f1"] == pytest.approx(np.mean(f1))
  with pytest.raises(ValueError, match="argmax"):
    metrics.confusion_matrix(np.array([5]), np.array([0]), 4)


def test_regression_and_accuracy_by_hand():
  m = metrics.regression_metrics([1.0, 2.0, 5.0, 0.0], [1.0, 4.0, 2.0, np.nan])
  assert m["mae"] == pytest.approx(5 / 3)
  assert m["rmse"] == pytest.approx(np.sqrt(13 / 3))
  assert metrics.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75


# --------------------------------------------------------------- evaluator


class _Stub(nn.Module):
  """A parameter-free "downstream model": the oracle (one-hot of the
  target), the constant `value` (background / class 0 / a number)."""

  task: str
  oracle: bool
  value: float = 0.0
  num_classes: int = 7
  input_key: str = "hr"
  target_key: str = "mask_objects"

  @nn.compact
  def __call__(self, batch, train=False):
    t = batch[self.target_key]
    if self.task == "regression":
      pred = (
          t.astype(jnp.float32)[..., None]
          if self.oracle
          else jnp.full(t.shape + (1,), self.value)
      )
      return {"pred": jnp.nan_to_num(pred), "aux_losses": {"l1": 0.0}}
    if self.task == "classification":
      logits = t if self.oracle else jnp.zeros_like(t).at[:, 0].set(1.0)
      return {"logits": logits, "aux_losses": {}}
    logits = jax.nn.one_hot(
        t if self.oracle else jnp.zeros_like(t), self.num_classes
    )
    return {"seg_logits": logits, "aux_losses": {"ce": 0.0}}


@pytest.mark.parametrize(
    "task", ["segmentation", "regression", "classification"]
)
def test_downstream_evaluator_by_hand(toyworld_small, task):
  """20 test records in batches of 16 (the second padded: padding must
  count nowhere), against numpy on the records themselves."""
  mesh = partitioning.make_mesh((("data", -1), ("fsdp", 1), ("model", 1)))
  key = "labels" if task == "classification" else "mask_objects"
  scenes = list(shards.iter_scenes(toyworld_small, "test"))[:20]

  def run(oracle, value=0.0):
    ev = evaluators.get_evaluator(
        "downstream",
        _Stub(task, oracle, value, target_key=key),
        data_dir=toyworld_small,
        split="test",
        batch_size=16,
        task=task,
        mesh=mesh,
        fields=("hr", key),
        limit=20,
    )
    return ev.run({})

  assert run(True)["num_examples"] == 20
  if task == "segmentation":
    m = np.stack([s.masks["objects"] for s in scenes]).astype(int)
    assert run(True)["mIoU"] == pytest.approx(1.0)
    # Background everywhere: IoU_0 = F1-less share of background, other
    # present classes 0; classes absent from truth and prediction left out.
    bg, present = (m == 0).mean(), len(np.unique(m))
    f1_bg = 2 * (m == 0).sum() / (2 * (m == 0).sum() + (m > 0).sum())
    r = run(False)
    assert r["pixel_accuracy"] == pytest.approx(bg)
    assert r["mIoU"] == pytest.approx(bg / present)
    assert r["mean_f1"] == pytest.approx(f1_bg / present)
  elif task == "regression":
    t = np.stack([s.masks["objects"] for s in scenes]).astype(float)
    r = run(False, 1.5)
    assert r["mae"] == pytest.approx(np.abs(t - 1.5).mean())
    assert r["rmse"] == pytest.approx(np.sqrt(((t - 1.5) ** 2).mean()))
    assert run(True)["rmse"] == pytest.approx(0.0)
  else:
    y = np.stack([s.labels for s in scenes]).argmax(1)
    assert run(True)["accuracy"] == 1.0
    assert run(False)["accuracy"] == pytest.approx((y == 0).mean())


# -------------------------------------------------------------- grid math


def test_gap_recovered():
  assert grid_stats.gap_recovered(0.6, 0.4, 0.8) == (pytest.approx(0.5), None)
  assert grid_stats.gap_recovered(0.3, 0.4, 0.8)[0] == pytest.approx(-0.25)
  # Regression on -RMSE: the same ratio as on RMSE itself.
  assert grid_stats.gap_recovered(-3.0, -4.0, -2.0)[0] == pytest.approx(0.5)
  gap, note = grid_stats.gap_recovered(0.5, 0.4, 0.4)
  assert gap is None and "no gap" in note
  gap, note = grid_stats.gap_recovered(0.5, 0.6, 0.4)  # HR worse than LR
  assert gap == pytest.approx(0.5) and "not meaningful" in note


def test_correlations_known_numbers():
  x = [1.0, 2.0, 3.0, 4.0]
  y = [1.0, 3.0, 2.0, 5.0]
  r = grid_stats.correlate(x, y)
  # Pearson by hand: dx = (-1.5, -.5, .5, 1.5), dy = (-1.75, .25, -.75,
  # 2.25); sum dxdy = 5.5, |dx|^2 = 5, |dy|^2 = 8.75.
  assert r["pearson"] == pytest.approx(5.5 / np.sqrt(5 * 8.75))
  assert r["spearman"] == pytest.approx(0.8)  # ranks 1,3,2,4
  assert r["pearson_p"] == pytest.approx(stats.pearsonr(x, y).pvalue)
  assert grid_stats.correlate([1, 2], [3, 4])["pearson"] is None
  assert grid_stats.correlate([1, 2, 3], [3, 3, 3])["note"] == "constant input"

  cells = [
      {
          "task": "t",
          "downstream": "d",
          "sr": s,
          "psnr": p,
          "ssim": p,
          "randfeat_dist": None,
          "score": sc,
      }
      for s, p, sc in (
          ("a", 30, 0.9),
          ("b", 28, 0.7),
          ("c", 25, 0.8),
          ("e", 20, 0.1),
      )
  ]
  c = grid_stats.correlations(cells, top_k=3)["t"]
  assert c["top3_sr_models"] == ["a", "b", "c"]
  assert c["all"]["psnr"]["spearman"] == pytest.approx(0.8)
  assert c["top3"]["psnr"]["spearman"] == pytest.approx(0.5)
  assert c["all"]["randfeat_dist"]["n"] == 0
  assert c["by_downstream"]["d"]["all"]["psnr"]["n"] == 4


# ------------------------------------------------ per-window bootstrap


def test_window_stats_rebuild_the_task_scores():
  """All-ones weights give task_metrics' score; integer weights the score
  of the windows repeated (ignored labels and NaN targets included)."""
  rng = np.random.default_rng(0)
  n, k = 12, 4
  split = {
      "seg": rng.integers(-1, k, size=(n, 6, 6)),
      "cls": rng.integers(0, k, size=n),
      "reg": rng.normal(size=(n, 6, 6, 1)),
  }
  split["reg"][0, :3] = np.nan
  preds = {
      "segmentation": rng.integers(0, k, size=(n, 6, 6)),
      "classification": rng.integers(0, k, size=n),
      "regression": rng.normal(size=(n, 6, 6, 1)),
  }
  w = rng.integers(0, 3, size=n)
  w[0] = 2
  rep = {key: np.repeat(v, w, axis=0) for key, v in split.items()}
  for task, pred in preds.items():
    st = grid_stats.window_stats(task, pred, split, k)
    got = grid_stats.weighted_scores(task, st, np.stack([np.ones(n), w]))
    want = grid_stats.task_metrics(task, pred, split, k)["score"]
    assert got[0] == pytest.approx(want, rel=1e-12)
    want_w = grid_stats.task_metrics(task, np.repeat(pred, w, axis=0), rep, k)[
        "score"
    ]
    assert got[1] == pytest.approx(want_w, rel=1e-12)


def _synthetic_grid(n=80, seed=0):
  """4 SR models of rising quality q on n windows, one classifier: window
  PSNR = 20 + 2q + noise, correct with probability 0.2 + 0.2q; "hr"
  always correct, "lr_up" = bicubic's predictions; features: HR's plus
  noise shrinking with q ("best" = HR exactly)."""
  rng = np.random.default_rng(seed)
  fams = {"bicubic": 0, "edsr": 1, "swinir": 2, "best": 3}
  hr_feat = rng.normal(size=(n, 3))
  lr_correct = (rng.random(n) < 0.2).astype(float)
  cells, cw, win, feats = [], [], {}, {}
  for f, q in fams.items():
    win[f] = {"psnr": 20 + 2 * q + rng.normal(size=n) * 0.5}
    feats[f] = {"enc": hr_feat + rng.normal(size=(n, 3)) * (3 - q)}
    correct = lr_correct if f == "bicubic" else (rng.random(n) < 0.2 + 0.2 * q)
    if f == "best":
      correct = np.ones(n)
    cells.append(
        {
            "sr": f,
            "downstream": "unet",
            "task": "classification",
            "score_name": "accuracy",
        }
    )
    cw.append(
        {
            "sr": {"correct": correct.astype(float)},
            "hr": {"correct": np.ones(n)},
            "lr_up": {"correct": lr_correct},
        }
    )
  return cells, cw, win, feats, {"enc": hr_feat}


def test_bootstrap_grid_known_answers():
  cells, cw, win, feats, hr = _synthetic_grid()
  b = grid_stats.bootstrap_grid(
      cells,
      cw,
      win,
      feats,
      hr,
      draws=300,
      seed=0,
      top_k=3,
      pairs={"best": "edsr"},
  )
  assert b["windows"] == 80 and b["draws"] == 300
  m = b["sr_models"]
  assert m["best"]["fid_enc"] == pytest.approx(0.0, abs=1e-9)
  assert m["best"]["fid_enc_interval"][1] == pytest.approx(0.0, abs=1e-9)
  assert m["bicubic"]["fid_enc"] > m["edsr"]["fid_enc"] > m["swinir"]["fid_enc"]
  want = im.frechet_distance(feats["edsr"]["enc"], hr["enc"])
  assert m["edsr"]["fid_enc"] == pytest.approx(want, rel=1e-9)
  lo, hi = m["edsr"]["psnr_gain_interval"]
  assert lo < m["edsr"]["psnr_gain"] < hi and lo > 1.5  # ~ +2 dB
  assert "above bicubic" in m["edsr"]["psnr_verdict"]
  # Paired Frechet differences vs bicubic (lower = closer to HR).
  assert m["edsr"]["fid_enc_diff"] == pytest.approx(
      m["edsr"]["fid_enc"] - m["bicubic"]["fid_enc"], rel=1e-9
  )
  assert m["best"]["fid_enc_diff_interval"][1] < 0
  assert "closer to HR than bicubic" in m["best"]["fid_enc_verdict"]
  assert "fid_enc_diff" not in m["bicubic"]
  vs = m["best"]["vs_edsr"]  # a pair other than bicubic
  assert vs["psnr_gain"] == pytest.approx(m["best"]["psnr"] - m["edsr"]["psnr"])
  assert "above edsr" in vs["psnr_verdict"]
  assert "closer to HR than edsr" in vs["fid_enc_verdict"]
  by_sr = {c["sr"]: x for c, x in zip(cells, b["cells"])}
  assert by_sr["best"]["gap_recovered_interval"] == pytest.approx([1, 1])
  assert by_sr["bicubic"]["gap_recovered_interval"] == pytest.approx([0, 0])
  assert "recovers part" in by_sr["swinir"]["gap_verdict"]
  corr = b["correlation"]["classification"]
  psnr = corr["all"]["psnr"]
  plain = grid_stats.correlate(
      [w["psnr"].mean() for w in win.values()],
      [x["sr"]["correct"].mean() for x in cw],
  )
  assert psnr["pearson"] == pytest.approx(plain["pearson"], rel=1e-9)
  assert psnr["pearson_interval"][0] > 0.5
  assert "positive" in psnr["pearson_verdict"]
  assert "negative" in corr["all"]["fid_enc"]["spearman_verdict"]
  # top-3 by PSNR: 3 SR models, too few for a finding
  assert "no finding (fewer than 4" in corr["top3"]["psnr"]["pearson_verdict"]
  cells = [
      dict(c, psnr=m[c["sr"]]["psnr"], score=x["sr"]["correct"].mean())
      for c, x in zip(cells, cw)
  ]
  results = {
      "cells": cells,
      "correlation": grid_stats.correlations(cells, ("psnr",), top_k=3),
  }
  grid_stats.merge_intervals(results, b)
  got = results["correlation"]["classification"]
  assert got["all"]["psnr"]["pearson_interval"] == psnr["pearson_interval"]
  assert "pearson_interval" in got["by_downstream"]["unet"]["top3"]["psnr"]
  assert results["cells"][3]["gap_recovered_interval"] == pytest.approx([1, 1])
  assert results["bootstrap"]["draws"] == 300
  same = results["best_psnr_vs_best_score"]["classification"]["unet"]
  assert same["best_psnr"] == same["best_score"] == "best" and same["same"]


def test_best_psnr_vs_best_score_states_an_inversion_only_when_both_hold():
  rng = np.random.default_rng(0)
  d = 400  # paired replicates; row 0 the point estimate
  psnr = {"a": 25 + rng.normal(0, 0.1, d), "b": 24 + rng.normal(0, 0.1, d)}
  score = {"a": 0.5 + rng.normal(0, 0.01, d), "b": 0.6 + rng.normal(0, 0.01, d)}
  r = grid_stats.best_psnr_vs_best_score(["a", "b"], psnr, score, subject="t")
  assert (r["best_psnr"], r["best_score"], r["same"]) == ("a", "b", False)
  assert r["score_diff"] == pytest.approx(score["b"][0] - score["a"][0])
  assert r["score_diff_interval"][0] > 0 and r["psnr_diff_interval"][0] > 0
  assert r["score_intervals_overlap"] is False
  assert "an inversion" in r["verdict"]
  # The downstream order does not survive resampling: no finding.
  score["b"] = 0.5 + rng.normal(0, 0.05, d)
  score["b"][0] = 0.52
  r = grid_stats.best_psnr_vs_best_score(["a", "b"], psnr, score, subject="t")
  assert r["best_score"] == "b" and "no finding" in r["verdict"]
  assert r["score_intervals_overlap"] is True


# -------------------------------------------------------------- grid cache


def test_grid_cache_and_resume(toyworld_small, tmp_path):
  """A tiny grid; the rerun reads every cell (trains nothing, same cells);
  deleting one cell file recomputes only that cell."""
  kw = dict(
      preset="tiny",
      max_train=32,
      max_test=16,
      sr_models=("bicubic", "edsr"),
      downstream=("unet",),
      tasks=("segmentation",),
      log=lambda *_: 0,
  )
  out = str(tmp_path / "grid")
  first = sr_grid.run_grid(toyworld_small, out, **kw)
  assert len(first["cells"]) == 2
  assert len(first["run"]["trained"]) == 3  # bicubic, edsr, unet
  bic = next(c for c in first["cells"] if c["sr"] == "bicubic")
  assert bic["score"] == pytest.approx(bic["score_lr_up"])  # same operator
  assert first["file"].endswith("_runlocal_s0-0.json")
  with open(os.path.join(out, first["file"])) as f:
    on_disk = json.load(f)
  assert set(on_disk) >= {"cells", "correlation", "machine"}
  assert on_disk["cells"] == first["cells"]

  second = sr_grid.run_grid(toyworld_small, out, **kw)
  assert (
      second["run"]["trained"] == [] and second["run"]["cells_computed"] == []
  )
  assert second["cells"] == first["cells"]

  edsr = next(c for c in first["cells"] if c["sr"] == "edsr")
  os.remove(os.path.join(out, "cache", f"{edsr['key']}.json"))
  third = sr_grid.run_grid(toyworld_small, out, **kw)
  assert third["run"]["trained"] == []
  assert third["run"]["cells_computed"] == [edsr["key"]]
  assert third["cells"] == first["cells"]
  # A cell cached without its per-window arrays (older caches) is redone.
  os.remove(os.path.join(out, "cache", f"{edsr['key']}.npz"))
  fourth = sr_grid.run_grid(toyworld_small, out, **kw)
  assert fourth["run"]["cells_computed"] == [edsr["key"]]
  assert fourth["cells"] == first["cells"]
  lo, hi = on_disk["cells"][1]["score_interval"]
  assert lo <= on_disk["cells"][1]["score"] <= hi
  assert on_disk["bootstrap"]["windows"] == 16
  assert set(on_disk["sr_models"]) == {"bicubic", "edsr"}
  png = grid_plot.plot(third, str(tmp_path / "grid.png"))
  assert os.path.getsize(png) > 0


def test_grid_flips_downstream_training_only_where_labels_survive(
    toyworld_small,
):
  data = grid_data.load_records(toyworld_small)
  assert data["label_symmetries"] == []  # toyworld: texture classes
  grid = sr_grid.Grid(data, sr_grid.settings("tiny"), "", log=lambda *_: 0)
  assert grid.ds_spec("segmentation", "unet")["flips"] is False
  rng = np.random.default_rng(0)
  batch = {
      "hr": rng.normal(size=(2, 8, 8, 3)),
      "seg": rng.integers(0, 3, (2, 8, 8)),
  }
  flipped = [
      train.random_flips(batch, np.random.default_rng(s)) for s in range(8)
  ]
  assert any(not np.array_equal(f["hr"], batch["hr"]) for f in flipped)
  for f in flipped:  # image and mask flip together
    axes = next(
        a
        for a in ((), (1,), (2,), (1, 2))
        if np.array_equal(np.flip(batch["hr"], a), f["hr"])
    )
    np.testing.assert_array_equal(np.flip(batch["seg"], axes), f["seg"])


def test_grid_window_arrays(tmp_path):
  """Per-window fidelity equals crossscale.fidelity per image; nested
  arrays survive the cache round trip."""
  from experiments.sr_bench import grid_windows

  rng = np.random.default_rng(0)
  hr = rng.uniform(size=(5, 16, 16, 3)).astype(np.float32)
  sr = np.clip(hr + rng.normal(size=hr.shape) * 0.05, 0, 1).astype(np.float32)
  from crossscale.models import sr_gan

  apply, params = sr_gan.random_feature_net(3, width=8)
  nets = {"randfeat": (jax.jit(apply), params)}
  win = grid_windows.window_fidelity(sr, hr, nets, batch=4)
  mse = np.mean((sr.astype(np.float64) - hr) ** 2, axis=(1, 2))  # [N, C]
  want = np.mean(-10 * np.log10(mse), axis=1)
  np.testing.assert_allclose(win["psnr"], want, rtol=1e-4)
  assert win["ssim"].shape == (5,) and (win["ssim"] < 1).all()
  assert win["feat_randfeat"].shape == (5, 16)  # 2 layers x 8
  np.testing.assert_allclose(
      grid_windows.pooled(sr, nets, 4)["randfeat"],
      win["feat_randfeat"],
      rtol=1e-5,
  )
  assert (win["randfeat_dist"] > 0).all()
  metrics_, feats = grid_windows.split_windows(win)
  assert set(metrics_) == {"psnr", "ssim", "randfeat_dist"}
  assert set(feats) == {"randfeat"}
  grid_windows.save_arrays(str(tmp_path), "w", {"a": {"b": win["psnr"]}})
  back = grid_windows.load_arrays(str(tmp_path), "w")
  np.testing.assert_array_equal(back["a"]["b"], win["psnr"])
  assert grid_windows.load_arrays(str(tmp_path), "missing") is None
