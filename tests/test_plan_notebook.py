"""experiments/notebooks/acquisition_plan.ipynb: committed without outputs
(default suite) and run headless in SMALL mode (slow: it trains a few steps,
then plans over the shared NAIP raster)."""

import os

import pytest

from tests import conftest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

PATH = os.path.join(
    conftest.ROOT, "experiments", "notebooks", "acquisition_plan.ipynb"
)


def test_committed_without_outputs():
  nb = nbformat.read(PATH, as_version=4)
  assert nb.cells[0].cell_type == "markdown"
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code)
  assert any("CROSSSCALE_NOTEBOOK_SMALL" in c.source for c in code)


@pytest.mark.slow  # ~1 min: trains 4 steps, plans all of the NAIP raster
def test_notebook_runs(shared_data, tmp_path, monkeypatch):
  del shared_data  # skips without the real rasters
  monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "rt"))
  env = {
      **os.environ,
      "CROSSSCALE_NOTEBOOK_SMALL": "1",
      "CROSSSCALE_NOTEBOOK_OUT": str(tmp_path),
      "CROSSSCALE_DATA": str(tmp_path / "datasets"),
      "IPYTHONDIR": str(tmp_path / "ipython"),
      "JAX_PLATFORMS": "cpu",
      "XLA_FLAGS": conftest.xla_flags(devices=2),
  }
  client = nbclient.NotebookClient(
      nbformat.read(PATH, as_version=4),
      kernel_name="python3",
      timeout=600,
      resources={"metadata": {"path": conftest.ROOT}},
  )
  client.execute(env=env)
  assert os.path.getsize(tmp_path / "plan" / "plan.png") > 10_000
  assert os.path.exists(tmp_path / "acquisition_plan.json")
