"""Referring-segmentation metrics on hand-worked cases."""

import numpy as np
import pytest

from crossscale import metrics


def _mask(shape, *boxes):
  m = np.zeros(shape, bool)
  for r0, r1, c0, c1 in boxes:
    m[r0:r1, c0:c1] = True
  return m


def test_hand_worked_three_samples():
  # 0: pred 4x4 box, true the left 4x2 half -> I=8, U=16, IoU=0.5
  # 1: identical 2x2 -> I=4, U=4, IoU=1
  # 2: disjoint 1 px each -> I=0, U=2, IoU=0
  pred = np.stack(
      [
          _mask((6, 6), (0, 4, 0, 4)),
          _mask((6, 6), (2, 4, 2, 4)),
          _mask((6, 6), (0, 1, 0, 1)),
      ]
  )
  true = np.stack(
      [
          _mask((6, 6), (0, 4, 0, 2)),
          _mask((6, 6), (2, 4, 2, 4)),
          _mask((6, 6), (5, 6, 5, 6)),
      ]
  )
  i, u = metrics.intersection_union(pred, true)
  assert i.tolist() == [8, 4, 0] and u.tolist() == [16, 4, 2]
  m = metrics.refseg_metrics(pred, true)
  assert m["oIoU"] == pytest.approx(12 / 22)
  assert m["mIoU"] == pytest.approx(0.5)
  assert m["Prec@0.5"] == pytest.approx(2 / 3)  # IoU >= X: 0.5 counts
  for x in ("0.6", "0.7", "0.8", "0.9"):
    assert m[f"Prec@{x}"] == pytest.approx(1 / 3)
  assert m["num_samples"] == 3


def test_empty_masks_union_zero_counts_as_iou_zero():
  empty = np.zeros((1, 4, 4), np.uint8)
  m = metrics.refseg_metrics(empty, empty)
  assert m["oIoU"] == 0.0 and m["mIoU"] == 0.0 and m["Prec@0.5"] == 0.0
  # Empty prediction of a non-empty target: I=0, U=3.
  t = _mask((4, 4), (0, 1, 0, 3))
  full = _mask((4, 4), (0, 1, 0, 3))
  m = metrics.refseg_metrics(
      [np.zeros((4, 4), bool), full, np.zeros((4, 4))],
      [t, full, np.zeros((4, 4))],
  )
  # IoUs 0, 1, 0 (U=0); oIoU = 3 / (3 + 3 + 0).
  assert m["mIoU"] == pytest.approx(1 / 3)
  assert m["oIoU"] == pytest.approx(0.5)
  assert m["Prec@0.9"] == pytest.approx(1 / 3)


def test_lists_of_different_sizes_and_oiou_weights_by_size():
  # A big sample fully right, a small one fully wrong: oIoU follows pixels.
  big = _mask((10, 10), (0, 10, 0, 10))  # U = 100, I = 100
  small_t = _mask((3, 2), (0, 1, 0, 1))
  small_p = _mask((3, 2), (2, 3, 1, 2))  # I = 0, U = 2
  m = metrics.refseg_metrics([big, small_p], [big, small_t])
  assert m["oIoU"] == pytest.approx(100 / 102)
  assert m["mIoU"] == pytest.approx(0.5)


def test_threshold_boundary_and_against_sklearn_jaccard():
  from sklearn.metrics import jaccard_score

  rng = np.random.default_rng(0)
  pred = rng.uniform(size=(5, 8, 8)) < 0.5
  true = rng.uniform(size=(5, 8, 8)) < 0.5
  i, u = metrics.intersection_union(pred, true)
  want = [jaccard_score(t.ravel(), p.ravel()) for p, t in zip(pred, true)]
  np.testing.assert_allclose(i / u, want)
  # IoU exactly 0.8 counts for Prec@0.8 (>=): I = 4, U = 5.
  t = _mask((1, 5), (0, 1, 0, 5))
  p = _mask((1, 5), (0, 1, 0, 4))
  assert metrics.refseg_metrics([p], [t])["Prec@0.8"] == 1.0


def test_errors_name_the_fix():
  with pytest.raises(ValueError, match="threshold it first"):
    metrics.refseg_metrics(np.full((1, 2, 2), 0.7), np.ones((1, 2, 2)))
  with pytest.raises(ValueError, match="sample 0.*resize"):
    metrics.refseg_metrics([np.ones((2, 2))], [np.ones((2, 3))])
  with pytest.raises(ValueError, match="2 predicted masks but 1"):
    metrics.refseg_metrics(np.ones((2, 2, 2)), np.ones((1, 2, 2)))
  with pytest.raises(ValueError, match="no samples"):
    metrics.refseg_metrics([], [])
