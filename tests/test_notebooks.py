"""The notebooks in experiments/notebooks run top to bottom and are committed
without outputs.

Each notebook is executed headless (nbclient, the `python3` kernel of this
interpreter) from the repository root with CROSSSCALE_NOTEBOOK_SMALL=1: a tiny
toyworld, runlocal widths, a few steps. A cell that raises fails the test.
The three together must stay well under 90 s on 2 CPU cores: they run at
once in three kernels, with the suite's fast compiles and compilation cache
(tests/conftest.py; compile time dominates these tiny runs).
"""

import asyncio
import os
import time

import pytest

from tests import conftest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "experiments", "notebooks")
NOTEBOOKS = (
    "budget_sweep.ipynb",
    "predictor_ablation.ipynb",
    "sr_correlation.ipynb",
)
DEVICES = 2  # fake CPU devices of each kernel


def _read(name):
  with open(os.path.join(NOTEBOOK_DIR, name)) as f:
    return nbformat.read(f, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
  nb = _read(name)
  assert nb.metadata.kernelspec.name == "python3", name
  assert (
      nb.cells and nb.cells[0].cell_type == "markdown"
  ), f"{name}: the first cell should say what the notebook shows"
  for i, cell in enumerate(nb.cells):
    if cell.cell_type != "code":
      continue
    assert not cell.outputs and cell.execution_count is None, (
        f"{name}: cell {i} carries outputs; clear them before committing "
        f"(jupyter nbconvert --clear-output --inplace {name})"
    )
  assert any(
      "CROSSSCALE_NOTEBOOK_SMALL" in c.source for c in nb.cells
  ), f"{name}: no SMALL switch (CROSSSCALE_NOTEBOOK_SMALL)"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_opens_on_colab_and_installs_only_what_it_needs(name):
  """A Colab badge to this notebook; the set-up cell's REPO_URL is a form
  parameter, and it installs its NEEDS at requirements.txt's pins."""
  nb = _read(name)
  assert f"/blob/main/experiments/notebooks/{name})" in nb.cells[0].source
  setup = nb.cells[1].source
  assert 'REPO_URL = ""  # @param {type:"string"}' in setup
  scope = {}
  exec(setup.split("REPO = _find_repo()")[0], scope)  # pylint: disable=exec-used
  pins = scope["_pinned"](
      os.path.join(ROOT, "requirements.txt"), scope["NEEDS"]
  )
  assert len(pins) == len(scope["NEEDS"]), pins
  assert "jax>=0.10.2,<0.11" in pins and not any("pytest" in p for p in pins)


def _kernel_env(out: str) -> dict:
  """Environment of a notebook's kernel: SMALL mode, its outputs and
  datasets under `out`, and the suite's fast compiles and compilation cache
  (inherited; the notebooks share one model config, which compiles once),
  on 2 fake CPU devices."""
  # 2 fake devices (not the suite's 8): the mesh and the batch really split
  # over devices, at a fraction of 8 devices' compile time.
  return {
      **os.environ,
      "CROSSSCALE_NOTEBOOK_SMALL": "1",
      "CROSSSCALE_NOTEBOOK_OUT": out,
      "CROSSSCALE_DATA": os.path.join(out, "datasets"),
      "IPYTHONDIR": os.path.join(out, "ipython"),
      "JAX_PLATFORMS": "cpu",
      "XLA_FLAGS": conftest.xla_flags(devices=DEVICES),
  }


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """Runs every notebook at once, each in its own kernel (a process: XLA
  compiles are mostly single-threaded, so 2 cores run two at a time).
  Returns {name: (output dir, the exception or None)}."""
  base = tmp_path_factory.mktemp("notebooks")
  runs = {}
  for name in NOTEBOOKS:
    out = str(base / name.removesuffix(".ipynb"))
    os.makedirs(out)
    client = nbclient.NotebookClient(
        _read(name),
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": ROOT}},
    )
    runs[name] = (out, client)

  t0 = time.perf_counter()

  async def run(name, out, client):
    try:
      await client.async_execute(env=_kernel_env(out))
      error = None
    except Exception as e:  # pylint: disable=broad-except
      error = e
    print(f"{name}: {time.perf_counter() - t0:.1f} s")
    return error

  async def run_all():
    return await asyncio.gather(
        *(run(name, out, client) for name, (out, client) in runs.items())
    )

  with pytest.MonkeyPatch.context() as mp:  # kernel connection files
    mp.setenv("JUPYTER_RUNTIME_DIR", str(base / "jupyter_runtime"))
    errors = asyncio.run(run_all())
  return {
      name: (out, error)
      for (name, (out, _)), error in zip(runs.items(), errors)
  }


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, executed):
  out, error = executed[name]
  if error is not None:
    pytest.fail(
        f"{name} failed (run with CROSSSCALE_NOTEBOOK_SMALL=1 to "
        f"reproduce):\n{error}"
    )
  # It wrote its table (json) and plot (png) into its output dir.
  written = sorted(os.listdir(out))
  assert any(f.endswith(".png") for f in written), (name, written)
  assert any(f.endswith(".json") for f in written), (name, written)
