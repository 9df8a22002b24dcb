r"""`crossscale.evaluate` with registered dataset names resolved.

  python -m experiments.evaluate --workdir runs/xs --dataset rsscn7 \
      --split test --out DIR

`--dataset` is a registered name (data.registry: built on first use, with
the run's own options for toyworld, as launch.py resolves it) or a records
directory; everything else is `python -m crossscale.evaluate`'s.
"""

from __future__ import annotations

import sys
from typing import Sequence

from crossscale import evaluate, export
from data import registry


def resolve(name: str, workdir: str) -> str:
  """Records directory of `name` for the run in `workdir`."""
  try:
    config = export.load_config(workdir)
  except FileNotFoundError:
    config = None
  options, root = None, None
  if config is not None:
    if name == "toyworld" and "toyworld" in config:
      options = config.toyworld.to_dict()
    root = config.get("data_root") or None
  return registry.resolve(name, root, options)


def main(argv: Sequence[str] | None = None) -> dict:
  args = evaluate.parse_args(argv)
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    path = resolve(args.dataset, args.workdir)
  except ValueError as e:
    raise SystemExit(f"experiments.evaluate: {e}") from None
  i = argv.index("--dataset") if "--dataset" in argv else None
  if i is not None:
    argv[i + 1] = path
  else:
    argv = [a for a in argv if not a.startswith("--dataset=")]
    argv.append(f"--dataset={path}")
  return evaluate.main(argv)


if __name__ == "__main__":
  main()
