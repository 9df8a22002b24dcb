"""Every sweep and benchmark runs as a README names it: `python -m ... --help`
and its `--runlocal` smoke, each in its own subprocess; a smoke writes its
results JSON with provenance (commit, date, machine, command, dataset paths
relative to the data roots).

The subprocesses of a group start together (2 cores: compile-bound runs
overlap well) and share one records root, whose tiny toyworld is built once
first; the JAX compilation cache (conftest) carries over between sessions.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SWEEPS = [
    "experiments.cross_scale.tradeoff",
    "experiments.cross_scale.selection_swap",
    "experiments.cross_scale.tile_value",
    "experiments.pretrain.benefit",
    "experiments.pretrain.transfer",
    "experiments.refseg.rrsis",
]


def _modules(folder: str) -> list[str]:
  return sorted(
      f"{folder.replace('/', '.')}.{os.path.basename(p)[:-3]}"
      for p in glob.glob(os.path.join(ROOT, folder, "*.py"))
      if not p.endswith("__init__.py")
  )


SR_BENCH = [
    "experiments.sr_bench.sr_grid",
    "experiments.sr_bench.sr_real_pairs",
]
HELP = SWEEPS + SR_BENCH + _modules("benchmarks")
ABSL = {"benchmarks.step_time"}  # absl's --help exits 1 by design

# module -> smoke args; OUT is the smoke's output folder, WORK the tradeoff
# smoke's --work_dir (selection_swap / tile_value read its trained cell).
SMOKES = {
    "experiments.cross_scale.tradeoff": "--runlocal --work_dir WORK --out OUT",
    # 4 steps per stage (runlocal: 20): three compiled runs, each step paid.
    "experiments.pretrain.benefit": (
        "--runlocal --seeds 1 --steps 4 --pretrain_steps 4 --out OUT"
    ),
    "experiments.pretrain.transfer": "--runlocal --out OUT",
    "experiments.refseg.rrsis": "--runlocal --out OUT",
    "experiments.sr_bench.sr_grid": "--runlocal --out OUT",
    "experiments.sr_bench.sr_real_pairs": "--runlocal --out OUT",
    "benchmarks.tile_select_speed": "--runlocal --out OUT",
    "benchmarks.input_pipeline_speed": "--runlocal --out OUT",
    "benchmarks.pair_join_speed": "--runlocal --out OUT",
    "benchmarks.sharding_memory": "--runlocal --out OUT",
    "benchmarks.step_time": (
        "--config experiments/configs/lr_vit.py:runlocal --steps 2 --out OUT"
    ),
}
AFTER_TRADEOFF = {
    "experiments.cross_scale.selection_swap": (
        "--work_dir WORK --budget 0.125 --out OUT"
    ),
    "experiments.cross_scale.tile_value": (
        "--work_dir WORK --budget 0.125 --out OUT"
    ),
}
TIMEOUT = 600


# Smokes that measure a multi-device mesh get the suite's 8 fake devices.
DEVICES = {"benchmarks.sharding_memory": 8}


def _start(module: str, args: list[str], env: dict) -> subprocess.Popen:
  if module in DEVICES:
    from tests import conftest

    env = {**env, "XLA_FLAGS": conftest.xla_flags(devices=DEVICES[module])}
  p = subprocess.Popen(
      [sys.executable, "-m", module, *args],
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )
  p.started = time.time()
  return p


def _finish(procs: dict) -> dict:
  """{name: (returncode, output, seconds until seen done)} of started
  processes."""
  out = {}
  for name, p in procs.items():
    text, _ = p.communicate(timeout=TIMEOUT)
    out[name] = (p.returncode, text, time.time() - p.started)
  return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """The subprocesses' environment: a records root holding the runlocal
  toyworld, built once here (the smokes would race to build it)."""
  from data import registry
  from experiments.configs import cross_scale
  from tests import conftest

  root = str(tmp_path_factory.mktemp("records"))
  e = {**os.environ, "CROSSSCALE_DATA": root, "PYTHONPATH": ROOT}
  # One CPU device, as a user runs them, with the suite's fast compiles.
  e["XLA_FLAGS"] = conftest.xla_flags(devices=1)
  opts = cross_scale.get_config("runlocal").toyworld.to_dict()
  registry.resolve("toyworld", root, opts)
  return e


# Runs `python -m MODULE --help` for each of argv[1:] in this one process
# (runpy, as -m does; imports are paid once) and prints {module: [exit
# code, output]} as JSON.
_HELP_DRIVER = """
import contextlib, io, json, runpy, sys, traceback
res = {}
for m in sys.argv[1:]:
  buf = io.StringIO()
  sys.argv = [m, "--help"]
  code = 0
  with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
    try:
      runpy.run_module(m, run_name="__main__", alter_sys=True)
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
      traceback.print_exc()
      code = 1
  res[m] = [code, buf.getvalue()]
print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def helps(env):
  """{module: (exit code, output)} of `--help`: the argparse modules in one
  driver process, absl's (which define process-wide flags) each alone."""
  argparse_mods = [m for m in HELP if m not in ABSL]
  driver = subprocess.run(
      [sys.executable, "-c", _HELP_DRIVER, *argparse_mods],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=TIMEOUT,
  )
  assert driver.returncode == 0, driver.stderr[-4000:]
  out = {m: tuple(v) for m, v in json.loads(driver.stdout).items()}
  for m, (rc, text, _) in _finish(
      {m: _start(m, ["--help"], env) for m in ABSL}
  ).items():
    out[m] = (rc, text)
  return out


@pytest.mark.parametrize("module", HELP)
def test_help(helps, module):
  rc, text = helps[module]
  assert "Traceback" not in text, text
  assert rc == (1 if module in ABSL else 0), text
  assert re.search(r"usage|USAGE|flags:", text), text


@pytest.fixture(scope="module")
def smokes(env, tmp_path_factory):
  """{module: (returncode, output, seconds, out dir)} of every smoke."""
  base = tmp_path_factory.mktemp("smokes")
  work = str(base / "work")

  def args(module, spec):
    out = str(base / module.rsplit(".", 1)[1])
    return out, spec.replace("OUT", out).replace("WORK", work).split()

  procs, outs = {}, {}
  for m, spec in SMOKES.items():
    outs[m], a = args(m, spec)
    procs[m] = _start(m, a, env)
  tradeoff = "experiments.cross_scale.tradeoff"
  first = _finish({tradeoff: procs.pop(tradeoff)})
  later = {}
  for m, spec in AFTER_TRADEOFF.items():
    outs[m], a = args(m, spec)
    later[m] = _start(m, a, env)
  done = {**first, **_finish(procs), **_finish(later)}
  return {m: (*done[m], outs[m]) for m in done}


@pytest.mark.parametrize("module", [*SMOKES, *AFTER_TRADEOFF])
def test_smoke_writes_results_with_provenance(smokes, module):
  rc, text, seconds, out = smokes[module]
  assert rc == 0, text[-4000:]
  files = glob.glob(os.path.join(out, "*.json"))
  assert files, f"{module} wrote no JSON into {out}:\n{text[-2000:]}"
  for path in files:
    with open(path) as f:
      prov = json.load(f)["provenance"]
    assert re.fullmatch(r"[0-9a-f]{40}", prov["commit"] or ""), prov
    assert isinstance(prov["dirty"], bool)
    assert prov["date"].endswith("+00:00")
    assert prov["machine"]["cpu_count"] >= 1
    assert prov["command"].startswith(f"python -m {module} "), prov
    for name, p in prov["datasets"].items():
      assert not os.path.isabs(p), (name, p)
    dumped = json.dumps(prov["datasets"])
    assert ROOT not in dumped and "/tmp/" not in dumped
  print(f"{module}: {seconds:.0f} s")


def test_sweep_results_follow_the_naming_scheme(smokes):
  """Sweeps name their file <dataset>_<schedule>_s<first>-<last>.json."""
  want = {
      "experiments.cross_scale.tradeoff": "toyworld_runlocal_s0-0.json",
      "experiments.pretrain.benefit": "toyworld_runlocal_s0-0.json",
      "experiments.pretrain.transfer": "toyworld_runlocal_s0-0.json",
      "experiments.refseg.rrsis": "toyworld_runlocal_s0-0.json",
      "experiments.cross_scale.selection_swap": "toyworld_steps20_s0-0.json",
      "experiments.cross_scale.tile_value": "toyworld_steps20_s0-0.json",
      "experiments.sr_bench.sr_grid": "toyworld_runlocal_s0-0.json",
      "experiments.sr_bench.sr_real_pairs": "real_pairs_runlocal_s0-0.json",
  }
  for module, name in want.items():
    out = smokes[module][3]
    assert os.path.exists(os.path.join(out, name)), (module, os.listdir(out))


def test_provenance_records_paths_relative_to_the_data_roots(
    tmp_path, monkeypatch
):
  from crossscale import reporting

  shared, records = tmp_path / "shared", tmp_path / "records"
  monkeypatch.setenv("CROSSSCALE_SHARED_DATA", str(shared))
  monkeypatch.setenv("CROSSSCALE_DATA", str(records))
  monkeypatch.setattr(
      sys,
      "argv",
      ["x.py", "--out", str(tmp_path / "o"), "--q=" + str(shared)]
      + ["--variant", f"v:data.path={records}/ms"],
  )
  path = reporting.write_json(
      str(tmp_path / "o"),
      reporting.results_name("rsscn7", "steps1200", 3, 10),
      {"a": 1},
      datasets={
          "real": str(shared / "rsscn7" / "x.tif"),
          "built": str(records / "toyworld-1234"),
          "elsewhere": "/somewhere/else/set",
          "name": "rsscn7",
      },
  )
  assert path.endswith("/o/rsscn7_steps1200_s3-10.json")
  with open(path) as f:
    got = json.load(f)
  assert got["a"] == 1
  assert got["provenance"]["datasets"] == {
      "real": "shared:rsscn7/x.tif",
      "built": "data:toyworld-1234",
      "elsewhere": "other:set",
      "name": "rsscn7",
  }
  assert str(tmp_path) not in got["provenance"]["command"]
  assert got["provenance"]["command"].endswith(
      "--out other:o --q=shared:. --variant v:data.path=data:ms"
  )
  assert reporting.schedule_name(True) == "quick"
  assert reporting.schedule_name(False) == "full"
  assert reporting.schedule_name(True, steps=1200) == "steps1200"
  assert reporting.schedule_name(False, runlocal=True) == "runlocal"


def test_provenance_keeps_the_commit_the_run_started_from(monkeypatch):
  """A commit made while a sweep runs does not become its provenance: the
  state at import stays, the state at writing is added beside it."""
  from crossscale import reporting

  start = {"commit": "a" * 40, "dirty": False}
  monkeypatch.setattr(reporting, "START_GIT", start)
  monkeypatch.setattr(reporting, "git_state", lambda: dict(start))
  p = reporting.provenance()
  assert p["commit"] == "a" * 40 and "git_at_write" not in p
  later = {"commit": "b" * 40, "dirty": True}
  monkeypatch.setattr(reporting, "git_state", lambda: later)
  p = reporting.provenance()
  assert (p["commit"], p["dirty"]) == ("a" * 40, False)
  assert p["git_at_write"] == later
