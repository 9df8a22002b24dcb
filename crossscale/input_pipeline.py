"""Grain input pipeline over scene-record shards.

train: source -> seeded global shuffle (reshuffled each epoch) -> repeat ->
       normalise -> optional GSD augmentation (`gsd_augment`: each scene
       re-rendered at a random GSD factor, LR and HR over the same ground;
       `gsd_render.GsdAugment`) -> seeded flips/rot90 (LR, HR and masks
       together; with labels, only those the manifest declares
       label-preserving) -> fixed-shape per-host batches -> this host's
       slice of them -> prefetch (threads or processes).
eval:  source -> normalise -> per-host batches padded to a fixed shape, with
       `valid: [B]` marking the real examples -> this host's slice.

Slicing is lazy and by record, so a host reads only its own records of any
shard (fewer shard files than hosts is fine), and the global batch of a step
is the same on any process count.

Every random choice is a function of (seed, element index), so the iterator's
`get_state()` / `set_state()` resumes exactly, also after a process restart.

Fields "lr_gsd" / "hr_gsd" (`GSD_FIELDS`) are each scene's metres per LR /
HR pixel (float32 scalars, `[B]` batched), read from the records; the GSD
augmentation updates them.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
from typing import Any, Sequence

from absl import flags
import grain
import numpy as np

from crossscale import gsd_render, records, shards

Batch = dict[str, np.ndarray]
# Per-scene ground sample distances (metres per pixel), from the records.
GSD_FIELDS = ("lr_gsd", "hr_gsd")


class SceneSource:
  """Random access to a split's scenes as dicts of arrays.

  Read and decode failures are raised as DataError naming the shard file and
  the record index inside it.
  """

  def __init__(
      self,
      data_dir: str,
      split: str,
      fields: Sequence[str],
      verify: bool = True,
  ):
    self.manifest = shards.load_manifest(data_dir)
    self.paths = shards.shard_paths(data_dir, self.manifest, split, verify)
    counts = [
        s["num_records"] for s in self.manifest.split_info(split)["shards"]
    ]
    self.starts = np.cumsum([0] + counts).tolist()
    self.fields = tuple(fields)
    self._source = None

  def __len__(self) -> int:
    return self.starts[-1]

  def _locate(self, index: int) -> str:
    i = bisect.bisect_right(self.starts, index) - 1
    return f"{self.paths[i]}[record {index - self.starts[i]}]"

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if self._source is None:  # Opened lazily: the source travels to workers.
      self._source = grain.sources.ArrayRecordDataSource(self.paths)
    try:
      data = self._source[index]
    except Exception as e:  # array_record raises bare RuntimeErrors.
      raise records.DataError(
          f"{self._locate(index)}: cannot read the record ({e}). The shard is "
          "corrupt: rebuild the dataset."
      ) from e
    if any(f in GSD_FIELDS for f in self.fields):
      arrays = scene_arrays(records.decode(data, self._locate(index)))
    else:
      arrays = records.decode_arrays(data, self._locate(index))
    if wants_text(self.fields):  # raw text, tokenised by TokenizeText
      text = records.decode(data, self._locate(index)).text
      if not text:
        raise records.DataError(
            f"{self._locate(index)}: the record has no text, but "
            f"config.data.fields asks for {TEXT_FIELDS}: use a referring set "
            "(python -m data.referring ...) or drop the text fields."
        )
      arrays["text"] = text
    missing = [
        f for f in self.fields if f not in arrays and f not in TEXT_FIELDS
    ]
    if missing:
      raise records.DataError(
          f"{self._locate(index)}: the record has no {missing}; it has "
          f"{sorted(arrays)}. Rebuild with masks, or drop them from "
          "config.data.fields."
      )
    out = {f: arrays[f] for f in self.fields if f not in TEXT_FIELDS}
    if wants_text(self.fields):
      out["text"] = arrays["text"]
    return out

  def __getstate__(self):
    return {**self.__dict__, "_source": None}


def scene_arrays(scene: records.Scene) -> dict[str, np.ndarray]:
  """`records.decode_arrays`'s dict plus "lr_gsd", "hr_gsd" (float32 [])."""
  out = {"lr": scene.lr, "hr": scene.hr, "labels": scene.labels}
  out.update({f"mask_{k}": v for k, v in scene.masks.items()})
  out["lr_gsd"] = np.float32(scene.lr_gsd)
  out["hr_gsd"] = np.float32(scene.hr_gsd)
  return out


def standardise(a: np.ndarray, mean, std) -> np.ndarray:
  """`[H, W, C]` pixels -> float32 (a - mean) / std per band, computed on
  rows of W * C values: numpy broadcasts over a 3-wide innermost axis ~8x
  slower (same float32 arithmetic, identical results)."""
  out = a.astype(np.float32)  # a copy: safe to update in place
  w = a.shape[-2] if a.ndim >= 2 else 1
  rows = out.reshape(-1, w * a.shape[-1])
  rows -= np.tile(np.asarray(mean, np.float32), w)
  rows /= np.tile(np.asarray(std, np.float32), w)
  return out


@dataclasses.dataclass(frozen=True)
class Normalize(grain.transforms.Map):
  """uint/float pixels -> float32 standardised per band with the manifest's
  statistics; labels -> float32; masks stay integer."""

  stats: dict[str, Any]

  def map(self, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(x)
    for key in ("lr", "hr"):
      if key in x:
        out[key] = standardise(x[key], **self.stats[key])
    if "labels" in x:
      out["labels"] = x["labels"].astype(np.float32)
    return out


# --- Text: referring expressions as fixed-length MiniLM word pieces ---------
# fields "text_ids" / "text_mask" (`[L]` int32 each, L = text_max_len) are
# made from the record's `text` here, on the host, by the MiniLM tokenizer.

TEXT_FIELDS = ("text_ids", "text_mask")
TEXT_MAX_LEN = 32
_TOKENIZERS: dict[str, Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def wants_text(fields: Sequence[str]) -> bool:
  return any(f in TEXT_FIELDS for f in fields)


@dataclasses.dataclass(frozen=True)
class TokenizeText(grain.transforms.Map):
  """`text` (str) -> `text_ids`, `text_mask`: `[max_len]` int32
  ([CLS] words [SEP] [PAD]...; longer texts are cut). The tokenizer is the
  installed all-MiniLM-L6-v2's (`tokenizer_path` "" = the package's)."""

  max_len: int = TEXT_MAX_LEN
  tokenizer_path: str = ""

  def map(self, x: dict[str, Any]) -> dict[str, Any]:
    from crossscale.models import text_encoder  # pylint: disable=g-import-not-at-top

    out = dict(x)
    text = out.pop("text")
    with _TOKENIZER_LOCK:  # one tokenizer per process; it holds settings
      tok = _TOKENIZERS.get(self.tokenizer_path)
      if tok is None:
        tok = text_encoder.load_tokenizer(
            self.tokenizer_path or text_encoder.default_path()
        )
        _TOKENIZERS[self.tokenizer_path] = tok
      enc = text_encoder.tokenize(tok, [text], self.max_len)
    out["text_ids"] = enc["input_ids"][0]
    out["text_mask"] = enc["attention_mask"][0]
    return out


@dataclasses.dataclass(frozen=True)
class FlipRotate(grain.transforms.RandomMap):
  """Random h/v flips (`flips`) and, on square scenes, rot90 (`rot90`),
  applied identically to every spatial array, so LR, HR and masks stay
  aligned."""

  flips: bool = True
  rot90: bool = True

  def random_map(self, x: dict[str, np.ndarray], rng: np.random.Generator):
    keys = records.spatial_keys(x)
    flip_h, flip_v = rng.integers(0, 2, size=2) * int(self.flips)
    square = all(x[k].shape[0] == x[k].shape[1] for k in keys)
    k_rot = int(rng.integers(0, 4)) if square and self.rot90 else 0
    out = dict(x)
    for k in keys:
      a = x[k]
      if flip_h:
        a = a[:, ::-1]
      if flip_v:
        a = a[::-1]
      out[k] = np.ascontiguousarray(np.rot90(a, k_rot, axes=(0, 1)))
    return out


# --- GSD augmentation: one scene re-rendered at another ground resolution ---


def _local_batch_size(global_batch: int, process_count: int) -> int:
  if global_batch % process_count:
    raise ValueError(
        f"batch_size {global_batch} is not divisible by the "
        f"{process_count} hosts; set config.batch_size to a "
        "multiple of the host count."
    )
  return global_batch // process_count


def _prefetch(ds: grain.MapDataset, worker_count: int, num_threads: int):
  it = ds.to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=8)
  )
  if worker_count > 0:
    # Grain's worker processes read absl flags; notebooks/tests never parse
    # them (launch.py does), so mark them parsed with their defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it


def augmentations(
    manifest: shards.Manifest, fields: Sequence[str]
) -> tuple[str, ...]:
  """The shards.SYMMETRIES training may apply: all for pixels alone (SR),
  only the dataset's `label_symmetries` when the batches carry labels or
  masks (flipping a "horizontal stripes" scene, or its per-pixel class mask,
  would make it "vertical stripes" under the same label)."""
  if not any(f == "labels" or f.startswith("mask_") for f in fields):
    return shards.SYMMETRIES
  return tuple(t for t in shards.SYMMETRIES if t in manifest.label_symmetries)


def train_dataset(
    data_dir: str,
    *,
    batch_size: int,
    seed: int,
    fields: Sequence[str] = ("lr", "labels"),
    augment: bool = True,
    process_index: int = 0,
    process_count: int = 1,
    worker_count: int = 0,
    num_threads: int = 4,
    verify: bool = True,
    split: str = "train",
    text_max_len: int = TEXT_MAX_LEN,
    gsd_augment: Sequence[float] | None = None,
    gsd_neighbours: str = "random",
    gsd_augment_prob: float = 1.0,
) -> grain.IterDataset:
  """Infinite iterator dataset of this host's training batches.

  gsd_augment (lo, hi): re-render each scene at a random GSD factor in that
  range (`gsd_render.GsdAugment`); the batches then carry "lr_gsd",
  "hr_gsd" `[B]`.
  gsd_neighbours: its zoom-out mosaics of "random" scenes of the split, or
  of "same_label" ones (the centre's class; single-label data).
  gsd_augment_prob: the fraction of scenes re-rendered, in (0, 1].

  Each batch is {field: [B_local, ...]} with B_local = batch_size /
  process_count; `lr: [B, h, w, C_lr]`, `hr: [B, H, W, C_hr]` float32,
  `labels: [B, num_classes]` float32, `mask_<name>: [B, H, W]`,
  `text_ids`, `text_mask`: `[B, text_max_len]` int32 (TokenizeText).
  """
  if gsd_augment:  # the augmentation changes each scene's GSD
    gsd_augment = gsd_render.check_gsd_range(gsd_augment)
    fields = tuple(fields) + tuple(f for f in GSD_FIELDS if f not in fields)
  source = SceneSource(data_dir, split, fields, verify)
  stats = source.manifest.band_stats
  local = _local_batch_size(batch_size, process_count)
  ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat(None)
  ds = ds.map(Normalize(stats))
  if wants_text(fields):
    ds = ds.map(TokenizeText(text_max_len))
  if gsd_augment:
    if gsd_neighbours not in gsd_render.GSD_NEIGHBOURS:
      raise ValueError(
          f"config.data.gsd_neighbours={gsd_neighbours!r}: one of "
          f"{gsd_render.GSD_NEIGHBOURS}"
      )
    if not 0 < gsd_augment_prob <= 1:
      raise ValueError(
          f"config.data.gsd_augment_prob={gsd_augment_prob!r}: the fraction "
          "of scenes re-rendered, in (0, 1]; gsd_augment=() turns it off"
      )
    m = source.manifest
    same = gsd_neighbours == "same_label"
    pools = gsd_render.class_pools(source) if same else None
    ds = ds.random_map(
        gsd_render.GsdAugment(
            source,
            stats,
            gsd_augment,
            m.lr_gsd,
            m.hr_gsd,
            pools,
            float(gsd_augment_prob),
            union_labels=m.task == "multi_label",
        )
    )
  if augment:
    augment_with = augmentations(source.manifest, fields)
    if augment_with:
      ds = ds.random_map(
          FlipRotate(
              flips="flip" in augment_with, rot90="rot90" in augment_with
          )
      )
  # Global stream, sliced lazily by process: mini-batch j holds stream
  # elements [j*local, (j+1)*local); step s's global batch is mini-batches
  # s*P..s*P+P-1 in process order, so it is the same batch (same records,
  # order and augmentations) for every process count P, and the iterator's
  # position (`next_index` = steps taken) means the same on any P.
  ds = ds.batch(local, drop_remainder=True)[process_index::process_count]
  return _prefetch(ds, worker_count, num_threads)


def position(
    iter_state: dict, *, batch_size: int, process_count: int, worker_count: int
) -> dict:
  """The data position saved in a checkpoint: this process's iterator
  state (every process holds the same, see `train_dataset`) and what it
  depends on."""
  return {
      "iterator": iter_state,
      "batch_size": int(batch_size),
      "process_count": int(process_count),
      "worker_count": int(worker_count),
  }


def iterator_state(
    saved: dict, *, batch_size: int, process_count: int, worker_count: int
) -> dict:
  """The iterator state to resume from `saved` (a `position`, or the bare
  iterator state of checkpoints written before positions were saved).

  The position is global (steps of `batch_size` records), so it continues
  exactly on another process count; a change of the global batch size or
  of the worker count (the state's form) cannot continue exactly and is an
  error saying what would change."""
  if "iterator" not in saved:  # older checkpoints: the iterator state only
    return saved
  was = (saved["batch_size"], saved["worker_count"])
  if was == (batch_size, worker_count):
    return saved["iterator"]
  key, old, new = (
      ("config.batch_size", saved["batch_size"], batch_size)
      if saved["batch_size"] != batch_size
      else ("config.data.worker_count", saved["worker_count"], worker_count)
  )
  raise ValueError(
      f"the checkpoint's data position was saved with {key}={old}, this run "
      f"has {new}: resuming would not continue the data order of the run "
      f"(it was saved by {saved['process_count']} process(es), this run has "
      f"{process_count}; the process count may change, this may not). "
      f"Resume with --config.{key.split('.', 1)[1]}={old}, or train in a "
      "new --workdir."
  )


@dataclasses.dataclass(frozen=True)
class PadBatch(grain.transforms.Map):
  """Pads a short last batch to `size` and adds `valid: [B]`."""

  size: int

  def map(self, batch: Batch) -> Batch:
    n = len(next(iter(batch.values())))
    out = {
        k: np.concatenate(
            [v, np.zeros((self.size - n,) + v.shape[1:], v.dtype)]
        )
        if n < self.size
        else v
        for k, v in batch.items()
    }
    out["valid"] = np.arange(self.size) < n
    return out


def eval_dataset(
    data_dir: str,
    split: str,
    *,
    batch_size: int,
    fields: Sequence[str] = ("lr", "labels"),
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
    verify: bool = True,
    limit: int | None = None,
    text_max_len: int = TEXT_MAX_LEN,
) -> grain.IterDataset:
  """One pass over this host's slice of `split`, in storage order, batches
  padded to a fixed shape (`valid` marks real examples)."""
  source = SceneSource(data_dir, split, fields, verify)
  local = _local_batch_size(batch_size, process_count)
  ds = grain.MapDataset.source(source)
  if limit is not None:
    ds = ds[:limit]
  ds = ds.map(Normalize(source.manifest.band_stats))
  if wants_text(fields):
    ds = ds.map(TokenizeText(text_max_len))
  ds = ds.batch(local, drop_remainder=False).map(PadBatch(local))
  # As in training, global batch i is mini-batches i*P..i*P+P-1 (records in
  # storage order); every process runs the same number of batches, so the
  # last ones are padded with empty mini-batches (`valid` all False).
  short = -len(ds) % process_count
  if short and len(ds):
    empty = {k: np.zeros_like(v) for k, v in ds[0].items()}
    ds = grain.MapDataset.concatenate(
        [ds, grain.MapDataset.source([empty] * short)]
    )
  ds = ds[process_index::process_count]
  return ds.to_iter_dataset(
      grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4)
  )
