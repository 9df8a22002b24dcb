"""experiments.refseg.rrsis: the whole-image reference row, its configs."""

import numpy as np
import pytest

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


@pytest.mark.parametrize("quick", [True, False])
def test_sweep_config_is_the_old_base_config(quick):
  """refseg.py:mode=M,quick (,sweep) is what rrsis.base_config(quick, d, M)
  built at 8b9d2da."""
  from crossscale import run_config
  from experiments.configs import refseg

  old = refseg.get_config("mode=full")
  old.data.path = "D"
  old.checkpoint.every = 10**9
  old.eval_every = 10**9
  old.log_every = 100
  old.evals = {"test": {"type": "referring", "split": "test"}}
  if quick:
    old.batch_size = 16
    old.total_steps = 150
    old.optim.warmup_steps = 15
  got = rrsis.sweep_config(quick, "D", "full")
  assert run_config.as_flat(got) == run_config.as_flat(old)
