"""crossscale.bootstrap: paired intervals over scenes and seeds, and the
batched macro mAP they resample (against `metrics.mean_average_precision`)."""

import numpy as np
import pytest

from crossscale import bootstrap, metrics


@pytest.mark.parametrize("ties", [False, True])
def test_batched_macro_ap_is_mean_average_precision_per_resample(ties):
  rng = np.random.default_rng(int(ties))
  n, k = 30, 6
  scores = rng.normal(size=(n, k))
  if ties:  # integer scores: many ties, as duplicated scenes make
    scores = rng.integers(0, 4, size=(n, k)).astype(float)
  labels = rng.random((n, k)) < 0.3
  labels[:, 5] = False  # a class without positives does not count
  idx = rng.integers(0, n, size=(8, n))
  got = metrics.macro_ap_batched(scores[idx], labels[idx])
  want = [
      metrics.mean_average_precision(scores[i], labels[i])["mAP_macro"]
      for i in idx
  ]
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_batched_accuracy():
  labels = np.eye(3)[[0, 1, 2, 0]][None]
  logits = np.eye(3)[[0, 1, 0, 1]][None]
  assert bootstrap.batched_metric("accuracy", logits, labels) == [0.5]
  with pytest.raises(ValueError, match="unknown metric 'f1'"):
    bootstrap.batched_metric("f1", logits, labels)


def _case(n=60, k=3, seeds=3, right_a=1.0, right_b=0.5, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.eye(k)[rng.integers(0, k, n)]
  out = {}
  for name, p in (("a", right_a), ("b", right_b)):
    runs = []
    for s in range(seeds):
      ok = np.random.default_rng([seed, s, int(p * 100)]).random(n) < p
      wrong = np.roll(labels, 1, axis=1)
      runs.append((np.where(ok[:, None], labels, wrong), labels))
    out[name] = runs
  return out["a"], out["b"]


def test_paired_difference_by_hand_and_its_interval():
  a, b = _case()
  d = bootstrap.paired_difference(a, b, "accuracy", draws=2000)
  want = np.mean(
      [
          (sa.argmax(1) == l.argmax(1)).mean()
          - (sb.argmax(1) == l.argmax(1)).mean()
          for (sa, l), (sb, _) in zip(a, b)
      ]
  )
  assert d["diff"] == pytest.approx(want)
  assert (d["seeds"], d["scenes"], d["draws"]) == (3, 60, 2000)
  # ~0.5 on 60 scenes x 3 seeds: the interval is a few points either side.
  assert d["low"] < d["diff"] < d["high"]
  assert 0.2 < d["low"] and d["high"] < 0.7
  assert bootstrap.verdict(d["low"], d["high"]) == "ahead"
  # The same predictions on both sides: exactly 0, a tie.
  z = bootstrap.paired_difference(a, a, "accuracy", draws=100)
  assert (z["diff"], z["low"], z["high"]) == (0.0, 0.0, 0.0)
  assert bootstrap.verdict(z["low"], z["high"]) == "tie"
  assert bootstrap.verdict(-0.3, -0.1) == "behind"


def test_a_method_never_behind_on_any_scene_has_no_draw_below_0():
  """b is a with its first 10 scenes made wrong: per scene a is never below
  b, so no resample of scenes and seeds puts the difference below 0."""
  a, _ = _case(right_a=0.7)
  b = [
      (np.where((np.arange(60) < 10)[:, None], np.roll(l, 1, 1), s), l)
      for s, l in a
  ]
  d = bootstrap.paired_difference(a, b, "accuracy", draws=500)
  assert d["diff"] > 0 and d["low"] >= 0


def test_unpaired_inputs_are_refused():
  a, b = _case()
  with pytest.raises(ValueError, match="paired seeds differ: 3 vs 2"):
    bootstrap.paired_difference(a, b[:2], "accuracy")
  shuffled = [(s, l[::-1]) for s, l in b]
  with pytest.raises(ValueError, match="not evaluated on the same scenes"):
    bootstrap.paired_difference(a, shuffled, "accuracy")


# --------------------------------------------- window weights, correlations


def test_resample_counts_are_draws_with_replacement():
  c = bootstrap.resample_counts(7, 500, seed=3)
  assert c.shape == (500, 7) and c.dtype == np.int64
  assert (c.sum(1) == 7).all() and (c >= 0).all()
  np.testing.assert_array_equal(c, bootstrap.resample_counts(7, 500, seed=3))
  assert not np.array_equal(c, bootstrap.resample_counts(7, 500, seed=4))
  # Each window is drawn 7 * 1/7 = 1 time on average.
  np.testing.assert_allclose(c.mean(0), 1.0, atol=0.15)


def test_row_correlations_match_scipy():
  from scipy import stats

  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 8))
  y = x + rng.normal(size=(6, 8))
  y[1] = np.round(y[1])  # ties
  x[2] = 1.0  # constant: undefined
  p, s = bootstrap.pearson_rows(x, y), bootstrap.spearman_rows(x, y)
  assert np.isnan(p[2]) and np.isnan(s[2])
  for i in (0, 1, 3, 4, 5):
    assert p[i] == pytest.approx(stats.pearsonr(x[i], y[i])[0], abs=1e-12)
    assert s[i] == pytest.approx(stats.spearmanr(x[i], y[i])[0], abs=1e-12)
  assert np.isnan(bootstrap.pearson_rows(x[:, :2], y[:, :2])).all()


def test_interval_and_finding():
  v = np.r_[np.arange(1, 101, dtype=float), np.nan]
  assert bootstrap.percentile_interval(v, 0.9) == pytest.approx((5.95, 95.05))
  assert bootstrap.percentile_interval([np.nan]) == (None, None)
  up = bootstrap.finding("r", 0.1, 0.5, "positive", "negative")
  down = bootstrap.finding("r", -0.5, -0.1, "positive", "negative")
  none = bootstrap.finding("r", -0.1, 0.5, "positive", "negative")
  assert up.startswith("r: positive") and down.startswith("r: negative")
  assert none.startswith("r: no finding") and "contains 0" in none
  assert "no finding" in bootstrap.finding("g", 0.5, 1.2, "a", "b", null=1.0)
  assert "no interval" in bootstrap.finding("r", None, None, "a", "b")


def test_interval_of_one_method_over_scenes_and_seeds():
  n, k = 40, 4
  labels = np.eye(k)[np.arange(n) % k]
  right, wrong = labels * 5.0, np.roll(labels, 1, axis=1) * 5.0
  half = np.where((np.arange(n) % 2 == 0)[:, None], right, wrong)
  assert bootstrap.interval([(right, labels)] * 2, "accuracy") == [1.0, 1.0]
  low, high = bootstrap.interval([(half, labels), (right, labels)], "accuracy")
  assert 0.3 < low < 0.75 < high <= 1.0  # mean 0.75; seeds, scenes vary
