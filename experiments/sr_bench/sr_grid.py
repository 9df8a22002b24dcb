r"""Does SR fidelity predict downstream usefulness? SR model x downstream
model x task grid.

  python -m experiments.sr_bench.sr_grid --dataset toyworld --quick --out DIR
  python -m experiments.sr_bench.sr_grid --dataset rsscn7 --quick --out DIR
  python -m experiments.sr_bench.sr_grid --dataset spacenet_buildings --quick --out DIR
  python -m experiments.sr_bench.sr_grid --dataset spacenet_roads --quick --out DIR
  python -m experiments.sr_bench.sr_grid --dataset levircd --quick --out DIR
  python -m experiments.sr_bench.sr_grid --dataset hag --quick --out DIR
  python -m experiments.sr_bench.sr_grid --dataset toyworld --tiny --out /tmp/g  # ~30 s
  python -m experiments.sr_bench.sr_grid --dataset toyworld --out DIR   # full: + gan,
                                                             # diffusion

Steps (every model is trained by the shared train step,
`crossscale.train.make_train_step`, in a small in-memory loop):
  (a) each SR model (configs: experiments/configs/sr.py `_model`) is trained
      on the train split's LR/HR pairs with its own losses (pixel L1; the
      GAN with sr.py's ESRGAN AUX_WEIGHTS; diffusion its v-loss); bicubic
      has no training. --quick trains bicubic, edsr, swinir, implicit
      (SR_MODELS); the full run adds gan and diffusion (SR_MODELS_FULL);
  (b) each downstream model (experiments/configs/downstream.py) is trained
      on the TRUE HR train images for the task (segmentation with class-
      balanced CE + Dice, Settings.seg_loss: plain CE collapses to
      background when objects are ~1% of the pixels);
  (c) each downstream model is evaluated on the test split with HR, SR(LR)
      of every SR model, and bicubic-upsampled LR ("lr_up") as input;
  (d) per cell (SR x downstream x task): psnr, ssim, randfeat_dist (SR vs HR
      on test, [0, 1] units, crossscale.fidelity; randfeat_dist is the
      SR evaluator's random-feature distance, lower is better), score (the
      task's main metric: segmentation mIoU, classification accuracy,
      regression neg_rmse = -RMSE; all higher-is-better), score_hr,
      score_lr_up and gap_recovered = (score_SR - score_LR) / (score_HR -
      score_LR) (None with a note when score_HR == score_LR);
  (e) Pearson and Spearman (scipy.stats) between each fidelity metric and
      the score, per task: over all cells, within the top-k SR models by
      PSNR, and per downstream model.
The "bicubic" SR model is the same operator as "lr_up" (its gap_recovered
is 0 by construction): a sanity check of the pipeline.

Caching (`--cache DIR`, default OUT/cache): every trained model writes
<cache>/<key>.msgpack (parameters) and then <cache>/<key>.json (its
metadata, written last: it marks the model done); every cell writes
<cache>/<key>.json. Keys hash everything that
decides the result (data fingerprint, model config, steps, seeds), so a
rerun skips what is done, a changed setting recomputes only what it
touches, and a crash loses only the running cell or model.

Datasets (`--dataset`):
  toyworld            segmentation of the "objects" mask (background + 6
                      texture classes) and scene classification (labels);
                      toyworld has no continuous target: no regression.
  rsscn7              RSSCN7 scenes (HR resized to 120 px with --quick),
                      LR 8x degraded: scene classification of SR output.
  spacenet_buildings  SpaceNet pan 0.5 m (sample_geotiff.tif) in 64 px chips
                      with the rasterised building footprints (binary
                      segmentation); LR = 4x degraded pan (the real MS/pan
                      pairs have no building masks, so they are not used).
  spacenet_roads      SpaceNet road_mask_input.tif (~0.3 m, Las Vegas) in
                      64 px chips with sample_road_raster_mask.tif (binary
                      road segmentation); LR = 4x degraded image.
  levircd             LEVIR-CD change segmentation: before (A) and after (B)
                      RGB stacked as 6 bands, 64 px chips of the 12 sample
                      pairs, split per image (LEVIRCD_TEST pairs for test);
                      LR = both 4x degraded; SR is applied per image (the SR
                      model has 3 bands, `sr_groups` = 2).
  hag                 geotiff/elevation: there is no optical image
                      co-registered with hag.tif, so the DSM is the input
                      image (min-max scaled to [0, 1]) and height above
                      ground (metres) the dense regression target, in 32 px
                      chips; LR = 4x degraded DSM.
  a records directory LR/HR records: segmentation from its first mask,
                      classification from single-label labels.
--quick sizes (PRESETS["quick"] refined per dataset by QUICK): 200 SR
steps, 400 downstream steps (toyworld classification 1500, U-Net only;
rsscn7 200 steps, U-Net and Swin), batch 16, "small" models.
Writes OUT/sr_grid.json, OUT/sr_grid.png and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Sequence

import einops
import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy import stats

from crossscale import (
  evaluators,
  fidelity,
  models,
  optim,
  partitioning,
  reporting,
  shards,
  train,
)
from crossscale import metrics as metrics_lib
from crossscale.models import sr as sr_lib
from crossscale.models import sr_gan
from data import common as data_common
from data import registry
from experiments.configs import downstream as ds_config
from experiments.configs import sr as sr_config

CACHE_VERSION = 1
# --quick trains the pixel-loss families only (CPU minutes); the full run
# adds the GAN (ESRGAN recipe) and the diffusion model.
SR_MODELS = ("bicubic", "edsr", "swinir", "implicit")
SR_MODELS_FULL = SR_MODELS + ("gan", "diffusion")
DOWNSTREAM = ("unet", "segformer", "swin")
SCORES = {
    "segmentation": "mIoU",
    "classification": "accuracy",
    "regression": "neg_rmse",
}
FIDELITY = ("psnr", "ssim", "randfeat_dist")
DATASETS = (
    "toyworld",
    "rsscn7",
    "spacenet_buildings",
    "spacenet_roads",
    "levircd",
    "hag",
)


# ----------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Settings:
  """Everything that sizes a run (hashed into the cache keys)."""

  sr_steps: int
  task_steps: int
  batch_size: int
  size: str  # downstream size in ds_config.SIZES
  sr_size: str  # "tiny" | "small" | "base" (sr_model_config)
  lr: float = 1e-3  # SR models
  task_lr: float = 3e-3  # downstream models
  # Segmentation loss (crossscale.models.dense_backbones.SEG_LOSSES): class-
  # balanced CE + Dice; plain "ce" collapses to all-background on toyworld.
  seg_loss: str = "balanced_ce+dice"
  cls_steps: int | None = None  # classification steps (None: task_steps)
  max_train: int | None = None  # images per split (None: all)
  max_test: int | None = None
  feature_distance: bool = True
  top_k: int = 3
  seed: int = 0


PRESETS = {
    "tiny": Settings(
        sr_steps=15,
        task_steps=15,
        batch_size=8,
        size="tiny",
        sr_size="tiny",
        max_train=64,
        max_test=32,
        feature_distance=False,
    ),
    "quick": Settings(
        sr_steps=200,
        task_steps=400,
        batch_size=16,
        size="small",
        sr_size="small",
    ),
    "full": Settings(
        sr_steps=3000,
        task_steps=2000,
        batch_size=32,
        size="base",
        sr_size="base",
    ),
}


# --quick per dataset, sized for a loaded 2-core CPU (~10 min a dataset):
# Settings fields, and the downstream models (per task where they differ).
# toyworld's scene class is the fine texture of ~1% of the pixels (its LR
# tint matches the class only half the time): the classifier needs ~1500
# steps to get past the tint shortcut, so only the U-Net classifies there.
QUICK = {
    "toyworld": dict(
        settings=dict(cls_steps=1500),
        task_downstream={"classification": ("unet",)},
    ),
    "rsscn7": dict(settings=dict(task_steps=200), downstream=("unet", "swin")),
}


def sr_model_config(family: str, scale: int, bands: int, size: str) -> dict:
  """config.model of an SR family: experiments/configs/sr.py's runlocal
  ("tiny") or full ("base") model, or "small" (CPU --quick) in between."""
  c = sr_config._model(family, scale, bands, size != "base")  # pylint: disable=protected-access
  if size == "small":
    c.update(
        {
            "edsr": dict(features=16, num_blocks=2),
            "swinir": dict(
                embed_dim=16,
                depths=(2, 2),
                num_heads=2,
                window_size=4,
                upsample_features=16,
            ),
            # LIIF queries 4 x H x W MLPs: kept at the runlocal size.
            "implicit": dict(features=16, num_blocks=2, hidden=(16,)),
        }.get(family, {})
    )
  return c


# --------------------------------------------------------------------- data


def _stack(scenes, key):
  return np.stack([getattr(s, key) for s in scenes])


def _limit(split: dict, n: int | None) -> dict:
  return split if n is None else {k: v[:n] for k, v in split.items()}


def load_records(data_dir: str) -> dict:
  """A records directory as in-memory arrays (see `load_dataset`)."""
  m = shards.load_manifest(data_dir)
  r_hr = evaluators.sr_data_range(m, "hr")
  r_lr = evaluators.sr_data_range(m, "lr")
  splits, tasks = {}, {}
  mask = (
      "objects"
      if "objects" in m.mask_names
      else (m.mask_names[0] if m.mask_names else None)
  )
  for split in ("train", "test"):
    scenes = list(shards.iter_scenes(data_dir, split, verify=False))
    if not scenes:
      raise ValueError(f"{data_dir}: split {split!r} is empty.")
    d = {
        "lr": _stack(scenes, "lr").astype(np.float32) / r_lr,
        "hr": _stack(scenes, "hr").astype(np.float32) / r_hr,
    }
    labels = _stack(scenes, "labels")
    if m.num_classes > 1 and (labels.sum(1) == 1).all():
      d["cls"] = labels.argmax(1).astype(np.int32)
    if mask:
      d["seg"] = np.stack([s.masks[mask] for s in scenes]).astype(np.int32)
    splits[split] = d
  if "cls" in splits["train"] and "cls" in splits["test"]:
    tasks["classification"] = {
        "num_classes": m.num_classes,
        "classes": list(m.class_names),
    }
  if mask:
    k = int(max(splits["train"]["seg"].max(), splits["test"]["seg"].max())) + 1
    if mask == "objects":  # toyworld: background + one id per class
      k = max(k, m.num_classes + 1)
    tasks["segmentation"] = {"num_classes": k, "mask": mask}
  return {
      "name": m.name,
      "source": data_dir,
      "scale": int(round(m.hr_shape[0] / m.lr_shape[0])),
      "bands": list(m.hr_bands),
      "splits": splits,
      "tasks": tasks,
      "notes": [],
      "label_symmetries": list(m.label_symmetries),
  }


def _chip_dataset(
    name: str,
    images: np.ndarray | Sequence[np.ndarray],
    targets: np.ndarray | Sequence[np.ndarray],
    chip: int,
    scale: int,
    seed: int,
    image_splits: Sequence[str] | None = None,
    windows_out: dict | None = None,
) -> dict[str, dict]:
  """Chips `images [H, W, C]` (float [0, 1]; one image or a list) and their
  `targets [H, W]` into non-overlapping chip x chip windows (spatially
  disjoint), LR by sensor.degrade (per band: a stacked before/after pair is
  degraded image by image). Splits: `image_splits` (one per image: no image
  crosses splits), else seeded train/val/test over all windows (val unused).
  `windows_out`, when given, gets {split: [(image index, row, col)]} (kept
  out of the splits: the cache fingerprint hashes every split array).
  """
  from crossscale import sensor  # pylint: disable=import-outside-toplevel

  if isinstance(images, np.ndarray):
    images, targets = [images], [targets]
  wins = []  # (image index, row, col)
  for k, t in enumerate(targets):
    H, W = t.shape
    wins += [
        (k, r, c)
        for r in range(0, H - chip + 1, chip)
        for c in range(0, W - chip + 1, chip)
    ]
  if image_splits is None:
    split_of = data_common.assign_splits(len(wins), (0.7, 0.15, 0.15), seed)
  else:
    split_of = [image_splits[k] for k, _, _ in wins]
  out = {}
  for split in ("train", "test"):
    hr, lr, tg = [], [], []
    for i, ((k, r, c), s) in enumerate(zip(wins, split_of)):
      if s != split:
        continue
      x = images[k][r : r + chip, c : c + chip]
      hr.append(x)
      lr.append(
          sensor.degrade(
              x, scale, np.random.default_rng([seed, i]), data_range=1.0
          )
      )
      tg.append(targets[k][r : r + chip, c : c + chip])
      if windows_out is not None:
        windows_out.setdefault(split, []).append((k, r, c))
    if not hr:
      raise ValueError(f"{name}: no {split} chips; lower the chip size.")
    out[split] = {
        "hr": np.stack(hr).astype(np.float32),
        "lr": np.clip(np.stack(lr), 0, 1).astype(np.float32),
        "target": np.stack(tg),
    }
  return out


def _binary_seg(
    name: str,
    source: str,
    bands,
    splits: dict,
    cls: str,
    notes: list[str],
    **extra,
) -> dict:
  """The dataset dict of a binary segmentation from `_chip_dataset` splits."""
  for d in splits.values():
    d["seg"] = (d.pop("target") > 0).astype(np.int32)
  return {
      "name": name,
      "source": source,
      "scale": 4,
      "bands": list(bands),
      "splits": splits,
      "tasks": {
          "segmentation": {"num_classes": 2, "classes": ["background", cls]}
      },
      "notes": notes,
      **extra,
  }


def _spacenet_pan(
    source: str, name: str, chip: int, seed: int, what: str
) -> dict:
  """A SpaceNet single-band image + binary mask (data.referring's readers)
  as 4x LR/HR chips: spacenet_buildings and spacenet_roads."""
  from data import referring  # pylint: disable=import-outside-toplevel

  read = {
      "spacenet_buildings": referring.source_spacenet_buildings,
      "spacenet_roads": referring.source_spacenet_roads,
  }[name]
  item = read(data_common.SHARED_DATA)[0]
  img = item.image.astype(np.float32)
  hi = float(np.percentile(img, 99.9))
  img = np.clip(img / hi, 0.0, 1.0)
  wins = {}
  mask = (item.labels > 0).astype(np.uint8)  # class ids or instance ids
  splits = _chip_dataset(name, img, mask, chip, 4, seed, windows_out=wins)
  return _binary_seg(
      name,
      source,
      item.bands,
      splits,
      what,
      [
          f"{item.bands[0]} scaled by its 99.9th percentile ({hi:.0f}) and "
          f"clipped to [0, 1]; {chip} px chips ({item.gsd:.1f} m), LR = 4x "
          "sensor.degrade; seeded 70/15/15 split over the non-overlapping "
          "chips of the one image (val unused)."
      ],
      windows={
          s: [f"{item.id}/r{r}_c{c}" for _, r, c in w] for s, w in wins.items()
      },
  )


def _spacenet_buildings(seed: int) -> dict:
  d = _spacenet_pan(
      "spacenet/sample_geotiff.tif + geotiff_labels.geojson",
      "spacenet_buildings",
      64,
      seed,
      "building",
  )
  d["notes"][0] += (
      " Footprints: the 43 polygons of geotiff_labels.geojson "
      "rasterised onto the image grid (the sample_*mask*.tif "
      "rasters beside it are another scene's); the real MS/pan "
      "pairs have no building masks."
  )
  return d


def _spacenet_roads(seed: int) -> dict:
  d = _spacenet_pan(
      "spacenet/road_mask_input.tif + " "sample_road_raster_mask.tif",
      "spacenet_roads",
      64,
      seed,
      "road",
  )
  d["notes"][0] += (
      " Las Vegas, EPSG:4326 (gsd ~0.3 m from 2.7e-6 deg); "
      "road pixels are ~3% of the image."
  )
  return d


LEVIRCD_TEST = 4  # of the 12 LEVIR-CD sample pairs: images for test


def _levircd(seed: int) -> dict:
  """LEVIR-CD before/after pairs stacked as 6 bands (A_RGB, B_RGB), the
  building-change mask as the target; 64 px chips; split per image."""
  import collections  # pylint: disable=import-outside-toplevel

  from data import referring  # pylint: disable=import-outside-toplevel

  counts = collections.Counter()
  items = referring.source_levircd(data_common.SHARED_DATA, counts)
  order = np.random.default_rng(seed).permutation(len(items))
  test = {items[k].id for k in order[:LEVIRCD_TEST]}
  wins = {}
  splits = _chip_dataset(
      "levircd",
      [it.image.astype(np.float32) / 255.0 for it in items],
      [it.labels for it in items],
      64,
      4,
      seed,
      image_splits=["test" if it.id in test else "train" for it in items],
      windows_out=wins,
  )
  return _binary_seg(
      "levircd",
      "levircd/{A,B,label}",
      items[0].bands,
      splits,
      "changed building",
      [
          f"{len(items)} LEVIR-CD 256 px pairs (0.5 m); input = A and B RGB "
          "stacked (6 bands, /255), LR = both 4x sensor.degrade; SR models are "
          "built for 3 bands and applied to A and B separately (sr_groups=2); "
          f"seeded per-image split: test = {sorted(test)}, the other "
          f"{len(items) - len(test)} train (the release's train_/val_/test_ "
          "prefixes would leave 3 training pairs); 64 px chips, no image "
          f"crosses splits; skipped pairs: {dict(counts) or 'none'}."
      ],
      sr_groups=2,
      windows={
          s: [f"{items[k].id}/r{r}_c{c}" for k, r, c in w]
          for s, w in wins.items()
      },
  )


def _hag(seed: int) -> dict:
  import collections  # pylint: disable=import-outside-toplevel

  from data import referring  # pylint: disable=import-outside-toplevel

  counts = collections.Counter()
  item = referring.source_elevation(data_common.SHARED_DATA, counts)[0]
  dsm, hag = item.image[..., 0], item.image[..., 1]
  lo, hi = float(dsm.min()), float(dsm.max())
  img = ((dsm - lo) / max(hi - lo, 1e-6))[..., None]
  splits = _chip_dataset("hag", img, hag, 32, 4, seed)
  for d in splits.values():
    d["reg"] = d.pop("target").astype(np.float32)[..., None]
  return {
      "name": "hag",
      "source": "geotiff/elevation/{dsm,hag}.tif",
      "scale": 4,
      "bands": ["dsm"],
      "splits": splits,
      "tasks": {"regression": {"unit": "m"}},
      "notes": [
          "no optical image is co-registered with hag.tif: the "
          "input is the DSM (min-max scaled to [0, 1]) and the "
          "target height above ground in metres; 32 px chips (2 m);"
          f" {counts['elevation_nodata_filled']} nodata pixels were"
          " filled with 0 by data.referring.source_elevation."
      ],
  }


_CHIP_DATASETS = {
    "spacenet_buildings": _spacenet_buildings,
    "spacenet_roads": _spacenet_roads,
    "levircd": _levircd,
    "hag": _hag,
}


def load_dataset(dataset: str, preset: str, seed: int = 0) -> dict:
  """{"name", "scale", "bands", "tasks": {task: info}, "notes": [...],
  "windows": {split: chip ids}? (chipped datasets), "sr_groups": int?
  (SR per band group: levircd's 2 images),
  "splits": {"train"|"test": {"lr": [N, h, w, C], "hr": [N, H, W, C] (both
  float32 in [0, 1]), "seg": [N, H, W] int32?, "cls": [N] int32?, "reg":
  [N, H, W, 1] float32?}}}."""
  if dataset == "toyworld":
    counts = {"tiny": (128, 16, 32), "quick": (1000, 64, 200)}.get(
        preset, (4000, 500, 500)
    )
    opts = dict(
        sr_config.get_config().toyworld.to_dict(),
        num_train=counts[0],
        num_val=counts[1],
        num_test=counts[2],
    )
    return load_records(registry.resolve("toyworld", None, opts))
  if dataset == "rsscn7":
    opts = {} if preset == "full" else {"hr_size": 120}
    d = load_records(registry.resolve("rsscn7", None, opts))
    d["notes"].append(
        "RSSCN7 700 images, seeded stratified 70/15/15 split "
        "(data/image_folder.py), LR 8x degraded"
        + ("" if preset == "full" else "; HR resized to 120 px")
    )
    return d
  if dataset in _CHIP_DATASETS:
    return _CHIP_DATASETS[dataset](seed)
  return load_records(dataset)  # a records directory


def fingerprint(data: dict) -> str:
  """sha1 of every array of the dataset (cache keys depend on the data)."""
  h = hashlib.sha1()
  for split in sorted(data["splits"]):
    for k in sorted(data["splits"][split]):
      a = np.ascontiguousarray(data["splits"][split][k])
      h.update(f"{split}/{k}/{a.dtype}/{a.shape}".encode())
      h.update(a.tobytes())
  return h.hexdigest()[:16]


def band_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-band mean and std `[C]` of `[N, H, W, C]`."""
  return (
      x.mean((0, 1, 2)).astype(np.float32),
      np.maximum(x.std((0, 1, 2)), 1e-3).astype(np.float32),
  )


# -------------------------------------------------------------------- cache


def cache_key(kind: str, spec: dict) -> str:
  blob = json.dumps({"v": CACHE_VERSION, **spec}, sort_keys=True, default=str)
  return f"{kind}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def _atomic_write(path: str, data: bytes) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def load_json(cache: str, key: str) -> dict | None:
  path = os.path.join(cache, f"{key}.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def save_json(cache: str, key: str, obj: dict) -> None:
  _atomic_write(
      os.path.join(cache, f"{key}.json"),
      json.dumps(obj, indent=1, default=_jsonable).encode(),
  )


def _jsonable(v):
  if isinstance(v, (np.floating, np.integer)):
    return v.item()
  if isinstance(v, np.ndarray):
    return v.tolist()
  raise TypeError(f"not JSON serialisable: {type(v)}")


def load_params(cache: str, key: str):
  """Parameters of a finished model (its json written), else None."""
  meta = load_json(cache, key)
  path = os.path.join(cache, f"{key}.msgpack")
  if meta is None or not os.path.exists(path):
    return None, None
  with open(path, "rb") as f:
    return flax.serialization.msgpack_restore(f.read()), meta


def save_params(cache: str, key: str, params, meta: dict) -> None:
  _atomic_write(
      os.path.join(cache, f"{key}.msgpack"),
      flax.serialization.msgpack_serialize(
          jax.tree.map(np.asarray, jax.device_get(params))
      ),
  )
  save_json(cache, key, meta)  # written last: marks the model done


# ----------------------------------------------------------------- training


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


def _augment(batch: dict, rng: np.random.Generator, flips: bool = True) -> dict:
  """The same random flips of every spatial array `[B, H, W, ...]` (none
  when `flips` is False: the dataset's labels are not flip-symmetric)."""
  if not flips:
    return batch
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


def fit(
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
) -> tuple[Any, list[float]]:
  """`steps` of the shared train step (crossscale.train.make_train_step:
  the model's aux losses weighted by `aux_weights` (default 1 each), plus
  softmax CE on "logits" when task is "single_label") on random batches of
  `arrays` (each `[N, ...]`), randomly flipped when `flips`. Returns
  (params, losses every step)."""
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
  state = train.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=jax.random.key_data(jax.random.key(seed)),
  )
  # Data parallel over every device that divides the batch (all TPU chips
  # on a Colab TPU); the small models are replicated.
  mesh = partitioning.make_mesh(
      (("data", _data_devices(bs)),), jax.devices()[: _data_devices(bs)]
  )
  rep = partitioning.replicated(mesh)
  state = jax.device_put(state, rep)
  step_fn = jax.jit(
      train.make_train_step(model, tx, task, dict(aux_weights or {})),
      in_shardings=(rep, partitioning.batch_sharding(mesh), rep),
      out_shardings=(rep, rep),
      donate_argnums=(0,),
  )
  rng = np.random.default_rng(seed)
  losses = []
  for i in range(steps):
    idx = np.sort(rng.choice(n, bs, replace=False))
    batch = _augment({k: v[idx] for k, v in arrays.items()}, rng, flips)
    key = jax.random.fold_in(state.rng, i)
    state, m = step_fn(state, partitioning.put_batch(batch, mesh), key)
    losses.append(m["loss"])
  losses = [float(x) for x in jax.device_get(losses)]
  if losses and not np.isfinite(losses[-1]):
    raise FloatingPointError(
        f"non-finite loss {losses[-1]} at the last "
        f"step of {type(model).__name__}: lower the "
        "learning rate (Settings.lr)."
    )
  return state.params, losses


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


# ------------------------------------------------------------------- scores


def gap_recovered(
    score_sr: float, score_lr: float, score_hr: float, eps: float = 1e-9
) -> tuple[float | None, str | None]:
  """(score_SR - score_LR) / (score_HR - score_LR): 0 = no better than
  bicubic LR, 1 = as good as true HR, < 0 worse than LR, > 1 better than
  HR. (None, note) when |score_HR - score_LR| <= eps; a note too when
  score_HR < score_LR (the ratio's sign is then inverted)."""
  gap = score_hr - score_lr
  if not np.isfinite(gap) or abs(gap) <= eps:
    return None, (
        f"score_hr ({score_hr:.4g}) == score_lr_up "
        f"({score_lr:.4g}): no gap to recover"
    )
  note = None
  if gap < 0:
    note = (
        f"score_hr ({score_hr:.4g}) < score_lr_up ({score_lr:.4g}): the "
        "downstream model does not profit from HR; the ratio is not "
        "meaningful"
    )
  return float((score_sr - score_lr) / gap) + 0.0, note  # no -0.0


def correlate(x: Sequence[float], y: Sequence[float]) -> dict:
  """Pearson and Spearman of paired values (scipy.stats); None with a note
  when fewer than 3 pairs or either side is constant."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  ok = np.isfinite(x) & np.isfinite(y)
  x, y = x[ok], y[ok]
  out = {
      "n": int(len(x)),
      "pearson": None,
      "pearson_p": None,
      "spearman": None,
      "spearman_p": None,
  }
  if len(x) < 3:
    return {**out, "note": "fewer than 3 points"}
  if np.ptp(x) == 0 or np.ptp(y) == 0:
    return {**out, "note": "constant input"}
  p = stats.pearsonr(x, y)
  s = stats.spearmanr(x, y)
  return {
      **out,
      "pearson": float(p.statistic),
      "pearson_p": float(p.pvalue),
      "spearman": float(s.statistic),
      "spearman_p": float(s.pvalue),
  }


def correlations(cells: list[dict], fidelity=FIDELITY, top_k: int = 3) -> dict:
  """Per task: fidelity metric vs score over all cells ("all"), over the
  cells of the top-k SR models by PSNR ("top{k}"), and the same per
  downstream model ("by_downstream")."""
  out = {}
  for task in sorted({c["task"] for c in cells}):
    tc = [c for c in cells if c["task"] == task]
    psnr_of = {}
    for c in tc:
      psnr_of[c["sr"]] = c["psnr"]
    top = sorted(psnr_of, key=lambda s: -psnr_of[s])[:top_k]

    def block(cs):
      res = {}
      for metric in fidelity:
        pairs = [
            (c[metric], c["score"]) for c in cs if c.get(metric) is not None
        ]
        res[metric] = correlate(*zip(*pairs)) if pairs else correlate([], [])
      return res

    out[task] = {
        "all": block(tc),
        f"top{top_k}": block([c for c in tc if c["sr"] in top]),
        f"top{top_k}_sr_models": top,
        "by_downstream": {
            ds: {
                "all": block([c for c in tc if c["downstream"] == ds]),
                f"top{top_k}": block(
                    [c for c in tc if c["downstream"] == ds and c["sr"] in top]
                ),
            }
            for ds in sorted({c["downstream"] for c in tc})
        },
    }
  return out


def task_metrics(
    task: str, pred: np.ndarray, split: dict, num_classes: int | None
) -> dict:
  """The task's metrics of predictions on a split; "score" = the main one
  (higher is better)."""
  if task == "segmentation":
    m = metrics_lib.segmentation_metrics(
        metrics_lib.confusion_matrix(pred, split["seg"], num_classes)
    )
  elif task == "classification":
    m = {"accuracy": metrics_lib.accuracy(pred, split["cls"])}
  else:
    m = metrics_lib.regression_metrics(pred, split["reg"])
    m["neg_rmse"] = -m["rmse"]
  m["score"] = m[SCORES[task]]
  return m


# --------------------------------------------------------------------- grid


class Grid:
  """Lazily trained/loaded SR and downstream models of one dataset."""

  def __init__(self, data: dict, s: Settings, cache: str, log=print):
    self.data, self.s, self.cache, self.log = data, s, cache, log
    self.train = _limit(data["splits"]["train"], s.max_train)
    self.test = _limit(data["splits"]["test"], s.max_test)
    self.mean, self.std = band_stats(self.train["hr"])
    self.fp = fingerprint({"splits": {"train": self.train, "test": self.test}})
    # SR runs per group of bands (levircd: the before and the after image).
    self.groups = int(data.get("sr_groups", 1))
    self.trained: list[str] = []
    self._sr: dict[str, tuple[np.ndarray, dict]] = {}
    self._ds: dict[tuple[str, str], tuple] = {}
    if "reg" in self.train:
      self.t_mean = float(np.nanmean(self.train["reg"]))
      self.t_std = float(max(np.nanstd(self.train["reg"]), 1e-6))

  def norm(self, x01: np.ndarray) -> np.ndarray:
    return ((x01 - self.mean) / self.std).astype(np.float32)

  def to_groups(self, x: np.ndarray) -> np.ndarray:
    """`[N, H, W, G * C]` -> `[N * G, H, W, C]` (one image per band group)."""
    return einops.rearrange(x, "n h w (g c) -> (n g) h w c", g=self.groups)

  def from_groups(self, x: np.ndarray) -> np.ndarray:
    return einops.rearrange(x, "(n g) h w c -> n h w (g c)", g=self.groups)

  # ---- SR
  def sr_spec(self, family: str) -> dict:
    groups = {"groups": self.groups} if self.groups > 1 else {}
    return {
        "data": self.fp,
        "family": family,
        **groups,
        "model": sr_model_config(
            family,
            self.data["scale"],
            len(self.data["bands"]) // self.groups,
            self.s.sr_size,
        ),
        "aux_weights": sr_config.AUX_WEIGHTS.get(family, {}),
        "steps": 0 if family == "bicubic" else self.s.sr_steps,
        "batch": self.s.batch_size,
        "lr": self.s.lr,
        "seed": self.s.seed,
    }

  def sr_key(self, family: str) -> str:
    return cache_key(f"sr_{family}", self.sr_spec(family))

  def sr(self, family: str) -> tuple[np.ndarray, dict]:
    """(SR of the test LR `[N, H, W, C]` in [0, 1], fidelity dict)."""
    if family in self._sr:
      return self._sr[family]
    spec, key = self.sr_spec(family), self.sr_key(family)
    hw = tuple(int(n) for n in self.test["hr"].shape[1:3])
    model, pred = predict_fn(spec["model"], "sr", hw)
    params, meta = load_params(self.cache, key)
    if params is None:
      t0 = time.time()
      lr_n = self.to_groups(self.norm(self.train["lr"]))
      hr_n = self.to_groups(self.norm(self.train["hr"]))
      params = init_params(
          model, {"lr": lr_n[:1], "hr": hr_n[:1]}, seed=self.s.seed
      )
      losses = []
      if spec["steps"]:
        self.log(f"  training SR {family} ({spec['steps']} steps)")
        params, losses = fit(
            model,
            params,
            {"lr": lr_n, "hr": hr_n},
            steps=spec["steps"],
            batch_size=self.s.batch_size,
            lr=self.s.lr,
            seed=self.s.seed,
            aux_weights=spec["aux_weights"],
        )
      meta = {
          "spec": spec,
          "train_seconds": time.time() - t0,
          "final_loss": losses[-1] if losses else None,
      }
      self.trained.append(key)
    out = self.from_groups(
        batched(
            lambda x: pred(params, x),
            self.to_groups(self.norm(self.test["lr"])),
        )
    )
    sr01 = np.clip(out * self.std + self.mean, 0.0, 1.0)
    if "fidelity" not in meta:
      meta["fidelity"] = self.fidelity(sr01)
      save_params(self.cache, key, params, meta)
    self._sr[family] = (sr01, meta["fidelity"])
    return self._sr[family]

  def fidelity(self, sr01: np.ndarray) -> dict:
    hr = self.test["hr"]
    fid = {"psnr": [], "ssim": [], "randfeat_dist": []}
    feat = (
        sr_gan.random_feature_net(hr.shape[-1])
        if self.s.feature_distance
        else None
    )
    for i in range(0, len(hr), 32):
      f = fidelity.fidelity(
          jnp.asarray(sr01[i : i + 32]), jnp.asarray(hr[i : i + 32]), 1.0
      )
      fid["psnr"].append(np.asarray(f["psnr"]))
      fid["ssim"].append(np.asarray(f["ssim"]))
      if feat:
        fid["randfeat_dist"].append(
            np.asarray(
                fidelity.feature_distance(
                    *feat,
                    jnp.asarray(sr01[i : i + 32]),
                    jnp.asarray(hr[i : i + 32]),
                )
            )
        )
    return {
        k: float(np.concatenate(v).mean()) if v else None
        for k, v in fid.items()
    }

  def lr_up(self) -> np.ndarray:
    """Bicubic-upsampled test LR `[N, H, W, C]` in [0, 1]."""
    hw = self.test["hr"].shape[1:3]
    return np.clip(
        np.asarray(sr_lib.resize(jnp.asarray(self.test["lr"]), hw)), 0.0, 1.0
    )

  # ---- downstream
  def ds_spec(self, task: str, backbone: str) -> dict:
    info = self.data["tasks"][task]
    return {
        "data": self.fp,
        "task": task,
        "backbone": backbone,
        "model": ds_config.model_config(
            backbone,
            task,
            info.get("num_classes", 1),
            self.s.size,
            target_key={
                "segmentation": "seg",
                "regression": "reg",
                "classification": "labels",
            }[task],
            seg_loss=self.s.seg_loss,
        ),
        "steps": (
            self.s.cls_steps or self.s.task_steps
            if task == "classification"
            else self.s.task_steps
        ),
        "batch": self.s.batch_size,
        "lr": self.s.task_lr,
        "seed": self.s.seed,
        # Targets are labels: flip only where the dataset says they
        # survive it (toyworld's texture classes do not).
        "flips": "flip" in self.data.get("label_symmetries", shards.SYMMETRIES),
    }

  def ds_key(self, task: str, backbone: str) -> str:
    return cache_key(f"ds_{task}_{backbone}", self.ds_spec(task, backbone))

  def _targets(self, task: str, split: dict) -> dict:
    if task == "segmentation":
      return {"seg": split["seg"]}
    if task == "classification":
      k = self.data["tasks"][task]["num_classes"]
      return {"labels": np.eye(k, dtype=np.float32)[split["cls"]]}
    return {
        "reg": ((split["reg"] - self.t_mean) / self.t_std).astype(np.float32)
    }

  def downstream(self, task: str, backbone: str):
    """(predict fn `[N, H, W, C]` [0, 1] -> predictions, meta with the HR
    and LR-up scores)."""
    if (task, backbone) in self._ds:
      return self._ds[(task, backbone)]
    spec, key = self.ds_spec(task, backbone), self.ds_key(task, backbone)
    model, apply = predict_fn(
        spec["model"], "regression" if task == "regression" else "argmax"
    )
    params, meta = load_params(self.cache, key)
    if params is None:
      t0 = time.time()
      arrays = {
          "hr": self.norm(self.train["hr"]),
          **self._targets(task, self.train),
      }
      params = init_params(
          model, {k: v[:1] for k, v in arrays.items()}, seed=self.s.seed
      )
      self.log(
          f"  training {backbone} for {task} on HR " f"({spec['steps']} steps)"
      )
      params, losses = fit(
          model,
          params,
          arrays,
          steps=spec["steps"],
          batch_size=self.s.batch_size,
          lr=spec["lr"],
          seed=self.s.seed,
          task="single_label" if task == "classification" else task,
          flips=spec["flips"],
      )
      meta = {
          "spec": spec,
          "train_seconds": time.time() - t0,
          "first_loss": losses[0] if losses else None,
          "final_loss": losses[-1] if losses else None,
      }
      self.trained.append(key)

    t_mean, t_std = getattr(self, "t_mean", 0.0), getattr(self, "t_std", 1.0)

    def predict(x01):
      y = batched(lambda x: apply(params, x), self.norm(x01))
      return y * t_std + t_mean if task == "regression" else y

    if "hr" not in meta:
      k = self.data["tasks"][task].get("num_classes")
      meta["hr"] = task_metrics(task, predict(self.test["hr"]), self.test, k)
      meta["lr_up"] = task_metrics(task, predict(self.lr_up()), self.test, k)
      save_params(self.cache, key, params, meta)
    self._ds[(task, backbone)] = (predict, meta)
    return self._ds[(task, backbone)]

  # ---- cells
  def cell(self, family: str, task: str, backbone: str) -> tuple[dict, bool]:
    """(cell dict, whether it was computed now rather than read)."""
    key = cache_key(
        f"cell_{family}_{backbone}_{task}",
        {"sr": self.sr_key(family), "ds": self.ds_key(task, backbone)},
    )
    cached = load_json(self.cache, key)
    if cached is not None:
      return cached, False
    sr01, fid = self.sr(family)
    predict, meta = self.downstream(task, backbone)
    k = self.data["tasks"][task].get("num_classes")
    m = task_metrics(task, predict(sr01), self.test, k)
    gap, note = gap_recovered(
        m["score"], meta["lr_up"]["score"], meta["hr"]["score"]
    )
    cell = {
        "sr": family,
        "downstream": backbone,
        "task": task,
        "psnr": fid["psnr"],
        "ssim": fid["ssim"],
        "randfeat_dist": fid["randfeat_dist"],
        "score": m["score"],
        "score_name": SCORES[task],
        "score_hr": meta["hr"]["score"],
        "score_lr_up": meta["lr_up"]["score"],
        "gap_recovered": gap,
        "gap_note": note,
        "metrics": {
            k2: v for k2, v in m.items() if not k2.endswith("_per_class")
        },
        "metrics_hr": {
            k2: v
            for k2, v in meta["hr"].items()
            if not k2.endswith("_per_class")
        },
        "metrics_lr_up": {
            k2: v
            for k2, v in meta["lr_up"].items()
            if not k2.endswith("_per_class")
        },
        "key": key,
    }
    save_json(self.cache, key, cell)
    return cell, True


def run_grid(
    dataset: str,
    out_dir: str,
    *,
    quick: bool = True,
    sr_models: Sequence[str] | None = None,
    downstream: Sequence[str] | None = None,
    task_downstream: dict[str, Sequence[str]] | None = None,
    tasks: Sequence[str] | None = None,
    sr_steps: int | None = None,
    task_steps: int | None = None,
    preset: str | None = None,
    cache_dir: str | None = None,
    log=print,
    **overrides,
) -> dict:
  """Runs (or resumes) the grid; writes OUT/sr_grid.json and returns it.

  sr_models: None = SR_MODELS (pixel-loss families) for "tiny"/"quick",
  SR_MODELS_FULL (+ GAN, diffusion) for "full". downstream: the backbones
  (None: DOWNSTREAM); task_downstream: {task: backbones} where a task
  differs. With "quick", QUICK[dataset] fills what the call leaves unset.
  cache_dir: where trained models and cells are cached (default OUT/cache).

  preset: "tiny" (seconds: tests, notebooks), "quick" (the default with
  quick=True) or "full"; sr_steps / task_steps and other `Settings` fields
  (`overrides`, e.g. max_train=64) refine it. tasks: None = every task the
  dataset has.
  """
  preset = preset or ("quick" if quick else "full")
  q = QUICK.get(dataset, {}) if preset == "quick" else {}
  overrides = {**q.get("settings", {}), **overrides}
  s = dataclasses.replace(PRESETS[preset], **overrides)
  if downstream is None:
    downstream = q.get("downstream", DOWNSTREAM)
  if task_downstream is None:
    task_downstream = q.get("task_downstream", {})
  if sr_models is None:
    sr_models = SR_MODELS_FULL if preset == "full" else SR_MODELS
  if sr_steps is not None:
    s = dataclasses.replace(s, sr_steps=sr_steps)
  if task_steps is not None:
    s = dataclasses.replace(s, task_steps=task_steps)
  unknown = [m for m in sr_models if m not in sr_config.FAMILIES]
  if unknown:
    raise ValueError(
        f"unknown SR models {unknown}; known: " f"{sr_config.FAMILIES}"
    )
  cache = cache_dir or os.path.join(out_dir, "cache")
  os.makedirs(cache, exist_ok=True)
  t0 = time.time()
  data = load_dataset(dataset, preset, s.seed)
  tasks = list(tasks) if tasks is not None else sorted(data["tasks"])
  missing = [t for t in tasks if t not in data["tasks"]]
  if missing:
    raise ValueError(
        f"dataset {dataset!r} has no task {missing}; it has "
        f"{sorted(data['tasks'])}."
    )
  grid = Grid(data, s, cache, log)
  cells, computed = [], []
  for task in tasks:
    for backbone in task_downstream.get(task, downstream):
      for family in sr_models:
        cell, new = grid.cell(family, task, backbone)
        # Recomputed from the cached scores: the notes follow this code.
        cell["gap_recovered"], cell["gap_note"] = gap_recovered(
            cell["score"], cell["score_lr_up"], cell["score_hr"]
        )
        cells.append(cell)
        if new:
          computed.append(cell["key"])
          log(
              f"  cell {family} x {backbone} x {task}: score "
              f"{cell['score']:.4f} (hr {cell['score_hr']:.4f}, lr_up "
              f"{cell['score_lr_up']:.4f}), psnr {cell['psnr']:.2f}"
          )
  results = {
      "cells": cells,
      "correlation": correlations(cells, top_k=s.top_k),
      "machine": reporting.machine(),
      "dataset": data["name"],
      "source": data.get("source"),
      "notes": data["notes"]
      + [
          "score is higher-is-better: segmentation mIoU, classification "
          "accuracy, regression neg_rmse = -RMSE (metres for hag).",
          "sr 'bicubic' is the same operator as the lr_up input (gap 0).",
      ],
      "tasks": data["tasks"],
      "settings": dataclasses.asdict(s),
      "preset": preset,
      "num_train": int(len(grid.train["hr"])),
      "num_test": int(len(grid.test["hr"])),
      "run": {
          "trained": grid.trained,
          "cells_computed": computed,
          "seconds": time.time() - t0,
      },
  }
  reporting.write_json(out_dir, "sr_grid.json", results)
  return results


# --------------------------------------------------------------------- plot


def plot(results: dict, path: str, metric: str = "psnr") -> str:
  """Fidelity (`metric`) vs downstream score, one panel per task: one colour
  per downstream model, SR models labelled, HR (dashed) and LR-up (dotted)
  scores as horizontal lines."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  cells = results["cells"]
  tasks = sorted({c["task"] for c in cells})
  fig, axes = plt.subplots(
      1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False
  )
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for ax, task in zip(axes[0], tasks):
    tc = [c for c in cells if c["task"] == task]
    for i, ds in enumerate(sorted({c["downstream"] for c in tc})):
      col = colors[i % len(colors)]
      dc = [c for c in tc if c["downstream"] == ds]
      ax.scatter(
          [c[metric] for c in dc], [c["score"] for c in dc], color=col, label=ds
      )
      for c in dc:
        ax.annotate(
            c["sr"],
            (c[metric], c["score"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
      ax.axhline(dc[0]["score_hr"], color=col, ls="--", lw=1)
      ax.axhline(dc[0]["score_lr_up"], color=col, ls=":", lw=1)
    rho = results["correlation"].get(task, {}).get("all", {}).get(metric, {})
    extra = (
        f" (Spearman {rho['spearman']:.2f})"
        if rho.get("spearman") is not None
        else ""
    )
    ax.set_title(f"{task}{extra}", fontsize=10)
    ax.set_xlabel(f"SR {metric} on test")
    ax.set_ylabel(f"downstream {tc[0]['score_name']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="--- HR   ... LR-up", title_fontsize=7)
  fig.suptitle(
      f"{results['dataset']}: SR fidelity vs downstream score", fontsize=11
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def print_results(results: dict) -> None:
  reporting.print_table(
      results["cells"],
      [
          "task",
          "downstream",
          "sr",
          "psnr",
          "ssim",
          "randfeat_dist",
          "score_name",
          "score",
          "score_hr",
          "score_lr_up",
          "gap_recovered",
      ],
  )
  for task, c in results["correlation"].items():
    for block in (
        "all",
        next(k for k in c if k.startswith("top") and not k.endswith("models")),
    ):
      for metric, r in c[block].items():
        if r["pearson"] is not None:
          print(
              f"{task:15s} {block:5s} {metric:14s} n={r['n']:2d} pearson "
              f"{r['pearson']:+.3f} spearman {r['spearman']:+.3f}"
          )
        else:
          print(
              f"{task:15s} {block:5s} {metric:14s} n={r['n']:2d} "
              f"({r.get('note')})"
          )


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
      "--dataset",
      default="toyworld",
      help=f"{', '.join(DATASETS)} or a records directory",
  )
  p.add_argument("--quick", action="store_true")
  p.add_argument(
      "--tiny",
      action="store_true",
      help="seconds-sized preset (tests, notebooks)",
  )
  p.add_argument("--out", required=True)
  p.add_argument(
      "--sr_models",
      default="",
      help=f"comma-separated; default {','.join(SR_MODELS)} "
      f"(--quick, --tiny) or {','.join(SR_MODELS_FULL)}",
  )
  p.add_argument(
      "--downstream",
      default="",
      help=f"comma-separated; default {','.join(DOWNSTREAM)} "
      "(--quick: per dataset, see QUICK)",
  )
  p.add_argument("--tasks", default="", help="comma-separated; default all")
  p.add_argument("--sr_steps", type=int, default=None)
  p.add_argument("--task_steps", type=int, default=None)
  p.add_argument(
      "--cache", default=None, help="cache directory (default OUT/cache)"
  )
  a = p.parse_args(argv)
  results = run_grid(
      a.dataset,
      a.out,
      quick=a.quick,
      preset="tiny" if a.tiny else None,
      sr_models=a.sr_models.split(",") if a.sr_models else None,
      downstream=a.downstream.split(",") if a.downstream else None,
      tasks=a.tasks.split(",") if a.tasks else None,
      sr_steps=a.sr_steps,
      task_steps=a.task_steps,
      cache_dir=a.cache,
  )
  print_results(results)
  print(f"wrote {plot(results, os.path.join(a.out, 'sr_grid.png'))}")


if __name__ == "__main__":
  main()
