"""Evaluators, picked by name in `config.evals.<name>.type`.

Each is built once (its jitted predict function compiles once) and
`run(params)` returns {metric: value} over a whole split.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from crossscale import input_pipeline, metrics, sharding


class ClassificationEvaluator:
  """Loss and accuracy (single-label) or mAP (multi-label) over a split."""

  def __init__(self, model, *, data_dir: str, split: str, batch_size: int,
               task: str, mesh, fields=("lr", "labels"),
               limit: int | None = None, verify: bool = False):
    self.model, self.task, self.mesh = model, task, mesh
    self.data_dir, self.split, self.fields = data_dir, split, tuple(fields)
    self.batch_size, self.limit, self.verify = batch_size, limit, verify

    def predict(params, batch):
      out = model.apply({"params": params}, batch, train=False)
      loss = metrics.task_loss(out["logits"], batch["labels"], task,
                               batch["valid"])
      return out["logits"], loss
    self._predict = jax.jit(
        predict, out_shardings=(sharding.batch_sharding(mesh),
                                sharding.replicated(mesh)))

  def run(self, params) -> dict[str, float]:
    ds = input_pipeline.eval_dataset(
        self.data_dir, self.split, batch_size=self.batch_size,
        fields=self.fields, process_index=jax.process_index(),
        process_count=jax.process_count(), verify=self.verify,
        limit=self.limit)
    logits, labels, losses, weights = [], [], [], []
    for batch in ds:
      valid = batch["valid"]
      out, loss = self._predict(params, sharding.put_batch(batch, self.mesh))
      out = np.asarray(jax.experimental.multihost_utils.process_allgather(
          out, tiled=True)) if jax.process_count() > 1 else np.asarray(out)
      lab = batch["labels"]
      if jax.process_count() > 1:
        lab, valid = (np.asarray(jax.experimental.multihost_utils
                                 .process_allgather(x)).reshape(-1, *x.shape[1:])
                      for x in (lab, valid))
      logits.append(out[valid])
      labels.append(lab[valid])
      losses.append(float(loss) * valid.sum())
      weights.append(valid.sum())
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    result = {"loss": float(np.sum(losses) / max(np.sum(weights), 1)),
              "num_examples": float(len(labels))}
    if self.task == "single_label":
      result["accuracy"] = float(np.mean(
          labels[np.arange(len(labels)), logits.argmax(-1)] > 0))
    else:
      result.update(metrics.mean_average_precision(logits, labels))
    return result


_EVALUATORS = {"classification": ClassificationEvaluator}


def get_evaluator(kind: str, model, **kwargs: Any):
  if kind not in _EVALUATORS:
    raise ValueError(f"unknown evaluator type {kind!r} "
                     f"(config.evals.<name>.type); known: {sorted(_EVALUATORS)}")
  return _EVALUATORS[kind](model, **kwargs)
