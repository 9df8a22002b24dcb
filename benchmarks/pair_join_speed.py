r"""Spatio-temporal LR/HR join (data.find_pairs): seconds and memory vs size.

  python -m benchmarks.pair_join_speed --quick --out /tmp/bench
  python -m benchmarks.pair_join_speed --out benchmarks/results   # adds 1M x 1M
  python -m benchmarks.pair_join_speed --runlocal --out /tmp/smoke  # 1k x 1k

Synthetic clustered metadata (data.find_pairs.synth_tables: HR ~5 km and LR
~100 km lon/lat boxes, ~10 LR footprints over each HR scene up to 100k, ~2x
that at 1M; times uniform over 5 years) joined with min_overlap 0.5,
max_days 30, max_cloud 0.5, best LR per HR scene, by SedonaDB and by the
shapely STRtree reference, at N x N for N in 10k, 100k (and 1M without
--quick). Each (engine, N) runs in a fresh process, so peak RSS is that run's
alone (it includes making the inputs; `rss_inputs_mb` is the resident memory
just before the join). `prep_s` is validation + projection to EPSG:6933
(data.find_pairs.scenes_from_arrays), shared by the engines and not in
`join_s`; `join_s` includes loading the tables into the engine and returning
the result arrays. Writes OUT/find_pairs.json (or find_pairs_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ENGINES = ("sedonadb", "shapely")
JOIN_KW = dict(min_overlap=0.5, max_days=30.0, max_cloud=0.5)


def _rss_mb() -> float:
  """Peak resident memory of this process so far (MiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(engine: str, n: int, seed: int = 0) -> dict:
  """Runs one (engine, n) measurement in this process."""
  from data import find_pairs as fp  # pylint: disable=g-import-not-at-top

  t0 = time.perf_counter()
  hr_a, lr_a = fp.synth_tables(n, n, seed)
  synth_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  hr, lr = fp.synth_scenes(hr_a, "hr"), fp.synth_scenes(lr_a, "lr")
  prep_s = time.perf_counter() - t0
  del hr_a, lr_a
  rss_inputs = _current_rss_mb()
  t0 = time.perf_counter()
  r = fp.join(hr, lr, engine=engine, **JOIN_KW)
  join_s = time.perf_counter() - t0
  return {
      "engine": engine,
      "n_hr": n,
      "n_lr": n,
      "pairs": int(len(r["hr_idx"])),
      "join_s": join_s,
      "prep_s": prep_s,
      "synth_s": synth_s,
      "rss_inputs_mb": rss_inputs,
      "peak_rss_mb": _rss_mb(),
  }


def _run_child(engine: str, n: int, timeout: float) -> dict:
  cmd = [
      sys.executable,
      "-m",
      "benchmarks.pair_join_speed",
      "--_one",
      engine,
      str(n),
      "--out",
      "-",
  ]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    p = subprocess.run(
        cmd,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
  except subprocess.TimeoutExpired:
    return {
        "engine": engine,
        "n_hr": n,
        "n_lr": n,
        "error": f"timed out after {timeout:.0f} s",
    }
  if p.returncode != 0:
    return {
        "engine": engine,
        "n_hr": n,
        "n_lr": n,
        "error": p.stderr.strip().splitlines()[-1]
        if p.stderr
        else f"exit {p.returncode}",
    }
  return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true")
  p.add_argument("--runlocal", action="store_true", help="smoke test: 1k x 1k")
  p.add_argument("--out", required=True)
  p.add_argument(
      "--sizes",
      type=int,
      nargs="*",
      default=None,
      help="override the N x N sizes",
  )
  p.add_argument(
      "--timeout",
      type=float,
      default=900.0,
      help="seconds per (engine, size) run",
  )
  p.add_argument("--_one", nargs=2, default=None, help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a._one:  # pylint: disable=protected-access
    engine, n = a._one  # pylint: disable=protected-access
    print(json.dumps(one(engine, int(n))))
    return
  from crossscale import reporting  # pylint: disable=g-import-not-at-top

  sizes = a.sizes or (
      [1_000]
      if a.runlocal
      else [10_000, 100_000]
      if a.quick
      else [10_000, 100_000, 1_000_000]
  )
  rows = []
  for n in sizes:
    for engine in ENGINES:
      row = _run_child(engine, n, a.timeout)
      rows.append(row)
      print(json.dumps(row), flush=True)
  for r in rows:
    if "join_s" in r:
      r["pairs_per_s"] = r["pairs"] / r["join_s"]
      r["footprints_per_s"] = (r["n_hr"] + r["n_lr"]) / r["join_s"]
  reporting.print_table(
      rows,
      [
          "engine",
          "n_hr",
          "n_lr",
          "pairs",
          "join_s",
          "prep_s",
          "rss_inputs_mb",
          "peak_rss_mb",
          "error",
      ],
  )
  reporting.write_json(
      a.out,
      "find_pairs_quick.json" if a.quick else "find_pairs.json",
      {
          "quick": a.quick,
          "runlocal": a.runlocal,
          "join": JOIN_KW,
          "best_match_per_hr": True,
          "rows": rows,
      },
  )


if __name__ == "__main__":
  main()
