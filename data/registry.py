"""Datasets by name: the one place that maps `config.dataset` to records.

`config.dataset` is either a path to a records directory (one with a
manifest.json, written by any builder in data/) or a registered name, built on
first use under `config.data_root`:
  toyworld  procedural default (data/toyworld.py), from `config.toyworld`
  geoworld  procedural GL-10M-shaped world (data/geoworld.py): multi-label,
            10x10 grid, LR 8x coarser, regions held out by split; options =
            GeoworldConfig fields + num_train/num_val/num_test, seed
  rsscn7    the real RSSCN7 scenes in ../shared/data/rsscn7
            (data/image_folder.py), LR 8x coarser than HR, a 10x10 HR grid
  ucmerced  the real UC Merced scenes in ../shared/data/ucmerced (21
            classes, data/image_folder.py): resized to 256 px (0.3 m), LR 8x
            coarser (2.4 m), an 8x8 grid of 32 px HR tiles
  eurosat_samples  the 54 real EuroSAT RGB tiles in ../shared/data (flat,
            class = file-name prefix; data/image_folder.py layout="prefix")
  bigearthnet  the real BigEarthNet S2 patches in ../shared/data
            (data/bigearthnet.py; multi-label, 43-class nomenclature)
  toyworld_referring, spacenet_buildings_referring, levircd_referring
            referring-segmentation sets (data/referring/): one record per
            expression, `text` + masks["target"]; options = referring.Options
            fields (+ num_train/num_val/num_test for toyworld)
  spacenet_buildings_chips, spacenet_roads_chips, levircd_chips, hag_chips
            SR-benchmark chips (data/sr_chips.py): HR chips in [0, 1], a 4x
            degraded LR, the dense target in masks["target"]; options: seed
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os

from crossscale import records, shards
from data import common


def default_root() -> str:
  return os.environ.get(
      "CROSSSCALE_DATA", os.path.expanduser("~/.cache/crossscale/datasets")
  )


def _build_toyworld(out: str, opts: dict) -> None:
  from data import toyworld  # pylint: disable=g-import-not-at-top

  counts = {
      k: opts.pop(k) for k in ("num_train", "num_val", "num_test") if k in opts
  }
  seed = opts.pop("seed", 0)
  cfg = toyworld.ToyworldConfig(
      **{k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}
  )
  toyworld.build(out, cfg, seed=seed, **counts)


def _build_geoworld(out: str, opts: dict) -> None:
  from data import geoworld  # pylint: disable=g-import-not-at-top

  counts = {
      k: opts.pop(k) for k in ("num_train", "num_val", "num_test") if k in opts
  }
  seed = opts.pop("seed", 0)
  fields = {f.name for f in dataclasses.fields(geoworld.GeoworldConfig)}
  unknown = sorted(set(opts) - fields)
  if unknown:
    raise ValueError(
        f"geoworld options {unknown} unknown: use GeoworldConfig fields "
        f"{sorted(fields)} or num_train/num_val/num_test/seed."
    )
  cfg = geoworld.GeoworldConfig(
      **{k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}
  )
  geoworld.build(out, cfg, seed=seed, **counts)


def _build_rsscn7(out: str, opts: dict) -> None:
  from data import image_folder  # pylint: disable=g-import-not-at-top

  src = os.path.join(common.SHARED_DATA, "rsscn7")
  if not os.path.isdir(src):
    raise records.DataError(
        f"RSSCN7 not found at {src}: set CROSSSCALE_SHARED_DATA to the folder "
        "holding rsscn7/, or build it yourself with `python -m "
        "data.image_folder --src .../rsscn7 --out DIR` and pass DIR."
    )
  image_folder.build(src, out, name="rsscn7", **opts)


def _shared_source(name: str) -> str:
  src = os.path.join(common.SHARED_DATA, name)
  if not os.path.isdir(src):
    raise records.DataError(
        f"{name} not found at {src}: set CROSSSCALE_SHARED_DATA to the folder "
        f"holding {name}/, or build the records yourself with the builder in "
        "data/ and pass their directory."
    )
  return src


# UC Merced: 0.3 m (1 ft) per pixel at its native 256 px.
UCMERCED_GSD_M, UCMERCED_SIZE = 0.3, 256


def _build_ucmerced(out: str, opts: dict) -> None:
  from data import image_folder  # pylint: disable=g-import-not-at-top

  size = opts.get("hr_size") or UCMERCED_SIZE
  opts.setdefault("hr_gsd", UCMERCED_GSD_M * UCMERCED_SIZE / size)
  image_folder.build(_shared_source("ucmerced"), out, name="ucmerced", **opts)


def _build_eurosat_samples(out: str, opts: dict) -> None:
  from data import image_folder  # pylint: disable=g-import-not-at-top

  image_folder.build(
      _shared_source("eurosat_samples"),
      out,
      name="eurosat_samples",
      layout="prefix",
      **opts,
  )


def _build_bigearthnet(out: str, opts: dict) -> None:
  from data import bigearthnet  # pylint: disable=g-import-not-at-top

  bigearthnet.build(
      os.path.join(_shared_source("bigearthnet"), "BigEarthNet-S2-Example"),
      out,
      **opts,
  )


def _build_referring(source: str):
  """Builder of the referring set (data/referring/) made from `source`."""

  def build(out: str, opts: dict) -> None:
    from data import referring  # pylint: disable=g-import-not-at-top

    counts = {
        k.removeprefix("num_"): opts.pop(k)
        for k in ("num_train", "num_val", "num_test")
        if k in opts
    }
    referring.build(
        source, out, referring.Options(**opts), counts=counts or None
    )

  return build


def _build_sr_chips(source: str):
  """Builder of the SR-benchmark chips (data/sr_chips.py) of `source`."""

  def build(out: str, opts: dict) -> None:
    from data import sr_chips  # pylint: disable=g-import-not-at-top

    sr_chips.build(source, out, **opts)

  return build


_SR_CHIPS = {
    f"{s}_chips": s
    for s in ("spacenet_buildings", "spacenet_roads", "levircd", "hag")
}
_REFERRING = {
    f"{s}_referring": s for s in ("toyworld", "spacenet_buildings", "levircd")
}


def _version(dataset: str) -> int:
  if dataset in _REFERRING:
    from data import referring  # pylint: disable=g-import-not-at-top

    return referring.GENERATOR_VERSION
  if dataset in _SR_CHIPS:
    from data import sr_chips  # pylint: disable=g-import-not-at-top

    return sr_chips.GENERATOR_VERSION
  if dataset == "toyworld":
    from data import toyworld  # pylint: disable=g-import-not-at-top

    return toyworld.GENERATOR_VERSION
  if dataset == "geoworld":
    from data import geoworld  # pylint: disable=g-import-not-at-top

    return geoworld.GEOWORLD_VERSION
  return 1


_BUILDERS = {
    "toyworld": _build_toyworld,
    "geoworld": _build_geoworld,
    "rsscn7": _build_rsscn7,
    "ucmerced": _build_ucmerced,
    "eurosat_samples": _build_eurosat_samples,
    "bigearthnet": _build_bigearthnet,
}
_BUILDERS.update({n: _build_referring(s) for n, s in _REFERRING.items()})
_BUILDERS.update({n: _build_sr_chips(s) for n, s in _SR_CHIPS.items()})
_DEFAULTS = {
    "rsscn7": {"scale": 8, "grid": 10},
    # 256 px: HR tiles of 32 px, LR 32x32 px.
    "ucmerced": {"hr_size": 256, "scale": 8, "grid": 8},
    # Toyworld images (not expressions): ~6 expressions each, so
    # ~12k train expressions; 300 images learn the set by heart.
    "toyworld_referring": {"num_train": 2000, "num_val": 200, "num_test": 300},
    "eurosat_samples": {"scale": 4, "grid": 4},
    # 64 px chips: a few hundred expressions, CPU-sized; windows
    # every 16 px inside the train chips multiply the training
    # expressions ~8x (val/test unchanged, never overlapped).
    "spacenet_buildings_referring": {
        "chip": 64,
        "max_per_image": 8,
        "train_stride": 16,
    },
    "levircd_referring": {"chip": 64, "max_per_image": 8, "train_stride": 16},
}


def unknown_message(dataset: str) -> str:
  """Why `dataset` is neither a registered name nor a directory."""
  near = difflib.get_close_matches(dataset, sorted(_BUILDERS), n=1)
  hint = f"Did you mean {near[0]!r}? " if near else ""
  return (
      f"dataset {dataset!r} is neither a registered name nor a records "
      f"directory. {hint}Registered: {', '.join(sorted(_BUILDERS))}. Your "
      "own data: build records with `python -m data.image_folder --src "
      "FOLDER --out DIR` (class sub-folders) or `python -m "
      "data.geotiff_pairs --hr HR.tif --lr LR.tif --out DIR`, then pass DIR."
  )


def resolve(
    dataset: str, root: str | None = None, options: dict | None = None
) -> str:
  """Records directory for `dataset`, building a named one if needed.

  A named dataset's directory name carries a hash of its options, so changing
  the options builds a new copy instead of reusing a stale one.
  """
  if dataset not in _BUILDERS:
    if not os.path.exists(dataset):
      raise records.DataError(unknown_message(dataset))
    shards.load_manifest(dataset)  # Clear error if it is not a dataset dir.
    return dataset
  opts = {**_DEFAULTS.get(dataset, {}), **dict(options or {})}
  key = {"options": opts, "version": _version(dataset)}
  tag = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
  out = os.path.join(root or default_root(), f"{dataset}-{tag}")
  if not os.path.exists(os.path.join(out, shards.MANIFEST)):
    print(f"building dataset {dataset!r} into {out} ...", flush=True)
    _BUILDERS[dataset](out, dict(opts))
  return out
