"""The layout's rules, checked on the source tree (no imports of the code).

- the library (crossscale/) imports nothing of data/, experiments/,
  benchmarks/, at any depth (imports inside functions count);
- no two modules import each other, directly or through others;
- no source file is over 700 lines; the root README is at most 250;
- every `python -m MODULE` and `--config FILE[:ARG]` named in a README or
  docs/ page names a module and a config that exist, and the config accepts
  the arg.
"""

import ast
import importlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("crossscale", "data", "experiments", "benchmarks")
MAX_LINES = 700


def _modules() -> dict[str, str]:
  """{dotted module name: path} of every .py file of the packages and
  launch.py."""
  out = {"launch": os.path.join(ROOT, "launch.py")}
  for top in PACKAGES:
    for d, _, files in os.walk(os.path.join(ROOT, top)):
      for f in files:
        if f.endswith(".py"):
          rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3]
          name = rel.replace(os.sep, ".").removesuffix(".__init__")
          out[name] = os.path.join(d, f)
  return out


MODULES = _modules()


def _local(name: str) -> str | None:
  while name and name not in MODULES:
    name = name.rpartition(".")[0]
  return name or None


def _imports(path: str) -> set[str]:
  """Repo modules imported anywhere in the file (function bodies too)."""
  out = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [
          f"{node.module}.{a.name}"
          if f"{node.module}.{a.name}" in MODULES
          else node.module
          for a in node.names
      ]
    out.update(t for t in map(_local, names) if t)
  return out


GRAPH = {m: _imports(p) - {m} for m, p in MODULES.items()}


def test_the_library_imports_nothing_above_it():
  upward = sorted(
      f"{m} -> {t}"
      for m, targets in GRAPH.items()
      if m.split(".")[0] == "crossscale"
      for t in targets
      if t.split(".")[0] != "crossscale"
  )
  assert not upward, "crossscale/ must import only itself:\n" + "\n".join(
      upward
  )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_cycle_finder_sees_a_cycle():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
      ["a", "b", "c"]
  ]


def test_no_import_cycles():
  assert not _cycles(GRAPH)


def test_no_source_file_over_the_limit():
  paths = list(MODULES.values())
  paths += [
      os.path.join(d, f)
      for d, _, fs in os.walk(os.path.join(ROOT, "tests"))
      for f in fs
      if f.endswith(".py")
  ]
  long = sorted(
      f"{os.path.relpath(p, ROOT)}: {n} lines"
      for p in paths
      if (n := sum(1 for _ in open(p))) > MAX_LINES
  )
  assert not long, f"over {MAX_LINES} lines (split by what they hold):\n" + (
      "\n".join(long)
  )


def _markdown_files() -> list[str]:
  out = [os.path.join(ROOT, "README.md")]
  for top in ("docs", "experiments", "benchmarks"):
    for d, _, fs in os.walk(os.path.join(ROOT, top)):
      out += [os.path.join(d, f) for f in fs if f.endswith(".md")]
  return sorted(p for p in out if os.path.exists(p))


def test_root_readme_is_a_door():
  n = sum(1 for _ in open(os.path.join(ROOT, "README.md")))
  assert n <= 250, f"README.md has {n} lines; results go to project READMEs"


def _commands(pattern: str) -> list[tuple[str, str]]:
  found = []
  for path in _markdown_files():
    for m in re.finditer(pattern, open(path).read()):
      found.append((os.path.relpath(path, ROOT), m.group(1)))
  return sorted(set(found))


@pytest.mark.parametrize(
    "where,module",
    _commands(
        r"python3? -m ((?:crossscale|data|experiments|"
        r"benchmarks)(?:\.\w+)*)"
    ),
)
def test_documented_modules_exist(where, module):
  assert (
      module in MODULES
      or module + ".__main__" in MODULES
      or (os.path.exists(os.path.join(ROOT, *module.split("."), "__main__.py")))
  ), f"{where} names `python -m {module}`, which does not exist"


@pytest.mark.parametrize(
    "where,config",
    _commands(r"--config[ =](experiments/configs/[\w]+\.py" r"(?::[\w=,.]+)?)"),
)
def test_documented_configs_load(where, config):
  path, _, arg = config.partition(":")
  assert os.path.exists(os.path.join(ROOT, path)), f"{where}: no {path}"
  module = importlib.import_module(path[:-3].replace("/", "."))
  c = module.get_config(arg or None)
  assert "model" in c or "task" in c, f"{where}: {config} built no config"
