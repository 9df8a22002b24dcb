"""A tensorflow-datasets view of a crossscale records directory.

`CrossscaleScenes` is a TFDS `GeneratorBasedBuilder` that re-writes a records
directory (made by `crossscale.shards.write_dataset`) as a TFDS dataset in
ArrayRecord format, so TFDS users can random-access it with
`tfds.data_source(...)` / `builder.as_data_source()` (and feed it to Grain).

  python -m data.tfds_builder --records /tmp/rsscn7 --data_dir ~/tfds

  import tensorflow_datasets as tfds
  ds = tfds.data_source("crossscale_scenes/rsscn7", data_dir="~/tfds")
  ex = ds["train"][0]  # {"lr", "hr", "labels", "id", "text", "mask_*"}

One builder config per records dataset: its name is the manifest's dataset
name (lower-cased; characters other than a-z, 0-9 and _ become _), its
`records_dir` the records directory. Output goes to
`data_dir/crossscale_scenes/<config>/<version>/`. A prepared dataset is read
back from its files alone (TFDS's read-only builder), so reading needs neither
the records directory nor this module.

Features (one example per scene; splits and their order as in the manifest;
examples in the same order as `shards.iter_scenes` yields them, since
shuffling at write time is disabled):
  lr:     Tensor `[h, w, C_lr]`, the manifest's LR dtype.
  hr:     Tensor `[H, W, C_hr]`, the manifest's HR dtype.
  labels: Tensor `[num_classes]` uint8 multi-hot.
  id:     Text; read back as `bytes` (UTF-8), not `str`: `ex["id"].decode()`.
  text:   Text; "" when the scene has none (b"" when read).
  mask_<name>: Tensor `[H, W, ...]`, one per mask in the manifest.
Dataset-level facts (class names, bands, GSDs, grid, band statistics, the
manifest's name/creation time/builder settings) are in `info.metadata`.
Per-scene geo metadata (crs, bounds, acquisition times) is not carried: read
it with `crossscale.shards.iter_scenes`.

What TFDS does and does not do without TensorFlow (tensorflow-datasets 4.9.10,
no TensorFlow installed):
  - Works: defining this builder, `download_and_prepare()` with
    `file_format="array_record"`, `Tensor` and `Text` features, metadata, and
    reading with `tfds.data_source` / `as_data_source()` (random access,
    NumPy out), also from a fresh process without this module.
  - Does not work: `tfds.load` / `builder.as_dataset()` (they return
    `tf.data.Dataset`s), the default `tfrecord` file format, and writing
    `tfds.features.Image` (its encoder needs TensorFlow) - hence pixels are
    stored as raw `Tensor`s here, which also keeps any dtype and band count.
  - Preparing a builder defined in a package (like this one) needs the
    `importlib_resources` package, which tensorflow-datasets 4.9.10 imports
    (in `DatasetBuilder.code_path`) but does not declare as a dependency;
    `CrossscaleScenes.code_path` is overridden so it is not needed.
  - `Text` features are read back as UTF-8 `bytes` (as on every TFDS NumPy
    path), not `str`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import sys
from typing import Any, Iterator, Sequence

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from crossscale import records, shards

VERSION = "1.0.0"
RELEASE_NOTES = {VERSION: "First release: lr, hr, labels, id, text, masks."}
FILE_FORMAT = "array_record"


def config_name(dataset_name: str) -> str:
  """A TFDS-safe config name for a dataset name ("RSSCN7-v2" -> "rsscn7_v2")."""
  name = re.sub(r"[^a-z0-9_]", "_", dataset_name.lower())
  return name if name and name[0].isalpha() else f"d_{name}"


@dataclasses.dataclass(eq=False)
class CrossscaleScenesConfig(tfds.core.BuilderConfig):
  """One records dataset. `records_dir`: a shards.write_dataset directory."""

  records_dir: str = ""


def config_for(records_dir: str) -> CrossscaleScenesConfig:
  """The builder config for a records directory (reads its manifest)."""
  records_dir = os.path.abspath(records_dir)
  m = shards.load_manifest(records_dir)
  return CrossscaleScenesConfig(
      name=config_name(m.name),
      version=VERSION,
      release_notes=dict(RELEASE_NOTES),
      records_dir=records_dir,
      description=f"crossscale records {m.name!r} from {records_dir}",
  )


def _native(dtype_str: str) -> np.dtype:
  """Manifest dtype string ("|u1", "<f4") -> native-order numpy dtype."""
  return np.dtype(dtype_str).newbyteorder("=")


def _native_array(a: np.ndarray) -> np.ndarray:
  """`a` in native byte order (records may hold e.g. big-endian arrays)."""
  return a.astype(a.dtype.newbyteorder("="), copy=False)


def mask_specs(
    records_dir: str, m: shards.Manifest
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Shape `[H, W, ...]` and dtype of each mask.

  The manifest lists mask names only, so this reads the first record.
  """
  if not m.mask_names:
    return {}
  scene = next(
      shards.iter_scenes(records_dir, next(iter(m.splits)), verify=False)
  )
  return {
      k: (scene.masks[k].shape, scene.masks[k].dtype.newbyteorder("="))
      for k in m.mask_names
  }


def features_for(
    m: shards.Manifest, masks: dict[str, tuple[tuple[int, ...], np.dtype]]
) -> tfds.features.FeaturesDict:
  """TFDS features of one scene of manifest `m`; `masks` from mask_specs."""
  spec = {
      "lr": tfds.features.Tensor(
          shape=tuple(m.lr_shape), dtype=_native(m.dtypes["lr"])
      ),
      "hr": tfds.features.Tensor(
          shape=tuple(m.hr_shape), dtype=_native(m.dtypes["hr"])
      ),
      "labels": tfds.features.Tensor(shape=(m.num_classes,), dtype=np.uint8),
      "id": tfds.features.Text(),
      "text": tfds.features.Text(),
  }
  for k, (shape, dt) in masks.items():
    spec[f"mask_{k}"] = tfds.features.Tensor(shape=tuple(shape), dtype=dt)
  return tfds.features.FeaturesDict(spec)


def metadata_for(m: shards.Manifest) -> dict[str, Any]:
  """Dataset-level facts of the manifest, JSON-serialisable."""
  return {
      "name": m.name,
      "created": m.created,
      "schema_version": m.schema_version,
      "class_names": list(m.class_names),
      "lr_bands": list(m.lr_bands),
      "hr_bands": list(m.hr_bands),
      "lr_gsd": m.lr_gsd,
      "hr_gsd": m.hr_gsd,
      "grid": m.grid,
      "band_stats": m.band_stats,
      "mask_names": list(m.mask_names),
      "builder": m.builder,
  }


def example_of(scene: records.Scene) -> dict[str, Any]:
  """The TFDS example of one scene."""
  ex = {
      "lr": _native_array(scene.lr),
      "hr": _native_array(scene.hr),
      "labels": scene.labels.astype(np.uint8),
      "id": scene.id,
      "text": scene.text or "",
  }
  for k, v in scene.masks.items():
    ex[f"mask_{k}"] = _native_array(v)
  return ex


class CrossscaleScenes(tfds.core.GeneratorBasedBuilder):
  """TFDS builder over a crossscale records directory (see module doc)."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = RELEASE_NOTES

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    """This file. TFDS's own lookup needs the `importlib_resources` package
    (not a declared dependency of tensorflow-datasets 4.9.10) for builders
    defined in a package, so preparing would fail without it."""
    return epath.Path(__file__)

  def __init__(
      self,
      *,
      records_dir: str | None = None,
      config: CrossscaleScenesConfig | str | None = None,
      file_format: str = FILE_FORMAT,
      **kwargs,
  ):
    """`records_dir` (or a CrossscaleScenesConfig) names the records to read;
    `data_dir` (in kwargs) is where TFDS writes."""
    if records_dir is not None:
      config = config_for(records_dir)
    super().__init__(config=config, file_format=file_format, **kwargs)

  def _records_dir(self) -> str:
    cfg = self.builder_config
    if not isinstance(cfg, CrossscaleScenesConfig) or not cfg.records_dir:
      raise records.DataError(
          "CrossscaleScenes needs the records directory to prepare a dataset: "
          "pass records_dir=DIR (or config=config_for(DIR)). To read an "
          "already prepared one, use tfds.data_source('crossscale_scenes/"
          "<name>', data_dir=...) without constructing this class."
      )
    return cfg.records_dir

  def _info(self) -> tfds.core.DatasetInfo:
    rdir = self._records_dir()
    m = shards.load_manifest(rdir)
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"crossscale scene records {m.name!r}: LR/HR pairs with "
        "multi-hot labels.",
        features=features_for(m, mask_specs(rdir, m)),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(metadata_for(m)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the records are local.
    m = shards.load_manifest(self._records_dir())
    return {split: self._generate_examples(split) for split in m.splits}

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict]]:
    """Yields (scene id, example) in storage order; shards are checksummed."""
    for scene in shards.iter_scenes(self._records_dir(), split, verify=True):
      yield scene.id, example_of(scene)


def prepare(
    records_dir: str, data_dir: str, force: bool = False
) -> CrossscaleScenes:
  """Prepares (or reuses) the TFDS dataset of `records_dir` under `data_dir`.

  A prepared dataset is reused unless `force` or its metadata says it was made
  from a different build of the records (the manifest's `created` differs);
  then its version folder is deleted and written anew (TFDS's own
  FORCE_REDOWNLOAD would keep the old metadata.json).
  """
  builder = CrossscaleScenes(records_dir=records_dir, data_dir=data_dir)
  created = shards.load_manifest(records_dir).created
  if builder.is_prepared() and (
      force or builder.info.metadata.get("created") != created
  ):
    shutil.rmtree(builder.data_dir)
    builder = CrossscaleScenes(records_dir=records_dir, data_dir=data_dir)
  builder.download_and_prepare()
  return builder


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(
      description="Prepare a TFDS (array_record) dataset from crossscale "
      "records."
  )
  p.add_argument(
      "--records",
      required=True,
      help="records directory written by a data/ builder",
  )
  p.add_argument("--data_dir", required=True, help="TFDS data directory")
  p.add_argument(
      "--force", action="store_true", help="regenerate even if already prepared"
  )
  args = p.parse_args(argv)
  try:
    builder = prepare(args.records, args.data_dir, force=args.force)
  except records.DataError as e:
    sys.exit(f"error: {e}")
  name = f"{builder.name}/{builder.builder_config.name}"
  print(f"{name} {builder.version} -> {builder.data_dir}")
  for split, info in builder.info.splits.items():
    print(f"  {split}: {info.num_examples} examples")
  print(f"read with: tfds.data_source({name!r}, data_dir={args.data_dir!r})")


if __name__ == "__main__":
  main()
