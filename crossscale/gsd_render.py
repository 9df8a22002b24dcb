"""Scenes re-rendered at another ground sample distance (GSD), LR and HR
over the same ground: coarser = the scene shrunk into a mosaic of other
scenes, finer = a crop, upsampled (`rescale_scene`); `GsdAugment`, the
training augmentation that does it at a random factor (a Grain map used by
`input_pipeline.train_dataset`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import grain
import numpy as np
from scipy import sparse

from crossscale import records


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


# A zoom-out's neighbour lends its labels when this fraction of it is in
# view (multi-label data, `rescale_scene(union_labels=True)`).
MIN_VISIBLE = 0.5


def rescale_scene(
    x: dict[str, np.ndarray],
    factor: float,
    neighbours: Sequence[dict[str, np.ndarray]] = (),
    *,
    offset: tuple[float, float] = (0.5, 0.5),
    lr_gsd: float = 1.0,
    hr_gsd: float = 1.0,
    neighbour_stats: dict[str, Any] | None = None,
    union_labels: bool = False,
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
  Labels and other fields are `x`'s; with `union_labels` (multi-label
  data) a zoom-out's "labels" add every class of the neighbours at least
  half in view (`MIN_VISIBLE`): a class of a neighbour mostly out of view
  is likely out of view too, and counting every neighbour the window
  touches labels 21 of geoworld's 24 classes a zoom-out at 0.5-2x (4.9
  stored).
  "lr_gsd" / "hr_gsd" (`x`'s, else `lr_gsd` / `hr_gsd`) are multiplied by
  `factor`.
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
  keys = records.spatial_keys(x)
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
  if union_labels and factor > 1:
    y0, y1, x0, x1 = bounds["hr"]
    seen = [cells[i][j]["labels"]
            for i, ys, _ in _overlaps(y0, y1, H)
            for j, xs, _ in _overlaps(x0, x1, W)
            if (ys.stop - ys.start) * (xs.stop - xs.start)
            >= MIN_VISIBLE * H * W]  # fmt: skip
    out["labels"] = np.max([x["labels"], *seen], axis=0).astype(
        x["labels"].dtype
    )
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
  # Multi-label data: a zoom-out adds the labels of neighbours half in view.
  union_labels: bool = False

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
        union_labels=self.union_labels,
    )


GSD_NEIGHBOURS = ("random", "same_label")


def class_pools(source) -> tuple[np.ndarray, ...]:
  """Per class, the indices of the scenes of that class `[n_c]` in
  `source` (an `input_pipeline.SceneSource` of single-label records; each
  class needs a scene)."""
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
