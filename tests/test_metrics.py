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


# Scenes x classes A, B, C: B has no positives in the split.
HAND_LABELS = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0]])
HAND_SCORES = np.array([[0.9, 0.8, 0.2], [0.6, 0.5, 0.6], [0.4, 0.7, 0.1]])


def test_mean_average_precision_hand_case_skips_absent_class():
  got = metrics.mean_average_precision(HAND_SCORES, HAND_LABELS)
  # A: 0.9(+) 0.6(-) 0.4(+) -> (1 + 2/3) / 2 = 5/6; C: 0.6(+) first -> 1.
  assert got["mAP_macro"] == pytest.approx((5 / 6 + 1) / 2)
  assert got["mAP_weighted"] == pytest.approx((2 * 5 / 6 + 1) / 3)
  # Micro pools A and C: 0.9(+), {0.6(-), 0.6(+)} tied, 0.4(+), 0.2, 0.1:
  # precision 1, 2/3 (the tie is one threshold), 3/4, each at recall +1/3.
  assert got["mAP_micro"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
  # Pooling B too would add three negatives (0.8, 0.7, 0.5) above or
  # among the positives: (1 + 2/5 + 3/7) / 3, the old, lower number.
  assert metrics.average_precision(
      HAND_SCORES.ravel(), HAND_LABELS.ravel()
  ) == pytest.approx((1 + 2 / 5 + 3 / 7) / 3)
  nan = metrics.mean_average_precision(HAND_SCORES, np.zeros((3, 3)))
  assert all(np.isnan(v) for v in nan.values())


def test_mean_average_precision_matches_sklearn():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, (100, 5))
  labels[:, 4] = 0  # a class with no positives is left out
  scores = np.round(rng.normal(size=(100, 5)) + labels, 1)  # ties
  got = metrics.mean_average_precision(scores, labels)
  ok = labels.sum(0) > 0
  for avg in ("macro", "weighted", "micro"):
    assert got[f"mAP_{avg}"] == pytest.approx(
        skm.average_precision_score(labels[:, ok], scores[:, ok], average=avg)
    )
  with pytest.raises(ValueError, match="logits and multi-hot"):
    metrics.mean_average_precision(scores, labels[:, :4])


def test_class_retrieval_hand_case():
  # 4 scenes; classes A, B (no positives: skipped), C (tied), D.
  labels = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1]])
  scores = np.array(
      [
          [0.9, 0.1, 0.5, 0.1],
          [0.8, 0.2, 0.5, 0.2],
          [0.7, 0.3, 0.2, 0.9],
          [0.1, 0.4, 0.1, 0.8],
      ]
  )
  m = metrics.class_retrieval_metrics(scores, labels, ks=(1, 2, 10))
  # A ranks scenes 0(+) 1(-) 2(+) 3(+), 3 positives:
  #   AP@1 = 1/1; AP@2 = 1/min(3, 2) = 1/2; AP@10 = (1 + 2/3 + 3/4) / 3.
  # C: scenes 0 and 1 tie at 0.5, scene order keeps 0(-) before 1(+):
  #   AP@1 = 0; AP@2 = AP@10 = (1/2) / min(1, k) = 1/2.
  # D ranks 2(+) 3(+) first: AP@k = 1 for every k.
  assert m["mAP@1"] == pytest.approx((1 + 0 + 1) / 3)
  assert m["mAP@2"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
  assert m["mAP@10"] == pytest.approx(((1 + 2 / 3 + 3 / 4) / 3 + 1 / 2 + 1) / 3)
  assert np.isnan(metrics.class_retrieval_metrics(scores, 0 * labels)["mAP@10"])


def test_class_retrieval_at_full_depth_is_macro_ap():
  # With k >= N and no ties, AP@k is the class's full AP (sklearn's).
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 2, (60, 6))
  labels[:, 2] = 0
  scores = rng.normal(size=(60, 6)) + labels
  ok = labels.sum(0) > 0
  got = metrics.class_retrieval_metrics(scores, labels, ks=(60, 5))
  assert got["mAP@60"] == pytest.approx(
      skm.average_precision_score(labels[:, ok], scores[:, ok], average="macro")
  )
  # Shallow k: an independent loop over classes and ranks.
  aps = []
  for c in np.nonzero(ok)[0]:
    top = labels[np.argsort(-scores[:, c]), c][:5]
    hits = np.cumsum(top)
    aps.append(
        sum(hits[r] / (r + 1) for r in range(5) if top[r])
        / min(labels[:, c].sum(), 5)
    )
  assert got["mAP@5"] == pytest.approx(np.mean(aps))


def test_scene_retrieval_keys_are_named_apart():
  emb = np.eye(3)
  m = metrics.retrieval_metrics(emb, np.eye(3), ks=(2,))
  assert set(m) == {"scene_AP@2", "scene_recall@2"}


class _LabelMixer:
  """Stub model: logits = labels @ M (classes confused, scenes of one class
  tied), embedding = normalised labels @ E; no parameters."""

  def __init__(self, k):
    rng = np.random.default_rng(0)
    self.mix, self.emb = rng.normal(size=(k, k)), rng.normal(size=(k, 3))

  def apply(self, variables, batch, train=False, rngs=None):
    del variables, train, rngs
    import jax.numpy as jnp

    y = batch["labels"].astype(jnp.float32)
    e = y @ self.emb
    return {
        "logits": y @ self.mix,
        "embedding": e / jnp.linalg.norm(e, axis=-1, keepdims=True),
        "metrics": {"hr_tiles": y.sum(-1) * 8.0},
    }


def test_classification_evaluator_reports_the_papers_metrics(toyworld_small):
  """20 test scenes in batches of 16 (4 padded): every metric equals the
  metrics functions on the records' own labels, padding counting nowhere."""
  from crossscale import evaluators, partitioning, shards

  y = np.stack(
      [s.labels for s in shards.iter_scenes(toyworld_small, "test")][:20]
  )
  model = _LabelMixer(y.shape[1])
  ev = evaluators.get_evaluator(
      "classification",
      model,
      data_dir=toyworld_small,
      split="test",
      batch_size=16,
      task="single_label",
      mesh=partitioning.make_mesh((("data", -1), ("fsdp", 1), ("model", 1))),
      limit=20,
      retrieval_k=5,
  )
  got = ev.run({})
  scores, e = y @ model.mix, y @ model.emb
  want = {
      **metrics.mean_average_precision(scores, y),
      **metrics.class_retrieval_metrics(scores, y, (5,)),
      **metrics.retrieval_metrics(
          e / np.linalg.norm(e, axis=1, keepdims=True), y, (5,)
      ),
      "accuracy": np.mean(y[np.arange(20), scores.argmax(1)] > 0),
      "hr_tiles": 8.0,
      "num_examples": 20,
  }
  assert set(want) < set(got) and "AP@5" not in got
  for k, v in want.items():
    assert got[k] == pytest.approx(v, rel=1e-5), k


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
      / 2  # summed over the 2 classes, mean over the 2 scenes
  )
  assert float(metrics.task_loss(logits, labels, "multi_label")) == (
      pytest.approx(bce, rel=1e-5)
  )
  np.testing.assert_array_equal(metrics.correct(logits, labels), [1.0, 0.0])


def test_tradeoff_table_reads_old_and_new_retrieval_keys():
  from experiments.cross_scale import tradeoff

  base = {"budget": [0.0], "accuracy": [0.5], "mAP": [0.6]}
  base.update(hr_tiles=[0.0], drift=[None])
  old = {**base, "AP@10": [0.7]}  # results JSONs before the rename
  new = {**base, "mAP@10": [0.4], "scene_AP@10": [0.8]}
  rows = tradeoff.table_rows({"old": old, "new": new})
  assert [(r["mAP@10"], r["scene_AP@10"]) for r in rows] == [
      (None, 0.7),
      (0.4, 0.8),
  ]
  assert "AP@10" not in tradeoff.TABLE_COLUMNS
