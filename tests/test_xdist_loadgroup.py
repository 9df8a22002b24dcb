"""tests/xdist_loadgroup.py: a worker that dies mid-run under
`--dist loadgroup` (a C++ abort, or pytest-timeout ending a stuck test)
costs the test it was running, never the rest of the run (xdist 3.8.0's
own scheduler hangs until killed here)."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SUITE = {
    "test_a.py": """
        import time
        def test_a1(): time.sleep(0.3)
        def test_a2(): pass
        def test_a3(): pass
    """,
    # One group whose second test aborts the worker (as XLA's C++ would).
    "test_b.py": """
        import os, time, pytest
        group = pytest.mark.xdist_group("b")
        @group
        def test_b1(): time.sleep(0.2)
        @group
        def test_b2(): os.abort()
        @group
        def test_b3(): pass
        @group
        def test_b4(): pass
    """,
    # A stuck test: pytest-timeout (thread method, as pytest.ini sets it)
    # prints its stacks and ends its worker.
    "test_c.py": """
        import time, pytest
        def test_c1(): time.sleep(0.5)
        @pytest.mark.timeout(2)
        def test_c2(): time.sleep(600)
        def test_c3(): pass
    """,
}


def test_a_crashed_worker_costs_one_test(tmp_path):
  for name, body in SUITE.items():
    (tmp_path / name).write_text(textwrap.dedent(body))
  (tmp_path / "pytest.ini").write_text("[pytest]\n")
  env = {**os.environ, "PYTHONPATH": ROOT}
  done = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup"]
      + ["-p", "tests.xdist_loadgroup", "-p", "no:cacheprovider"]
      + ["-p", "no:benchmark", "-o", "timeout_method=thread", str(tmp_path)],
      cwd=tmp_path,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
  )
  out = done.stdout + done.stderr
  assert done.returncode == 1, out[-3000:]
  assert "crashed while running 'test_b.py::test_b2@b'" in out, out[-3000:]
  assert "crashed while running 'test_c.py::test_c2'" in out, out[-3000:]
  # Each dead worker's test is reported once and not rerun; the rest ran.
  assert "2 failed, 8 passed" in out, out[-3000:]
