"""Labelled images and their chips: fixed windows with ids and georeference.

A `LabelledImage` is one image with its label mask as a source yields it;
`chips(item, size)` cuts it into non-overlapping size x size chips (ids
"<image>/r<row>_c<col>", transforms moved), and `shifted_train_chips` adds
overlapping training windows made only of train chips.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Mapping

import numpy as np

from crossscale import records


@dataclasses.dataclass
class LabelledImage:
  """An image with its labels, before chipping.

  labels: `[H, W]` int; with kind "class" values are class ids (`names`
  maps id -> noun phrase) split into connected components; with kind
  "instance" each nonzero value is one instance of class `names[0]`.
  """

  id: str
  image: np.ndarray  # [H, W, C]
  bands: tuple[str, ...]
  gsd: float
  labels: np.ndarray  # [H, W]
  kind: str
  names: Mapping[int, str]
  split: str | None = None
  lr: np.ndarray | None = None  # [H/s, W/s, C] when given by the source
  crs: str | None = None
  transform: object | None = None  # rasterio Affine of the image


def windows(H: int, W: int, size: int, stride: int) -> list[tuple[int, int]]:
  """Top-left corners (row, col) of the size x size windows at `stride`
  that fit inside an H x W image (remainders dropped)."""
  return [
      (r, c)
      for r in range(0, H - size + 1, stride)
      for c in range(0, W - size + 1, stride)
  ]


def chip_id(image_id: str, r: int, c: int) -> str:
  """Id of the chip of image `image_id` with top-left pixel (r, c)."""
  return f"{image_id}/r{r:05d}_c{c:05d}"


def crop(item: LabelledImage, r: int, c: int, size: int) -> LabelledImage:
  """The size x size window of `item` at (r, c), its id and transform moved."""
  win = (slice(r, r + size), slice(c, c + size))
  tr = (
      item.transform @ item.transform.translation(c, r)
      if (item.transform is not None)
      else None
  )
  return dataclasses.replace(
      item,
      id=chip_id(item.id, r, c),
      image=item.image[win],
      labels=item.labels[win],
      lr=None,
      transform=tr,
  )


def chips(item: LabelledImage, size: int | None) -> Iterator[LabelledImage]:
  """Non-overlapping size x size windows (remainders dropped); None: whole."""
  H, W = item.labels.shape
  if size is None or (H, W) == (size, size):
    yield item
    return
  if H < size or W < size:
    raise records.DataError(
        f"{item.id}: image {H}x{W} is smaller than --chip {size}: lower --chip."
    )
  for r, c in windows(H, W, size, size):
    yield crop(item, r, c, size)


def shifted_train_chips(
    item: LabelledImage,
    size: int,
    stride: int,
    is_train: Callable[[int, int], bool],
) -> Iterator[LabelledImage]:
  """Extra training windows at `stride`, off the chip grid, whose every
  pixel lies in train chips: `is_train(r, c)` says whether the grid chip
  with top-left (r, c) is in the train split. Val/test pixels never reach
  training, so the splits stay spatially disjoint."""
  if stride <= 0 or size % stride:
    raise ValueError(
        f"--train_stride {stride} must be a positive divisor of "
        f"--chip {size}"
    )
  H, W = item.labels.shape
  for r, c in windows(H, W, size, stride):
    if r % size == 0 and c % size == 0:
      continue  # on the grid: already a chip of its own
    r0, c0 = r - r % size, c - c % size
    cells = {
        (r0 + dr, c0 + dc)
        for dr in {0, size * (r % size > 0)}
        for dc in {0, size * (c % size > 0)}
    }
    if all(is_train(rr, cc) for rr, cc in cells):
      yield crop(item, r, c, size)
