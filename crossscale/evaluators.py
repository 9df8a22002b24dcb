"""Evaluators, picked by name in `config.evals.<name>.type`.

Each is built once (its jitted predict function compiles once) and
`run(params)` returns {metric: value} over a whole split.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np

from crossscale import fidelity, input_pipeline, metrics, partitioning, shards
from crossscale.models import sr as sr_models
from crossscale.models import sr_gan


def split_outputs(ev, params, host_keys: tuple[str, ...] = ()):
  """Runs the evaluator's jitted `ev._predict(params, batch) -> (per_example,
  scalars)` over its split (`ev.data_dir`, `ev.split`, `ev.batch_size`,
  `ev.fields`, `ev.limit`, `ev.verify`, `ev.mesh`).

  Yields (per_example, host, valid, scalars) per batch: `per_example` (a
  pytree sharded on the batch) and the batch's `host_keys` as numpy, `valid`
  `[b]` bool (False on padding), `scalars` (replicated) as host values.
  Multi-host: every host sees the whole split (all-gathered).
  """
  ds = input_pipeline.eval_dataset(
      ev.data_dir,
      ev.split,
      batch_size=ev.batch_size,
      fields=ev.fields,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      verify=ev.verify,
      limit=ev.limit,
  )
  for batch in ds:
    out, scalars = ev._predict(params, partitioning.put_batch(batch, ev.mesh))  # pylint: disable=protected-access
    host = {k: batch[k] for k in (*host_keys, "valid")}
    if jax.process_count() > 1:
      out = multihost_utils.process_allgather(out, tiled=True)
      host = multihost_utils.process_allgather(host, tiled=False)
      host = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), host)
    host = jax.tree.map(np.asarray, host)
    yield (
        jax.tree.map(np.asarray, out),
        host,
        host.pop("valid").astype(bool),
        jax.device_get(scalars),
    )


class ClassificationEvaluator:
  """Loss, accuracy (single-label), the average of every per-example value
  the model reports in out["metrics"] (e.g. HR tiles bought, drift), and
  from the logits the paper's metrics (crossscale.metrics): "mAP_macro",
  "mAP_weighted", "mAP_micro" (classes with positives in the split) and
  class-to-scene retrieval "mAP@k" (k = retrieval_k). When the model returns
  an "embedding", also scene-to-scene "scene_AP@k" / "scene_recall@k"."""

  def __init__(
      self,
      model,
      *,
      data_dir: str,
      split: str,
      batch_size: int,
      task: str,
      mesh,
      fields=("lr", "labels"),
      limit: int | None = None,
      verify: bool = False,
      retrieval_k: int = 10,
  ):
    self.model, self.task, self.mesh = model, task, mesh
    self.data_dir, self.split, self.fields = data_dir, split, tuple(fields)
    self.batch_size, self.limit, self.verify = batch_size, limit, verify
    self.retrieval_k = retrieval_k

    def predict(params, batch):
      out = model.apply(
          {"params": params},
          batch,
          train=False,
          rngs={"selection": jax.random.key(0)},
      )
      keep = dict(out.get("metrics", {}))
      loss = jnp.zeros((), jnp.float32)  # models without logits: metrics only
      if "logits" in out:
        loss = metrics.task_loss(
            out["logits"], batch["labels"], task, batch["valid"]
        )
        keep["logits"] = out["logits"]
      if "embedding" in out:
        keep["embedding"] = out["embedding"]
      return keep, loss

    self._predict = jax.jit(
        predict,
        out_shardings=(
            partitioning.batch_sharding(mesh),
            partitioning.replicated(mesh),
        ),
    )

  def outputs(self, params) -> dict[str, np.ndarray]:
    """Per-scene outputs over the split, in record order: "labels" `[n, K]`,
    "logits" `[n, K]`, "embedding" `[n, E]` and every per-example metric
    (`[n]`) the model returns, plus "loss" (the split's mean, a scalar)."""
    outs, losses, weights = [], [], []
    for out, host, valid, loss in split_outputs(self, params, ("labels",)):
      outs.append(
          {
              **{k: v[valid] for k, v in out.items()},
              "labels": host["labels"][valid],
          }
      )
      losses.append(float(loss) * valid.sum())
      weights.append(valid.sum())
    cat = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    cat["loss"] = np.float64(np.sum(losses) / max(np.sum(weights), 1))
    return cat

  def run(self, params) -> dict[str, float]:
    return self.summarize(self.outputs(params))

  def summarize(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
    """The split's metrics from `outputs(params)`."""
    cat = dict(outputs)
    logits, labels = cat.pop("logits", None), cat.pop("labels")
    emb = cat.pop("embedding", None)
    result = {
        "loss": float(cat.pop("loss")),
        "num_examples": float(len(labels)),
    }
    if logits is not None and self.task == "single_label":
      result["accuracy"] = float(
          np.mean(labels[np.arange(len(labels)), logits.argmax(-1)] > 0)
      )
    if logits is not None:
      result.update(metrics.mean_average_precision(logits, labels))
      result.update(
          metrics.class_retrieval_metrics(logits, labels, (self.retrieval_k,))
      )
    result.update({k: float(v.mean()) for k, v in cat.items()})
    if emb is not None:
      result.update(metrics.retrieval_metrics(emb, labels, (self.retrieval_k,)))
    return result


class ReferringEvaluator:
  """Referring segmentation over a split: oIoU, mIoU, Prec@0.5..0.9
  (crossscale.metrics.refseg_metrics on the mask logits thresholded at 0,
  counted on the host), the mean BCE + Dice loss and the average of every
  other per-example value in out["metrics"]. The model returns
  "mask_logits": `[B, H, W]`; the batch holds "mask_target"."""

  def __init__(
      self,
      model,
      *,
      data_dir: str,
      split: str,
      batch_size: int,
      task: str,
      mesh,
      fields=("hr", "text_ids", "text_mask", "mask_target"),
      limit: int | None = None,
      verify: bool = False,
  ):
    del task
    self.model, self.mesh = model, mesh
    self.data_dir, self.split, self.fields = data_dir, split, tuple(fields)
    self.batch_size, self.limit, self.verify = batch_size, limit, verify
    if "mask_target" not in self.fields:
      raise ValueError(
          "the referring evaluator needs 'mask_target' in "
          f"config.data.fields (got {self.fields})."
      )

    def predict(params, batch):
      out = model.apply(
          {"params": params},
          batch,
          train=False,
          rngs={"selection": jax.random.key(0)},
      )
      loss = sum(out["aux_losses"].values())
      keep = {
          "pred": out["mask_logits"] > 0,
          **{
              k: v
              for k, v in out.get("metrics", {}).items()
              if k not in ("inter", "union", "iou")
          },
      }
      return keep, loss

    self._predict = jax.jit(
        predict,
        out_shardings=(
            partitioning.batch_sharding(mesh),
            partitioning.replicated(mesh),
        ),
    )

  def run(self, params) -> dict[str, float]:
    preds, trues, extra, losses, weights = [], [], [], [], []
    for out, host, valid, loss in split_outputs(self, params, ("mask_target",)):
      preds.append(out.pop("pred")[valid])
      trues.append(host["mask_target"][valid])
      extra.append({k: v[valid] for k, v in out.items()})
      # The model's loss averages over the valid examples of the batch.
      losses.append(float(loss) * valid.sum())
      weights.append(valid.sum())
    result = metrics.refseg_metrics(
        np.concatenate(preds), np.concatenate(trues) > 0
    )
    result["num_examples"] = float(result.pop("num_samples"))
    result["loss"] = float(np.sum(losses) / max(np.sum(weights), 1))
    for k in extra[0]:
      result[k] = float(np.concatenate([e[k] for e in extra]).mean())
    return result


def sr_data_range(manifest, key: str = "hr") -> float:
  """The raw pixel value that maps to 1 when scoring SR on [0, 1]:
  `manifest.builder["data_range"]` (or {"lr": .., "hr": ..}) when the
  builder recorded one (e.g. 10000 for Sentinel-2 L2A reflectance), else
  255 for uint8, the dtype's maximum for other integers (a conservative
  default: record the sensor's range in the builder), and 1.0 for floats
  (assumed to be reflectance already)."""
  declared = manifest.builder.get("data_range")
  if isinstance(declared, dict):
    declared = declared.get(key)
  if declared:
    return float(declared)
  dtype = np.dtype(manifest.dtypes[key])
  if np.issubdtype(dtype, np.integer):
    return float(np.iinfo(dtype).max)
  return 1.0


class SREvaluator:
  """Super-resolution fidelity over a split, as GeoSR-Bench scores it.

  The model's `predict(lr, hr grid)` output and the batch's "hr" are in
  HR-normalised units (input_pipeline.Normalize); both are de-normalised with
  the manifest's HR band stats (x * std + mean), divided by
  `sr_data_range(manifest)` (uint8: 255) and the SR is clipped to [0, 1].
  PSNR and SSIM (crossscale.fidelity, data_range 1) are computed per
  image and band, then averaged over images ("psnr_<band>", "ssim_<band>")
  and over bands ("psnr", "ssim"). The bicubic baseline ("bicubic_psnr",
  "bicubic_ssim", and "psnr_gain" = psnr - bicubic_psnr) upsamples the raw
  LR (LR stats, LR data range; the model's `band_map` when the bands differ;
  skipped when the bands differ and the model has none). "randfeat_dist" is
  `fidelity.feature_distance` with the fixed random-feature conv net
  `sr_gan.random_feature_net` (seed 0) on the [0, 1] images: a perceptual-
  style distance of our own (not LPIPS), comparable across SR families.
  With `feature_init` (a run of ours with a conv "hr_encoder", e.g. the
  cross-scale pretraining run; config.evals.<name>.feature_init) also
  "hrenc_dist" (and "bicubic_hrenc_dist"): the same distance in that
  *learned* encoder's features (`sr_gan.encoder_feature_net`).
  Also "l1" (normalised units, the training loss of pixel models) and
  "num_examples".
  """

  def __init__(
      self,
      model,
      *,
      data_dir: str,
      split: str,
      batch_size: int,
      task: str,
      mesh,
      fields=("lr", "hr"),
      limit: int | None = None,
      verify: bool = False,
      data_range: float | None = None,
      feature_init: str = "",
  ):
    del task
    self.model, self.mesh = model, mesh
    self.data_dir, self.split, self.fields = data_dir, split, tuple(fields)
    self.batch_size, self.limit, self.verify = batch_size, limit, verify
    if not {"lr", "hr"} <= set(self.fields):
      raise ValueError(
          "the sr evaluator needs 'lr' and 'hr' in "
          f"config.data.fields (got {self.fields})."
      )
    manifest = shards.load_manifest(data_dir)
    self.bands = list(manifest.hr_bands)
    st = {
        k: {
            s: np.asarray(manifest.band_stats[k][s], np.float32)
            for s in ("mean", "std")
        }
        for k in ("lr", "hr")
    }
    rng_hr = data_range or sr_data_range(manifest, "hr")
    rng_lr = data_range or sr_data_range(manifest, "lr")
    band_map = getattr(model, "band_map", None)
    self.has_baseline = (
        list(manifest.lr_bands) == self.bands or band_map is not None
    )
    feat_apply, feat_params = sr_gan.random_feature_net(len(self.bands))
    nets = {"randfeat_dist": (feat_apply, feat_params)}
    if feature_init:
      nets["hrenc_dist"] = sr_gan.encoder_feature_net(
          feature_init,
          len(self.bands),
          config_key="config.evals.<name>.feature_init",
      )

    def unit(x, key, data_range):  # normalised -> [0, 1] units
      return (x * st[key]["std"] + st[key]["mean"]) / data_range

    def predict(params, batch):
      hr = batch["hr"]  # [B, H, W, C]
      sr = model.apply(
          {"params": params}, batch["lr"], hr.shape[1:3], method="predict"
      )
      hr01 = unit(hr, "hr", rng_hr)
      sr01 = jnp.clip(unit(sr, "hr", rng_hr), 0.0, 1.0)
      out = {
          "psnr": fidelity.psnr(sr01, hr01, 1.0),  # [B, C]
          "ssim": fidelity.ssim(sr01, hr01, 1.0),
          **{
              k: fidelity.feature_distance(f, p, sr01, hr01)  # [B]
              for k, (f, p) in nets.items()
          },
          "l1": jnp.mean(jnp.abs(sr - hr), axis=(1, 2, 3)),
      }
      if self.has_baseline:
        lr01 = unit(batch["lr"], "lr", rng_lr)
        bic = jnp.clip(
            sr_models.resize(
                sr_models.map_bands(lr01, band_map), hr.shape[1:3]
            ),
            0.0,
            1.0,
        )
        out.update(
            bicubic_psnr=fidelity.psnr(bic, hr01, 1.0),
            bicubic_ssim=fidelity.ssim(bic, hr01, 1.0),
            **{
                f"bicubic_{k}": fidelity.feature_distance(f, p, bic, hr01)
                for k, (f, p) in nets.items()
            },
        )
      return out, ()

    self._predict = jax.jit(
        predict,
        out_shardings=(
            partitioning.batch_sharding(mesh),
            partitioning.replicated(mesh),
        ),
    )

  def run(self, params) -> dict[str, float]:
    outs = [
        {k: v[valid] for k, v in out.items()}
        for out, _, valid, _ in split_outputs(self, params)
    ]
    cat = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    result = {"num_examples": float(len(cat["l1"]))}
    for k, v in cat.items():
      result[k] = float(v.mean())
      if v.ndim == 2:  # [N, C]: per band too
        result.update(
            {f"{k}_{b}": float(m) for b, m in zip(self.bands, v.mean(0))}
        )
    if "bicubic_psnr" in result:
      result["psnr_gain"] = result["psnr"] - result["bicubic_psnr"]
    return result


class DownstreamEvaluator:
  """A downstream model (crossscale.models.dense_backbones, "downstream") over a
  split, by its `model.task`:

    segmentation:   pixel_accuracy, mIoU, mean_f1 (metrics.
                    segmentation_metrics of the split's confusion matrix,
                    summed over batches; target ids outside [0, K) ignored);
    regression:     mae, rmse (metrics.regression_metrics per batch, pooled
                    over every finite target pixel of the split);
    classification: accuracy (metrics.accuracy of the argmax of the logits
                    against the argmax of the one-hot "labels").

  Also "loss" (the model's own loss, averaged over valid target pixels, or
  examples for classification) and "num_examples". Padded examples
  (valid = 0) count nowhere: their targets are set to "ignore" (id -1 /
  NaN) before the loss and left out of the metrics.
  """

  def __init__(
      self,
      model,
      *,
      data_dir: str,
      split: str,
      batch_size: int,
      task: str,
      mesh,
      fields=("hr", "mask_objects"),
      limit: int | None = None,
      verify: bool = False,
  ):
    del task  # the model's own task decides
    self.model, self.mesh = model, mesh
    self.task, self.target_key = model.task, model.target_key
    self.data_dir, self.split, self.fields = data_dir, split, tuple(fields)
    self.batch_size, self.limit, self.verify = batch_size, limit, verify
    if not {model.input_key, model.target_key} <= set(self.fields):
      raise ValueError(
          f"the downstream evaluator needs {model.input_key!r} and "
          f"{model.target_key!r} in config.data.fields (got {self.fields})."
      )
    self.num_classes = model.num_classes

    def predict(params, batch):
      t = batch[self.target_key]
      valid = batch["valid"].reshape((-1,) + (1,) * (t.ndim - 1)) > 0
      if self.task == "segmentation":  # t: [B, H, W] ids
        t = jnp.where(valid, t.astype(jnp.int32), -1)
        n = jnp.sum((t >= 0) & (t < self.num_classes))
      elif self.task == "regression":  # t: [B, H, W(, 1)] values
        t = jnp.where(valid, t.astype(jnp.float32), jnp.nan)
        n = jnp.sum(jnp.isfinite(t))
      out = model.apply(
          {"params": params}, {**batch, self.target_key: t}, train=False
      )
      if self.task == "classification":  # t: [B, K] one-hot
        loss = metrics.task_loss(
            out["logits"], t, "single_label", batch["valid"]
        )
        return jnp.argmax(out["logits"], -1), (loss, jnp.sum(batch["valid"]))
      loss = sum(out["aux_losses"].values())
      if self.task == "segmentation":
        return jnp.argmax(out["seg_logits"], -1), (loss, n)  # [B, H, W]
      return out["pred"], (loss, n)  # [B, H, W, 1]

    self._predict = jax.jit(
        predict,
        out_shardings=(
            partitioning.batch_sharding(mesh),
            partitioning.replicated(mesh),
        ),
    )

  def run(self, params) -> dict[str, float]:
    conf, reg, pred_ids, true_ids = None, [], [], []
    loss_sum, loss_n, num = 0.0, 0.0, 0
    for pred, host, valid, (loss, n) in split_outputs(
        self, params, (self.target_key,)
    ):
      pred, true = pred[valid], host[self.target_key][valid]
      num += int(valid.sum())
      loss_sum += float(loss) * float(n)
      loss_n += float(n)
      if self.task == "segmentation":
        c = metrics.confusion_matrix(pred, true, self.num_classes)
        conf = c if conf is None else conf + c
      elif self.task == "regression":
        true = true.astype(np.float64).reshape(pred.shape)
        k = int(np.isfinite(true).sum())
        if k:
          m = metrics.regression_metrics(pred, true)
          reg.append((k, m["mae"], m["rmse"]))
      else:
        pred_ids.append(pred)
        true_ids.append(true.argmax(-1))
    result = {"num_examples": float(num), "loss": loss_sum / max(loss_n, 1.0)}
    if self.task == "segmentation":
      m = metrics.segmentation_metrics(conf)
      result.update({k: m[k] for k in ("pixel_accuracy", "mIoU", "mean_f1")})
    elif self.task == "regression":
      if not reg:
        raise ValueError(
            f"{self.data_dir} split {self.split!r}: no finite "
            f"{self.target_key!r} targets to score."
        )
      k, mae, rmse = (np.asarray(v, np.float64) for v in zip(*reg))
      result["mae"] = float((k * mae).sum() / k.sum())
      result["rmse"] = float(np.sqrt((k * rmse**2).sum() / k.sum()))
    else:
      result["accuracy"] = metrics.accuracy(
          np.concatenate(pred_ids), np.concatenate(true_ids)
      )
    return result


_EVALUATORS = {
    "classification": ClassificationEvaluator,
    "downstream": DownstreamEvaluator,
    "referring": ReferringEvaluator,
    "sr": SREvaluator,
}


def get_evaluator(kind: str, model, **kwargs: Any):
  if kind not in _EVALUATORS:
    raise ValueError(
        f"unknown evaluator type {kind!r} "
        f"(config.evals.<name>.type); known: {sorted(_EVALUATORS)}"
    )
  return _EVALUATORS[kind](model, **kwargs)


def final_eval(
    model,
    params,
    *,
    data_dir: str,
    split: str,
    batch_size: int,
    task: str,
    mesh,
    fields,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """The final evaluation of a run (`config.final_eval_split`): the
  classification evaluator over `split` -> (metrics, per-scene outputs).

  One code path for the end of training (`crossscale.train`) and for
  evaluating a trained run on any dataset (`crossscale.evaluate`): metrics
  as `ClassificationEvaluator.summarize`, outputs as `.outputs` ("logits"
  and "labels" `[n, K]` in record order, ...).
  """
  ev = ClassificationEvaluator(
      model,
      data_dir=data_dir,
      split=split,
      batch_size=batch_size,
      task=task,
      mesh=mesh,
      fields=fields,
  )
  outputs = ev.outputs(params)
  return ev.summarize(outputs), outputs


def save_predictions(path: str, outputs: dict[str, np.ndarray]) -> None:
  """Per-scene "logits" and "labels" of `final_eval`'s outputs to `path`
  (.npz), the file paired comparisons read (`train.PREDICTIONS`)."""
  np.savez(
      path,
      logits=outputs.get("logits", np.zeros((0,))),
      labels=outputs["labels"],
  )
