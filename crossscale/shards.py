"""ArrayRecord shards plus a manifest: how scene records live on disk.

Layout of a dataset directory:
  manifest.json       written last; its presence marks a finished build
  {split}-{i:05d}-of-{n:05d}.array_record

Every shard is written under a temporary name and renamed only once closed and
checksummed, and the manifest is written last (also by rename), so a crash
mid-build never leaves a dataset that looks valid.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from typing import Any, Iterable, Sequence

from array_record.python import array_record_module as arm
import numpy as np

from crossscale import records

MANIFEST = "manifest.json"
SHARD_SUFFIX = ".array_record"
# Geometric transforms the training pipeline may apply (input_pipeline.
# FlipRotate): "flip" (horizontal/vertical), "rot90" (square scenes).
SYMMETRIES = ("flip", "rot90")
# Datasets whose GSDs count HR pixels, not metres (Manifest.gsd_known).
PIXEL_GSD = ("toyworld", "geoworld", "rsscn7", "eurosat_samples")


@dataclasses.dataclass
class Manifest:
  """What a dataset directory holds. Written by `write_dataset`."""

  name: str
  schema_version: int
  class_names: list[str]
  lr_shape: list[int]  # [h, w, C_lr]
  hr_shape: list[int]  # [H, W, C_hr]
  lr_bands: list[str]
  hr_bands: list[str]
  lr_gsd: float
  hr_gsd: float
  grid: int
  dtypes: dict[str, str]  # {"lr": ..., "hr": ...}
  band_stats: dict[str, dict[str, list[float]]]  # {"lr"|"hr": {"mean","std"}}
  splits: dict[str, dict[str, Any]]  # split -> {num_records, shards: [...]}
  mask_names: list[str] = dataclasses.field(default_factory=list)
  builder: dict[str, Any] = dataclasses.field(default_factory=dict)
  created: str = ""
  # The SYMMETRIES that leave a scene's class labels unchanged (aerial
  # scene classes: all; toyworld's stripe orientations: none). Manifests
  # written before this field read as all.
  label_symmetries: list[str] = dataclasses.field(
      default_factory=lambda: list(SYMMETRIES)
  )
  # Some scene has other than exactly one label (written from the labels;
  # manifests written before this field read as single-label).
  multi_label: bool = False

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def task(self) -> str:
    """ "multi_label" or "single_label": the classification task its labels
    pose (`config.task="auto"` trains that one)."""
    return "multi_label" if self.multi_label else "single_label"

  @property
  def gsd_known(self) -> bool:
    """Whether `lr_gsd`/`hr_gsd` are metres (`gsd_in_metres`)."""
    return gsd_in_metres(self.name, self.builder)

  def num_records(self, split: str) -> int:
    return self.split_info(split)["num_records"]

  def split_info(self, split: str) -> dict[str, Any]:
    if split not in self.splits:
      raise records.DataError(
          f"dataset {self.name!r} has no split {split!r}; it has "
          f"{sorted(self.splits)}."
      )
    return self.splits[split]


def gsd_in_metres(name: str, builder: dict | None) -> bool:
  """Whether records of dataset `name` (its manifest's `builder`) carry
  GSDs in metres. Not the procedural worlds (their unit is an HR pixel),
  image folders built without --hr_gsd (e.g. RSSCN7: hr_gsd 1.0 = one HR
  pixel; only the ratio means anything) or manifests of those from before
  the builder said so. A builder may state it (`gsd_in_metres`)."""
  b = builder or {}
  if "gsd_in_metres" in b:  # datasets derived from others say so
    return bool(b["gsd_in_metres"])
  if b.get("builder") in PIXEL_GSD or not b and name in PIXEL_GSD:
    return False
  if "gsd_note" in b and b.get("hr_gsd") is None:
    return False
  return "unknown" not in str(b.get("gsd_note", ""))


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      h.update(chunk)
  return h.hexdigest()


class _BandStats:
  """Streaming per-band mean/std (float64 sums)."""

  def __init__(self):
    self.n = 0
    self.s = None
    self.s2 = None

  def add(self, img: np.ndarray) -> None:
    x = img.reshape(-1, img.shape[-1]).astype(np.float64)
    if self.s is None:
      self.s = np.zeros(x.shape[1])
      self.s2 = np.zeros(x.shape[1])
    self.n += x.shape[0]
    self.s += x.sum(0)
    self.s2 += (x * x).sum(0)

  def result(self) -> dict[str, list[float]]:
    if not self.n:
      return {"mean": [], "std": []}
    mean = self.s / self.n
    std = np.sqrt(np.maximum(self.s2 / self.n - mean * mean, 0.0))
    return {"mean": mean.tolist(), "std": np.maximum(std, 1e-6).tolist()}


class _SplitWriter:
  """Writes one split's shards; each shard is renamed into place when closed."""

  def __init__(self, out_dir: str, split: str, num_shards: int):
    self.out_dir, self.split, self.num_shards = out_dir, split, num_shards
    self.buffers: list[list[bytes]] = [[] for _ in range(num_shards)]
    self.count = 0

  def add(self, data: bytes) -> None:
    # Round-robin keeps shards balanced without knowing the total in advance.
    self.buffers[self.count % self.num_shards].append(data)
    self.count += 1

  def close(self) -> list[dict[str, Any]]:
    shards = []
    n = self.num_shards
    for i, buf in enumerate(self.buffers):
      if not buf:
        continue
      fname = f"{self.split}-{i:05d}-of-{n:05d}{SHARD_SUFFIX}"
      final = os.path.join(self.out_dir, fname)
      tmp = final + ".tmp"
      w = arm.ArrayRecordWriter(tmp, "group_size:1")
      for data in buf:
        w.write(data)
      w.close()
      digest = _sha256(tmp)
      os.replace(tmp, final)
      shards.append(
          {
              "file": fname,
              "num_records": len(buf),
              "sha256": digest,
              "bytes": os.path.getsize(final),
          }
      )
    return shards


def write_dataset(
    out_dir: str,
    name: str,
    scenes: Iterable[records.Scene],
    class_names: Sequence[str],
    records_per_shard: int = 1024,
    shards_per_split: dict[str, int] | None = None,
    builder: dict[str, Any] | None = None,
    expected_per_split: dict[str, int] | None = None,
    label_symmetries: Sequence[str] = SYMMETRIES,
) -> Manifest:
  """Validates, encodes and writes `scenes` as ArrayRecord shards + manifest.

  `label_symmetries`: which of SYMMETRIES keep every scene's labels (the
  training pipeline augments only with those when it reads labels).

  Scenes are buffered per split in memory as encoded bytes (datasets built
  here are at most a few GB); the number of shards of a split is
  `shards_per_split[split]`, else ceil(expected / records_per_shard), else 1.
  Band statistics are computed over the "train" split (all splits if none).
  """
  unknown = set(label_symmetries) - set(SYMMETRIES)
  if unknown:
    raise ValueError(
        f"{name}: label_symmetries {sorted(unknown)} unknown; "
        f"known: {SYMMETRIES}"
    )
  os.makedirs(out_dir, exist_ok=True)
  # A previous build's manifest/shards must not survive into this one.
  for f in os.listdir(out_dir):
    if f == MANIFEST or f.endswith(SHARD_SUFFIX) or f.endswith(".tmp"):
      os.remove(os.path.join(out_dir, f))
  writers: dict[str, _SplitWriter] = {}
  stats = {
      "train": {"lr": _BandStats(), "hr": _BandStats()},
      "all": {"lr": _BandStats(), "hr": _BandStats()},
  }
  first: records.Scene | None = None
  mask_names: list[str] = []
  multi_label = False
  for scene in scenes:
    where = f"{name}/{scene.split}"
    records.validate(scene, where)
    if len(scene.labels) != len(class_names):
      raise records.DataError(
          f"{where}: scene {scene.id!r} has {len(scene.labels)} labels but the "
          f"dataset has {len(class_names)} classes."
      )
    if first is None:
      first = scene
      mask_names = sorted(scene.masks)
    else:
      _check_consistent(first, scene, where)
    if scene.split not in writers:
      if shards_per_split and scene.split in shards_per_split:
        n = shards_per_split[scene.split]
      elif expected_per_split and scene.split in expected_per_split:
        n = -(-expected_per_split[scene.split] // records_per_shard)
      else:
        n = 1
      writers[scene.split] = _SplitWriter(out_dir, scene.split, max(n, 1))
    writers[scene.split].add(records.encode(scene))
    multi_label |= int((np.asarray(scene.labels) > 0).sum()) != 1
    which = "train" if scene.split == "train" else "all"
    stats[which]["lr"].add(scene.lr)
    stats[which]["hr"].add(scene.hr)
  if first is None:
    raise records.DataError(
        f"{name}: the builder produced no scenes; check "
        "its input paths and filters."
    )
  splits = {}
  for split, w in writers.items():
    shards = w.close()
    splits[split] = {"num_records": w.count, "shards": shards}
  src = stats["train"] if stats["train"]["lr"].n else stats["all"]
  manifest = Manifest(
      name=name,
      schema_version=records.SCHEMA_VERSION,
      class_names=list(class_names),
      lr_shape=list(first.lr.shape),
      hr_shape=list(first.hr.shape),
      lr_bands=list(first.lr_bands),
      hr_bands=list(first.hr_bands),
      lr_gsd=first.lr_gsd,
      hr_gsd=first.hr_gsd,
      grid=first.grid,
      dtypes={"lr": first.lr.dtype.str, "hr": first.hr.dtype.str},
      band_stats={"lr": src["lr"].result(), "hr": src["hr"].result()},
      splits=splits,
      mask_names=mask_names,
      builder=dict(builder or {}),
      created=datetime.datetime.now(datetime.timezone.utc).isoformat(),
      label_symmetries=[t for t in SYMMETRIES if t in label_symmetries],
      multi_label=bool(multi_label),
  )
  tmp = os.path.join(out_dir, MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump(dataclasses.asdict(manifest), f, indent=1)
  os.replace(tmp, os.path.join(out_dir, MANIFEST))
  return manifest


def _check_consistent(first: records.Scene, s: records.Scene, where: str):
  """All scenes of a dataset share shapes and bands so batches are fixed."""
  for attr in ("lr_bands", "hr_bands", "grid"):
    if getattr(s, attr) != getattr(first, attr):
      raise records.DataError(
          f"{where}: scene {s.id!r} has {attr}={getattr(s, attr)} but earlier "
          f"scenes have {getattr(first, attr)}; a dataset has one band layout "
          "and grid."
      )
  for attr in ("lr", "hr"):
    a, b = getattr(s, attr), getattr(first, attr)
    if a.shape != b.shape or a.dtype != b.dtype:
      raise records.DataError(
          f"{where}: scene {s.id!r} has {attr} {a.shape} {a.dtype} but earlier "
          f"scenes have {b.shape} {b.dtype}; resize/crop all scenes to one "
          "size."
      )
  if sorted(s.masks) != sorted(first.masks):
    raise records.DataError(
        f"{where}: scene {s.id!r} has masks "
        f"{sorted(s.masks)}, earlier scenes "
        f"{sorted(first.masks)}."
    )


def load_manifest(data_dir: str) -> Manifest:
  """Reads and checks `data_dir/manifest.json`."""
  path = os.path.join(data_dir, MANIFEST)
  if not os.path.exists(path):
    raise records.DataError(
        f"{path} not found: {data_dir} is not a finished crossscale dataset "
        "(the build was interrupted or never ran). Build it with "
        "`python -m data.<builder> --out " + data_dir + "`."
    )
  try:
    with open(path) as f:
      d = json.load(f)
  except json.JSONDecodeError as e:
    raise records.DataError(
        f"{path} is not valid JSON ({e}); rebuild the " "dataset."
    ) from e
  version = d.get("schema_version")
  if version != records.SCHEMA_VERSION:
    raise records.DataError(
        f"{path}: schema version {version}, this code reads version "
        f"{records.SCHEMA_VERSION}. Rebuild the dataset with this version's "
        "builder (python -m data.<builder>)."
    )
  fields = {f.name for f in dataclasses.fields(Manifest)}
  return Manifest(**{k: v for k, v in d.items() if k in fields})


def set_band_stats(data_dir: str, band_stats: dict) -> None:
  """Overwrites the manifest's band statistics (a derived dataset read with
  the normalisation its source's runs were trained with)."""
  path = os.path.join(data_dir, MANIFEST)
  with open(path) as f:
    d = json.load(f)
  d["band_stats"] = band_stats
  with open(path, "w") as f:
    json.dump(d, f, indent=1)


def shard_paths(
    data_dir: str, manifest: Manifest, split: str, verify: bool = True
) -> list[str]:
  """Paths of a split's shards, checked against the manifest.

  Size is always checked (catches truncation cheaply); with `verify` the
  sha256 is too (catches any corruption).
  """
  paths = []
  for shard in manifest.split_info(split)["shards"]:
    path = os.path.join(data_dir, shard["file"])
    if not os.path.exists(path):
      raise records.DataError(
          f"{path} is missing (listed in the manifest). " "Rebuild the dataset."
      )
    size = os.path.getsize(path)
    if size != shard["bytes"]:
      raise records.DataError(
          f"{path} is truncated or altered: {size} bytes, the manifest says "
          f"{shard['bytes']}. Rebuild the dataset (or re-copy the shard)."
      )
    if verify and _sha256(path) != shard["sha256"]:
      raise records.DataError(
          f"{path} fails its checksum: the shard is corrupt. Rebuild the "
          "dataset (or re-copy the shard)."
      )
    paths.append(path)
  return paths


def iter_scenes(data_dir: str, split: str, verify: bool = True):
  """Yields the Scenes of a split in storage order (tools and tests)."""
  manifest = load_manifest(data_dir)
  for path in shard_paths(data_dir, manifest, split, verify):
    reader = arm.ArrayRecordReader(path)
    try:
      for i in range(reader.num_records()):
        yield records.decode(reader.read([i])[0], f"{path}[{i}]")
    finally:
      reader.close()
