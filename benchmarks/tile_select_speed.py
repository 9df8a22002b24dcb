r"""Tile select + gather: Pallas kernel vs plain-JAX reference.

  python -m benchmarks.tile_select_speed --quick --out DIR
  python -m benchmarks.tile_select_speed --runlocal --out DIR   # smoke
  python -m benchmarks.tile_select_speed --device-check --out DIR

--device-check (one script for a lent GPU/TPU, < 5 min): the kernel compiled
for the device must equal the reference exactly (indices, validity, tiles)
on hard cases (ties, +-0, NaN/inf, odd N, k=1 and k=N, per-scene k, price
budgets, bf16), then both are timed on the --quick cases. Writes
DIR/tile_select_device_check.json; exit status 1 on any mismatch. Only a
passing run on the device may add its backend to
`tile_select.VERIFIED_BACKENDS` (what `select_impl="auto"` trusts). On the
CPU it checks the interpreted kernel (no timing, verifies nothing).

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
import functools
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

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


# (B, grid, t, C, k_max, dtype, case): the kernel's hard cases.
CHECKS = [
    (3, 5, 4, 3, 7, "float32", "ties"),
    (4, 7, 2, 1, 1, "float32", "nan"),
    (2, 10, 16, 3, 100, "float32", "random"),
    (5, 10, 16, 4, 12, "bfloat16", "per_scene_k"),
    (4, 10, 8, 3, 12, "float32", "prices"),
    (8, 32, 8, 3, 128, "float32", "ties"),
]


def check_inputs(B, grid, t, C, k_max, dtype, case, seed=0):
  """(logits `[B, N]`, hr `[B, H, W, C]`, keyword budget) of one case."""
  rng = np.random.default_rng(seed)
  N = grid * grid
  logits = rng.normal(size=(B, N)).astype(np.float32)
  kw = {}
  if case == "ties":  # few distinct values, signed zeros
    logits = rng.choice(np.array([-1.0, -0.0, 0.0, 2.0], np.float32), (B, N))
  elif case == "nan":
    logits[:, ::3] = np.nan
    logits[:, 1::5] = np.inf
  elif case == "per_scene_k":
    kw["k"] = jnp.asarray(rng.integers(0, k_max + 1, B), jnp.int32)
  elif case == "prices":
    kw["prices"] = jnp.asarray(rng.uniform(0.5, 2.0, (B, N)), jnp.float32)
    kw["total"] = 4.0
  hr = rng.normal(size=(B, grid * t, grid * t, C))
  return jnp.asarray(logits, dtype), jnp.asarray(hr, dtype), kw


def device_check(out: str, reps: int) -> dict:
  """Kernel == reference on CHECKS, compiled for the default backend (the
  interpreter on the CPU), then both timed on QUICK off the CPU."""
  backend = jax.default_backend()
  on_device = backend in ("gpu", "tpu")
  cases = []
  for B, grid, t, C, k_max, dtype, case in CHECKS:
    logits, hr, kw = check_inputs(B, grid, t, C, k_max, dtype, case)
    got = {}
    for impl in ("reference", "kernel"):
      fn = jax.jit(
          functools.partial(
              tile_select.select_and_gather,
              grid=grid,
              k_max=k_max,
              impl=impl,
              **kw,
          )
      )
      got[impl] = [np.asarray(x) for x in fn(logits, hr)]
    same = all(
        np.array_equal(a, b) for a, b in zip(got["reference"], got["kernel"])
    )
    cases.append(
        dict(
            B=B,
            N=grid * grid,
            t=t,
            C=C,
            k_max=k_max,
            dtype=dtype,
            case=case,
            equal=same,
        )
    )
    print(
        f"{case:12s} B={B} N={grid * grid} k_max={k_max} {dtype}: "
        f"{'equal' if same else 'MISMATCH'}"
    )
  passed = all(c["equal"] for c in cases)
  rows = (
      [run_case(*c, reps, True) for c in QUICK] if on_device and passed else []
  )
  if rows:
    reporting.print_table(
        rows, ["B", "N", "k", "t", "C", "reference_ms", "kernel_ms", "speedup"]
    )
  payload = {
      "backend": backend,
      "device_kind": jax.devices()[0].device_kind,
      "interpreted": not on_device,
      "passed": passed,
      "verified": passed and on_device,
      "cases": cases,
      "rows": rows,
  }
  reporting.write_json(out, "tile_select_device_check.json", payload)
  if payload["verified"]:
    print(
        f"kernel == reference on {backend}: add {backend!r} to "
        "crossscale/kernels/tile_select.py VERIFIED_BACKENDS and record "
        "this run in benchmarks/README.md"
    )
  elif not passed:
    print(
        "MISMATCH: the kernel differs from the reference; keep "
        "select_impl='reference' here",
        file=sys.stderr,
    )
  return payload


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--out", required=True)
  ap.add_argument("--runlocal", action="store_true", help="smoke test")
  ap.add_argument("--reps", type=int, default=0)
  ap.add_argument(
      "--device-check",
      action="store_true",
      help="kernel == reference on hard cases, then timings (module doc)",
  )
  args = ap.parse_args(argv)
  reps = args.reps or (1 if args.runlocal else 5 if args.quick else 20)
  if args.device_check:
    payload = device_check(args.out, args.reps or 5)
    if not payload["passed"]:
      raise SystemExit(1)
    return payload
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
