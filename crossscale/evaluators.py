"""Evaluators, picked by name in `config.evals.<name>.type`.

Each is built once (its jitted predict function compiles once) and
`run(params)` returns {metric: value} over a whole split.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from crossscale import input_pipeline, metrics, sharding


class ClassificationEvaluator:
  """Loss and accuracy (single-label) or mAP (multi-label) over a split,
  the average of every per-example value the model reports in
  out["metrics"] (e.g. HR tiles bought, drift), and retrieval AP@k /
  recall@k when the model returns an "embedding"."""

  def __init__(self, model, *, data_dir: str, split: str, batch_size: int,
               task: str, mesh, fields=("lr", "labels"),
               limit: int | None = None, verify: bool = False,
               retrieval_k: int = 10):
    self.model, self.task, self.mesh = model, task, mesh
    self.data_dir, self.split, self.fields = data_dir, split, tuple(fields)
    self.batch_size, self.limit, self.verify = batch_size, limit, verify
    self.retrieval_k = retrieval_k

    def predict(params, batch):
      out = model.apply({"params": params}, batch, train=False,
                        rngs={"selection": jax.random.key(0)})
      loss = metrics.task_loss(out["logits"], batch["labels"], task,
                               batch["valid"])
      keep = {"logits": out["logits"], **out.get("metrics", {})}
      if "embedding" in out:
        keep["embedding"] = out["embedding"]
      return keep, loss
    self._predict = jax.jit(predict, out_shardings=(
        sharding.batch_sharding(mesh), sharding.replicated(mesh)))

  def run(self, params) -> dict[str, float]:
    ds = input_pipeline.eval_dataset(
        self.data_dir, self.split, batch_size=self.batch_size,
        fields=self.fields, process_index=jax.process_index(),
        process_count=jax.process_count(), verify=self.verify,
        limit=self.limit)
    outs, losses, weights = [], [], []
    for batch in ds:
      out, loss = self._predict(params, sharding.put_batch(batch, self.mesh))
      host = {"labels": batch["labels"], "valid": batch["valid"]}
      if jax.process_count() > 1:  # every host evaluates the whole split
        out = multihost_utils.process_allgather(out, tiled=True)
        host = multihost_utils.process_allgather(host, tiled=False)
        host = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), host)
      out = jax.tree.map(np.asarray, out)
      valid = np.asarray(host["valid"], bool)
      outs.append({**{k: v[valid] for k, v in out.items()},
                   "labels": np.asarray(host["labels"])[valid]})
      losses.append(float(loss) * valid.sum())
      weights.append(valid.sum())
    cat = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    logits, labels = cat.pop("logits"), cat.pop("labels")
    emb = cat.pop("embedding", None)
    result = {"loss": float(np.sum(losses) / max(np.sum(weights), 1)),
              "num_examples": float(len(labels))}
    if self.task == "single_label":
      result["accuracy"] = float(np.mean(
          labels[np.arange(len(labels)), logits.argmax(-1)] > 0))
    result.update(metrics.mean_average_precision(logits, labels))
    result.update({k: float(v.mean()) for k, v in cat.items()})
    if emb is not None:
      result.update(metrics.retrieval_metrics(emb, labels,
                                              (self.retrieval_k,)))
    return result


_EVALUATORS = {"classification": ClassificationEvaluator}


def get_evaluator(kind: str, model, **kwargs: Any):
  if kind not in _EVALUATORS:
    raise ValueError(f"unknown evaluator type {kind!r} "
                     f"(config.evals.<name>.type); known: {sorted(_EVALUATORS)}")
  return _EVALUATORS[kind](model, **kwargs)
