"""Builder: BigEarthNet-S2 (v1 patch folders) -> crossscale records.

Input layout (BigEarthNet-S2 v1.0 and its examples):

  SRC/
    <patch>/<patch>_B01.tif ... <patch>_B12.tif, <patch>_B8A.tif
    <patch>/<patch>_labels_metadata.json

Every sub-folder holding a `<patch>_labels_metadata.json` or a `<patch>_B*.tif`
is a patch (other folders are ignored), in sorted order. One patch is one
scene:
  HR: the 10 m bands B02, B03, B04, B08 -> `[120, 120, 4]` uint16, hr_gsd 10.
  LR: the 20 m bands B05, B06, B07, B8A, B11, B12 -> `[60, 60, 6]` uint16,
      lr_gsd 20 (scale 2). The 60 m bands B01, B09 are not used.
  labels: multi-hot over the 43 CORINE Land Cover classes of BigEarthNet
      (LABELS_43, the official order), or with `--nomenclature 19` over the
      19 classes of Sumbul et al. 2021 (LABELS_19 via GROUPS_19; the 43-class
      labels Road and rail networks, Port areas, Airports, Mineral extraction
      sites, Dump sites, Construction sites, Green urban areas, Sport and
      leisure facilities, Bare rock, Burnt areas and Intertidal flats have no
      19-class counterpart and are dropped, so a patch may have no label).
  crs / bounds: from the json "projection" (WKT) and "coordinates".
  hr_time / lr_time: the json "acquisition_date" as ISO-8601 (one acquisition).
  split: seeded (data.common.assign_splits); id: the patch name.

The v2 release (reBEN, labels in a metadata parquet) is not read here.

Usage:
  python -m data.bigearthnet \\
      --src ../shared/data/bigearthnet/BigEarthNet-S2-Example --out /tmp/ben
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
from typing import Any, Sequence
import warnings

import numpy as np
import rasterio
from rasterio.crs import CRS

from crossscale import records, shards
from data import common

HR_BANDS = ("B02", "B03", "B04", "B08")
LR_BANDS = ("B05", "B06", "B07", "B8A", "B11", "B12")
HR_GSD, LR_GSD = 10.0, 20.0
HR_PX, LR_PX = 120, 60
DEFAULT_GRID = 4

# The 43 CORINE Land Cover level-3 classes of BigEarthNet, official order.
LABELS_43 = (
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of "
    "natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
)

# The 19-class nomenclature (Sumbul et al. 2021; BigEarthNet's
# label_indices.json "BigEarthNet-19_labels").
LABELS_19 = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of "
    "natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)

# 19-class index -> the 43-class indices it groups ("label_conversion").
GROUPS_19 = (
    (0, 1),
    (2,),
    (11, 12, 13),
    (14, 15, 16, 18),
    (17,),
    (19,),
    (20,),
    (21,),
    (22,),
    (23,),
    (24,),
    (25, 31),
    (26, 27),
    (28,),
    (29,),
    (33, 34),
    (35, 36),
    (38, 39),
    (40, 41, 42),
)

NOMENCLATURES = {43: LABELS_43, 19: LABELS_19}


def class_names(nomenclature: int) -> tuple[str, ...]:
  """The class list of a nomenclature (43 or 19)."""
  if nomenclature not in NOMENCLATURES:
    raise records.DataError(
        f"--nomenclature {nomenclature}: BigEarthNet has "
        "the 43- and the 19-class nomenclature; pass 43 "
        "or 19."
    )
  return NOMENCLATURES[nomenclature]


def multi_hot(
    labels: Sequence[str], nomenclature: int, where: str
) -> np.ndarray:
  """BigEarthNet 43-class label names -> `[num_classes]` uint8 multi-hot."""
  index = {name: i for i, name in enumerate(LABELS_43)}
  v43 = np.zeros((len(LABELS_43),), np.uint8)
  for name in labels:
    if name not in index:
      raise records.DataError(
          f"{where}: label {name!r} is not one of the 43 BigEarthNet (CORINE) "
          "labels: the file is corrupt or from another dataset version; fix "
          "or remove the patch."
      )
    v43[index[name]] = 1
  if nomenclature == 43:
    return v43
  class_names(nomenclature)
  return np.array([v43[list(g)].max() for g in GROUPS_19], np.uint8)


def find_patches(src_dir: str) -> list[str]:
  """Sorted names of the patch folders in `src_dir`."""
  if not os.path.isdir(src_dir):
    raise records.DataError(
        f"{src_dir} is not a directory: pass --src the "
        "folder holding the BigEarthNet-S2 patch folders."
    )
  out = []
  for name in sorted(os.listdir(src_dir)):
    d = os.path.join(src_dir, name)
    if name.startswith(".") or not os.path.isdir(d):
      continue
    files = os.listdir(d)
    if f"{name}_labels_metadata.json" in files or any(
        f.startswith(f"{name}_B") for f in files
    ):
      out.append(name)
  if not out:
    raise records.DataError(
        f"{src_dir} holds no BigEarthNet-S2 patch folders (expected "
        "SRC/<patch>/<patch>_B02.tif and <patch>_labels_metadata.json): "
        "point --src at the folder of patch folders, e.g. "
        "BigEarthNet-S2-Example or BigEarthNet-v1.0."
    )
  return out


def read_band(patch_dir: str, patch: str, band: str, size: int) -> np.ndarray:
  """One band file -> `[size, size]`; DataError if missing or misshapen."""
  path = os.path.join(patch_dir, f"{patch}_{band}.tif")
  if not os.path.isfile(path):
    radar = [
        f for f in os.listdir(patch_dir) if f.endswith(("_VV.tif", "_VH.tif"))
    ]
    hint = (
        " It holds VV/VH files: it is a BigEarthNet-S1 (radar) patch; "
        "point --src at the BigEarthNet-S2 folder."
        if radar
        else " Re-extract the patch from the archive, or delete the folder "
        f"{patch_dir} to build without it."
    )
    raise records.DataError(
        f"patch {patch}: band {band} is missing (no {path}).{hint}"
    )
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
      with rasterio.open(path) as ds:
        shape = (ds.count, ds.height, ds.width)
        a = ds.read(1) if shape == (1, size, size) else None
  except rasterio.errors.RasterioIOError as e:
    raise records.DataError(
        f"patch {patch}: band {band} ({path}) could not be read ({e}): "
        "re-extract the patch or delete its folder."
    ) from e
  if a is None:
    raise records.DataError(
        f"patch {patch}: band {band} ({path}) is {shape[0]} band(s) of "
        f"{shape[2]}x{shape[1]} px, expected 1 band of {size}x{size} px (the "
        f"{HR_GSD if size == HR_PX else LR_GSD:g} m bands of a 1.2 km patch): "
        "the file is not this patch's band; re-extract the patch or delete "
        "its folder."
    )
  return a


def read_metadata(path: str, patch: str) -> dict[str, Any]:
  """The patch's labels_metadata.json; DataError if missing or malformed."""
  if not os.path.isfile(path):
    raise records.DataError(
        f"patch {patch}: {path} is missing (labels and georeference): "
        "re-extract the patch or delete its folder."
    )
  try:
    with open(path, encoding="utf-8") as f:
      meta = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise records.DataError(
        f"{path} is not valid JSON ({e}): re-extract the "
        "patch or delete its folder."
    ) from e
  if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list):
    raise records.DataError(
        f'{path} has no "labels" list: not a '
        "BigEarthNet labels_metadata.json."
    )
  return meta


def iso_time(value: str | None, where: str) -> str | None:
  """ "2017-06-13 10:10:31" -> "2017-06-13T10:10:31" (None stays None)."""
  if value is None:
    return None
  try:
    return datetime.datetime.fromisoformat(str(value)).isoformat()
  except ValueError as e:
    raise records.DataError(
        f"{where}: acquisition_date {value!r} is not a "
        "date/time (expected YYYY-MM-DD hh:mm:ss)."
    ) from e


def georef(
    meta: dict[str, Any], where: str
) -> tuple[str | None, tuple[float, float, float, float] | None]:
  """(crs string, (minx, miny, maxx, maxy)) from the json, None if absent."""
  crs = None
  if meta.get("projection"):
    try:
      crs = CRS.from_wkt(meta["projection"]).to_string()
    except rasterio.errors.CRSError as e:
      raise records.DataError(
          f'{where}: "projection" is not a valid WKT ' f"CRS ({e})."
      ) from e
  c = meta.get("coordinates")
  bounds = None
  if c:
    try:
      bounds = (
          float(c["ulx"]),
          float(c["lry"]),
          float(c["lrx"]),
          float(c["uly"]),
      )
    except (KeyError, TypeError, ValueError) as e:
      raise records.DataError(
          f'{where}: "coordinates" must hold ulx, uly, '
          f"lrx, lry numbers, got {c!r}."
      ) from e
  return crs, bounds


def read_patch(src_dir: str, patch: str, nomenclature: int) -> dict[str, Any]:
  """One patch -> {"hr": [120,120,4], "lr": [60,60,6], "labels", "crs",
  "bounds", "time"}."""
  d = os.path.join(src_dir, patch)
  json_path = os.path.join(d, f"{patch}_labels_metadata.json")
  meta = read_metadata(json_path, patch)
  hr = np.stack([read_band(d, patch, b, HR_PX) for b in HR_BANDS], -1)
  lr = np.stack([read_band(d, patch, b, LR_PX) for b in LR_BANDS], -1)
  crs, bounds = georef(meta, json_path)
  return {
      "hr": hr,
      "lr": lr,
      "labels": multi_hot(meta["labels"], nomenclature, json_path),
      "crs": crs,
      "bounds": bounds,
      "time": iso_time(meta.get("acquisition_date"), json_path),
  }


def build(
    src_dir: str,
    out_dir: str,
    *,
    name: str = "bigearthnet",
    nomenclature: int = 43,
    grid: int = DEFAULT_GRID,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    records_per_shard: int = 512,
) -> shards.Manifest:
  """Builds a records dataset in `out_dir` from the patches in `src_dir`."""
  names = class_names(nomenclature)
  if grid < 1 or HR_PX % grid:
    raise records.DataError(
        f"--grid {grid} does not divide the {HR_PX} px HR patch: use a "
        "divisor of 120 (e.g. 2, 3, 4, 5, 6, 8, 10, 12)."
    )
  src_dir = os.path.abspath(src_dir)
  patches = find_patches(src_dir)
  splits = common.assign_splits(len(patches), split_fractions, seed)

  def scenes():
    for patch, split in zip(patches, splits):
      p = read_patch(src_dir, patch, nomenclature)
      yield records.Scene(
          id=patch,
          lr=p["lr"],
          hr=p["hr"],
          lr_bands=LR_BANDS,
          hr_bands=HR_BANDS,
          lr_gsd=LR_GSD,
          hr_gsd=HR_GSD,
          grid=grid,
          labels=p["labels"],
          split=split,
          crs=p["crs"],
          bounds=p["bounds"],
          lr_time=p["time"],
          hr_time=p["time"],
      )

  builder = {
      "builder": "bigearthnet",
      "src": src_dir,
      "nomenclature": nomenclature,
      "grid": grid,
      "split_fractions": list(split_fractions),
      "seed": seed,
      "num_patches": len(patches),
  }
  return shards.write_dataset(
      out_dir,
      name,
      scenes(),
      names,
      records_per_shard=records_per_shard,
      builder=builder,
      expected_per_split=dict(collections.Counter(splits)),
  )


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(
      description="Build crossscale records from BigEarthNet-S2 patches."
  )
  p.add_argument(
      "--src", required=True, help="folder of BigEarthNet-S2 patch folders"
  )
  p.add_argument("--name", default="bigearthnet")
  p.add_argument(
      "--nomenclature",
      type=int,
      choices=(43, 19),
      default=43,
      help="43 CORINE classes, or the 19-class grouping",
  )
  p.add_argument(
      "--grid",
      type=int,
      default=DEFAULT_GRID,
      help="HR tile grid size G (divides 120)",
  )
  p.add_argument(
      "--split_fractions",
      type=float,
      nargs=3,
      default=(0.7, 0.15, 0.15),
      metavar=("TRAIN", "VAL", "TEST"),
  )
  common.add_common_flags(p)
  args = p.parse_args(argv)
  common.run_build(
      lambda: build(
          args.src,
          args.out,
          name=args.name,
          nomenclature=args.nomenclature,
          grid=args.grid,
          split_fractions=args.split_fractions,
          seed=args.seed,
          records_per_shard=args.records_per_shard,
      ),
      args.out,
  )


if __name__ == "__main__":
  main()
