"""Metric writers (JSONL + TensorBoard event files) and a progress line."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Mapping

import jax


class MetricWriter:
  """Writes scalars to `workdir/metrics.jsonl` and TensorBoard event files in
  `workdir/tb`. Only process 0 writes; elsewhere calls are no-ops."""

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

    self._tb = SummaryWriter(logdir=os.path.join(workdir, "tb"))

  def write(self, step: int, prefix: str, scalars: Mapping[str, float]):
    if not self.active:
      return
    row = {
        "step": int(step),
        "split": prefix,
        **{k: float(v) for k, v in scalars.items()},
    }
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    for k, v in scalars.items():
      self._tb.add_scalar(f"{prefix}/{k}", float(v), int(step))
    self._tb.flush()

  def close(self):
    if self.active:
      self._jsonl.close()
      self._tb.close()


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
  """A progress line with step/s and ETA, printed every call to `update`."""

  def __init__(self, total_steps: int, start_step: int, stream=sys.stdout):
    self.total, self.stream = total_steps, stream
    self._t0, self._s0 = time.perf_counter(), start_step

  def steps_per_sec(self, step: int) -> float:
    dt = time.perf_counter() - self._t0
    return (step - self._s0) / dt if dt > 0 else float("nan")

  def update(self, step: int, scalars: Mapping[str, float]) -> float:
    rate = self.steps_per_sec(step)
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    width = 24
    done = int(width * step / max(self.total, 1))
    bar = "#" * done + "." * (width - done)
    vals = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
    if jax.process_index() == 0:
      print(
          f"[{bar}] {step}/{self.total} {vals} | {rate:.2f} step/s | "
          f"ETA {_hms(eta)}",
          file=self.stream,
          flush=True,
      )
    return rate
