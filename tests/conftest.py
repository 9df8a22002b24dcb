"""Shared fixtures. Tests run on CPU; .ci/run sets 8 fake host devices."""

import os
import sys

import pytest

# 8 fake CPU devices so sharding is tested for real (.ci/run sets it too).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from data import common  # noqa: E402  (after the XLA_FLAGS above)


@pytest.fixture(scope="session")
def shared_data():
  """Path of ../shared/data; skips (with the reason) when it is absent."""
  if not os.path.isdir(common.SHARED_DATA):
    pytest.skip(
        f"real imagery not found at {common.SHARED_DATA} "
        "(set CROSSSCALE_SHARED_DATA)"
    )
  return common.SHARED_DATA


@pytest.fixture(scope="session")
def toyworld_small(tmp_path_factory):
  """A small toyworld records dir (the runlocal config's sizes)."""
  from data import toyworld

  d = str(tmp_path_factory.mktemp("toyworld"))
  toyworld.build(d, num_train=256, num_val=64, num_test=64, seed=0)
  return d


@pytest.fixture(scope="session")
def referring_small(tmp_path_factory):
  """A small referring set (expressions + target masks) from toyworld."""
  from data import referring

  d = str(tmp_path_factory.mktemp("referring"))
  referring.build("toyworld", d, counts={"train": 32, "val": 8, "test": 8})
  return d
