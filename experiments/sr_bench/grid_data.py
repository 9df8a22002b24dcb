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
# Image-folder records (data/image_folder.py): HR px of the CPU presets.
IMAGE_FOLDERS = {"rsscn7": 120, "ucmerced": 128}
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
  levircd's 2 images), "label_symmetries", "splits": {"train"|"test"|
  "val" (when the records have one):
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
  for split in ("train", "test", "val"):
    scenes = (
        list(shards.iter_scenes(data_dir, split, verify=False))
        if split in m.splits
        else []
    )
    if not scenes and split == "val":
      continue  # optional: only for choosing SR schedules
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
    dataset: str,
    preset: str,
    seed: int = 0,
    data_root: str | None = None,
    scale: int = 0,
    hr_size: int = 0,
) -> dict:
  """`load_records` of a registered dataset (DATASETS; built on first use
  under `data_root`, default registry.default_root()) or of a records
  directory. toyworld is sized by sr.py's config for the preset. The
  image folders (rsscn7, ucmerced) take `scale` (LR `scale`x coarser than
  HR; 0: the registry's 8) and `hr_size` (HR px; 0: 120 / 128 for the
  CPU presets, the registry's for "full")."""
  if (scale or hr_size) and dataset not in IMAGE_FOLDERS:
    raise ValueError(
        f"--scale / hr_size apply to {', '.join(IMAGE_FOLDERS)} (records "
        f"built here from image folders), not {dataset!r}."
    )
  if dataset == "toyworld":
    opts = sr_config.get_config(CONFIG_ARG[preset]).toyworld.to_dict()
    return load_records(
        registry.resolve("toyworld", data_root, opts), data_root
    )
  if dataset in IMAGE_FOLDERS:
    opts = {} if preset == "full" else {"hr_size": IMAGE_FOLDERS[dataset]}
    opts.update({"hr_size": hr_size} if hr_size else {})
    opts.update({"scale": scale} if scale else {})
    d = load_records(registry.resolve(dataset, data_root, opts), data_root)
    d["notes"].append(image_folder_note(dataset, d))
    return d
  if dataset in CHIPS:
    path = registry.resolve(f"{dataset}_chips", data_root, {"seed": seed})
    return load_records(path, data_root)
  return load_records(dataset, data_root)  # a records directory


def image_folder_note(dataset: str, d: dict) -> str:
  """The results note on an image-folder dataset's split, LR and HR."""
  px = int(d["splits"]["train"]["hr"].shape[1])
  if dataset == "rsscn7":
    return (
        "RSSCN7 700 images, seeded stratified 70/15/15 split "
        f"(data/image_folder.py), LR {d['scale']}x degraded; HR {px} px"
    )
  gsd = registry.UCMERCED_GSD_M * registry.UCMERCED_SIZE / px
  return (
      "UC Merced 1680 images (80 per class), seeded stratified 70/15/15 "
      f"split (data/image_folder.py), LR {d['scale']}x degraded; HR {px} "
      f"px ({gsd:.2g} m)"
  )


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


def crop_pairs(batch: dict, rng, crop: int, scale: int) -> dict:
  """Random aligned crops, one offset per example: "hr" `[B, H, W, C]` ->
  `[B, crop, crop, C]` at a multiple of `scale`, "lr" `[B, H/scale,
  W/scale, C]` -> `[B, crop/scale, crop/scale, C]` over the same ground
  (other keys pass unchanged). For crossscale.train.fit_arrays'
  `transform`."""
  if crop % scale:
    raise ValueError(f"crop {crop} is not a multiple of the scale {scale}.")
  lr, hr, c = batch["lr"], batch["hr"], crop // scale
  h, w = lr.shape[1:3]
  if c > min(h, w):
    raise ValueError(f"crop {crop} px exceeds the HR images ({h * scale}).")
  ys = rng.integers(0, h - c + 1, len(lr))
  xs = rng.integers(0, w - c + 1, len(lr))
  s = scale
  return {
      **batch,
      "lr": np.stack([a[y : y + c, x : x + c] for a, y, x in zip(lr, ys, xs)]),
      "hr": np.stack(
          [
              a[y * s : (y + c) * s, x * s : (x + c) * s]
              for a, y, x in zip(hr, ys, xs)
          ]
      ),
  }
