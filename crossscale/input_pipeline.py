"""Grain input pipeline over scene-record shards.

train: source -> seeded global shuffle (reshuffled each epoch) -> repeat ->
       normalise -> optional GSD augmentation (`gsd_augment`: each scene
       re-rendered at a random GSD factor, LR and HR over the same ground;
       `GsdAugment`) -> seeded flips/rot90 (LR, HR and masks together; with
       labels, only those the manifest declares label-preserving) ->
       fixed-shape per-host batches -> this host's slice of them -> prefetch
       (threads or processes).
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
from scipy import sparse

from crossscale import records, shards

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


def _spatial_keys(x: dict[str, np.ndarray]) -> list[str]:
  return [k for k in x if k in ("lr", "hr") or k.startswith("mask_")]


@dataclasses.dataclass(frozen=True)
class FlipRotate(grain.transforms.RandomMap):
  """Random h/v flips (`flips`) and, on square scenes, rot90 (`rot90`),
  applied identically to every spatial array, so LR, HR and masks stay
  aligned."""

  flips: bool = True
  rot90: bool = True

  def random_map(self, x: dict[str, np.ndarray], rng: np.random.Generator):
    keys = _spatial_keys(x)
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


def mosaic_cells(factor: float) -> int:
  """Scenes per side of the mosaic a zoom-out by `factor` (> 1) reads: the
  smallest odd m >= factor (the scene in the centre cell)."""
  return int(2 * np.ceil((factor - 1.0) / 2.0) + 1)


def _taps(start, length, n_out: int, n: int, nearest: bool):
  """Resampling of an axis of `n` pixels to `n_out` pixels covering
  [start, start + length) (input pixels, 0 = the first pixel's edge), as
  taps: output i = sum_t w[i, t] * input[idx[i, t]].

  Returns idx `[n_out, T]` int64 in [0, n) and w `[n_out, T]` float32, or
  None when `nearest` (masks: the pixel under each output centre, T = 1).
  Else downsampling (length >= n_out) takes exact area averages of the
  piecewise-constant pixels (a box sensor) and upsampling interpolates
  linearly between pixel centres."""
  step = length / n_out
  i = np.arange(n_out)
  if nearest:
    centres = start + (i + 0.5) * step
    return np.clip(np.floor(centres).astype(np.int64), 0, n - 1)[:, None], None
  if step >= 1.0:  # overlap of [edge_i, edge_i+1) with each input pixel
    edges = np.clip(start + np.arange(n_out + 1) * step, 0.0, n)
    lo, hi = edges[:-1, None], edges[1:, None]
    idx = np.floor(lo).astype(np.int64) + np.arange(int(np.ceil(step)) + 1)
    w = np.clip(np.minimum(idx + 1, hi) - np.maximum(idx, lo), 0.0, None)
    w /= np.maximum(hi - lo, 1e-9)
    keep = w.any(0)  # e.g. the last tap of integer factors: always 0
    idx, w = idx[:, keep], w[:, keep]
  else:
    u = np.clip(start + (i + 0.5) * step - 0.5, 0.0, n - 1)
    i0 = np.floor(u).astype(np.int64)
    idx, w = i0[:, None] + np.arange(2), (u - i0)[:, None]
    w = np.concatenate([1.0 - w, w], 1)
  return np.minimum(idx, n - 1), w.astype(np.float32)


def _tap_matrix(idx, w, lo: int, n: int, channels: int) -> sparse.csr_matrix:
  """`_taps`' (idx, w) on input pixels [lo, lo + n) as a sparse
  `[n_out * channels, n * channels]` matrix, acting on each of the
  `channels` interleaved values of a pixel alike."""
  n_out, t = idx.shape
  c = np.arange(channels)
  cols = ((idx - lo)[:, None, :] * channels + c[None, :, None]).ravel()
  data = np.broadcast_to(w[:, None, :], (n_out, channels, t)).ravel()
  indptr = np.arange(0, n_out * channels * t + 1, t)
  return sparse.csr_matrix(
      (data, cols, indptr), shape=(n_out * channels, n * channels)
  )


def _resample(window: np.ndarray, taps_y, taps_x, y0: int, x0: int):
  """`[h, w, ...]` window of pixels from (y0, x0) on -> `[n_y, n_x, ...]`
  by `_taps` per axis (taps_y, taps_x: (idx, w)): float32, or the
  window's dtype when nearest (w None)."""
  (iy, wy), (ix, wx) = taps_y, taps_x
  if wy is None:
    return window[iy[:, 0] - y0][:, ix[:, 0] - x0]
  h, w = window.shape[:2]
  ch = int(np.prod(window.shape[2:], dtype=np.int64))
  rows = _tap_matrix(iy, wy, y0, h, 1) @ window.reshape(h, -1)
  cols = rows @ _tap_matrix(ix, wx, x0, w, ch).T  # [n_y, n_x * ch]
  return np.asarray(cols, np.float32).reshape(
      (len(iy), len(ix)) + window.shape[2:]
  )


def _overlaps(lo: int, hi: int, size: int):
  """(cell, its slice, the window's slice) for each cell of `size` pixels
  that pixels [lo, hi) of a mosaic overlap."""
  for i in range(lo // size, (hi - 1) // size + 1):
    a, b = max(lo, i * size), min(hi, (i + 1) * size)
    yield i, slice(a - i * size, b - i * size), slice(a - lo, b - lo)


def _mosaic_window(cells, bounds, stats=None) -> dict[str, np.ndarray]:
  """Per key k, pixels bounds[k] = (y0, y1, x0, x1) of the mosaic of
  `cells` (m x m rows of scene dicts, one shape per key) as one array,
  reading only the cells' overlapping parts. With `stats`, the off-centre
  cells' "lr" / "hr" are raw and their parts are standardised in place, as
  `Normalize(stats)` does (same float32 arithmetic)."""
  c = len(cells) // 2
  out = {}
  for k, (y0, y1, x0, x1) in bounds.items():
    h, w = cells[c][c][k].shape[:2]
    parts = [
        (cells[i][j][k][ys, xs], (wy, wx), (i, j) == (c, c))
        for i, ys, wy in _overlaps(y0, y1, h)
        for j, xs, wx in _overlaps(x0, x1, w)
    ]
    if len(parts) == 1 and parts[0][2]:  # inside the centre scene: a view
      out[k] = parts[0][0]
      continue
    norm = stats is not None and k in ("lr", "hr")
    dtype = np.float32 if norm else np.result_type(*(p for p, _, _ in parts))
    rest = parts[0][0].shape[2:]
    out[k] = np.empty((y1 - y0, x1 - x0) + rest, dtype)
    flat, ch = out[k].reshape(y1 - y0, -1), int(np.prod(rest, dtype=int))
    for part, (wy, wx), centre in parts:  # rows of cols * ch values
      view = flat[wy, wx.start * ch : wx.stop * ch]
      view[...] = part.reshape(len(view), -1)
      if norm and not centre:  # a long inner loop: means tiled per column
        cols = wx.stop - wx.start
        view -= np.tile(np.asarray(stats[k]["mean"], np.float32), cols)
        view /= np.tile(np.asarray(stats[k]["std"], np.float32), cols)
  return out


def rescale_scene(
    x: dict[str, np.ndarray],
    factor: float,
    neighbours: Sequence[dict[str, np.ndarray]] = (),
    *,
    offset: tuple[float, float] = (0.5, 0.5),
    lr_gsd: float = 1.0,
    hr_gsd: float = 1.0,
    neighbour_stats: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
  """Scene `x` re-rendered at `factor` times its GSD, keeping its pixel
  sizes: every LR, HR and mask pixel then covers `factor`^2 times the
  ground, and LR and HR still cover the same ground.

  factor > 1 (zoom out): `x` is the centre of an m x m mosaic
    (`mosaic_cells`) with `neighbours` (m*m - 1 scenes of the same split,
    row-major around it) and the window of `factor` scene widths around
    its centre is area-averaged down to the scene size. Only the window's
    part of each neighbour is read; with `neighbour_stats` (`Normalize`'s
    band statistics) the neighbours are raw records and those parts are
    standardised as `Normalize` does.
  factor < 1 (zoom in): the window of `factor` scene widths at `offset`
    (fractions of the free room; 0.5: centred) is upsampled.
  Labels and other fields are `x`'s; "lr_gsd" / "hr_gsd" (`x`'s, else
  `lr_gsd` / `hr_gsd`) are multiplied by `factor`.
  """
  if not factor > 0:
    raise ValueError(f"GSD factor must be > 0, got {factor}")
  H, W = x["hr"].shape[:2]
  if H % x["lr"].shape[0] or W % x["lr"].shape[1]:
    raise ValueError(
        f"HR {x['hr'].shape[:2]} is not an integer multiple of LR "
        f"{x['lr'].shape[:2]}: cannot re-render at another GSD"
    )
  scale = H // x["lr"].shape[0]
  keys = _spatial_keys(x)
  m = mosaic_cells(factor) if factor > 1 else 1
  if len(neighbours) < m * m - 1:
    raise ValueError(
        f"GSD factor {factor} needs {m * m - 1} neighbouring scenes for "
        f"its {m}x{m} mosaic, got {len(neighbours)}"
    )
  if factor > 1:
    c = m // 2
    y0, x0 = c * H - (factor - 1) * H / 2, c * W - (factor - 1) * W / 2
  else:
    y0, x0 = (1 - factor) * H * offset[0], (1 - factor) * W * offset[1]
  taps, bounds = {}, {}
  for k in keys:
    # Window coordinates in HR pixels; LR pixels are `scale` HR pixels.
    div, (h, w) = (scale if k == "lr" else 1), x[k].shape[:2]
    nearest = k.startswith("mask_")
    ty = _taps(y0 / div, factor * H / div, h, m * h, nearest)
    tx = _taps(x0 / div, factor * W / div, w, m * w, nearest)
    taps[k] = ty, tx  # the window: the mosaic pixels they read
    bounds[k] = (ty[0].min(), ty[0].max() + 1, tx[0].min(), tx[0].max() + 1)
  others = iter(neighbours)
  cells = [[x if (i, j) == (m // 2,) * 2 else next(others) for j in range(m)]
           for i in range(m)]  # fmt: skip
  window = _mosaic_window(cells, bounds, neighbour_stats)
  out = dict(x)
  for k in keys:
    y = _resample(window[k], *taps[k], bounds[k][0], bounds[k][2])
    if y.dtype != x[k].dtype:  # raw integer pixels: rounded, clipped
      info = np.iinfo(x[k].dtype)
      y = np.clip(np.rint(y), info.min, info.max)
    out[k] = np.ascontiguousarray(y, dtype=x[k].dtype)
  out["lr_gsd"] = np.float32(x.get("lr_gsd", lr_gsd) * factor)
  out["hr_gsd"] = np.float32(x.get("hr_gsd", hr_gsd) * factor)
  return out


def with_native_gsd(x: dict, lr_gsd: float, hr_gsd: float) -> dict:
  """`x` unchanged but for "lr_gsd"/"hr_gsd" (the record's, else the
  manifest's), as every re-rendered scene carries them."""
  return {
      **x,
      "lr_gsd": np.float32(x.get("lr_gsd", lr_gsd)),
      "hr_gsd": np.float32(x.get("hr_gsd", hr_gsd)),
  }


def sample_gsd_factor(rng: np.random.Generator, gsd_range) -> float:
  """A GSD factor log-uniform in `gsd_range` (lo, hi)."""
  lo, hi = (float(v) for v in gsd_range)
  return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def check_gsd_range(gsd_range) -> tuple[float, float]:
  """`gsd_range` as (lo, hi) with 0 < lo <= hi, else a ValueError."""
  try:
    lo, hi = (float(v) for v in gsd_range)
  except (TypeError, ValueError):
    lo = hi = -1.0
  if not 0 < lo <= hi:
    raise ValueError(
        f"config.data.gsd_augment={gsd_range!r}: give (lo, hi) GSD factors "
        "with 0 < lo <= hi, e.g. (0.5, 2.0), or () for none"
    )
  return lo, hi


@dataclasses.dataclass(frozen=True)
class GsdAugment(grain.transforms.RandomMap):
  """Each scene re-rendered at a GSD factor log-uniform in `gsd_range`
  (`rescale_scene`): zoom-outs mosaic it with random scenes of the same
  split read from `source` (normalised with `stats`), zoom-ins crop at a
  random offset. Deterministic in (seed, element index), like every map."""

  source: Any
  stats: dict[str, Any]
  gsd_range: tuple[float, float]
  lr_gsd: float = 1.0
  hr_gsd: float = 1.0
  # `class_pools(source)`: mosaics of scenes of the centre's class only
  # (config.data.gsd_neighbours="same_label"); None: any scene.
  pools: tuple[np.ndarray, ...] | None = None
  # The fraction of scenes re-rendered; the others keep their native GSD
  # (1.0 draws nothing extra: the same stream as before the option).
  prob: float = 1.0

  def random_map(self, x: dict[str, np.ndarray], rng: np.random.Generator):
    if self.prob < 1 and rng.uniform() >= self.prob:
      return with_native_gsd(x, self.lr_gsd, self.hr_gsd)
    f = sample_gsd_factor(rng, self.gsd_range)
    neighbours, offset = [], (0.5, 0.5)
    if f > 1:
      count = mosaic_cells(f) ** 2 - 1
      if self.pools is None:
        idx = rng.integers(0, len(self.source), count)
      else:
        pool = self.pools[int(np.argmax(x["labels"]))]
        idx = pool[rng.integers(0, len(pool), count)]
      neighbours = [self.source[int(i)] for i in idx]
    else:
      offset = tuple(float(v) for v in rng.uniform(size=2))
    return rescale_scene(
        x,
        f,
        neighbours,
        offset=offset,
        lr_gsd=self.lr_gsd,
        hr_gsd=self.hr_gsd,
        neighbour_stats=self.stats,
    )


GSD_NEIGHBOURS = ("random", "same_label")


def class_pools(source: SceneSource) -> tuple[np.ndarray, ...]:
  """Per class, the indices of `source`'s scenes of that class `[n_c]`
  (single-label records; each class needs a scene)."""
  if source.manifest.task != "single_label":
    raise ValueError(
        f"config.data.gsd_neighbours='same_label' needs single-label data; "
        f"{source.manifest.name} is {source.manifest.task}: use 'random'"
    )
  names = source.manifest.class_names
  classes = np.array(
      [np.argmax(source[i]["labels"]) for i in range(len(source))]
  )
  pools = tuple(np.flatnonzero(classes == c) for c in range(len(names)))
  empty = [names[c] for c, p in enumerate(pools) if not len(p)]
  if empty:
    raise ValueError(
        "config.data.gsd_neighbours='same_label': no scene of the split "
        f"has class {empty}: use 'random'"
    )
  return pools


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
  range (`GsdAugment`); the batches then carry "lr_gsd", "hr_gsd" `[B]`.
  gsd_neighbours: its zoom-out mosaics of "random" scenes of the split, or
  of "same_label" ones (the centre's class; single-label data).
  gsd_augment_prob: the fraction of scenes re-rendered, in (0, 1].

  Each batch is {field: [B_local, ...]} with B_local = batch_size /
  process_count; `lr: [B, h, w, C_lr]`, `hr: [B, H, W, C_hr]` float32,
  `labels: [B, num_classes]` float32, `mask_<name>: [B, H, W]`,
  `text_ids`, `text_mask`: `[B, text_max_len]` int32 (TokenizeText).
  """
  if gsd_augment:  # the augmentation changes each scene's GSD
    gsd_augment = check_gsd_range(gsd_augment)
    fields = tuple(fields) + tuple(f for f in GSD_FIELDS if f not in fields)
  source = SceneSource(data_dir, split, fields, verify)
  stats = source.manifest.band_stats
  local = _local_batch_size(batch_size, process_count)
  ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat(None)
  ds = ds.map(Normalize(stats))
  if wants_text(fields):
    ds = ds.map(TokenizeText(text_max_len))
  if gsd_augment:
    if gsd_neighbours not in GSD_NEIGHBOURS:
      raise ValueError(
          f"config.data.gsd_neighbours={gsd_neighbours!r}: one of "
          f"{GSD_NEIGHBOURS}"
      )
    if not 0 < gsd_augment_prob <= 1:
      raise ValueError(
          f"config.data.gsd_augment_prob={gsd_augment_prob!r}: the fraction "
          "of scenes re-rendered, in (0, 1]; gsd_augment=() turns it off"
      )
    m = source.manifest
    pools = class_pools(source) if gsd_neighbours == "same_label" else None
    ds = ds.random_map(
        GsdAugment(
            source,
            stats,
            gsd_augment,
            m.lr_gsd,
            m.hr_gsd,
            pools,
            float(gsd_augment_prob),
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
