"""Shared fixtures and the suite's JAX settings (CPU, 8 fake devices).

Compile time dominates these tiny programs, so the suite (and the processes
its tests launch, which inherit the environment) compiles with XLA's cheap
CPU settings (FAST_COMPILE: results equal up to float rounding) and keeps
compiled programs in .pytest_cache/jax (git-ignored; a clean clone starts
empty), shared by xdist workers, subprocesses and later runs.
`JAX_COMPILATION_CACHE_DIR=` (empty) turns the cache off.
"""

import os
import sys

import pytest

# LLVM without its expensive passes and the older fusion emitters: the
# suite's compiles take a third to a half of the time.
FAST_COMPILE = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)


def xla_flags(devices: int | None = None) -> str:
  """XLA_FLAGS for this process or a child: the environment's flags, the
  FAST_COMPILE ones it does not set, and `devices` fake CPU devices if
  given (else the environment's count, 8 when it names none)."""
  flags = os.environ.get("XLA_FLAGS", "").split()
  if devices is not None:
    flags = [f for f in flags if "host_platform_device_count" not in f]
  if not any("host_platform_device_count" in f for f in flags):
    flags.append(f"--xla_force_host_platform_device_count={devices or 8}")
  for f in FAST_COMPILE:
    if not any(g.split("=")[0] == f.split("=")[0] for g in flags):
      flags.append(f)
  return " ".join(flags)


# 8 fake CPU devices so sharding is tested for real (.ci/run sets it too).
os.environ["XLA_FLAGS"] = xla_flags()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Programs compiling in over 0.1 s are kept; 2 GB at most (LRU eviction).
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".pytest_cache", "jax")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from data import common  # noqa: E402  (after the XLA_FLAGS above)

# `--dist loadgroup` that does not hang once a worker crashes.
from tests.xdist_loadgroup import pytest_xdist_make_scheduler  # noqa: E402,F401


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


@pytest.fixture(scope="session")
def tiny_xs_run(toyworld_small, tmp_path_factory):
  """A runlocal cross-scale run (budget 1/4, 3 steps) on toyworld_small, as
  `selection_swap.Run` "ours". Its users share the xdist group
  "tiny_xs_run", so one worker trains it once."""
  from tests import helpers

  workdir = str(tmp_path_factory.mktemp("tiny_xs_run"))
  return helpers.tiny_cross_scale_run(toyworld_small, workdir, 0.25, 3)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
  """Under xdist (pytest.ini: --dist loadgroup), the tests of a module that
  use one of its module-scoped fixtures run in one worker, so the fixture
  (a trained run, an initialised model) is built once."""
  for item in items:
    if item.get_closest_marker("xdist_group"):
      continue
    defs = item._fixtureinfo.name2fixturedefs  # pylint: disable=protected-access
    if any(
        d[-1].scope == "module"
        for name, d in defs.items()
        if d and name in item.fixturenames
    ):
      item.add_marker(pytest.mark.xdist_group(item.module.__name__))
