"""experiments.refseg.rrsis: the whole-image reference row (no training)."""

import numpy as np

from crossscale import shards
from data import referring as ref
from experiments.refseg import rrsis


def test_whole_image_reference_scores_mask_coverage(shared_data, tmp_path):
  """Masking the whole image gives IoU = mask area / image area per
  expression: its mIoU is the mean coverage, oIoU the pooled coverage."""
  ref.build(
      "spacenet_buildings", str(tmp_path), ref.Options(chip=64), src=shared_data
  )
  masks = [
      s.masks["target"] > 0 for s in shards.iter_scenes(str(tmp_path), "test")
  ]
  got = rrsis.all_foreground(str(tmp_path), "test")
  assert got["num_samples"] == len(masks) > 0
  np.testing.assert_allclose(got["mIoU"], np.mean([m.mean() for m in masks]))
  np.testing.assert_allclose(
      got["oIoU"], sum(m.sum() for m in masks) / sum(m.size for m in masks)
  )
  want = np.mean([m.mean() >= 0.5 for m in masks])
  np.testing.assert_allclose(got["Prec@0.5"], want)
