"""Tiled SR inference for rasters larger than memory.

The LR raster `[h, w, C]` is cut into overlapping tiles `[t_y, t_x, C]`
(clamped to the image; the last tile of a row or column is aligned to the
border), `fn` super-resolves them in fixed-size batches, and the HR tiles are
blended with separable raised-cosine weights normalised by their sum.

Weights along an axis, for a tile edge inside the image: 0 over the first
`margin = (overlap - ramp) / 2` HR pixels, a raised cosine over the next
`ramp = ramp_frac * overlap`, then 1; edges on the image border keep weight 1.
So an output pixel only takes values from tiles where it lies at least
`margin` from the tile's inner edges: a model whose receptive-field radius
(in HR pixels) is <= margin gives exactly the untiled result.

Real scales: the HR grid is (H, W) = round(scale * (h, w)) and the effective
ratio H/h = p/q in lowest terms. Tile starts and sizes are multiples of q, so
every tile starts on an HR pixel edge and the tile's own HR grid is a slice
of the global one (x16.7 on an h = 300 raster: q = 10).

Streaming: rows of tiles are processed top to bottom; HR rows that no later
tile touches are emitted at once, so memory holds one LR strip `[t_y, w, C]`
and one HR strip `[T_y, W, C_out]`, never the whole raster.
`tiled_apply_geotiff` reads and writes GeoTIFF windows this way.
"""

from __future__ import annotations

from fractions import Fraction
import math
from typing import Callable, Iterator, Sequence

import numpy as np

# fn(lr_tiles [N, t_y, t_x, C], out_hw (T_y, T_x)) -> [N, T_y, T_x, C_out]
SRFn = Callable[[np.ndarray, tuple[int, int]], np.ndarray]
ArrayFn = Callable[[np.ndarray], np.ndarray]


def out_size(n: int, scale: float) -> int:
  """HR pixels for `n` LR pixels at `scale` (rounded to the nearest)."""
  return max(1, round(n * scale))


def axis_tiles(
    n: int, n_out: int, tile: int, overlap: int
) -> tuple[list[int], int, int]:
  """Tile layout along one axis: (LR starts, LR tile size, q).

  q is the denominator of n_out / n; starts and the tile size are multiples
  of q, the tile size is at most `tile` (the whole axis if it is shorter),
  neighbouring tiles overlap by at least `overlap` LR pixels, and the last
  tile ends at the border.
  """
  q = Fraction(n_out, n).denominator
  t = min(n, tile // q * q)
  if t < q:
    raise ValueError(
        f"tile {tile} is smaller than {q} LR pixels, the step on which tiles "
        f"align with the HR grid for {n} -> {n_out} pixels (ratio "
        f"{Fraction(n_out, n)}): use tile >= {q}, or an output size whose "
        "ratio to the LR size has a small denominator."
    )
  if t == n:
    return [0], t, q
  ov = math.ceil(overlap / q) * q
  if ov >= t:
    raise ValueError(
        f"overlap {overlap} (rounded up to {ov}, a multiple of "
        f"{q}) must be smaller than the tile ({t}): lower "
        "overlap or raise tile."
    )
  starts = list(range(0, n - t, t - ov)) + [n - t]
  return starts, t, q


def blend_weights(
    tile_hr: int,
    at_start: bool,
    at_end: bool,
    overlap_hr: int,
    ramp_frac: float,
) -> np.ndarray:
  """`[tile_hr]` weights along one axis of one HR tile (see module doc);
  `at_start`/`at_end`: that edge lies on the image border."""
  w = np.ones(tile_hr, np.float64)
  ramp = int(round(ramp_frac * overlap_hr))
  margin = (overlap_hr - ramp) // 2
  i = np.arange(tile_hr)
  rise = np.clip((i - margin + 0.5) / max(ramp, 1), 0.0, 1.0)
  rise = np.where(i < margin, 0.0, 0.5 - 0.5 * np.cos(np.pi * rise))
  if ramp == 0:
    rise = (i >= margin).astype(np.float64)
  if not at_start:
    w = w * rise
  if not at_end:
    w = w * rise[::-1]
  return w


def _batches(tiles: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, int]]:
  """Yields `[batch, ...]` slices of `tiles [N, ...]` (the last one padded by
  repeating the last tile, so `fn` compiles once) and the real count."""
  for i in range(0, len(tiles), batch):
    chunk = tiles[i : i + batch]
    n = len(chunk)
    if n < batch:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
    yield chunk, n


def _stream(
    fn: SRFn,
    read_rows: Callable[[int, int], np.ndarray],
    write_rows: Callable[[int, np.ndarray], None],
    h: int,
    w: int,
    scale: float,
    tile: int,
    overlap: int,
    batch: int,
    ramp_frac: float,
) -> tuple[int, int]:
  """The tiling engine: `read_rows(y0, n) -> [n, w, C]` LR rows,
  `write_rows(Y0, rows [N, W, C_out])` final HR rows. Returns (H, W)."""
  H, W = out_size(h, scale), out_size(w, scale)
  ys, ty, qy = axis_tiles(h, H, tile, overlap)
  xs, tx, qx = axis_tiles(w, W, tile, overlap)
  ry, rx = Fraction(H, h), Fraction(W, w)
  Ty, Tx = int(ty * ry), int(tx * rx)
  ov_y = int(math.ceil(overlap / qy) * qy * ry)
  ov_x = int(math.ceil(overlap / qx) * qx * rx)
  wx = [blend_weights(Tx, x0 == 0, x0 + tx == w, ov_x, ramp_frac) for x0 in xs]
  acc = wsum = None
  acc_y0 = 0  # first HR row held in acc
  for j, y0 in enumerate(ys):
    strip = np.asarray(read_rows(y0, ty))  # [t_y, w, C]
    tiles = np.stack([strip[:, x0 : x0 + tx] for x0 in xs])  # [n_x, ty, tx, C]
    outs = []
    for chunk, n in _batches(tiles, min(batch, len(xs))):
      outs.append(np.asarray(fn(chunk, (Ty, Tx)), np.float64)[:n])
    outs = np.concatenate(outs)  # [n_x, Ty, Tx, C']
    wy = blend_weights(Ty, y0 == 0, y0 + ty == h, ov_y, ramp_frac)
    Y0 = int(y0 * ry)
    if acc is None:
      acc = np.zeros((0, W, outs.shape[-1]))
      wsum = np.zeros((0, W, 1))
    grow = Y0 + Ty - (acc_y0 + len(acc))
    if grow > 0:
      acc = np.concatenate([acc, np.zeros((grow,) + acc.shape[1:])])
      wsum = np.concatenate([wsum, np.zeros((grow, W, 1))])
    r = slice(Y0 - acc_y0, Y0 - acc_y0 + Ty)
    for x0, out, wxi in zip(xs, outs, wx):
      X0 = int(x0 * rx)
      wt = (wy[:, None] * wxi[None, :])[..., None]  # [T_y, T_x, 1]
      acc[r, X0 : X0 + Tx] += out * wt
      wsum[r, X0 : X0 + Tx] += wt
    done = (int(ys[j + 1] * ry) if j + 1 < len(ys) else H) - acc_y0
    write_rows(acc_y0, acc[:done] / wsum[:done])
    acc, wsum, acc_y0 = acc[done:], wsum[done:], acc_y0 + done
  return H, W


def tiled_apply(
    fn: SRFn,
    lr: np.ndarray,
    scale: float,
    tile: int = 64,
    overlap: int = 16,
    batch: int = 8,
    ramp_frac: float = 0.5,
) -> np.ndarray:
  """Super-resolves `lr [h, w, C]` tile by tile -> `[H, W, C_out]` float32.

  Args:
    fn: `fn(lr_tiles [N, t_y, t_x, C], (T_y, T_x)) -> [N, T_y, T_x, C_out]`,
      e.g. `crossscale.models.sr.predict_fn(model, params)`.
    scale: HR pixels per LR pixel, integer or real; (H, W) = round(scale *
      (h, w)).
    tile, overlap: LR tile side and minimum overlap of neighbours (rounded
      down / up to the alignment step q, see the module doc).
    batch: tiles per `fn` call.
    ramp_frac: share of the overlap that is a cosine ramp (0: hard seams in
      the middle of the overlap, exact for receptive-field radius < overlap/2).
  """
  h, w, _ = lr.shape
  rows = []
  _stream(
      fn,
      lambda y0, n: lr[y0 : y0 + n],
      lambda _, r: rows.append(r),
      h,
      w,
      scale,
      tile,
      overlap,
      batch,
      ramp_frac,
  )
  return np.concatenate(rows).astype(np.float32)


def tiled_apply_geotiff(
    src_path: str,
    dst_path: str,
    fn: SRFn,
    scale: float,
    tile: int = 64,
    overlap: int = 16,
    batch: int = 8,
    ramp_frac: float = 0.5,
    bands: Sequence[int] | None = None,
    preprocess: ArrayFn | None = None,
    postprocess: ArrayFn | None = None,
    dtype: str = "float32",
) -> tuple[int, int]:
  """`tiled_apply` from one GeoTIFF to another, window by window.

  Reads LR strips of `src_path` (1-based `bands`, default all), maps them
  with `preprocess` (e.g. normalisation, `[n, w, C]` -> float), and writes
  `postprocess(SR rows)` to `dst_path` as `dtype` with the same CRS and the
  transform scaled to the HR pixel size (w / W, h / H of the source pixel).
  Returns (H, W).
  """
  import rasterio  # pylint: disable=import-outside-toplevel
  from rasterio.windows import Window  # pylint: disable=import-outside-toplevel

  pre = preprocess or (lambda a: a.astype(np.float32))
  post = postprocess or (lambda a: a)
  with rasterio.open(src_path) as src:
    h, w = src.height, src.width
    idx = list(bands) if bands is not None else list(range(1, src.count + 1))
    H, W = out_size(h, scale), out_size(w, scale)
    profile = src.profile.copy()
    profile.update(
        driver="GTiff",
        height=H,
        width=W,
        dtype=dtype,
        transform=src.transform @ rasterio.Affine.scale(w / W, h / H),
        nodata=None,
        photometric=None,
    )
    for key in ("blockxsize", "blockysize", "tiled", "interleave"):
      profile.pop(key, None)
    dst = None

    def read_rows(y0, n):
      a = src.read(idx, window=Window(0, y0, w, n))  # [C, n, w]
      return pre(np.moveaxis(a, 0, -1))

    def write_rows(Y0, rows):
      nonlocal dst
      out = np.asarray(post(rows))  # [N, W, C_out]
      if dst is None:
        profile["count"] = out.shape[-1]
        dst = rasterio.open(dst_path, "w", **profile)
      dst.write(
          np.moveaxis(out, -1, 0).astype(dtype),
          window=Window(0, Y0, W, len(out)),
      )

    try:
      _stream(
          fn,
          read_rows,
          write_rows,
          h,
          w,
          scale,
          tile,
          overlap,
          batch,
          ramp_frac,
      )
    finally:
      if dst is not None:
        dst.close()
  return H, W
