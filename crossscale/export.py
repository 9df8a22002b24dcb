r"""Exports a trained run's inference functions as serialized StableHLO.

  python launch.py --workdir runs/xs --export_to exports/xs
  python launch.py --workdir runs/xs --export_to exports/xs \
      --config experiments/configs/cross_scale.py --export_step 1000
  python -m crossscale.export --workdir runs/xs --out exports/xs \
      [--data_dir RECORDS_DIR]

launch.py resolves dataset names (`--dataset`) as for training; this module
takes paths only: the run's records directory from its config
(`config.data.path`, which launch.py stores in `WORKDIR/config.json`) or
`--data_dir`.

Restores the newest (or `--step`; launch.py: `--export_step`) checkpoint's
parameters of the run in `--workdir` on the CPU (whatever mesh it was saved
on), rebuilds the model from the run's config (`WORKDIR/config.json` if the
run wrote one, else `--config` with the same `--config.a.b=v` overrides as
the training command) and the records directory's manifest, and writes to
`--out` (launch.py: `--export_to`):

  manifest.json        functions with input/output shapes and dtypes ("b" is
                       the symbolic batch dimension), parameter keys, shapes,
                       dtypes and the params file's sha256, model name and
                       config, class names, the dataset's normalisation stats,
                       crossscale/jax versions, platforms, source run and
                       step, and "model_card" (`model_card`): what a raster
                       must match (bands, LR/HR GSD in metres or null with
                       gsd_known false, normalisation, sizes, grid, tile
                       size, classes, multi_label, budget and policy, the
                       LR degradation of the dataset)
  params.safetensors   the parameters, flat "a/b/kernel" keys; its metadata
                       holds the card too ("model_card": JSON)
  <function>.jaxexport a serialized `jax.export.Exported` per function, called
                       as f(params, *inputs) -> {name: array}; the parameters
                       are an input, not constants baked into the program

Functions, by model family (all with a symbolic batch dimension):
  cross_scale  predict(lr [b,h,w,C], hr [b,H,W,C]) -> logits [b,K],
                 embedding [b,E], tile_indices [b,k] (the tiles the model
                 bought, best first; only those are read from hr),
                 tile_valid [b,k] (false in slots a per-class or price
                 budget left unbought)
               sample(lr) -> tile_logits [b,G*G], tile_indices [b,k],
                 tile_valid [b,k]: call it before buying tiles, buy the
                 valid ones, then pass the HR scenes to predict
  sr_*         predict(lr [b,h,w,C]) -> sr [b,H,W,C_out] at the trained grid
  classifiers  predict(<the run's image fields>) -> logits [b,K]
               (+ embedding when the model returns one), e.g. lr_vit

Inputs are standardised per band as in training; `crossscale.serving.load(
DIR)` runs an export with jax + numpy only and can standardise raw pixels
(`normalize=True`). Tile selection is exported with the plain-JAX reference
(`select_impl="reference"`), which lowers on every platform; the Pallas kernel
it replaces returns the same indices. The random selection policy uses the
fixed key the evaluators use (`jax.random.key(0)`).

Platforms: `--platforms cpu,cuda,tpu` (default; launch.py:
`--export_platforms`) lowers once per platform into one file. Loading needs
the `flatbuffers` package; the export does not use orbax-export (it imports
TensorFlow).
"""

from __future__ import annotations

import dataclasses
import json
import logging as std_logging
import os
import time
from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import jaxlib
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

import crossscale
from crossscale import run_config, sensor, serving, shards, train
from crossscale.models import cross_scale, sr

DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")
CARD_VERSION = 1


@dataclasses.dataclass
class InferenceFn:
  """fn(params, *inputs) -> {name: array}; inputs: [(name, shape without
  the batch dim, dtype, stats key or None)]; `denormalize`: output -> stats."""

  fn: Callable[..., dict[str, jax.Array]]
  inputs: list[tuple[str, tuple[int, ...], str, str | None]]
  denormalize: dict[str, str] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------ models


def build_model(config, manifest: shards.Manifest) -> nn.Module:
  """The run's model, as trained."""
  return train.make_model(config, manifest)


def inference_functions(
    model: nn.Module, manifest: shards.Manifest, fields: Sequence[str] = ("lr",)
) -> dict[str, InferenceFn]:
  """The functions to export for `model`, by family (module docstring)."""
  lr_in = ("lr", tuple(manifest.lr_shape), "float32", "lr")
  hr_in = ("hr", tuple(manifest.hr_shape), "float32", "hr")
  rngs = lambda: {"selection": jax.random.key(0)}

  if isinstance(model, cross_scale.CrossScaleModel):
    # The reference select+gather lowers everywhere; the kernel does not.
    model = model.clone(select_impl="reference")

    def predict(params, lr, hr):
      out = model.apply(
          {"params": params}, {"lr": lr, "hr": hr}, train=False, rngs=rngs()
      )
      return {
          "logits": out["logits"],
          "embedding": out["embedding"],
          "tile_indices": out["tile_indices"],
          "tile_valid": out["tile_valid"],
      }

    def sample(params, lr):
      return model.apply(
          {"params": params}, {"lr": lr}, rngs=rngs(), method="plan"
      )

    return {
        "predict": InferenceFn(predict, [lr_in, hr_in]),
        "sample": InferenceFn(sample, [lr_in]),
    }

  if isinstance(model, sr.SRModel):
    out_hw = tuple(manifest.hr_shape[:2])

    def predict_sr(params, lr):
      return {
          "sr": model.apply({"params": params}, lr, out_hw, method="predict")
      }

    return {"predict": InferenceFn(predict_sr, [lr_in], {"sr": "hr"})}

  inputs = [i for i in (lr_in, hr_in) if i[0] in fields] or [lr_in]
  names = [i[0] for i in inputs]

  def predict_cls(params, *xs):
    out = model.apply(
        {"params": params}, dict(zip(names, xs)), train=False, rngs=rngs()
    )
    return {k: out[k] for k in ("logits", "embedding") if k in out}

  return {"predict": InferenceFn(predict_cls, inputs)}


# -------------------------------------------------------------- model card


def degradation_of(manifest: shards.Manifest) -> dict | None:
  """How the dataset's LR was made from its HR (`sensor.degradation_record`)
  as its builder recorded it (builder["degradation"]; manifests written
  before that key: derived from the builder's options), else None."""
  b = manifest.builder or {}
  if b.get("degradation"):
    return dict(b["degradation"])
  opts = b.get("config") if isinstance(b.get("config"), dict) else b
  if {"scale", "psf_sigma", "noise_std"} <= set(opts):  # toyworld, folders
    rec = sensor.degradation_record(
        opts["scale"], opts["psf_sigma"], opts["noise_std"]
    )
  elif b.get("builder") == "geotiff_pairs" and "scale" in b:
    raster = b.get("lr_source") == "raster"
    rec = sensor.degradation_record(
        b["scale"],
        **(b.get("degrade") or {}),
        source="raster" if raster else "sensor.degrade",
    )
  else:
    return None
  if b.get("builder") == "geoworld":
    rec.update(
        data_range=255.0,
        note="the LR bands mix the HR bands first (data/geoworld.py "
        "LR_RESPONSE): sensor.degrade of the HR alone is not its LR",
    )
  return rec


def budget_card(model: nn.Module) -> dict | None:
  """The tile budget and selection policy of a cross-scale model."""
  if not isinstance(model, cross_scale.CrossScaleModel):
    return None
  n = model.grid * model.grid
  out = {
      "policy": model.policy,
      "num_tiles": n,
      "k": int(model.k()),
      "selection": dict(model.selection or {}),
  }
  if model.cost_budget:
    return {**out, "mode": "cost", "cost": dict(model.cost)}
  if len(model.class_budgets):
    return {
        **out,
        "mode": "per_class",
        "class_budgets": [int(p) for p in model.class_budgets],
    }
  if isinstance(model.budget, (int, np.integer)):
    return {**out, "mode": "count", "tiles": int(model.budget)}
  return {**out, "mode": "ratio", "ratio": float(model.budget)}


def model_card(
    model: nn.Module, manifest: shards.Manifest, fields: Sequence[str]
) -> dict:
  """What a raster needs to match this model (serving.check_raster):
  bands, GSD, normalisation, sizes, grid, classes, budget, degradation."""
  known = manifest.gsd_known
  grid = getattr(model, "grid", None) or manifest.grid
  return {
      "card_version": CARD_VERSION,
      "dataset": manifest.name,
      "inputs": [f for f in ("lr", "hr") if f in fields] or ["lr"],
      "bands": {"lr": list(manifest.lr_bands), "hr": list(manifest.hr_bands)},
      "gsd_m": {
          "lr": float(manifest.lr_gsd) if known else None,
          "hr": float(manifest.hr_gsd) if known else None,
      },
      # False: the records carry no true GSD (1.0 was one HR pixel).
      "gsd_known": known,
      "scale": float(manifest.lr_gsd) / float(manifest.hr_gsd),
      "image_size": {
          "lr": list(manifest.lr_shape[:2]),
          "hr": list(manifest.hr_shape[:2]),
      },
      "dtypes": dict(manifest.dtypes),
      "normalization": {
          k: {"mean": list(v["mean"]), "std": list(v["std"])}
          for k, v in manifest.band_stats.items()
      },
      "grid": int(grid),
      "tile_px": int(manifest.hr_shape[0]) // int(grid),
      "class_names": list(manifest.class_names),
      "multi_label": bool(manifest.multi_label),
      "budget": budget_card(model),
      "degradation": degradation_of(manifest),
  }


# ------------------------------------------------------------------ export


def flatten_params(params) -> dict[str, np.ndarray]:
  """Nested params -> {"a/b/kernel": host array}."""
  params = nn.meta.unbox(flax.core.unfreeze(params))
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  return {k: np.asarray(jax.device_get(v)) for k, v in flat.items()}


def _spec(shape, dtype: str) -> dict:
  return {
      "shape": [
          serving.BATCH_DIM if not isinstance(d, int) else d for d in shape
      ],
      "dtype": str(np.dtype(dtype)),
  }


def export_model(
    model: nn.Module,
    params,
    out_dir: str,
    *,
    manifest: shards.Manifest,
    model_name: str,
    model_config: dict | None = None,
    fields: Sequence[str] = ("lr",),
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    source: dict | None = None,
) -> dict:
  """Exports `model` with `params` (nested tree) into `out_dir`; returns the
  manifest written to `out_dir/manifest.json`."""
  os.makedirs(out_dir, exist_ok=True)
  flat = flatten_params(params)
  card = model_card(model, manifest, fields)
  params_path = os.path.join(out_dir, serving.PARAMS)
  serving.save_safetensors(
      params_path,
      flat,
      {"format": "crossscale", serving.CARD_KEY: json.dumps(card)},
  )
  p_spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in flat.items()}
  (b,) = jax.export.symbolic_shape(serving.BATCH_DIM)

  functions = {}
  for name, inf in inference_functions(model, manifest, fields).items():

    def call(flat_params, *xs, _fn=inf.fn):
      nested = flax.traverse_util.unflatten_dict(flat_params, sep="/")
      return _fn(nested, *xs)

    in_specs = [
        jax.ShapeDtypeStruct((b,) + shape, dtype)
        for _, shape, dtype, _ in inf.inputs
    ]
    t0 = time.perf_counter()
    exp = jax.export.export(jax.jit(call), platforms=tuple(platforms))(
        p_spec, *in_specs
    )
    blob = exp.serialize()
    seconds = time.perf_counter() - t0
    fname = name + serving.FUNCTION_SUFFIX
    with open(os.path.join(out_dir, fname), "wb") as f:
      f.write(blob)
    outs = jax.tree.unflatten(exp.out_tree, exp.out_avals)
    functions[name] = {
        "file": fname,
        "sha256": serving.sha256_bytes(blob),
        "bytes": len(blob),
        "export_seconds": round(seconds, 3),
        "inputs": [
            {
                "name": n,
                **_spec(a.shape, a.dtype),
                **({"normalized_as": s} if s else {}),
            }
            for (n, _, _, s), a in zip(inf.inputs, in_specs)
        ],
        "outputs": {
            k: {
                **_spec(a.shape, a.dtype),
                **(
                    {"normalized_as": inf.denormalize[k]}
                    if k in inf.denormalize
                    else {}
                ),
            }
            for k, a in outs.items()
        },
        "calling_convention_version": exp.calling_convention_version,
    }

  extra = {}
  if isinstance(model, cross_scale.CrossScaleModel):
    n = model.grid * model.grid
    extra["tiles"] = {
        "grid": model.grid,
        "num_tiles": n,
        "k": model.k(),
        "policy": model.policy,
        "tile_px": manifest.hr_shape[0] // model.grid,
        "order": "row-major over the G x G grid of hr",
    }
  out = {
      "format": serving.FORMAT,
      "format_version": serving.FORMAT_VERSION,
      "model": {"name": model_name, "config": model_config or {}, **extra},
      "class_names": list(manifest.class_names),
      "normalization": {
          k: {"mean": list(v["mean"]), "std": list(v["std"])}
          for k, v in manifest.band_stats.items()
      },
      "dataset": {
          "name": manifest.name,
          "lr_shape": manifest.lr_shape,
          "hr_shape": manifest.hr_shape,
          "lr_bands": manifest.lr_bands,
          "hr_bands": manifest.hr_bands,
          "lr_gsd": manifest.lr_gsd,
          "hr_gsd": manifest.hr_gsd,
          "grid": manifest.grid,
      },
      "model_card": card,
      "functions": functions,
      "params": {
          "file": serving.PARAMS,
          "sha256": serving.sha256_file(params_path),
          "bytes": os.path.getsize(params_path),
          "count": int(sum(v.size for v in flat.values())),
          "keys": {
              k: {"shape": list(v.shape), "dtype": str(v.dtype)}
              for k, v in sorted(flat.items())
          },
      },
      "versions": {
          "crossscale": getattr(crossscale, "__version__", "unversioned"),
          "jax": jax.__version__,
          "jaxlib": jaxlib.__version__,
          "flax": flax.__version__,
      },
      "platforms": list(platforms),
      "source": source or {},
  }
  tmp = os.path.join(out_dir, serving.MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump(out, f, indent=1)
  os.replace(tmp, os.path.join(out_dir, serving.MANIFEST))
  return out


# ----------------------------------------------------------------- restore


def load_config(workdir: str, config=None) -> ml_collections.ConfigDict:
  """`config` if given, else the run's `WORKDIR/config.json`."""
  if config is not None:
    return config
  stored = run_config.load_stored(workdir)
  if stored is None:
    raise FileNotFoundError(
        f"{os.path.join(workdir, run_config.CONFIG_FILE)} not found: this run "
        "did not save its config. Pass the training command's config: "
        "--config experiments/configs/NAME.py[:arg] with the same "
        "--config.a.b=v overrides (and --dataset)."
    )
  return ml_collections.ConfigDict(stored)


def restore_params(
    config, manifest: shards.Manifest, workdir: str, step: int | None = None
) -> tuple[Any, int]:
  """(host params tree, step) of the newest (or `step`) checkpoint in
  `WORKDIR/checkpoints`, restored onto one CPU device whatever mesh it was
  saved from."""
  model = build_model(config, manifest)
  tx = train.make_tx(config)
  batch = train.example_batch(manifest, tuple(config.data.fields), 1)

  def init(rng):  # as train.init_state, so the restored tree matches
    params_rng, state_rng = jax.random.split(rng)
    params = model.init({"params": params_rng}, batch, train=False)["params"]
    return nn.meta.unbox(
        train.TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            rng=state_rng,
        )
    )

  rng = jax.random.key_data(jax.random.key(config.seed))
  cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu),
      jax.eval_shape(init, rng),
  )
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f"no checkpoints in {directory}: is {workdir} a "
        "training workdir (launch.py --workdir)?"
    )
  # Read-only: the run may still be training (and saving) in this directory.
  mngr = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(read_only=True)
  )
  try:
    steps = sorted(mngr.all_steps())
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    if step is not None and step not in steps:
      raise ValueError(
          f"no checkpoint for --step={step} in {directory}; it "
          f"has steps {steps}."
      )
    step = steps[-1] if step is None else step
    # The layout crossscale.checkpoint.Checkpointer writes.
    state = mngr.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
    )["state"]
  finally:
    mngr.close()
  return jax.device_get(state.params), step


def records_dir(config, data_dir: str | None = None) -> str:
  """The run's records directory: `data_dir`, else `config.data.path`.

  Takes paths only; a registered dataset name (e.g. "toyworld") is resolved
  by launch.py (`python launch.py --workdir W --export_to OUT --dataset
  NAME`), so a name here is an error naming that command.
  """
  path = data_dir or config.data.get("path") or ""
  if path and (os.path.isdir(path) or os.sep in path or path.startswith(".")):
    return path
  name = path or config.get("dataset") or "?"
  raise ValueError(
      f"no records directory for this run: {name!r} is not a directory "
      "(crossscale.export takes paths; config.data.path is empty or a "
      "name). Export through launch.py, which resolves dataset names as "
      "training did: python launch.py --workdir WORKDIR --export_to OUT "
      f"--dataset {name} [--config ...]; or pass --data_dir RECORDS_DIR."
  )


def export_run(
    workdir: str,
    out_dir: str,
    config=None,
    *,
    step: int | None = None,
    data_dir: str | None = None,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
) -> dict:
  """Restores a run and exports it; returns the manifest. The records
  directory is `data_dir`, else the config's `data.path` (`records_dir`)."""
  config = load_config(workdir, config)
  config.data.path = records_dir(config, data_dir)
  manifest = shards.load_manifest(config.data.path)
  params, step = restore_params(config, manifest, workdir, step)
  model = build_model(config, manifest)
  return export_model(
      model,
      params,
      out_dir,
      manifest=manifest,
      model_name=config.model.name,
      model_config=config.model.to_dict(),
      fields=tuple(config.data.fields),
      platforms=platforms,
      source={
          "workdir": os.path.abspath(workdir),
          "step": int(step),
          "dataset": os.path.abspath(config.data.path),
      },
  )


def summary(out: dict, out_dir: str, seconds: float) -> str:
  """One line on an export's manifest `out`, for the command lines."""
  return (
      f"exported {out['model']['name']} step {out['source']['step']} "
      f"({out['params']['count']:,} parameters, "
      f"{out['params']['bytes'] / 1e6:.2f} MB) to {out_dir} in "
      f"{seconds:.1f} s: "
      + ", ".join(
          f"{k} ({v['bytes'] / 1e3:.0f} kB)"
          for k, v in out["functions"].items()
      )
  )


def main(argv):
  del argv
  from absl import flags, logging  # pylint: disable=g-import-not-at-top

  logging.set_verbosity("warning")  # orbax INFO lines are noise here
  std_logging.getLogger().setLevel(std_logging.WARNING)
  f = flags.FLAGS
  t0 = time.perf_counter()
  config = load_config(f.workdir, f.config)
  try:
    data_dir = records_dir(config, f.data_dir)
  except ValueError as e:
    raise SystemExit(f"crossscale.export: {e}") from None
  out = export_run(
      f.workdir,
      f.out,
      config,
      step=f.step,
      data_dir=data_dir,
      platforms=tuple(p for p in f.platforms.split(",") if p),
  )
  print(summary(out, f.out, time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  config_flags.DEFINE_config_file(
      "config",
      None,
      "the run's config file[:arg] (default: WORKDIR/config.json)",
      lock_config=False,
  )
  flags.DEFINE_string("workdir", None, "the training run's workdir")
  flags.DEFINE_string("out", None, "export directory to write")
  flags.DEFINE_integer("step", None, "checkpoint step (default: newest)")
  flags.DEFINE_string(
      "data_dir",
      None,
      "the run's records directory (default: its config.data.path); for "
      "a dataset name use launch.py --export_to",
  )
  flags.DEFINE_string(
      "platforms",
      ",".join(DEFAULT_PLATFORMS),
      "comma-separated: cpu,cuda,tpu,rocm",
  )
  flags.mark_flags_as_required(["workdir", "out"])
  app.run(main)
