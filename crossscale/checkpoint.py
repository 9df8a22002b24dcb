"""orbax checkpoints of the train state and the data iterator's position.

One checkpoint = {"state": the TrainState pytree, "data": the Grain iterator
state (JSON)}. Saves are asynchronous, every `save_every` steps (or forced,
e.g. on SIGTERM), keeping the newest `keep`. Restoring into an abstract state
with shardings places every array directly on the current mesh, which may
differ from the mesh it was saved from.

Many processes: every process calls the same saves and restores; the
checkpoint is one orbax checkpoint of the global arrays (each process writes
its shards; the data position, the same on every process, is written by
process 0). A save is complete only once orbax commits it (renames its
temporary directory), so a process that dies mid-save leaves no partial
checkpoint that a resume would take; `close` (every exit path of the
training loop) waits for the save in flight. Barriers, orbax's included,
time out after `distributed.SETTINGS.barrier_timeout_s` with an error naming
the processes that did not arrive.

A save killed mid-write leaves its temporary directory
(`<step>.orbax-checkpoint-tmp`), which orbax replaces only when that step is
saved again (a SIGTERM save off the checkpoint interval never is). Process 0
removes every such directory when the Checkpointer starts, before any
process restores or saves (the trainer's "restore" barrier follows);
committed steps are never touched (orbax never gives them that name).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from crossscale import distributed

# In the name of every uncommitted orbax save (step dir or item dir).
TMP_MARK = ".orbax-checkpoint-tmp"

# orbax splits each replicated array into one slice per replica and has
# every replica write its slice ("replica-parallel"), each slice a compiled
# program: for small arrays that costs far more than it writes (on 8
# devices, 8.5 of the 25 s of a 10-step refseg run, 358 compilations).
# In a one-process run, arrays whose per-replica slice would be under this
# many bytes are written whole by one replica; large ones still split. Runs
# of many processes keep orbax's default (every replica writes a slice).
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 4 << 20


def _save_small_arrays_whole() -> None:
  """Registers orbax's jax.Array handler with the threshold above, keeping
  its other settings (idempotent; one-process runs only)."""
  if jax.process_count() > 1:
    return
  h = ocp.type_handlers.get_type_handler(jax.Array)
  want = MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL
  if getattr(h, "_min_slice_bytes_for_replica_parallel", None) == want:
    return
  quiet = logging.get_verbosity()  # orbax warns of every override
  logging.set_verbosity(logging.ERROR)
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array,
        ocp.type_handlers.ArrayHandler(
            min_slice_bytes_for_replica_parallel=want,
            array_metadata_store=getattr(h, "_array_metadata_store", None),
        ),
        override=True,
    )
  finally:
    logging.set_verbosity(quiet)


class Checkpointer:

  def __init__(
      self,
      directory: str,
      save_every: int,
      keep: int = 3,
      async_save: bool = True,
  ):
    self.directory = os.path.abspath(directory)
    self._closed = False
    if jax.process_index() == 0 and (
        stale := remove_uncommitted(self.directory)
    ):
      print(
          f"removed {len(stale)} uncommitted checkpoint save(s) of a killed "
          f"run from {self.directory}: {', '.join(stale)}",
          flush=True,
      )
    _save_small_arrays_whole()
    async_options = None
    if jax.process_count() > 1:  # commit barriers that time out, named
      _use_barriers_with_timeouts()
      async_options = ocp.options.AsyncOptions(
          timeout_secs=distributed.SETTINGS.barrier_timeout_s,
          barrier_sync_fn=distributed.orbax_barrier,
      )
    self._mngr = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            save_interval_steps=save_every,
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
            async_options=async_options,
        ),
    )

  def latest_step(self) -> int | None:
    """The newest committed step (a save in flight is not one)."""
    return self._mngr.latest_step()

  def save(
      self, step: int, state: Any, data_state: dict | None, force: bool = False
  ) -> bool:
    """Saves if `step` is on the interval (or `force`); returns whether.
    A step that is already saved is not saved again."""
    if step == self.latest_step():
      return False
    return self._mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state or {}),
        ),
        force=force,
    )

  def restore(
      self, abstract_state: Any, step: int | None = None
  ) -> tuple[Any, dict]:
    """Restores (state, data_state) of `step` (default: latest).

    `abstract_state` is a pytree of jax.ShapeDtypeStruct with shardings.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    out = self._mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(),
        ),
    )
    return out["state"], dict(out["data"] or {})

  def wait(self) -> None:
    """Blocks until the save in flight (if any) is committed."""
    self._mngr.wait_until_finished()

  def close(self) -> None:
    """Waits for the save in flight and closes (again: a no-op)."""
    if self._closed:
      return
    self._closed = True
    self._mngr.wait_until_finished()
    self._mngr.close()


def remove_uncommitted(directory: str) -> list[str]:
  """Removes the temporary directories of saves that never committed (a
  process killed mid-write) from `directory`; returns their names. Call it
  only while no save is in flight (at start-up, on one process)."""
  if not os.path.isdir(directory):
    return []
  stale = sorted(n for n in os.listdir(directory) if TMP_MARK in n)
  for name in stale:
    shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
  return stale


def _use_barriers_with_timeouts() -> None:
  """orbax's synchronous barriers (save start, restore, ...) through the
  coordination service, which times out, instead of a collective, which
  waits for ever (orbax's `experimental_orbax_use_distributed_barrier`)."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  if "experimental_orbax_use_distributed_barrier" in flags.FLAGS:
    flags.FLAGS.experimental_orbax_use_distributed_barrier = True


def abstract_with_shardings(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `tree` carrying `shardings` (for restore)."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree,
      shardings,
  )


# --- Parameters of one run initialising another -------------------------------
# Pretrained encoders reach other models by config (`config.model_init`,
# `model.perceptual_init`, `model.backbone_init`); all read them here.


def flatten_params(tree: Any) -> dict[str, np.ndarray]:
  """{"a/b/kernel": array} of a nested params tree (host numpy)."""
  return {
      "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
      for path, v in jax.tree_util.tree_leaves_with_path(tree)
  }


def unflatten_params(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, v in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = np.asarray(v)
  return tree


def save_params_npz(path: str, params: Any) -> None:
  """Writes a params tree as an .npz of flat "a/b/kernel" arrays."""
  np.savez(path, **flatten_params(params))


def _state_item(path: str) -> str:
  """The orbax "state" item for a run workdir, its checkpoints/ dir, a step
  dir or the item itself (newest step where a directory holds several)."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, "checkpoints")):
    path = os.path.join(path, "checkpoints")
  steps = [d for d in os.listdir(path) if d.isdigit()]
  if steps:
    path = os.path.join(path, max(steps, key=int))
  item = os.path.join(path, "state")
  return item if os.path.isdir(item) else path


def _restore_on_one_device(item: str) -> Any:
  """The pytree saved at `item`, restored onto this process's first device
  whatever mesh and process count wrote it."""
  ckptr = ocp.StandardCheckpointer()
  meta = ckptr.metadata(item).item_metadata
  one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta
  )
  return ckptr.restore(item, target)


def load_params(path: str, config_key: str) -> dict:
  """The params tree (host numpy) of a run of ours at `path`: its workdir
  (newest checkpoint), checkpoints/ dir, step dir or "state" item, or an
  .npz of flat "a/b/kernel" arrays. `config_key` names the setting in
  errors."""
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{config_key}={path!r} does not exist: pass a run's workdir (or "
        "workdir/checkpoints/<step>), an .npz of params, or '' for none."
    )
  if path.endswith(".npz"):
    with np.load(path) as f:
      return unflatten_params(dict(f))
  item = _state_item(path)
  try:
    tree = _restore_on_one_device(item)
  except Exception as e:  # orbax raises several types for a non-checkpoint
    raise ValueError(
        f"{config_key}={path!r}: {item} is not an orbax "
        f"checkpoint of ours ({type(e).__name__}: {e})."
    ) from e
  params = tree.get("params", tree) if isinstance(tree, dict) else {}
  return jax.tree.map(np.asarray, params)


def load_subtree(path: str, key: str, config_key: str) -> dict:
  """`params[key]` of the run at `path` (see `load_params`); an .npz without
  a `key` entry is taken as that subtree itself (`save_params_npz` of it)."""
  params = load_params(path, config_key)
  if path.endswith(".npz") and key not in params:
    return params
  if key not in params:
    raise ValueError(
        f"{config_key}={path!r}: the checkpoint has no '{key}' "
        f"parameters (it has {sorted(params)[:8]}): pass a run "
        f"of a model with a '{key}' module."
    )
  return params[key]


def replace_checked(current: Any, new: Any, where: str) -> Any:
  """`new` cast to `current`'s dtypes, after checking that the two trees
  have the same parameter names and shapes."""
  cur, got = flatten_params(current), flatten_params(new)
  missing, extra = sorted(set(cur) - set(got)), sorted(set(got) - set(cur))
  if missing or extra:
    raise ValueError(
        f"{where}: parameters do not match the model (missing {missing[:4]}, "
        f"unexpected {extra[:4]}): the checkpoint's architecture (widths, "
        "depths, band count) must match the config."
    )
  for k, v in cur.items():
    if v.shape != got[k].shape:
      raise ValueError(
          f"{where}: parameter {k} has shape {got[k].shape}, the model "
          f"expects {v.shape}: the checkpoint was made with another "
          "architecture (widths, depths, stride, band count) than the config."
      )
  return jax.tree.map(
      lambda c, n: np.asarray(n, np.asarray(c).dtype),
      current,
      unflatten_params(got),
  )


def init_from(params: dict, path: str, keys: Any, config_key: str) -> dict:
  """`params` with subtrees copied from the run at `path`.

  `keys`: names present in both (("lr_encoder", "hr_encoder")) or (ours,
  theirs) pairs; shapes are checked.
  """
  src = load_params(path, config_key)
  out = dict(params)
  for k in keys:
    ours, theirs = (k, k) if isinstance(k, str) else tuple(k)
    if ours not in params:
      raise ValueError(
          f"{config_key}: the model has no '{ours}' parameters "
          f"to initialise (it has {sorted(params)[:8]})."
      )
    if theirs not in src:
      raise ValueError(
          f"{config_key}={path!r}: the checkpoint has no "
          f"'{theirs}' parameters (it has {sorted(src)[:8]})."
      )
    out[ours] = replace_checked(
        params[ours], src[theirs], f"{config_key}={path!r} ({theirs} -> {ours})"
    )
  return out
