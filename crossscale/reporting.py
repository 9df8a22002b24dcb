"""Results of sweeps and benchmarks: the machine, tables, JSON files."""

from __future__ import annotations

import json
import os
import platform

import jax


def machine() -> dict:
  return {
      "platform": platform.platform(),
      "processor": platform.machine(),
      "cpu_count": os.cpu_count(),
      "jax_backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()][:8],
      "device_count": jax.device_count(),
  }


def print_table(rows: list[dict], columns: list[str]) -> None:
  widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
  print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
  print("  ".join("-" * w for w in widths))
  for r in rows:
    print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return "" if v is None else str(v)


def write_json(out_dir: str, name: str, payload: dict) -> str:
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, name)
  with open(path, "w") as f:
    json.dump(payload, f, indent=1)
  print(f"wrote {path}")
  return path
