r"""Input pipeline throughput vs what the training step consumes.

  python -m benchmarks.input_pipeline_speed --quick --out /tmp/bench
  python -m benchmarks.input_pipeline_speed --runlocal --out /tmp/smoke

Measures records/s of the Grain training pipeline (threads only, and with
worker processes) on toyworld and, when ../shared/data is present, on the real
RSSCN7 scenes, for the fields the models read (LR only; LR + HR; LR + HR
with the GSD augmentation over 0.5-2x, `data.gsd_augment`). Then times
the demo config's jitted train step and reports the records/s it consumes:
the pipeline is not the bottleneck when `headroom` = pipeline / consumption
is above 1. Writes OUT/input_pipeline.json. `--runlocal`: a smoke test (a
tiny toyworld and lr_vit.py:runlocal, no worker processes, no RSSCN7).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from absl import flags

from benchmarks import step_time
from crossscale import input_pipeline, reporting
from data import common, registry, toyworld
from experiments.configs import lr_vit

GSD_RANGE = (0.5, 2.0)  # gsd_shift's `ours`: data.gsd_augment


def pipeline_rate(
    data_dir, fields, batch_size, workers, seconds, gsd_augment=None
) -> float:
  """Records/s over `seconds` after a warm-up batch."""
  it = iter(
      input_pipeline.train_dataset(
          data_dir,
          batch_size=batch_size,
          seed=0,
          fields=fields,
          worker_count=workers,
          num_threads=4,
          gsd_augment=gsd_augment,
      )
  )
  next(it)
  n, t0 = 0, time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    next(it)
    n += batch_size
  return n / (time.perf_counter() - t0)


def step_consumption(config, data_dir, steps) -> float:
  """Records/s the jitted train step of `config` consumes (compute only)."""
  return config.batch_size / step_time.time_train_step(config, data_dir, steps)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true")
  p.add_argument("--runlocal", action="store_true", help="smoke test (seconds)")
  p.add_argument("--out", required=True)
  a = p.parse_args(argv)
  flags.FLAGS.mark_as_parsed()
  seconds, steps = (
      (0.2, 2) if a.runlocal else (2.0, 20) if a.quick else (8.0, 100)
  )
  config = lr_vit.get_config("runlocal" if a.runlocal else None)
  work = tempfile.mkdtemp()
  datasets = {}
  tw = os.path.join(work, "toyworld")
  n = 64 if a.runlocal else 1000 if a.quick else 4000
  toyworld.build(tw, num_train=n, num_val=10, num_test=10)
  datasets["toyworld"] = tw
  rsscn7 = os.path.join(common.SHARED_DATA, "rsscn7")
  if os.path.isdir(rsscn7) and not a.runlocal:
    datasets["rsscn7"] = registry.resolve("rsscn7")
  rows = []
  for name, d in datasets.items():
    config.data.path = d
    consumed = step_consumption(config, d, steps)
    cases = [
        (fields, workers, None)
        for fields in (("lr", "labels"), ("lr", "hr", "labels"))
        for workers in ((0,) if a.runlocal else (0, 2))
    ]
    if not a.runlocal:  # GSD augmentation: mosaics resampled on the host
      cases += [(("lr", "hr", "labels"), w, GSD_RANGE) for w in (0, 2)]
    for fields, workers, gsd in cases:
      rate = pipeline_rate(
          d, fields, config.batch_size, workers, seconds, gsd_augment=gsd
      )
      rows.append(
          {
              "dataset": name,
              "fields": "+".join(fields),
              "workers": workers,
              "gsd_augment": "-" if gsd is None else f"{gsd[0]:g}-{gsd[1]:g}",
              "records_per_s": rate,
              "lr_vit_step_records_per_s": consumed,
              "headroom": rate / consumed,
          }
      )
  reporting.print_table(
      rows,
      [
          "dataset",
          "fields",
          "workers",
          "gsd_augment",
          "records_per_s",
          "lr_vit_step_records_per_s",
          "headroom",
      ],
  )
  reporting.write_json(
      a.out,
      "input_pipeline.json",
      {
          "quick": a.quick,
          "runlocal": a.runlocal,
          "batch_size": config.batch_size,
          "rows": rows,
      },
      datasets={k: v for k, v in datasets.items() if k != "toyworld"},
  )


if __name__ == "__main__":
  main()
