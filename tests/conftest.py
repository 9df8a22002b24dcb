"""Shared fixtures. Tests run on CPU; .ci/run sets 8 fake host devices."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from data import common  # pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def shared_data():
  """Path of ../shared/data; skips (with the reason) when it is absent."""
  if not os.path.isdir(common.SHARED_DATA):
    pytest.skip(f"real imagery not found at {common.SHARED_DATA} "
                "(set CROSSSCALE_SHARED_DATA)")
  return common.SHARED_DATA
