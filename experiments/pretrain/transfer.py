r"""Zero-shot and linear-probe transfer of the cross-scale pretrained encoder.

  python -m experiments.pretrain.transfer --quick --out /tmp/transfer
  python -m experiments.pretrain.transfer --checkpoint runs/pre_r7 \
      --out /tmp/transfer
  python -m experiments.pretrain.transfer --runlocal --out /tmp/smoke

1. Source: pretrains the LR encoder with cross-scale alignment + masked
   modelling + class-prompt text alignment (experiments/configs/pretrain.py
   arg "text") on the `--source` train split (default: the real RSSCN7
   scenes), or takes the pretraining run `--checkpoint`.
2. Targets (`--targets`, datasets written by the builders): each image is
   shown to the LR encoder as the source's LR view (bands picked by name:
   R/G/B or Sentinel-2 B04/B03/B02; resized to the source LR size; each
   dataset standardised with its own statistics):
   - zero-shot: cosine between the image embedding and the frozen MiniLM
     embedding of "A satellite image of {label}." for the TARGET's labels
     (new words for EuroSAT and BigEarthNet): top-1 accuracy (single-label)
     or mAP (multi-label), and text-to-image retrieval mAP (each prompt
     ranks the images).
   - linear probe: logistic regression on frozen mean LR tokens (train ->
     test split; 5-fold cross-validation over all records when the train
     split has < 100 records): accuracy / mAP.
   Both for the pretrained encoder and the same encoder at random init.
Pretraining is experiments/configs/pretrain.py:text,quick,steps=N (with
TRANSFER_QUICK) or :text,sweep,steps=N; `--runlocal` is a seconds-long
smoke (the runlocal toyworld as source and target).
Writes OUT/<source>_<schedule>_s0-0.json and prints a table.

Targets: rsscn7 (its test split: seen label words, unseen images),
eurosat_samples (54 real EuroSAT tiles, 7 classes: another sensor and other
label words), bigearthnet (6 real S2 patches, 43-label multi-label: the
BigEarthNet format end to end; 6 patches give no meaningful score).
"""

from __future__ import annotations

import argparse
import os
import tempfile

from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from crossscale import (
    checkpoint,
    export,
    input_pipeline,
    metrics,
    records,
    reporting,
    shards,
    train,
)
from crossscale.models import cross_scale_pretrain as pretrain_model
from data import registry
from experiments.configs import _common as common
from experiments.configs import pretrain as pretrain_config

# --quick's pretraining: pretrain.py:quick with the full-size sampler and a
# 64-d embedding.
TRANSFER_QUICK = {"model.sampler.width": 32, "model.embed_dim": 64}

ALIASES = {
    "R": ("R", "B04", "red"),
    "G": ("G", "B03", "green"),
    "B": ("B", "B02", "blue"),
}


def load_split(data_dir: str, split: str) -> dict[str, np.ndarray]:
  """Every record of `split`, standardised: {"lr", "hr", "labels"}."""
  out: dict[str, list] = {"lr": [], "hr": [], "labels": []}
  for b in input_pipeline.eval_dataset(
      data_dir, split, batch_size=32, fields=("lr", "hr", "labels")
  ):
    valid = np.asarray(b["valid"], bool)
    for k in out:
      out[k].append(np.asarray(b[k])[valid])
  return {k: np.concatenate(v) for k, v in out.items()}


def band_indices(have, want, where: str) -> list[int]:
  """Positions in `have` of the bands `want` (by name or S2 alias)."""
  idx = []
  for w in want:
    names = ALIASES.get(w, (w,))
    hit = [i for i, h in enumerate(have) if h in names]
    if not hit:
      raise records.DataError(
          f"{where}: no band for {w!r} among {list(have)}: the encoder was "
          f"pretrained on bands {list(want)}; pick a target with them (or "
          "pretrain on the target's bands)."
      )
    idx.append(hit[0])
  return idx


def source_view(data_dir: str, split: str, lr_shape, lr_bands) -> tuple:
  """(images `[N, h, w, C]` as the source's LR view, labels `[N, K]`)."""
  m = shards.load_manifest(data_dir)
  data = load_split(data_dir, split)
  field = None
  for f, shape, bands in (
      ("lr", m.lr_shape, m.lr_bands),
      ("hr", m.hr_shape, m.hr_bands),
  ):
    try:
      idx = band_indices(bands, lr_bands, f"{data_dir} {f}")
    except records.DataError:
      continue
    if field is None or (f == "lr" and list(shape) == list(lr_shape)):
      field, sel = f, idx
      if f == "lr" and list(shape) == list(lr_shape):
        break
  if field is None:
    band_indices(m.hr_bands, lr_bands, f"{data_dir} (lr and hr)")  # raises
  x = data[field][..., sel]
  if x.shape[1:3] != tuple(lr_shape[:2]):
    x = np.asarray(
        jax.image.resize(
            x,
            (x.shape[0],) + tuple(lr_shape[:2]) + (x.shape[-1],),
            "linear",
            antialias=True,
        )
    )
  return x, data["labels"]


def _batched(fn, params, x, bs=64):
  return np.concatenate(
      [
          np.asarray(fn(params, jnp.asarray(x[i : i + bs])))
          for i in range(0, len(x), bs)
      ]
  )


def zero_shot(model, params, x, labels, class_names, multi: bool) -> dict:
  prompts = pretrain_model.prompt_embeddings(
      [
          pretrain_model.PROMPT.format(pretrain_model.readable(c))
          for c in class_names
      ]
  )
  emb = _batched(
      jax.jit(
          lambda p, im: model.apply({"params": p}, im, method="image_embedding")
      ),
      params,
      x,
  )
  scores = emb @ prompts.T  # [N, K]
  present = labels.sum(0) > 0
  res = {
      "retrieval_mAP": metrics.mean_average_precision(
          scores[:, present], labels[:, present]
      )["mAP_macro"]
  }
  if multi:
    res["mAP"] = res["retrieval_mAP"]
  else:
    res["accuracy"] = float(
        np.mean(labels[np.arange(len(x)), scores.argmax(1)] > 0)
    )
  return res


def _probe_scores(f_tr, y_tr, f_te, multi: bool) -> np.ndarray:
  """Logistic-regression scores `[N_te, K]` (one vs rest when multi)."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top

  mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-6
  f_tr, f_te = (f_tr - mu) / sd, (f_te - mu) / sd
  K = y_tr.shape[1]
  if not multi:
    cls = y_tr.argmax(1)
    clf = LogisticRegression(max_iter=2000, C=0.1).fit(f_tr, cls)
    out = np.full((len(f_te), K), -np.inf)
    out[:, clf.classes_] = (
        clf.decision_function(f_te).reshape(len(f_te), -1)
        if len(clf.classes_) > 2
        else np.stack(
            [-clf.decision_function(f_te), clf.decision_function(f_te)], 1
        )
    )
    return out
  out = np.zeros((len(f_te), K))
  for k in range(K):
    if y_tr[:, k].min() == y_tr[:, k].max():  # constant in train
      out[:, k] = y_tr[0, k]
    else:
      out[:, k] = (
          LogisticRegression(max_iter=2000, C=0.1)
          .fit(f_tr, y_tr[:, k])
          .decision_function(f_te)
      )
  return out


def linear_probe(feats: dict, labels: dict, multi: bool) -> dict:
  """feats/labels by split -> {"accuracy" | "mAP", "protocol"}."""
  if len(feats["train"]) >= 100:
    scores = _probe_scores(
        feats["train"], labels["train"], feats["test"], multi
    )
    y, protocol = labels["test"], "train->test"
  else:
    f = np.concatenate([feats[s] for s in ("train", "val", "test")])
    y = np.concatenate([labels[s] for s in ("train", "val", "test")])
    folds = np.arange(len(f)) % min(5, len(f))
    np.random.default_rng(0).shuffle(folds)
    scores = np.zeros(y.shape)
    for k in np.unique(folds):
      tr, te = folds != k, folds == k
      scores[te] = _probe_scores(f[tr], y[tr], f[te], multi)
    protocol = f"{int(folds.max()) + 1}-fold CV over {len(f)} records"
  present = y.sum(0) > 0
  if multi:
    return {
        "mAP": metrics.mean_average_precision(
            scores[:, present], y[:, present]
        )["mAP_macro"],
        "protocol": protocol,
    }
  return {
      "accuracy": float(np.mean(y[np.arange(len(y)), scores.argmax(1)] > 0)),
      "protocol": protocol,
  }


def source_config(
    data_dir: str, quick: bool, steps: int, runlocal: bool = False
):
  """The pretraining config of the source (module docstring)."""
  if runlocal:
    c = pretrain_config.get_config(f"text,runlocal,sweep,steps={steps or 10}")
  elif quick:
    c = pretrain_config.get_config(f"text,quick,steps={steps or 800}")
    c.update_from_flattened_dict(TRANSFER_QUICK)
  else:
    c = pretrain_config.get_config(f"text,sweep,steps={steps or 3000}")
  c.data.path = data_dir
  return c


def resolve(name: str, runlocal: bool) -> str:
  """Records directory of `name` (the runlocal toyworld under runlocal)."""
  if runlocal and name == "toyworld":
    opts = {**common.TOYWORLD, **common.TOYWORLD_RUNLOCAL}
    return registry.resolve(name, None, opts)
  return registry.resolve(name)


def pretrain_source(
    source: str, quick: bool, steps: int, workdir: str, runlocal: bool = False
):
  c = source_config(resolve(source, runlocal), quick, steps, runlocal)
  final = train.train_and_evaluate(c, workdir)
  return c, final["test"]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--source", default="rsscn7")
  p.add_argument(
      "--checkpoint",
      default="",
      help="a pretraining run (workdir) instead of pretraining",
  )
  p.add_argument("--targets", default="rsscn7,eurosat_samples,bigearthnet")
  p.add_argument("--quick", action="store_true")
  p.add_argument(
      "--runlocal",
      action="store_true",
      help="smoke test: tiny encoder, toyworld source and target (seconds)",
  )
  p.add_argument("--steps", type=int, default=0)
  p.add_argument("--out", required=True)
  p.add_argument(
      "--name",
      default="",
      help="results file stem (default <source>_<schedule>_s0-0)",
  )
  a = p.parse_args(argv)
  flags.FLAGS.mark_as_parsed()
  if a.runlocal:
    a.source, a.targets = "toyworld", "toyworld"

  if a.checkpoint:
    workdir, pre_eval = a.checkpoint, None
    cfg = export.load_config(workdir)
  else:
    workdir = os.path.join(tempfile.mkdtemp(prefix="transfer_"), "pretrain")
    cfg, pre_eval = pretrain_source(
        a.source, a.quick, a.steps, workdir, a.runlocal
    )
  src = shards.load_manifest(cfg.data.path)
  model = train.make_model(cfg, src)
  example = train.example_batch(src, ("lr", "hr", "labels"), 2)
  random_params = model.load_pretrained(
      jax.device_get(
          nn.meta.unbox(
              jax.jit(
                  lambda r: model.init(
                      {"params": r, "selection": r}, example, train=False
                  )["params"]
              )(jax.random.key(1))
          )
      )
  )
  pre_params = checkpoint.load_params(workdir, "--checkpoint")
  feats_fn = jax.jit(
      lambda p, im: model.apply({"params": p}, im, method="features")
  )

  results, rows, datasets = {}, [], {"source": cfg.data.path}
  for target in a.targets.split(","):
    data_dir = datasets[target] = resolve(target, a.runlocal)
    m = shards.load_manifest(data_dir)
    multi = (
        bool(np.any(load_split(data_dir, "train")["labels"].sum(1) > 1))
        or target == "bigearthnet"
    )
    views = {
        s: source_view(data_dir, s, src.lr_shape, src.lr_bands)
        for s in ("train", "val", "test")
    }
    x_all = np.concatenate([views[s][0] for s in ("train", "val", "test")])
    y_all = np.concatenate([views[s][1] for s in ("train", "val", "test")])
    # Zero-shot on the test split when it is large enough, else every record.
    zx, zy = views["test"] if len(views["test"][0]) >= 50 else (x_all, y_all)
    results[target] = {
        "num_records": int(len(x_all)),
        "num_classes": m.num_classes,
        "multi_label": multi,
        "zero_shot_records": int(len(zx)),
    }
    for name, params in (
        ("pretrained", pre_params),
        ("random_init", random_params),
    ):
      zs = zero_shot(model, params, zx, zy, m.class_names, multi)
      feats = {s: _batched(feats_fn, params, views[s][0]) for s in views}
      lp = linear_probe(feats, {s: views[s][1] for s in views}, multi)
      results[target][name] = {"zero_shot": zs, "linear_probe": lp}
      metric = "mAP" if multi else "accuracy"
      rows.append(
          {
              "target": target,
              "encoder": name,
              "zero_shot": zs[metric],
              "zs_retrieval_mAP": zs["retrieval_mAP"],
              "linear_probe": lp[metric],
              "metric": metric,
              "probe": lp["protocol"],
          }
      )
  reporting.print_table(
      rows,
      [
          "target",
          "encoder",
          "metric",
          "zero_shot",
          "zs_retrieval_mAP",
          "linear_probe",
          "probe",
      ],
  )
  schedule = reporting.schedule_name(a.quick, a.steps, a.runlocal)
  source = (
      os.path.basename(os.path.normpath(a.checkpoint))
      if a.checkpoint
      else a.source
  )
  stem = a.name or reporting.results_name(source, schedule, 0, 0)
  reporting.write_json(
      a.out,
      stem.removesuffix(".json") + ".json",
      {
          "source": reporting.relative_path(a.checkpoint) or a.source,
          "quick": a.quick,
          "schedule": schedule,
          "pretrain_steps": int(cfg.total_steps),
          "pretrain_eval": pre_eval,
          "prompt": pretrain_model.PROMPT,
          "targets": results,
          "table": rows,
      },
      datasets=datasets,
  )


if __name__ == "__main__":
  main()
