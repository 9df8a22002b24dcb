"""`--dist loadgroup` that survives a crashed worker (a pytest plugin).

pytest-xdist 3.8.0 (the newest the registry has) hangs the whole run once
a worker dies mid-test under loadgroup/loadscope (pytest-xdist #1323,
#1327, #1378): the dead node's whole workload, finished groups included,
goes back on the queue, so empty groups and the crashed test are handed
out again, and a replacement worker given a single test waits forever for
a second one. One CI run died so: a worker aborted, the rest of the run
waited until the 90-minute limit. This scheduler requeues only the dead
node's unfinished tests (not the one it crashed on: xdist has reported it
failed), never hands out an empty group and always leaves a worker either
two tests or the shutdown signal. Drop it for an xdist release with those
fixes.
"""

from __future__ import annotations

from xdist.scheduler import LoadGroupScheduling


class CrashSafeLoadGroupScheduling(LoadGroupScheduling):
  """LoadGroupScheduling whose crash recovery cannot deadlock."""

  def remove_node(self, node):
    """Drops `node`; returns the test it crashed on (None if it had no
    pending test), requeueing its other unfinished tests by group."""
    workload = self.assigned_work.pop(node)
    pending = {
        scope: [t for t, done in unit.items() if not done]
        for scope, unit in workload.items()
    }
    pending = {scope: tests for scope, tests in pending.items() if tests}
    if not pending:
      return None
    crashitem = next(iter(pending.values()))[0]
    for scope, tests in pending.items():
      rest = {t: False for t in tests if t != crashitem}
      if rest:
        self.workqueue[scope] = rest
    for other in self.assigned_work:
      self._reschedule(other)
    return crashitem

  def _assign_work_unit(self, node):
    """Hands `node` the next group that still has tests to run."""
    while self.workqueue:
      scope, unit = self.workqueue.popitem(last=False)
      collection = self.registered_collections[node]
      indexes = [collection.index(t) for t, done in unit.items() if not done]
      if indexes:
        self.assigned_work.setdefault(node, {})[scope] = unit
        node.send_runtest_some(indexes)
        return

  def _reschedule(self, node):
    """Tops `node` up to two pending tests, or tells it to shut down once
    the queue is empty (a worker runs a test only when it knows the next
    one or that there is none)."""
    if node.shutting_down:
      return
    if self.workqueue and self._pending_of(self.assigned_work[node]) <= 2:
      self._assign_work_unit(node)
      while self.workqueue and self._pending_of(self.assigned_work[node]) < 2:
        self._assign_work_unit(node)
    if not self.workqueue:
      node.shutdown()


def pytest_xdist_make_scheduler(config, log):
  """The crash-safe scheduler for `--dist loadgroup`; xdist's otherwise."""
  if config.getvalue("dist") == "loadgroup":
    return CrashSafeLoadGroupScheduling(config, log)
  return None
