"""The training loop: one for every model family.

`train_and_evaluate(config, workdir)` builds the mesh, data, model and
optimizer from the config, initialises the parameters (scratch; then the
model's own `load_pretrained`, e.g. frozen MiniLM; then `config.model_init`,
subtrees `config.model_init_keys` of another run, e.g. pretrained encoders),
resumes from the newest checkpoint in `workdir` if there is one (state, RNG
and data position: it wins over every initialisation), trains with a jitted
sharded `train_step(state, batch, rng) -> (state, metrics)`, evaluates
periodically
and at the end, and returns the final metrics. SIGTERM saves a checkpoint at
the current step and returns; a non-finite loss stops with the step. Every
exit (end, SIGTERM, exception) waits for the checkpoint save in flight.
The final eval (`config.final_eval_split`) also writes each scene's logits
and labels to `PREDICTIONS` in the workdir.

Many processes (`crossscale.distributed`, docs/multihost.md): each reads its
slice of every global batch; SIGTERM reaching any process stops all at the
same step; the resume and the end wait at barriers that time out naming the
process that did not arrive; the data position is global, so a run resumes
on another process count.

`fit_arrays(model, params, arrays, ...)` runs the same train step over
in-memory arrays (random batches, optional flips; no checkpoints or evals):
for sweeps that train many small models, e.g. experiments/sr_bench.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from crossscale import (
    budgets,
    checkpoint,
    distributed,
    evaluators,
    input_pipeline,
    logging_utils,
    models,
    optim,
    partitioning,
    run_config,
    shards,
)
from crossscale import metrics as metrics_lib

# Per-scene final-eval outputs in the workdir ("logits", "labels": [n, K],
# record order), formatted with the split: paired comparisons read them.
PREDICTIONS = "final_{}_predictions.npz"


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 []
  params: Any
  opt_state: Any
  rng: jax.Array  # uint32 [2]: base key; step keys are fold_in(rng, step)


def make_model(config, manifest: shards.Manifest):
  """The model named by `config.model.name`, with `config.model`'s fields
  plus what the dataset decides (`num_classes`, `grid`; `head_type` "auto",
  `sampler_target.completion` -1) where it has them."""
  kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  fields = models.field_names(config.model.name)
  run_config.check_labelled(config, manifest, fields)
  if "budget_tiles" in kwargs:  # a tile count (>= 0) replaces the ratio
    kwargs = budgets.resolve_tiles(kwargs, kwargs.get("grid") or manifest.grid)
  from_data = {
      "num_classes": manifest.num_classes,
      "grid": manifest.grid,
      "class_names": tuple(manifest.class_names),
  }
  kwargs.update(
      {k: v for k, v in from_data.items() if k in fields and k not in kwargs}
  )
  kwargs.update(scale_fields(kwargs, fields, manifest))
  if kwargs.get("gsd_positions") and not manifest.gsd_known:
    print(
        f"note: {manifest.name!r} records carry no GSD in metres; ground "
        "positions count HR pixels (hr_gsd 1.0) instead.",
        flush=True,
    )
  if kwargs.get("head_type") == "auto":  # cross_scale: MIL for multi-label
    kwargs["head_type"] = "mil" if manifest.multi_label else "map"
  target = kwargs.get("sampler_target") or {}
  if target.get("completion", 0.0) < 0:  # cross_scale: -1 = by the labels
    kwargs["sampler_target"] = {
        **target,
        "completion": 1.0 if manifest.multi_label else 0.0,
    }
  return models.get_model(config.model.name, **kwargs)


def scale_fields(kwargs: dict, fields, manifest: shards.Manifest) -> dict:
  """The manifest's GSDs and band names for the model fields `lr_gsd`,
  `hr_gsd` (0: unset), `lr_bands`, `hr_bands` (empty: unset) the config
  leaves unset (issue 22)."""
  return {
      f: (tuple(v) if isinstance(v, list) else float(v))
      for f, v in (
          ("lr_gsd", manifest.lr_gsd),
          ("hr_gsd", manifest.hr_gsd),
          ("lr_bands", manifest.lr_bands),
          ("hr_bands", manifest.hr_bands),
      )
      if f in fields and not kwargs.get(f)
  }


def example_batch(manifest: shards.Manifest, fields, batch_size: int):
  """Zeros shaped like one global batch (for init and lowering)."""
  shapes = {
      "lr": manifest.lr_shape,
      "hr": manifest.hr_shape,
      "labels": [manifest.num_classes],
  }
  out = {}
  for f in fields:
    if f in input_pipeline.TEXT_FIELDS:  # token ids / attention mask
      out[f] = jnp.zeros([batch_size, input_pipeline.TEXT_MAX_LEN], jnp.int32)
    elif f.startswith("mask_"):
      out[f] = jnp.zeros([batch_size] + manifest.hr_shape[:2], jnp.uint8)
    elif f in input_pipeline.GSD_FIELDS:  # [B] metres per pixel
      out[f] = jnp.full([batch_size], getattr(manifest, f), jnp.float32)
    else:
      out[f] = jnp.zeros([batch_size] + list(shapes[f]), jnp.float32)
  return out


def make_train_step(
    model,
    tx: optax.GradientTransformation,
    task: str,
    aux_weights: dict[str, float],
) -> Callable:
  """Pure `train_step(state, batch, rng) -> (state, metrics)`."""

  def train_step(state: TrainState, batch, rng):
    def loss_fn(params):
      dropout_rng, selection_rng = jax.random.split(rng)
      out = model.apply(
          {"params": params},
          batch,
          train=True,
          rngs={"dropout": dropout_rng, "selection": selection_rng},
      )
      # Models with logits get the task loss; others (SR, segmentation)
      # bring every loss term in "aux_losses".
      logits = out.get("logits")
      task_l = (
          metrics_lib.task_loss(logits, batch["labels"], task)
          if logits is not None
          else jnp.zeros((), jnp.float32)
      )
      aux = {
          k: v * aux_weights.get(k, 1.0) for k, v in out["aux_losses"].items()
      }
      return task_l + sum(aux.values()), (task_l, aux, logits)

    (loss, (task_l, aux, logits)), grads = jax.value_and_grad(
        loss_fn, has_aux=True
    )(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    m = {
        "loss": loss,
        "task_loss": task_l,
        "grad_norm": optax.tree.norm(grads),
        **{f"aux_{k}": v for k, v in aux.items()},
    }
    if task == "single_label" and logits is not None:
      m["accuracy"] = metrics_lib.correct(logits, batch["labels"]).mean()
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state
    )
    return new_state, m

  return train_step


def task_of(config, manifest: shards.Manifest) -> str:
  """`config.task`, with "auto" resolved to the data's classification task
  (`manifest.task`); a single-label task on multi-label data is an error."""
  task = config.task
  if task == "auto":
    return manifest.task
  if task == "single_label" and manifest.multi_label:
    raise ValueError(
        f"config.task='single_label', but dataset {manifest.name!r} is "
        "multi-label (scenes with several labels): set config.task to "
        "'auto' or 'multi_label'."
    )
  return task


def jit_train_step(config, model, tx, mesh, state_sh, task=None) -> Callable:
  """The train step jitted once with explicit shardings; the state is
  donated. `task`: `task_of(config, manifest)` (needed when config.task is
  "auto")."""
  task = task or config.task
  if task == "auto":
    raise ValueError(
        "config.task='auto' is resolved from the data: pass "
        "task=train.task_of(config, manifest) to jit_train_step"
    )
  return jax.jit(
      make_train_step(model, tx, task, dict(config.get("aux_weights", {}))),
      in_shardings=(
          state_sh,
          partitioning.batch_sharding(mesh),
          partitioning.replicated(mesh),
      ),
      out_shardings=(state_sh, partitioning.replicated(mesh)),
      donate_argnums=(0,),
  )


def init_state(config, model, tx, batch, mesh) -> tuple[TrainState, Any]:
  """Initialises the state directly into its shardings (nothing is
  materialised on one device first): parameters and optimizer moments are
  sharded by their logical axis names (`sharding_rules(config)`).
  Returns (state, state_shardings)."""

  def boxed_init(rng):
    params_rng, state_rng = jax.random.split(rng)
    params = model.init({"params": params_rng}, batch, train=False).get(
        "params", {}
    )  # {}: no parameters
    # The optimizer state mirrors the boxed params, names included.
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=state_rng,
    )

  rng = jax.random.key_data(jax.random.key(config.seed))
  shardings = partitioning.tree_shardings(
      jax.eval_shape(boxed_init, rng), mesh, sharding_rules(config)
  )
  init = lambda rng: nn.meta.unbox(boxed_init(rng))
  state = jax.jit(init, out_shardings=shardings)(rng)
  params = None
  if hasattr(model, "load_pretrained"):  # e.g. frozen pretrained encoders
    params = model.load_pretrained(jax.device_get(state.params))
  if config.get("model_init"):  # e.g. encoders of a pretraining run
    params = checkpoint.init_from(
        jax.device_get(state.params) if params is None else params,
        config.model_init,
        tuple(config.get("model_init_keys", ())),
        "config.model_init",
    )
  if params is not None:
    state = state.replace(params=jax.device_put(params, shardings.params))
  return state, shardings


def make_tx(config) -> optax.GradientTransformation:
  """The run's optimizer: `config.optim` (+ `model_init_lr_scale`) over
  `config.total_steps`. Everything restoring a run's opt_state uses this."""
  return optim.make_optimizer(optim_config(config), config.total_steps)


def optim_config(config) -> ml_collections.ConfigDict:
  """`config.optim`, with `config.model_init_lr_scale` (when a run starts
  from `config.model_init`) prepended to its `lr_scale` for every subtree
  in `config.model_init_keys`: pretrained parts fine-tune at a scaled LR."""
  scale = float(config.get("model_init_lr_scale", 1.0))
  if not config.get("model_init") or scale == 1.0:
    return config.optim
  cfg = config.optim.to_dict()
  cfg["lr_scale"] = tuple(
      (optim.subtree_regex(k), scale) for k in config.get("model_init_keys", ())
  ) + tuple(cfg.get("lr_scale", ()) or ())
  return ml_collections.ConfigDict(cfg)


def sharding_rules(config):
  """`config.sharding.rules` (logical axis -> mesh axes), else the default."""
  rules = config.get("sharding", {}).get("rules")
  return (
      tuple(
          (n, tuple(a) if isinstance(a, (list, tuple)) else a) for n, a in rules
      )
      if rules
      else partitioning.RULES
  )


def make_evals(
    config, model, *, data_dir, task, mesh, fields, split=None
) -> dict:
  """{name: evaluator} of `config.evals` (each: type, split, batch_size,
  limit, and any option of that evaluator, e.g. the SR evaluator's
  feature_init) over `data_dir`; `split` replaces every eval's split."""
  return {
      name: evaluators.get_evaluator(
          ev.type,
          model,
          data_dir=data_dir,
          split=split or ev.split,
          batch_size=ev.get("batch_size", config.batch_size),
          task=task,
          mesh=mesh,
          fields=fields,
          limit=ev.get("limit"),
          **{
              k: v
              for k, v in ev.items()
              if k not in ("type", "split", "batch_size", "limit")
          },
      )
      for name, ev in config.evals.items()
  }


def _eval_all(evals, params, step, writer) -> dict[str, dict[str, float]]:
  results = {}
  for name, ev in evals.items():
    res = ev.run(params)
    writer.write(step, name, res)
    results[name] = res
    if jax.process_index() == 0:
      print(
          f"eval {name} @ step {step}: "
          + " ".join(f"{k}={v:.4f}" for k, v in res.items()),
          flush=True,
      )
  return results


def _resume(
    ckpt: checkpoint.Checkpointer,
    state: TrainState,
    state_sh,
    config: ml_collections.ConfigDict,
    stored: dict | None,
) -> tuple[TrainState, dict]:
  """(state, data_state) of the newest checkpoint. A checkpoint that does not
  fit the model `config` builds is an error naming the config keys that
  changed since the run (its stored config.json) and the flags that set them
  back; a config that changed but still fits (e.g. more total_steps) is
  resumed with a note listing the changes."""
  changed = run_config.differences(stored, config) if stored else []
  try:
    state, data_state = ckpt.restore(
        checkpoint.abstract_with_shardings(state, state_sh)
    )
  except (ValueError, TypeError) as e:
    if changed:
      hint = (
          f"It was trained with another config:\n"
          f"{run_config.describe(stored, config, changed)}\n"
          "Resume it with the config it was trained with (with launch.py:"
          f" {run_config.restoring_flags(stored, config, changed)}), or "
          "train this config in a new --workdir."
      )
    else:
      hint = (
          "Its config.json is "
          + ("missing" if stored is None else "the same as this config")
          + ": the model code changed since "
          "it was written, or the checkpoint is damaged; train in a new "
          "--workdir."
      )
    raise ValueError(
        f"the checkpoints in {ckpt.directory} do not fit the "
        f"model of this config. {hint}"
    ) from e
  if jax.process_index() == 0:
    print(
        f"resumed from {ckpt.directory} at step {int(state.step)}", flush=True
    )
    if changed:
      print(
          "resumed with a config that differs from the one that trained "
          f"so far:\n{run_config.describe(stored, config, changed)}",
          flush=True,
      )
  return state, data_state


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str
) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming if it holds checkpoints)."""
  os.makedirs(workdir, exist_ok=True)
  stored = run_config.load_stored(workdir)  # the config that wrote the ckpts
  data_dir = config.data.path
  manifest = shards.load_manifest(data_dir)
  mesh = partitioning.make_mesh(config.mesh)
  if config.batch_size % partitioning.data_parallel_size(mesh):
    raise ValueError(
        f"config.batch_size={config.batch_size} must divide by "
        f"the data-parallel size {partitioning.data_parallel_size(mesh)}"
    )
  fields = tuple(config.data.fields)
  task = task_of(config, manifest)
  model = make_model(config, manifest)
  tx = make_tx(config)
  batch0 = example_batch(manifest, fields, config.batch_size)
  state, state_sh = init_state(config, model, tx, batch0, mesh)
  if jax.process_index() == 0:
    n = sum(x.size for x in jax.tree.leaves(state.params))
    print(
        f"model {config.model.name}: {n:,} parameters; mesh "
        f"{dict(mesh.shape)}; dataset {manifest.name} ({data_dir})",
        flush=True,
    )

  train_ds = input_pipeline.train_dataset(
      data_dir,
      batch_size=config.batch_size,
      seed=config.seed,
      fields=fields,
      augment=config.data.augment,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      worker_count=config.data.worker_count,
      num_threads=config.data.num_threads,
      verify=config.data.verify,
      gsd_augment=config.data.get("gsd_augment") or None,
      gsd_neighbours=config.data.get("gsd_neighbours", "random"),
      gsd_augment_prob=config.data.get("gsd_augment_prob", 1.0),
  )
  train_iter = iter(train_ds)
  data_spec = dict(
      batch_size=config.batch_size,
      process_count=jax.process_count(),
      worker_count=config.data.worker_count,
  )

  ckpt = checkpoint.Checkpointer(
      os.path.join(workdir, "checkpoints"),
      config.checkpoint.every,
      config.checkpoint.keep,
  )
  distributed.barrier("restore")
  distributed.check_same(  # every process sees one shared --workdir
      -1 if ckpt.latest_step() is None else ckpt.latest_step(),
      f"the newest checkpoint in {ckpt.directory} (-1: none)",
  )
  if ckpt.latest_step() is not None:
    state, data_state = _resume(ckpt, state, state_sh, config, stored)
    train_iter.set_state(input_pipeline.iterator_state(data_state, **data_spec))

  def position() -> dict:  # the data position saved with each checkpoint
    return input_pipeline.position(train_iter.get_state(), **data_spec)

  if jax.process_index() == 0:  # the run's config: read by crossscale.export
    with open(os.path.join(workdir, run_config.CONFIG_FILE), "w") as f:
      f.write(config.to_json_best_effort(indent=1))

  step_fn = jit_train_step(config, model, tx, mesh, state_sh, task)

  evals = make_evals(
      config, model, data_dir=data_dir, task=task, mesh=mesh, fields=fields
  )
  writer = logging_utils.MetricWriter(workdir)
  start = int(state.step)
  progress = logging_utils.Progress(config.total_steps, start)

  preempted = []
  prev_handler = signal.signal(
      signal.SIGTERM, lambda *_: preempted.append(True)
  )
  base_rng = jax.device_get(state.rng)
  pending = None  # (step, metrics) of the step before: checked one step late
  try:
    for step in range(start + 1, config.total_steps + 1):
      batch = partitioning.put_batch(next(train_iter), mesh)
      rng = jax.random.fold_in(base_rng, step)
      state, m = step_fn(state, batch, rng)
      if pending is not None:
        _check_finite(*pending)
      pending = (step, m)
      ckpt.save(step, state, position())
      if step % config.log_every == 0 or step == config.total_steps:
        scalars = {k: float(v) for k, v in jax.device_get(m).items()}
        scalars["steps_per_sec"] = progress.update(step, scalars)
        writer.write(step, "train", scalars)
      if step % config.eval_every == 0 and step < config.total_steps:
        _eval_all(evals, state.params, step, writer)
      if distributed.any_process(bool(preempted)):  # all stop at one step
        ckpt.save(step, state, position(), force=True)
        ckpt.wait()
        print(
            f"SIGTERM: saved step {step} to {ckpt.directory}; relaunch "
            "the same command to resume.",
            flush=True,
        )
        return {"preempted_at": step}
    if pending is not None:
      _check_finite(*pending)
    final = _eval_all(evals, state.params, config.total_steps, writer)
    if config.get("final_eval_split"):
      final["final"], outputs = evaluators.final_eval(
          model,
          state.params,
          data_dir=data_dir,
          split=config.final_eval_split,
          batch_size=config.batch_size,
          task=task,
          mesh=mesh,
          fields=fields,
      )
      if jax.process_index() == 0:  # per-scene, for paired comparisons
        evaluators.save_predictions(
            os.path.join(workdir, PREDICTIONS.format(config.final_eval_split)),
            outputs,
        )
      writer.write(
          config.total_steps, f"final_{config.final_eval_split}", final["final"]
      )
      if jax.process_index() == 0:
        print(
            f"final eval ({config.final_eval_split}): "
            + " ".join(f"{k}={v:.4f}" for k, v in final["final"].items()),
            flush=True,
        )
    final["steps_per_sec"] = progress.steps_per_sec(config.total_steps)
    if jax.process_index() == 0:
      with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
        json.dump(final, f, indent=1)
    ckpt.save(config.total_steps, state, position(), force=True)
    ckpt.wait()
    distributed.barrier("end")
    return final
  except BaseException:
    _close_after_error(ckpt)
    raise
  finally:
    signal.signal(signal.SIGTERM, prev_handler)
    ckpt.close()  # waits for the save in flight
    writer.close()


def _close_after_error(ckpt: checkpoint.Checkpointer) -> None:
  """Closes `ckpt` (waiting for the save in flight) before an error
  propagates; a failure to finish it (e.g. another process is gone) is
  reported, not raised over the error."""
  try:
    ckpt.close()
  except Exception as e:  # pylint: disable=broad-exception-caught
    print(
        f"process {jax.process_index()}: the checkpoint save in flight did "
        f"not finish ({type(e).__name__}: {e}); resuming takes the newest "
        f"complete one in {ckpt.directory}.",
        flush=True,
    )


def _check_finite(step: int, m) -> None:
  loss = float(m["loss"])
  if not np.isfinite(loss):
    raise FloatingPointError(
        f"loss is {loss} at step {step}: training stopped. Check the data "
        "(non-finite pixels pass the builders' checks only if validation was "
        "bypassed) or lower config.optim.lr; resume from the last checkpoint."
    )


# ------------------------------------------------- training on in-memory arrays


def init_params(model: nn.Module, *args, seed: int = 0):
  """Parameters of `model` without compiling its init (XLA:CPU takes
  seconds per threefry-initialised tree): shapes from eval_shape, normal
  kernels with std 1/sqrt(fan_in) (LeCun), zero biases, unit norm scales,
  N(0, 0.02) relative position biases."""
  shapes = nn.meta.unbox(
      jax.eval_shape(lambda: model.init(jax.random.key(0), *args)).get(
          "params", {}
      )
  )
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      qkv = any(f"['{k}']" in name for k in ("query", "key", "value"))
      fan_in = s.shape[0] if qkv else int(np.prod(s.shape[:-1]))
      return rng.normal(0, fan_in**-0.5, s.shape).astype(s.dtype)
    if "relative_position_bias" in name:
      return rng.normal(0, 0.02, s.shape).astype(s.dtype)
    return np.full(s.shape, 1.0 if name.endswith("['scale']") else 0.0, s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def random_flips(batch: dict, rng: np.random.Generator) -> dict:
  """The same random horizontal/vertical flips of every spatial array
  `[B, H, W, ...]` of `batch` (arrays with fewer axes pass unchanged)."""
  out = dict(batch)
  for axis in (1, 2):
    if rng.uniform() < 0.5:
      out = {
          k: (np.flip(v, axis) if v.ndim >= 3 else v) for k, v in out.items()
      }
  return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _data_devices(batch_size: int) -> int:
  """The most local devices (<= all) that divide `batch_size`."""
  n = jax.local_device_count()
  while batch_size % n:
    n -= 1
  return n


def fit_arrays(
    model: nn.Module,
    params,
    arrays: dict[str, np.ndarray],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    task: str = "sr",
    aux_weights: dict | None = None,
    flips: bool = True,
    transform: Callable[[dict, np.random.Generator], dict] | None = None,
) -> tuple[Any, list[float]]:
  """`steps` of `make_train_step` (AdamW, cosine schedule with 10% warmup,
  grad clip 1, no weight decay) on random batches of `arrays` (each
  `[N, ...]`), each batch passed through `transform(batch, rng)` when
  given (e.g. random crops; same output shapes every step), then randomly
  flipped when `flips` (only where the labels survive a flip). Data
  parallel over every local device that divides the batch; the model is
  replicated. Returns (params, the loss of every step); a non-finite last
  loss raises."""
  n = len(next(iter(arrays.values())))
  bs = min(batch_size, n)
  cfg = ml_collections.ConfigDict(
      dict(
          name="adamw",
          lr=lr,
          warmup_steps=max(1, steps // 10),
          grad_clip=1.0,
          schedule="cosine",
          weight_decay=0.0,
      )
  )
  tx = optim.make_optimizer(cfg, steps)
  state = TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=jax.random.key_data(jax.random.key(seed)),
  )
  devices = jax.devices()[: _data_devices(bs)]
  mesh = partitioning.make_mesh((("data", len(devices)),), devices)
  rep = partitioning.replicated(mesh)
  state = jax.device_put(state, rep)
  step_fn = jax.jit(
      make_train_step(model, tx, task, dict(aux_weights or {})),
      in_shardings=(rep, partitioning.batch_sharding(mesh), rep),
      out_shardings=(rep, rep),
      donate_argnums=(0,),
  )
  rng = np.random.default_rng(seed)
  losses = []
  for i in range(steps):
    idx = np.sort(rng.choice(n, bs, replace=False))
    batch = {k: v[idx] for k, v in arrays.items()}
    if transform is not None:
      batch = transform(batch, rng)
    if flips:
      batch = random_flips(batch, rng)
    key = jax.random.fold_in(state.rng, i)
    state, m = step_fn(state, partitioning.put_batch(batch, mesh), key)
    # At most two steps in flight (the trainer's rule too): many queued
    # executions of a program with collectives can deadlock XLA:CPU's
    # rendezvous on a loaded host (abort after 40 s).
    if losses:
      losses[-1] = float(losses[-1])
    losses.append(m["loss"])
  losses = [float(x) for x in losses]
  if losses and not np.isfinite(losses[-1]):
    raise FloatingPointError(
        f"non-finite loss {losses[-1]} at the last step of "
        f"{type(model).__name__}: lower the learning rate (lr={lr})."
    )
  return state.params, losses
