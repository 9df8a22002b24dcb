r"""Tile select + gather: Pallas kernel vs plain-JAX reference.

  python -m benchmarks.tile_select_speed --quick --out DIR
  python -m benchmarks.tile_select_speed --runlocal --out DIR   # smoke

For B in {32, 256}, N in {100, 400, 1024} tiles, k = N / 8, tiles of t px
and C bands (t 32..64, C 3..12; the largest HR batches use t=32, C=3 so the
scenes fit in memory), times the jitted select + gather (median of --reps),
and reports the bytes it must move (logits read, selected tiles read and
written, indices written), the achieved bandwidth, and on a GPU the fraction
of peak memory bandwidth. The kernel runs on GPU/TPU only: on the CPU Pallas
has only an interpreter, whose timings mean nothing, so the CPU rows time the
reference alone. Writes DIR/tile_select.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from crossscale import reporting
from crossscale.kernels import tile_select

# (B, grid, t, C): N = grid**2 in {100, 400, 1024}. QUICK fits a CPU box
# (HR batches <= 3.2 GB); the full set adds 64-px, 12-band tiles (<= 17 GB).
QUICK = [
    (32, 10, 64, 12),
    (32, 20, 48, 4),
    (32, 32, 32, 3),
    (256, 10, 32, 12),
    (256, 20, 32, 3),
    (256, 32, 32, 3),
]
CASES = QUICK + [
    (32, 32, 64, 12),
    (256, 10, 64, 12),
    (256, 20, 48, 4),
    (256, 32, 64, 4),
]
RUNLOCAL = [(4, 4, 8, 3)]  # --runlocal: a smoke test
PEAK_GBPS = {"H100": 3350.0, "H200": 4800.0, "A100": 2039.0}  # HBM, SXM


def peak_bandwidth() -> float | None:
  kind = jax.devices()[0].device_kind
  return next((v for k, v in PEAK_GBPS.items() if k in kind), None)


def median_seconds(fn, args, reps: int) -> float:
  jax.block_until_ready(fn(*args))  # compile + warm up
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def bytes_moved(B, N, k, t, C, itemsize) -> int:
  return B * N * 4 + 2 * B * k * t * t * C * itemsize + 2 * B * k * 4


def run_case(B, grid, t, C, reps, with_kernel) -> dict:
  N, k = grid * grid, grid * grid // 8
  keys = jax.random.split(jax.random.key(B * N + t), 2)
  logits = jax.random.normal(keys[0], (B, N), jnp.float32)
  hr = jax.random.normal(keys[1], (B, grid * t, grid * t, C), jnp.float32)
  row = {
      "B": B,
      "N": N,
      "k": k,
      "t": t,
      "C": C,
      "hr_gb": hr.nbytes / 1e9,
      "moved_mb": bytes_moved(B, N, k, t, C, 4) / 1e6,
  }
  impls = ["reference"] + (["kernel"] if with_kernel else [])
  for impl in impls:
    fn = jax.jit(
        lambda l, h, impl=impl: tile_select.select_and_gather(
            l, h, grid, k, impl=impl
        )
    )
    s = median_seconds(fn, (logits, hr), reps)
    row[f"{impl}_ms"] = s * 1e3
    row[f"{impl}_gbps"] = row["moved_mb"] / 1e3 / s
  if with_kernel:
    row["speedup"] = row["reference_ms"] / row["kernel_ms"]
    peak = peak_bandwidth()
    row["kernel_peak_frac"] = row["kernel_gbps"] / peak if peak else None
  del hr
  return row


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--out", required=True)
  ap.add_argument("--runlocal", action="store_true", help="smoke test")
  ap.add_argument("--reps", type=int, default=0)
  args = ap.parse_args(argv)
  reps = args.reps or (1 if args.runlocal else 5 if args.quick else 20)
  with_kernel = jax.default_backend() in ("gpu", "tpu")
  cases = RUNLOCAL if args.runlocal else QUICK if args.quick else CASES
  rows = [run_case(*c, reps, with_kernel) for c in cases]
  cols = [
      "B",
      "N",
      "k",
      "t",
      "C",
      "hr_gb",
      "moved_mb",
      "reference_ms",
      "reference_gbps",
  ]
  if with_kernel:
    cols += ["kernel_ms", "kernel_gbps", "speedup", "kernel_peak_frac"]
  reporting.print_table(rows, cols)
  if not with_kernel:
    print(
        "no GPU/TPU: the kernel is not timed (Pallas interpret mode on "
        "the CPU is a correctness tool, not a timing)."
    )
  payload = {
      "quick": args.quick,
      "runlocal": args.runlocal,
      "reps": reps,
      "kernel_timed": with_kernel,
      "peak_gbps": peak_bandwidth(),
      "rows": rows,
  }
  reporting.write_json(args.out, "tile_select.json", payload)
  return payload


if __name__ == "__main__":
  main()
