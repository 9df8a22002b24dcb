"""Metrics against hand-worked cases and scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics as skm

from crossscale import metrics


def test_average_precision_hand_case():
  # Ranking: + - + -  -> AP = (1/1 + 2/3) / 2
  assert metrics.average_precision(
      np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])
  ) == pytest.approx((1 + 2 / 3) / 2)


def test_average_precision_ties_are_one_threshold():
  # Two items tied at the top, one positive: precision 1/2 at recall 1.
  assert metrics.average_precision(
      np.array([0.5, 0.5]), np.array([0, 1])
  ) == pytest.approx(0.5)
  assert metrics.average_precision(
      np.array([0.5, 0.5]), np.array([1, 0])
  ) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  scores = rng.integers(0, 6, 200) / 5.0  # many ties
  labels = rng.integers(0, 2, 200)
  assert metrics.average_precision(scores, labels) == pytest.approx(
      skm.average_precision_score(labels, scores)
  )


def test_mean_average_precision_matches_sklearn():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, (100, 5))
  labels[:, 4] = 0  # a class with no positives is left out
  scores = rng.normal(size=(100, 5)) + labels
  got = metrics.mean_average_precision(scores, labels)
  ok = labels.sum(0) > 0
  assert got["mAP_macro"] == pytest.approx(
      skm.average_precision_score(labels[:, ok], scores[:, ok], average="macro")
  )
  assert got["mAP_weighted"] == pytest.approx(
      skm.average_precision_score(
          labels[:, ok], scores[:, ok], average="weighted"
      )
  )
  assert got["mAP_micro"] == pytest.approx(
      skm.average_precision_score(labels, scores, average="micro")
  )


def test_task_losses():
  import jax.numpy as jnp

  logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
  labels = jnp.array([[1.0, 0.0], [1.0, 0.0]])
  ce = -np.log(np.exp(2) / (np.exp(2) + 1)), -np.log(1 / (1 + np.e))
  assert float(metrics.task_loss(logits, labels, "single_label")) == (
      pytest.approx(np.mean(ce), rel=1e-5)
  )
  valid = jnp.array([True, False])
  assert float(metrics.task_loss(logits, labels, "single_label", valid)) == (
      pytest.approx(ce[0], rel=1e-5)
  )
  sig = lambda z: 1 / (1 + np.exp(-z))
  bce = (
      -(
          np.log(sig(2.0))
          + np.log(1 - sig(0.0))
          + np.log(sig(0.0))
          + np.log(1 - sig(1.0))
      )
      / 4
  )
  assert float(metrics.task_loss(logits, labels, "multi_label")) == (
      pytest.approx(bce, rel=1e-5)
  )
  np.testing.assert_array_equal(metrics.correct(logits, labels), [1.0, 0.0])
