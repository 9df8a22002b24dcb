"""orbax checkpoints of the train state and the data iterator's position.

One checkpoint = {"state": the TrainState pytree, "data": the Grain iterator
state (JSON)}. Saves are asynchronous, every `save_every` steps (or forced,
e.g. on SIGTERM), keeping the newest `keep`. Restoring into an abstract state
with shardings places every array directly on the current mesh, which may
differ from the mesh it was saved from.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:

  def __init__(self, directory: str, save_every: int, keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self._mngr = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            save_interval_steps=save_every, max_to_keep=keep,
            enable_async_checkpointing=async_save))

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def save(self, step: int, state: Any, data_state: dict | None,
           force: bool = False) -> bool:
    """Saves if `step` is on the interval (or `force`); returns whether.
    A step that is already saved is not saved again."""
    if step == self.latest_step():
      return False
    return self._mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state or {})), force=force)

  def restore(self, abstract_state: Any,
              step: int | None = None) -> tuple[Any, dict]:
    """Restores (state, data_state) of `step` (default: latest).

    `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    out = self._mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore()))
    return out["state"], dict(out["data"] or {})

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def abstract_with_shardings(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `tree` carrying `shardings` (for restore)."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree, shardings)
