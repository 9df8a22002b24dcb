"""Pieces every builder shares: split assignment and CLI helpers."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import numpy as np

from crossscale import records, shards

# Where the project's real imagery lives (never committed): ../shared/data.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get(
    "CROSSSCALE_SHARED_DATA",
    os.path.join(os.path.dirname(REPO_ROOT), "shared", "data"),
)

SPLITS = ("train", "val", "test")


def assign_splits(
    n: int,
    fractions: Sequence[float],
    seed: int,
    strata: Sequence[int] | None = None,
) -> list[str]:
  """Seeded train/val/test assignment of `n` items.

  With `strata` (e.g. class ids) each stratum is split in the same
  proportions, so every class appears in every split. Fractions are
  normalised; rounding puts leftovers in train.
  """
  fr = np.asarray(fractions, np.float64)
  if len(fr) != len(SPLITS) or (fr < 0).any() or fr.sum() <= 0:
    raise ValueError(
        f"split fractions must be 3 non-negative numbers "
        f"(train, val, test), got {list(fractions)}"
    )
  fr = fr / fr.sum()
  rng = np.random.default_rng(seed)
  out = [""] * n
  groups = {}
  for i in range(n):
    groups.setdefault(0 if strata is None else strata[i], []).append(i)
  for key in sorted(groups):
    idx = np.array(groups[key])
    rng.shuffle(idx)
    n_val = int(round(fr[1] * len(idx)))
    n_test = int(round(fr[2] * len(idx)))
    n_train = len(idx) - n_val - n_test
    for j, i in enumerate(idx):
      out[i] = (
          SPLITS[0]
          if j < n_train
          else (SPLITS[1] if j < n_train + n_val else SPLITS[2])
      )
  return out


def add_common_flags(p: argparse.ArgumentParser) -> None:
  """Flags every builder takes."""
  p.add_argument("--out", required=True, help="output dataset directory")
  p.add_argument("--seed", type=int, default=0, help="split/noise seed")
  p.add_argument("--records_per_shard", type=int, default=512)


def run_build(build, out: str, summary: bool = True) -> shards.Manifest:
  """Runs a builder's `build()` for its CLI: a DataError exits with its
  message (no traceback); prints the dataset's shapes and split counts."""
  try:
    m = build()
  except records.DataError as e:
    sys.exit(f"error: {e}")
  if summary:
    counts = {s: m.num_records(s) for s in m.splits}
    print(
        f"{m.name}: {m.num_classes} classes, hr {m.hr_shape}, lr "
        f"{m.lr_shape}, splits {counts} -> {out}"
    )
  return m
