"""Small builders of test data, and independent checks of trained runs,
shared by the tests."""

import os

import jax
import numpy as np

from crossscale import records


def random_scene(
    i: int = 0,
    split: str = "train",
    *,
    hr=32,
    scale=4,
    grid=4,
    bands=3,
    classes=3,
    dtype=np.uint8,
    seed=0,
    **kw,
):
  rng = np.random.default_rng([seed, i])
  hi = 255 if dtype == np.uint8 else 1.0
  hr_img = (rng.uniform(0, hi, (hr, hr, bands))).astype(dtype)
  lr_img = (rng.uniform(0, hi, (hr // scale, hr // scale, bands))).astype(dtype)
  labels = np.zeros(classes, np.uint8)
  labels[i % classes] = 1
  names = tuple(f"b{j}" for j in range(bands))
  fields = dict(
      id=f"s{i}",
      lr=lr_img,
      hr=hr_img,
      lr_bands=names,
      hr_bands=names,
      lr_gsd=float(scale),
      hr_gsd=1.0,
      grid=grid,
      labels=labels,
      split=split,
  )
  fields.update(kw)
  return records.Scene(**fields)


def tiny_dataset(out_dir, n_train=24, n_val=8, classes=3, shards=2, **kw):
  from crossscale import shards as shards_lib

  scenes = [
      random_scene(i, "train", classes=classes, **kw) for i in range(n_train)
  ]
  scenes += [
      random_scene(100 + i, "val", classes=classes, **kw) for i in range(n_val)
  ]
  return shards_lib.write_dataset(
      str(out_dir),
      "tiny",
      scenes,
      [f"c{k}" for k in range(classes)],
      shards_per_split={"train": shards, "val": 1},
  )


def tiny_cross_scale_run(
    data_path: str, workdir: str, budget: float, steps: int
):
  """A runlocal cross-scale run trained `steps` steps (batch 16) on
  `data_path`, loaded as `experiments.cross_scale.selection_swap.Run` "ours"."""
  from crossscale import train  # pylint: disable=g-import-not-at-top
  from experiments.configs import cross_scale  # pylint: disable=g-import-not-at-top
  from experiments.cross_scale import selection_swap  # pylint: disable=g-import-not-at-top

  c = cross_scale.get_config("runlocal")
  c.data.path = data_path
  c.update_from_flattened_dict(
      {
          "total_steps": steps,
          "batch_size": 16,
          "model.budget": budget,
          "log_every": 1,
      }
  )
  c.evals = {}
  train.train_and_evaluate(c, workdir)
  return selection_swap.load_run("ours", workdir)


def checkpoint_params(workdir: str, step: int):
  """The parameters a run saved at `step` in `workdir/checkpoints`, as host
  arrays (restored by orbax directly, not through the trainer)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  out = mngr.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
  )
  mngr.close()
  return jax.device_get(out["state"]["params"])


def accuracy_by_hand(model, params, data_dir, fields, split="test"):
  """Single-label accuracy of `model` on a split, computed here on one
  device (not by the evaluators): argmax of the logits against the label,
  over the real (not padding) examples."""
  from crossscale import input_pipeline  # pylint: disable=g-import-not-at-top

  apply = jax.jit(
      lambda p, b: model.apply(
          {"params": p},
          b,
          train=False,
          rngs={"selection": jax.random.key(0)},
      )["logits"]
  )
  hits = total = 0
  for b in input_pipeline.eval_dataset(
      data_dir, split, batch_size=16, fields=tuple(fields)
  ):
    valid = b.pop("valid")
    right = np.asarray(apply(params, b)).argmax(-1) == b["labels"].argmax(-1)
    hits += int(right[valid].sum())
    total += int(valid.sum())
  return hits / total
