"""Scene records: the one data format of crossscale.

One record is one scene: an LR image `[h, w, C_lr]` and an HR image
`[H, W, C_hr]` of the same footprint, the HR tile grid size `G`, multi-hot
labels over a named class list, and optional text, masks and geo metadata.

Records are serialised with msgpack; arrays travel as (dtype, shape, bytes) so
any numpy dtype round-trips exactly. The schema is versioned: a reader refuses
records written by a newer or older schema with a message saying how to rebuild.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import msgpack
import numpy as np

SCHEMA_VERSION = 1


class DataError(ValueError):
  """Bad input data. The message names the file/record and says what to do."""


@dataclasses.dataclass(frozen=True)
class Scene:
  """One LR/HR scene.

  Attributes:
    id: unique id within the dataset.
    lr: `[h, w, C_lr]` low-resolution image, any numeric dtype.
    hr: `[H, W, C_hr]` high-resolution image of the same footprint.
    lr_bands / hr_bands: band names, one per channel.
    lr_gsd / hr_gsd: ground sample distance of one pixel, in metres.
    grid: HR tile grid size G (HR is split into G x G tiles).
    labels: `[num_classes]` uint8 multi-hot over the dataset's class names.
    split: "train", "val" or "test" (any name works).
    text: optional free text (e.g. a referring expression or caption).
    masks: optional named masks, each `[H, W]` on the HR grid.
    crs / bounds: coordinate reference system and (minx, miny, maxx, maxy).
    lr_time / hr_time: ISO-8601 acquisition times.
  """

  id: str
  lr: np.ndarray
  hr: np.ndarray
  lr_bands: tuple[str, ...]
  hr_bands: tuple[str, ...]
  lr_gsd: float
  hr_gsd: float
  grid: int
  labels: np.ndarray
  split: str
  text: str | None = None
  masks: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
  crs: str | None = None
  bounds: tuple[float, float, float, float] | None = None
  lr_time: str | None = None
  hr_time: str | None = None

  @property
  def scale(self) -> float:
    """LR pixel size over HR pixel size (e.g. 8.0 for an 8x coarser LR)."""
    return self.lr_gsd / self.hr_gsd


def validate(scene: Scene, where: str = "") -> None:
  """Raises DataError if `scene` is malformed; `where` names its origin."""
  at = f"{where}: scene {scene.id!r}" if where else f"scene {scene.id!r}"
  for name, img, bands in (
      ("lr", scene.lr, scene.lr_bands),
      ("hr", scene.hr, scene.hr_bands),
  ):
    if img.ndim != 3:
      raise DataError(
          f"{at}: {name} must be [height, width, bands], got shape "
          f"{img.shape}. Add a trailing band axis for 1-band images."
      )
    if img.shape[-1] != len(bands):
      raise DataError(
          f"{at}: {name} has {img.shape[-1]} bands but {len(bands)} band names "
          f"{list(bands)}: pass one name per band (check the band list/order)."
      )
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
      bad = int((~np.isfinite(img)).sum())
      raise DataError(
          f"{at}: {name} has {bad} non-finite pixels (NaN/inf). Fill nodata "
          "before building (e.g. mask it or drop the window)."
      )
  H, W = scene.hr.shape[:2]
  g = scene.grid
  if g < 1 or H % g or W % g:
    raise DataError(
        f"{at}: HR size {H}x{W} is not divisible by the tile grid G={g}. "
        f"Choose a grid that divides the HR size, or crop/resize the HR to a "
        f"multiple of {g}."
    )
  if scene.lr_gsd <= 0 or scene.hr_gsd <= 0:
    raise DataError(
        f"{at}: ground sample distances must be positive, got "
        f"lr_gsd={scene.lr_gsd}, hr_gsd={scene.hr_gsd}."
    )
  h, w = scene.lr.shape[:2]
  for axis, n_lr, n_hr in (("height", h, H), ("width", w, W)):
    lr_extent, hr_extent = n_lr * scene.lr_gsd, n_hr * scene.hr_gsd
    if not math.isclose(
        lr_extent, hr_extent, rel_tol=0.0, abs_tol=scene.lr_gsd * 1.01
    ):
      raise DataError(
          f"{at}: LR and HR footprints differ in {axis}: LR covers "
          f"{lr_extent:.2f} m ({n_lr} px x {scene.lr_gsd} m), HR covers "
          f"{hr_extent:.2f} m ({n_hr} px x {scene.hr_gsd} m). LR/HR must be "
          "aligned windows of the same footprint: crop both to their overlap."
      )
  if scene.labels.ndim != 1:
    raise DataError(
        f"{at}: labels must be a 1-D multi-hot vector, got shape "
        f"{scene.labels.shape}."
    )
  for mname, mask in scene.masks.items():
    if mask.shape[:2] != (H, W):
      raise DataError(
          f"{at}: mask {mname!r} has shape {mask.shape}, expected "
          f"the HR grid {(H, W)}. Resample the mask to the HR grid."
      )


def _pack_array(a: np.ndarray) -> dict[str, Any]:
  a = np.ascontiguousarray(a)
  return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def _unpack_array(d: Mapping[str, Any]) -> np.ndarray:
  return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(
      d["shape"]
  )


def encode(scene: Scene) -> bytes:
  """Serialises a validated scene to bytes (one ArrayRecord record)."""
  validate(scene)
  return msgpack.packb(
      {
          "schema_version": SCHEMA_VERSION,
          "id": scene.id,
          "lr": _pack_array(scene.lr),
          "hr": _pack_array(scene.hr),
          "lr_bands": list(scene.lr_bands),
          "hr_bands": list(scene.hr_bands),
          "lr_gsd": float(scene.lr_gsd),
          "hr_gsd": float(scene.hr_gsd),
          "grid": int(scene.grid),
          "labels": _pack_array(scene.labels.astype(np.uint8)),
          "split": scene.split,
          "text": scene.text,
          "masks": {k: _pack_array(v) for k, v in scene.masks.items()},
          "crs": scene.crs,
          "bounds": list(scene.bounds) if scene.bounds is not None else None,
          "lr_time": scene.lr_time,
          "hr_time": scene.hr_time,
      },
      use_bin_type=True,
  )


def _unpack(data: bytes, where: str) -> dict[str, Any]:
  try:
    d = msgpack.unpackb(data, raw=False)
  except Exception as e:  # msgpack raises several unrelated types.
    raise DataError(
        f"{where}: record is not a valid scene record ({e}). The "
        "shard is corrupt: rebuild the dataset."
    ) from e
  if not isinstance(d, dict) or "schema_version" not in d:
    raise DataError(
        f"{where}: record has no schema version: not a crossscale "
        "scene record. Rebuild the dataset with a data/ builder."
    )
  if d["schema_version"] != SCHEMA_VERSION:
    raise DataError(
        f"{where}: record has schema version {d['schema_version']}, this code "
        f"reads version {SCHEMA_VERSION}. Rebuild the dataset with this "
        "version's builder (python -m data.<builder>)."
    )
  return d


def decode(data: bytes, where: str = "record") -> Scene:
  """Parses bytes written by `encode` into a Scene."""
  d = _unpack(data, where)
  return Scene(
      id=d["id"],
      lr=_unpack_array(d["lr"]),
      hr=_unpack_array(d["hr"]),
      lr_bands=tuple(d["lr_bands"]),
      hr_bands=tuple(d["hr_bands"]),
      lr_gsd=d["lr_gsd"],
      hr_gsd=d["hr_gsd"],
      grid=d["grid"],
      labels=_unpack_array(d["labels"]),
      split=d["split"],
      text=d["text"],
      masks={k: _unpack_array(v) for k, v in d["masks"].items()},
      crs=d["crs"],
      bounds=tuple(d["bounds"]) if d["bounds"] else None,
      lr_time=d["lr_time"],
      hr_time=d["hr_time"],
  )


def spatial_keys(x: Mapping[str, Any]) -> list[str]:
  """The keys of `x` (a `decode_arrays` dict) holding pixels: "lr", "hr"
  and "mask_<name>" (what a spatial transform must move together)."""
  return [k for k in x if k in ("lr", "hr") or k.startswith("mask_")]


def decode_arrays(data: bytes, where: str = "record") -> dict[str, np.ndarray]:
  """Fast path for the input pipeline: only the arrays of a record.

  Returns {"lr": [h, w, C_lr], "hr": [H, W, C_hr], "labels": [num_classes],
  "mask_<name>": [H, W] for each mask}.
  """
  d = _unpack(data, where)
  out = {
      "lr": _unpack_array(d["lr"]),
      "hr": _unpack_array(d["hr"]),
      "labels": _unpack_array(d["labels"]),
  }
  for k, v in d["masks"].items():
    out[f"mask_{k}"] = _unpack_array(v)
  return out
