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
3. Band transfer (`--wavelength`, method rgb_wavelength; issue 22): the LR
   encoder is pretrained with the wavelength band embedding
   (model.lr_encoder.band_embedding="wavelength", bands named by the
   source's manifest) on the RGB source; each target with bands beyond RGB
   is then also read with ALL its bands (the RGB view above plus every other
   band of its records, each resized to the source LR size, named as the
   records name them and mapped to wavelengths by crossscale/bands.py; an
   unknown name is an error): the same parameters, zero-shot and linear
   probe as above, beside the same encoder reading only the RGB bands (what
   a wavelength-blind model can read). all - rgb gets a paired bootstrap
   95% interval over the evaluated records (crossscale/bootstrap.py).
   A `--checkpoint` pretrained with the wavelength embedding gets the same
   rows without the flag.
Pretraining is experiments/configs/pretrain.py:text,quick,steps=N (with
TRANSFER_QUICK) or :text,sweep,steps=N; `--runlocal` is a seconds-long
smoke (the runlocal toyworld as source and target).
Writes OUT/<source>_<schedule>_s0-0.json (`_wavelength` appended with
--wavelength) and prints a table. `--runlocal --wavelength`: toyworld source,
the real BigEarthNet patches as target (needs ../shared/data).

Targets: rsscn7 (its test split: seen label words, unseen images),
eurosat_samples (54 real EuroSAT tiles, 7 classes: another sensor and other
label words), bigearthnet (6 real S2 patches, 43-label multi-label: the
BigEarthNet format end to end; 6 patches give no meaningful score).
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile

from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from crossscale import bands as bands_lib
from crossscale import (
    bootstrap,
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


def _resize(x: np.ndarray, lr_shape) -> np.ndarray:
  if x.shape[1:3] == tuple(lr_shape[:2]):
    return x
  return np.asarray(
      jax.image.resize(
          x,
          (x.shape[0],) + tuple(lr_shape[:2]) + (x.shape[-1],),
          "linear",
          antialias=True,
      )
  )


def _rgb_field(data_dir: str, m, lr_shape, lr_bands) -> tuple[str, list]:
  """(field, band positions) of the source's LR view: the LR field when it
  has the bands (at the source LR size if possible), else the HR one."""
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
  return field, sel


def check_band_names(names, where: str) -> None:
  """Every name maps to a wavelength (crossscale/bands.py), else a
  records.DataError naming `where` and the band."""
  for n in names:
    try:
      bands_lib.lookup(n)
    except ValueError as e:
      raise records.DataError(f"{where}: {e}") from None


def band_views(
    data_dir: str, split: str, lr_shape, lr_bands, all_bands: bool = False
) -> dict:
  """`split` of `data_dir` as the source's LR view.

  Returns {"rgb": `[N, h, w, C]` (bands `lr_bands` picked by name or S2
  alias, resized to `lr_shape`), "rgb_bands": their names in the records,
  "labels": `[N, K]`} and with `all_bands` also "all": the RGB view followed
  by every other band of the records' LR and HR fields (each resized to
  `lr_shape`; a name in both fields is read once, from the RGB view's
  field), "all_bands": their names (all checked against crossscale/bands.py:
  an unknown one is a records.DataError).
  """
  m = shards.load_manifest(data_dir)
  data = load_split(data_dir, split)
  field, sel = _rgb_field(data_dir, m, lr_shape, lr_bands)
  names = {"lr": list(m.lr_bands), "hr": list(m.hr_bands)}
  out = {
      "rgb": _resize(data[field][..., sel], lr_shape),
      "rgb_bands": tuple(names[field][i] for i in sel),
      "labels": data["labels"],
  }
  if not all_bands:
    return out
  xs, all_names = [out["rgb"]], list(out["rgb_bands"])
  for f in (field, "hr" if field == "lr" else "lr"):
    check_band_names(names[f], f"{data_dir} {f} bands")
    extra = [i for i, n in enumerate(names[f]) if n not in all_names]
    if extra:
      xs.append(_resize(data[f][..., extra], lr_shape))
      all_names += [names[f][i] for i in extra]
  out["all"] = np.concatenate(xs, axis=-1)
  out["all_bands"] = tuple(all_names)
  return out


def source_view(data_dir: str, split: str, lr_shape, lr_bands) -> tuple:
  """(images `[N, h, w, C]` as the source's LR view, labels `[N, K]`)."""
  v = band_views(data_dir, split, lr_shape, lr_bands)
  return v["rgb"], v["labels"]


def wavelength_encoder(cfg) -> bool:
  """Whether the config's LR encoder reads bands by wavelength."""
  enc = cfg.model.get("lr_encoder") or {}
  return enc.get("band_embedding", "learned") == "wavelength"


def with_bands(model, names):
  """`model` with its LR encoder reading bands `names` (same parameters)."""
  enc = dict(model.lr_encoder or {})
  return model.clone(lr_encoder={**enc, "bands": tuple(names)})


def _batched(fn, params, x, bs=64):
  return np.concatenate(
      [
          np.asarray(fn(params, jnp.asarray(x[i : i + bs])))
          for i in range(0, len(x), bs)
      ]
  )


@functools.lru_cache(maxsize=8)
def _prompts(class_names: tuple) -> np.ndarray:
  return pretrain_model.prompt_embeddings(
      [
          pretrain_model.PROMPT.format(pretrain_model.readable(c))
          for c in class_names
      ]
  )


def zero_shot_scores(model, params, x, class_names) -> np.ndarray:
  """`[N, K]` cosines of the image embeddings and the class prompts."""
  emb = _batched(
      jax.jit(
          lambda p, im: model.apply({"params": p}, im, method="image_embedding")
      ),
      params,
      x,
  )
  return emb @ _prompts(tuple(class_names)).T


def zero_shot_metrics(scores, labels, multi: bool) -> dict:
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
        np.mean(labels[np.arange(len(scores)), scores.argmax(1)] > 0)
    )
  return res


def zero_shot(model, params, x, labels, class_names, multi: bool) -> dict:
  return zero_shot_metrics(
      zero_shot_scores(model, params, x, class_names), labels, multi
  )


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
  return probe(feats, labels, multi)[0]


def probe(feats: dict, labels: dict, multi: bool) -> tuple:
  """`linear_probe`'s result, its test scores `[N, K]` and labels `[N, K]`
  (the test split, or every record in split order under CV)."""
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
    res = {
        "mAP": metrics.mean_average_precision(
            scores[:, present], y[:, present]
        )["mAP_macro"],
        "protocol": protocol,
    }
  else:
    res = {
        "accuracy": float(np.mean(y[np.arange(len(y)), scores.argmax(1)] > 0)),
        "protocol": protocol,
    }
  return res, scores, y


def all_minus_rgb(a: tuple, b: tuple, multi: bool) -> dict:
  """Paired bootstrap of metric(all bands) - metric(RGB) over the records:
  a, b: (scores `[N, K]`, labels `[N, K]`) of the same records; mAP over
  the classes present in them (as the table's)."""
  present = a[1].sum(0) > 0
  pick = (lambda v: (v[0][:, present], v[1][:, present])) if multi else tuple
  res = bootstrap.paired_difference(
      [pick(a)], [pick(b)], "mAP_macro" if multi else "accuracy"
  )
  return {**res, "verdict": bootstrap.verdict(res["low"], res["high"])}


def source_config(
    data_dir: str,
    quick: bool,
    steps: int,
    runlocal: bool = False,
    wavelength_bands=(),
):
  """The pretraining config of the source (module docstring); with
  `wavelength_bands` (the source's LR band names) the LR encoder reads
  bands by wavelength (`--wavelength`)."""
  if runlocal:
    c = pretrain_config.get_config(f"text,runlocal,sweep,steps={steps or 10}")
  elif quick:
    c = pretrain_config.get_config(f"text,quick,steps={steps or 800}")
    c.update_from_flattened_dict(TRANSFER_QUICK)
  else:
    c = pretrain_config.get_config(f"text,sweep,steps={steps or 3000}")
  c.data.path = data_dir
  if wavelength_bands:
    c.model.lr_encoder.band_embedding = "wavelength"
    c.model.lr_encoder.bands = tuple(wavelength_bands)
  return c


def resolve(name: str, runlocal: bool) -> str:
  """Records directory of `name` (the runlocal toyworld under runlocal)."""
  if runlocal and name == "toyworld":
    opts = {**common.TOYWORLD, **common.TOYWORLD_RUNLOCAL}
    return registry.resolve(name, None, opts)
  return registry.resolve(name)


def pretrain_source(
    source: str,
    quick: bool,
    steps: int,
    workdir: str,
    runlocal: bool = False,
    wavelength: bool = False,
):
  data_dir = resolve(source, runlocal)
  wl = tuple(shards.load_manifest(data_dir).lr_bands) if wavelength else ()
  if wavelength:
    check_band_names(wl, f"{data_dir} lr bands")
  c = source_config(data_dir, quick, steps, runlocal, wl)
  final = train.train_and_evaluate(c, workdir)
  return c, final["test"]


def evaluate(model, params, views: dict, key: str, class_names, multi):
  """Zero-shot and linear probe of `params` on views[split][key]: (result
  {"zero_shot", "linear_probe"}, {"zero_shot", "linear_probe"}: (scores,
  labels) of the evaluated records)."""
  x_all = np.concatenate([views[s][key] for s in ("train", "val", "test")])
  y_all = np.concatenate([views[s]["labels"] for s in ("train", "val", "test")])
  # Zero-shot on the test split when it is large enough, else every record.
  test = views["test"]
  zx, zy = (
      (test[key], test["labels"]) if len(test[key]) >= 50 else (x_all, y_all)
  )
  zs_scores = zero_shot_scores(model, params, zx, class_names)
  zs = zero_shot_metrics(zs_scores, zy, multi)
  feats_fn = jax.jit(
      lambda p, im: model.apply({"params": p}, im, method="features")
  )
  feats = {s: _batched(feats_fn, params, views[s][key]) for s in views}
  lp, lp_scores, lp_y = probe(
      feats, {s: views[s]["labels"] for s in views}, multi
  )
  return {"zero_shot": zs, "linear_probe": lp}, {
      "zero_shot": (zs_scores, zy),
      "linear_probe": (lp_scores, lp_y),
  }


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
  p.add_argument(
      "--wavelength",
      action="store_true",
      help="band transfer: pretrain with the wavelength band embedding and "
      "also read every band of each target (module docstring, 3.)",
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
    a.source = "toyworld"
    a.targets = "bigearthnet" if a.wavelength else "toyworld"

  if a.checkpoint:
    workdir, pre_eval = a.checkpoint, None
    cfg = export.load_config(workdir)
  else:
    workdir = os.path.join(tempfile.mkdtemp(prefix="transfer_"), "pretrain")
    cfg, pre_eval = pretrain_source(
        a.source, a.quick, a.steps, workdir, a.runlocal, a.wavelength
    )
  wavelength = wavelength_encoder(cfg)
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

  results, rows, datasets = {}, [], {"source": cfg.data.path}
  diffs = []
  for target in a.targets.split(","):
    data_dir = datasets[target] = resolve(target, a.runlocal)
    m = shards.load_manifest(data_dir)
    multi = (
        bool(np.any(load_split(data_dir, "train")["labels"].sum(1) > 1))
        or target == "bigearthnet"
    )
    views = {
        s: band_views(data_dir, s, src.lr_shape, src.lr_bands, wavelength)
        for s in ("train", "val", "test")
    }
    v = views["test"]
    keys = ["rgb"]
    if wavelength and len(v["all_bands"]) > len(v["rgb_bands"]):
      keys.append("all")
    results[target] = {
        "num_records": int(sum(len(views[s]["rgb"]) for s in views)),
        "num_classes": m.num_classes,
        "multi_label": multi,
        "zero_shot_records": int(
            len(v["rgb"])
            if len(v["rgb"]) >= 50
            else sum(len(views[s]["rgb"]) for s in views)
        ),
    }
    if wavelength:
      results[target]["bands"] = {
          "rgb": list(v["rgb_bands"]),
          "all": list(v["all_bands"]),
      }
    metric = "mAP" if multi else "accuracy"
    for name, params in (
        ("pretrained", pre_params),
        ("random_init", random_params),
    ):
      scores = {}
      for key in keys:
        mod = with_bands(model, v[f"{key}_bands"]) if wavelength else model
        res, scores[key] = evaluate(
            mod, params, views, key, m.class_names, multi
        )
        if wavelength:
          results[target].setdefault(name, {})[key] = res
        else:
          results[target][name] = res
        zs, lp = res["zero_shot"], res["linear_probe"]
        rows.append(
            {
                "target": target,
                "encoder": name,
                **({"bands": key} if wavelength else {}),
                "zero_shot": zs[metric],
                "zs_retrieval_mAP": zs["retrieval_mAP"],
                "linear_probe": lp[metric],
                "metric": metric,
                "probe": lp["protocol"],
            }
        )
      if "all" in scores:
        d = {
            e: all_minus_rgb(scores["all"][e], scores["rgb"][e], multi)
            for e in ("zero_shot", "linear_probe")
        }
        results[target][name]["all_minus_rgb"] = d
        for e, r in d.items():
          diffs.append(
              {
                  "target": target,
                  "encoder": name,
                  "eval": e,
                  "metric": metric,
                  "all-rgb": r["diff"],
                  "95% CI": f"[{r['low']:+.3f}, {r['high']:+.3f}]",
                  "records": r["scenes"],
                  "verdict": r["verdict"],
              }
          )
  columns = ["target", "encoder"] + (["bands"] if wavelength else [])
  reporting.print_table(
      rows,
      columns
      + ["metric", "zero_shot", "zs_retrieval_mAP", "linear_probe", "probe"],
  )
  if diffs:
    print()
    reporting.print_table(diffs, list(diffs[0]))
  schedule = reporting.schedule_name(a.quick, a.steps, a.runlocal)
  source = (
      os.path.basename(os.path.normpath(a.checkpoint))
      if a.checkpoint
      else a.source
  )
  stem = a.name or reporting.results_name(source, schedule, 0, 0)
  stem = stem.removesuffix(".json")
  if wavelength and not a.name:
    stem += "_wavelength"
  reporting.write_json(
      a.out,
      stem + ".json",
      {
          "source": reporting.relative_path(a.checkpoint) or a.source,
          "quick": a.quick,
          "schedule": schedule,
          "pretrain_steps": int(cfg.total_steps),
          "pretrain_eval": pre_eval,
          "prompt": pretrain_model.PROMPT,
          "band_embedding": "wavelength" if wavelength else "learned",
          "targets": results,
          "table": rows,
          **({"all_minus_rgb": diffs} if wavelength else {}),
      },
      datasets=datasets,
  )


if __name__ == "__main__":
  main()
