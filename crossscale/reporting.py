"""Results of sweeps and benchmarks: the machine, tables, JSON files.

`write_json(out, name, payload, datasets={"data": path})` writes a results
file with a "provenance" block: git commit (and whether the tree was dirty),
UTC date, machine, the command as `python -m module args...`, and dataset
paths relative to the data roots (never absolute). `results_name(...)` is
the file name every sweep uses: `<dataset>_<schedule>_s<first>-<last>.json`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys

import jax

# The data roots, from the environment (the library cannot import data/):
# the shared read-only imagery and the built records (data.registry).
SHARED_DATA_ENV = "CROSSSCALE_SHARED_DATA"
RECORDS_ENV = "CROSSSCALE_DATA"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
  widths = [
      max([len(c), *(len(_fmt(r.get(c))) for r in rows)]) for c in columns
  ]
  print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
  print("  ".join("-" * w for w in widths))
  for r in rows:
    print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(columns, widths)))


def _fmt(v) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return "" if v is None else str(v)


def schedule_name(quick: bool, steps: int = 0, runlocal: bool = False) -> str:
  """The <schedule> of `results_name`: "runlocal", "steps<N>" (steps
  overridden; the JSON's "quick" says which model), "quick" or "full"."""
  if runlocal:
    return "runlocal"
  if steps:
    return f"steps{steps}"
  return "quick" if quick else "full"


def results_name(
    dataset: str, schedule: str, first_seed: int, last_seed: int
) -> str:
  """`<dataset>_<schedule>_s<first>-<last>.json` (seeds inclusive); a
  records directory given as the dataset contributes its base name."""
  name = os.path.basename(os.path.normpath(dataset)) or "data"
  return f"{name}_{schedule}_s{first_seed}-{last_seed}.json"


def data_roots() -> dict[str, str]:
  """{"shared": shared imagery root, "data": built records root}."""
  return {
      "shared": os.environ.get(
          SHARED_DATA_ENV,
          os.path.join(os.path.dirname(REPO_ROOT), "shared", "data"),
      ),
      "data": os.environ.get(
          RECORDS_ENV, os.path.expanduser("~/.cache/crossscale/datasets")
      ),
  }


def relative_path(path: str, roots: dict[str, str] | None = None) -> str:
  """`path` as "<root>:<relative path>" under the first data root holding
  it (`roots`: name -> directory, default `data_roots()`); a path under
  none of them keeps only its base name, "other:<name>"."""
  if not path:
    return path
  full = os.path.realpath(path)
  for name, root in (roots or data_roots()).items():
    root = os.path.realpath(root)
    if full == root or full.startswith(root + os.sep):
      return f"{name}:{os.path.relpath(full, root)}"
  if not os.path.isabs(path) and not path.startswith(".."):
    return path  # a registered name or a path inside the repo
  return f"other:{os.path.basename(os.path.normpath(path))}"


def command() -> str:
  """This process's command line as `python -m module args...`."""
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  if spec is not None and spec.name:
    head = ["python", "-m", spec.name.removesuffix(".__main__")]
  else:
    head = ["python", os.path.relpath(sys.argv[0], REPO_ROOT)]
  return " ".join(head + [_quote(a) for a in sys.argv[1:]])


def _quote(arg: str) -> str:
  """A command-line arg with absolute paths made relative (to the repo or
  a data root; `--flag=/path` and `NAME:key=/path` too), shell-quoted
  where needed."""
  if arg.startswith("-"):
    flag, eq, value = arg.partition("=")
  elif os.path.isabs(arg.rpartition("=")[2]):
    flag, eq, value = arg.rpartition("=")
  else:
    flag, eq, value = "", "", arg
  if os.path.isabs(value):
    repo, full = os.path.realpath(REPO_ROOT), os.path.realpath(value)
    if full.startswith(repo + os.sep):
      value = os.path.relpath(full, repo)  # e.g. --out experiments/.../results
    else:
      value = relative_path(value)
  arg = f"{flag}{eq}{value}"
  return arg if arg and not set(arg) & set(" '\"$;&|<>*?") else repr(arg)


def git_state() -> dict:
  """{"commit": sha or None, "dirty": bool or None} of the repository."""
  try:
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return {"commit": None, "dirty": None}
  return {"commit": sha, "dirty": bool(dirty)}


# The repository's state when this module was first imported: a sweep's
# code is what it imported then, whatever is committed while it runs.
START_GIT = git_state()


def provenance(
    datasets: dict[str, str] | None = None,
    roots: dict[str, str] | None = None,
) -> dict:
  """What produced a results file: commit and dirty tree when the process
  started (`START_GIT`: the code it runs; "git_at_write" adds the state at
  writing when a commit or edit came in between), UTC date, machine, command
  and `datasets` ({name: path}) relative to the data roots."""
  now = git_state()
  changed = {"git_at_write": now} if now != START_GIT else {}
  return {
      **START_GIT,
      **changed,
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"
      ),
      "machine": machine(),
      "command": command(),
      "datasets": {
          k: relative_path(v, roots) for k, v in (datasets or {}).items()
      },
  }


def write_json(
    out_dir: str,
    name: str,
    payload: dict,
    *,
    datasets: dict[str, str] | None = None,
    roots: dict[str, str] | None = None,
) -> str:
  """Writes `payload` plus its "provenance" to out_dir/name; returns the
  path. `datasets`: {name: records path} (recorded relative to `roots`)."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, name)
  payload = {**payload, "provenance": provenance(datasets, roots)}
  with open(path, "w") as f:
    json.dump(payload, f, indent=1)
  print(f"wrote {path}")
  return path
