"""Builds referring-segmentation records from a source's segmentation masks.

One record per unique templated expression of each instance (see
data/referring/expressions.py); sources are listed in data/referring/sources.py.
Large rasters are cut into --chip x --chip chips with seeded train/val/test
splits.

Run: python -m data.referring --source spacenet_buildings --out /tmp/ref_sn
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from data import common
from data.referring import builder, sources


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(
      prog="python -m data.referring", description=__doc__.split("\n")[0]
  )
  p.add_argument("--source", required=True, choices=sources.SOURCES)
  p.add_argument(
      "--src", default=None, help="shared data root (default: ../shared/data)"
  )
  p.add_argument("--name", default=None)
  d = builder.Options()
  p.add_argument(
      "--chip",
      type=int,
      default=None,
      help="chip size in px (default 256; 128 for elevation)",
  )
  p.add_argument("--scale", type=int, default=d.scale)
  p.add_argument("--grid", type=int, default=d.grid)
  p.add_argument("--min_area", type=int, default=d.min_area)
  p.add_argument("--split_fractions", default="0.7,0.15,0.15")
  p.add_argument(
      "--max_per_image",
      type=int,
      default=None,
      help="keep at most N expressions per chip (seeded)",
  )
  p.add_argument(
      "--train_stride",
      type=int,
      default=None,
      help="extra overlapping train windows at this stride, "
      "made only of train chips (a divisor of --chip)",
  )
  p.add_argument("--num_train", type=int, default=200, help="toyworld only")
  p.add_argument("--num_val", type=int, default=50, help="toyworld only")
  p.add_argument("--num_test", type=int, default=50, help="toyworld only")
  common.add_common_flags(p)
  a = p.parse_args(argv)
  chip = a.chip or (128 if a.source == "elevation" else 256)
  opt = builder.Options(
      chip=chip,
      scale=a.scale,
      grid=a.grid,
      min_area=a.min_area,
      split_fractions=tuple(float(x) for x in a.split_fractions.split(",")),
      seed=a.seed,
      max_per_image=a.max_per_image,
      train_stride=a.train_stride,
  )
  counts = {"train": a.num_train, "val": a.num_val, "test": a.num_test}
  m = common.run_build(
      lambda: builder.build(
          a.source,
          a.out,
          opt,
          src=a.src,
          name=a.name,
          counts=counts,
          records_per_shard=a.records_per_shard,
      ),
      a.out,
  )
  print("stats: " + json.dumps(m.builder["stats"], sort_keys=True))


if __name__ == "__main__":
  main()
