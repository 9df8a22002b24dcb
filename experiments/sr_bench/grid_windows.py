"""The SR grid's per-window arrays: fidelity per test window in the random
and the learned (pretrained HR encoder) features, pooled features for the
Frechet distance, and the grid's cache files (trained parameters, JSON
metadata and cells, per-window arrays) and the memoised predict functions.

Feature encoders ("nets", {name: (apply, params)}): "randfeat" =
sr_gan.random_feature_net (fixed random convs, seed 0); "hrenc" = the conv
HR tile encoder of a cross-scale pretraining run of ours
(experiments/configs/pretrain.py, sr_gan.encoder_feature_net), either a run
given by path or a short one `pretrain_run` trains on the grid's records
and caches. Per window and encoder: "<name>_dist" (fidelity.
feature_distance_of_maps) and "feat_<name>" (fidelity.pooled_features).
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from crossscale import checkpoint, fidelity, models, train
from crossscale.models import sr_gan
from experiments.configs import pretrain as pretrain_config

CACHE_VERSION = 2  # 2: parameters as .npz (crossscale.checkpoint)
# The first conv of the pretraining run's HR encoder reads at stride 1 so
# that its features apply to whole images at full resolution.
PRETRAIN_ARG = "quick"


def cache_key(kind: str, spec: dict) -> str:
  blob = json.dumps({"v": CACHE_VERSION, **spec}, sort_keys=True, default=str)
  return f"{kind}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def load_json(cache: str, key: str) -> dict | None:
  path = os.path.join(cache, f"{key}.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def save_json(cache: str, key: str, obj: dict) -> None:
  path = os.path.join(cache, f"{key}.json")
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1, default=_jsonable)
  os.replace(tmp, path)


def _jsonable(v):
  if isinstance(v, (np.floating, np.integer)):
    return v.item()
  if isinstance(v, np.ndarray):
    return v.tolist()
  raise TypeError(f"not JSON serialisable: {type(v)}")


def load_params(cache: str, key: str):
  """(params, meta) of a finished model (its json written), else None."""
  meta = load_json(cache, key)
  path = os.path.join(cache, f"{key}.npz")
  if meta is None or not os.path.exists(path):
    return None, None
  return checkpoint.load_params(path, f"the grid cache {cache}"), meta


def save_params(cache: str, key: str, params, meta: dict) -> None:
  tmp = os.path.join(cache, f"{key}.tmp{os.getpid()}.npz")
  checkpoint.save_params_npz(tmp, jax.device_get(params))
  os.replace(tmp, os.path.join(cache, f"{key}.npz"))
  save_json(cache, key, meta)  # written last: marks the model done


def batched(fn, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
  """`fn` over `[N, ...]` in chunks, concatenated (the last chunk padded so
  one shape compiles once)."""
  outs = []
  for i in range(0, len(x), batch_size):
    chunk = x[i : i + batch_size]
    pad = batch_size - len(chunk)
    if pad and len(x) > batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
    out = np.asarray(fn(chunk))
    outs.append(out[: len(x[i : i + batch_size])])
  return np.concatenate(outs)


_FNS: dict[str, tuple] = {}  # compiled predict functions, per process


def predict_fn(cfg: dict, mode: str, out_hw=None):
  """(model, jitted `fn(params, x)`) for config.model `cfg`, memoised per
  process so a resumed grid does not recompile. mode: "sr" (`predict` to
  `out_hw`), "regression" (the raw output) or "argmax" (class ids)."""
  key = json.dumps([cfg, mode, out_hw], sort_keys=True, default=str)
  if key not in _FNS:
    kw = dict(cfg)
    model = models.get_model(kw.pop("name"), **kw)
    if mode == "sr":
      fn = lambda p, x: model.apply({"params": p}, x, out_hw, method="predict")
    elif mode == "regression":
      fn = lambda p, x: model.apply({"params": p}, x, method="predict")
    else:
      fn = lambda p, x: jnp.argmax(
          model.apply({"params": p}, x, method="predict"), -1
      )
    _FNS[key] = (model, jax.jit(fn))
  return _FNS[key]


def save_arrays(cache: str, name: str, arrays: dict) -> None:
  """`{key: array}` (nested dicts joined by "/") as `<cache>/<name>.npz`,
  written atomically."""
  flat = {}

  def put(prefix, d):
    for k, v in d.items():
      if isinstance(v, dict):
        put(f"{prefix}{k}/", v)
      else:
        flat[f"{prefix}{k}"] = np.asarray(v)

  put("", arrays)
  tmp = os.path.join(cache, f"{name}.tmp{os.getpid()}.npz")
  np.savez(tmp, **flat)
  os.replace(tmp, os.path.join(cache, f"{name}.npz"))


def load_arrays(cache: str, name: str) -> dict | None:
  """The nested dict `save_arrays` wrote, or None when absent."""
  path = os.path.join(cache, f"{name}.npz")
  if not os.path.exists(path):
    return None
  out = {}
  with np.load(path) as z:
    for k in z.files:
      *parents, leaf = k.split("/")
      d = out
      for p in parents:
        d = d.setdefault(p, {})
      d[leaf] = z[k]
  return out


def pretrain_config_for(records: str, steps: int, seed: int):
  """pretrain.py:quick,steps=N on `records`, HR encoder stride 1, no evals."""
  c = pretrain_config.get_config(f"{PRETRAIN_ARG},steps={steps}")
  c.data.path = records
  c.dataset = records
  c.model.hr_encoder.stride = 1
  c.seed = seed
  c.evals = ml_collections.ConfigDict({})
  return c


def pretrain_run(
    cache: str, records: str, steps: int, seed: int, log
) -> tuple[str, str]:
  """(workdir, cache key) of a short cross-scale pretraining run on
  `records` (its train split), trained once under `<cache>/<key>/` and
  marked done by `<cache>/<key>.json` (a crashed run resumes from its
  checkpoints)."""
  key = cache_key(
      "pretrain",
      {
          "records": os.path.basename(os.path.normpath(records)),
          "arg": PRETRAIN_ARG,
          "steps": steps,
          "seed": seed,
      },
  )
  workdir = os.path.join(cache, key)
  if load_json(cache, key) is None:
    log(f"  pretraining the HR encoder ({steps} steps) in {workdir}")
    train.train_and_evaluate(pretrain_config_for(records, steps, seed), workdir)
    save_json(cache, key, {"steps": steps, "seed": seed, "arg": PRETRAIN_ARG})
  return workdir, key


def run_stride(workdir: str) -> int:
  """The HR encoder's first-conv stride stored in a run's config.json (1
  when absent or automatic: the 3x3 filters then read every pixel)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return 1
  with open(path) as f:
    cfg = json.load(f)
  return int(cfg.get("model", {}).get("hr_encoder", {}).get("stride") or 1)


def feature_nets(bands: int, randfeat: bool, hrenc_run: str = "") -> dict:
  """{name: (jitted apply(params, images) -> feature maps, params)}."""
  nets = {}
  if randfeat:
    nets["randfeat"] = sr_gan.random_feature_net(bands)
  if hrenc_run:
    nets["hrenc"] = sr_gan.encoder_feature_net(
        hrenc_run, bands, run_stride(hrenc_run), config_key="--feature_init"
    )
  return {k: (jax.jit(a), p) for k, (a, p) in nets.items()}


def window_fidelity(
    sr01: np.ndarray, hr01: np.ndarray, nets: dict, batch: int = 32
) -> dict[str, np.ndarray]:
  """Per test window of `[N, H, W, C]` images in [0, 1]: "psnr", "ssim"
  (band means) `[N]`, per net "<name>_dist" `[N]` and the SR's pooled
  features "feat_<name>" `[N, F]`."""
  out = {k: [] for k in ("psnr", "ssim")}
  for i in range(0, len(hr01), batch):
    x, y = jnp.asarray(sr01[i : i + batch]), jnp.asarray(hr01[i : i + batch])
    f = fidelity.fidelity(x, y, 1.0)
    out["psnr"].append(np.asarray(f["psnr"]))
    out["ssim"].append(np.asarray(f["ssim"]))
    for name, (apply, params) in nets.items():
      fx, fy = apply(params, x), apply(params, y)
      out.setdefault(f"{name}_dist", []).append(
          np.asarray(fidelity.feature_distance_of_maps(fx, fy))
      )
      out.setdefault(f"feat_{name}", []).append(
          np.asarray(fidelity.pooled_features(fx))
      )
  return {k: np.concatenate(v) for k, v in out.items()}


def pooled(images01: np.ndarray, nets: dict, batch: int = 32) -> dict:
  """{name: pooled features `[N, F]`} of `[N, H, W, C]` images."""
  out = {}
  for name, (apply, params) in nets.items():
    out[name] = np.concatenate(
        [
            np.asarray(
                fidelity.pooled_features(
                    apply(params, jnp.asarray(images01[i : i + batch]))
                )
            )
            for i in range(0, len(images01), batch)
        ]
    )
  return out


def split_windows(win: dict) -> tuple[dict, dict]:
  """`window_fidelity`'s dict -> ({metric: [N]}, {net: features [N, F]})."""
  metrics = {k: v for k, v in win.items() if not k.startswith("feat_")}
  feats = {k[5:]: v for k, v in win.items() if k.startswith("feat_")}
  return metrics, feats
