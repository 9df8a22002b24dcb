"""The SR grid's datasets as in-memory arrays, read from records.

`load_dataset(name, preset)` resolves a registered name through
data/registry.py (toyworld, rsscn7, the SR chips of data/sr_chips.py) or
takes a records directory, and `load_records` reads its train and test
splits through crossscale.shards into arrays in [0, 1] with the task
targets (segmentation, classification, regression).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from crossscale import evaluators, shards
from data import registry
from experiments.configs import sr as sr_config

DATASETS = (
    "toyworld",
    "rsscn7",
    "ucmerced",
    "spacenet_buildings",
    "spacenet_roads",
    "levircd",
    "hag",
)
CHIPS = ("spacenet_buildings", "spacenet_roads", "levircd", "hag")
# The grid's preset -> the configs' size arg (experiments/configs/*.py).
CONFIG_ARG = {"tiny": "runlocal", "quick": "quick", "full": ""}


def _stack(scenes, key):
  return np.stack([getattr(s, key) for s in scenes])


def limit(split: dict, n: int | None) -> dict:
  """The first `n` examples of every array of a split (None: all)."""
  return split if n is None else {k: v[:n] for k, v in split.items()}


def _relative(path: str, root: str | None) -> str:
  """`path` relative to the data root when it lies under it."""
  root = os.path.abspath(root or registry.default_root())
  path = os.path.abspath(path)
  return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


def load_records(data_dir: str, data_root: str | None = None) -> dict:
  """{"name", "scale", "bands", "tasks": {task: info}, "notes": [...],
  "records": the directory (relative to the data root), "path" (absolute),
  "source"?,
  "windows": {split: scene ids}, "sr_groups"? (SR per band group:
  levircd's 2 images), "label_symmetries", "splits": {"train"|"test":
  {"lr": [N, h, w, C], "hr": [N, H, W, C] (both float32 in [0, 1]),
  "seg": [N, H, W] int32?, "cls": [N] int32?, "reg": [N, H, W, 1]
  float32?}}}. Chip records (data/sr_chips.py) bring their tasks, notes
  and target in the manifest's builder block; other records give
  segmentation of their first mask ("objects" on toyworld) and
  classification of single-label labels."""
  m = shards.load_manifest(data_dir)
  b = m.builder if m.builder.get("name") == "sr_chips" else {}
  r_hr = evaluators.sr_data_range(m, "hr")
  r_lr = evaluators.sr_data_range(m, "lr")
  splits, windows, tasks = {}, {}, {}
  mask = (
      "target"
      if b
      else "objects"
      if "objects" in m.mask_names
      else (m.mask_names[0] if m.mask_names else None)
  )
  for split in ("train", "test"):
    scenes = list(shards.iter_scenes(data_dir, split, verify=False))
    if not scenes:
      raise ValueError(f"{data_dir}: split {split!r} is empty.")
    windows[split] = [s.id for s in scenes]
    d = {
        "lr": _stack(scenes, "lr").astype(np.float32) / r_lr,
        "hr": _stack(scenes, "hr").astype(np.float32) / r_hr,
    }
    labels = _stack(scenes, "labels")
    if m.num_classes > 1 and (labels.sum(1) == 1).all():
      d["cls"] = labels.argmax(1).astype(np.int32)
    if mask:
      target = np.stack([s.masks[mask] for s in scenes])
      if "regression" in b.get("tasks", {}):
        d["reg"] = target.astype(np.float32)[..., None]
      else:
        d["seg"] = target.astype(np.int32)
    splits[split] = d
  if b:
    tasks = b["tasks"]
  else:
    if "cls" in splits["train"] and "cls" in splits["test"]:
      tasks["classification"] = {
          "num_classes": m.num_classes,
          "classes": list(m.class_names),
      }
    if mask:
      k = int(max(splits["train"]["seg"].max(), splits["test"]["seg"].max()))
      k += 1
      if mask == "objects":  # toyworld: background + one id per class
        k = max(k, m.num_classes + 1)
      tasks["segmentation"] = {"num_classes": k, "mask": mask}
  out = {
      "name": b.get("source", m.name),
      "records": _relative(data_dir, data_root),
      "path": os.path.abspath(data_dir),  # not written to results
      "scale": int(round(m.hr_shape[0] / m.lr_shape[0])),
      "bands": list(m.hr_bands),
      "splits": splits,
      "windows": windows,
      "tasks": tasks,
      "notes": list(b.get("notes", [])),
      "label_symmetries": list(m.label_symmetries),
  }
  if b:
    out["source"] = b["files"]  # relative to the shared data folder
    out["sr_groups"] = int(b.get("sr_groups", 1))
  return out


def load_dataset(
    dataset: str, preset: str, seed: int = 0, data_root: str | None = None
) -> dict:
  """`load_records` of a registered dataset (DATASETS; built on first use
  under `data_root`, default registry.default_root()) or of a records
  directory. toyworld is sized by sr.py's config for the preset."""
  if dataset == "toyworld":
    opts = sr_config.get_config(CONFIG_ARG[preset]).toyworld.to_dict()
    return load_records(
        registry.resolve("toyworld", data_root, opts), data_root
    )
  if dataset == "rsscn7":
    opts = {} if preset == "full" else {"hr_size": 120}
    d = load_records(registry.resolve("rsscn7", data_root, opts), data_root)
    d["notes"].append(
        "RSSCN7 700 images, seeded stratified 70/15/15 split "
        "(data/image_folder.py), LR 8x degraded"
        + ("" if preset == "full" else "; HR resized to 120 px")
    )
    return d
  if dataset == "ucmerced":  # 21 classes, 80 images each
    opts = {} if preset == "full" else {"hr_size": 128}
    d = load_records(registry.resolve("ucmerced", data_root, opts), data_root)
    d["notes"].append(
        "UC Merced 1680 images (80 per class), seeded stratified 70/15/15 "
        "split (data/image_folder.py), LR 8x degraded; HR "
        + (
            "256 px (0.3 m)"
            if preset == "full"
            else "resized to 128 px (0.6 m)"
        )
    )
    return d
  if dataset in CHIPS:
    path = registry.resolve(f"{dataset}_chips", data_root, {"seed": seed})
    return load_records(path, data_root)
  return load_records(dataset, data_root)  # a records directory


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
