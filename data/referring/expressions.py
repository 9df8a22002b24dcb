"""Instances of a mask and the templated referring expressions naming them.

Instances come from class masks (connected components per class,
`instances_from_class_mask`) or instance-id masks (`instances_from_ids`).
`referring_expressions(instances, shape)` gives every expression that
describes exactly one instance, built from its class and

  position: a cell of a 3x3 grid ("the building in the top left corner ..."),
  size:     "large"/"small" against its class's median area (>= 2 instances),
  relation: left of / right of / above / below a uniquely described anchor,
  extreme:  largest / smallest / leftmost / ... among the rest's matches.

An ambiguous expression gets one qualifier added, else it is dropped and
counted.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage


@dataclasses.dataclass(frozen=True)
class Instance:
  """One object: its class noun phrase and `mask: [H, W]` bool."""

  cls: str
  mask: np.ndarray

  @property
  def area(self) -> int:
    return int(self.mask.sum())

  @property
  def center(self) -> tuple[float, float]:
    """Centroid (row, col) in pixels."""
    r, c = np.nonzero(self.mask)
    return float(r.mean()), float(c.mean())


def instances_from_class_mask(
    class_mask: np.ndarray,
    names: Mapping[int, str],
    min_area: int = 1,
    merge_gap: int = 0,
) -> tuple[list[Instance], int]:
  """Connected components (8-connected) of each class of `class_mask: [H, W]`.

  `names` maps class values to noun phrases (other values are background).
  `merge_gap` > 0 joins pieces less than merge_gap + 1 px apart (a striped
  object is one object). Returns (instances, number dropped below min_area).
  """
  out, small = [], 0
  eight = np.ones((3, 3), bool)
  for value in sorted(names):
    binary = class_mask == value
    if not binary.any():
      continue
    grown = (
        ndimage.binary_dilation(binary, eight, iterations=merge_gap)
        if merge_gap
        else binary
    )
    labels, n = ndimage.label(grown, structure=eight)
    labels = np.where(binary, labels, 0)
    for k in range(1, n + 1):
      m = labels == k
      if m.sum() < min_area:
        small += int(m.any())
        continue
      out.append(Instance(names[value], m))
  return out, small


def instances_from_ids(
    ids: np.ndarray, cls: str, min_area: int = 1
) -> tuple[list[Instance], int]:
  """One instance per nonzero id of `ids: [H, W]` (e.g. rasterised polygons)."""
  out, small = [], 0
  for v in np.unique(ids):
    if v == 0:
      continue
    m = ids == v
    if m.sum() < min_area:
      small += 1
      continue
    out.append(Instance(cls, m))
  return out, small


# --- Attributes ---------------------------------------------------------------

_ROWS = ("top", "middle", "bottom")
_COLS = ("left", "center", "right")


def position_word(center: tuple[float, float], shape: Sequence[int]) -> str:
  """Cell of a 3x3 grid holding `center`: "top left", "top", ..., "center"."""
  r = _ROWS[min(int(3 * center[0] / shape[0]), 2)]
  c = _COLS[min(int(3 * center[1] / shape[1]), 2)]
  if r == "middle":
    return c
  return r if c == "center" else f"{r} {c}"


def position_phrase(word: str) -> str:
  """ "top left" -> "in the top left corner of the image", etc."""
  if word == "center":
    return "in the center of the image"
  if word in ("top", "bottom"):
    return f"at the {word} of the image"
  if word in ("left", "right"):
    return f"on the {word} side of the image"
  return f"in the {word} corner of the image"


def size_words(
    instances: Sequence[Instance], large: float = 2.0, small: float = 0.5
) -> list[str | None]:
  """ "large"/"small"/None per instance: area against its class's median."""
  by_cls = collections.defaultdict(list)
  for inst in instances:
    by_cls[inst.cls].append(inst.area)
  out = []
  for inst in instances:
    areas = by_cls[inst.cls]
    med = float(np.median(areas))
    if len(areas) < 2 or med <= 0:
      out.append(None)
    elif inst.area >= large * med:
      out.append("large")
    elif inst.area <= small * med:
      out.append("small")
    else:
      out.append(None)
  return out


def relation(a: tuple[float, float], b: tuple[float, float]) -> str:
  """Where centroid `a` lies from `b`, along the dominant axis (image rows
  grow downward): "left of", "right of", "above" or "below"."""
  dr, dc = a[0] - b[0], a[1] - b[1]
  if abs(dc) >= abs(dr):
    return "left of" if dc < 0 else "right of"
  return "above" if dr < 0 else "below"


# Superlatives: the instance with the extreme key among those matching the
# rest of a query. Keys are (area, -area, col, -col, row, -row) per instance.
EXTREMES = (
    "largest",
    "smallest",
    "leftmost",
    "rightmost",
    "topmost",
    "bottommost",
)


@dataclasses.dataclass(frozen=True)
class Query:
  """An expression's constraints; `rel` = (relation word, anchor index);
  `extreme` picks, among the instances matching the rest, the one with the
  extreme size/position (ties match all tied instances)."""

  cls: str
  size: str | None = None
  pos: str | None = None
  rel: tuple[str, int] | None = None
  extreme: str | None = None


@dataclasses.dataclass
class Scene2D:
  """Per-image attributes the queries are checked against."""

  instances: list[Instance]
  centers: list[tuple[float, float]]
  pos: list[str]
  size: list[str | None]
  areas: list[int]

  @classmethod
  def of(cls, instances: Sequence[Instance], shape: Sequence[int]):
    centers = [i.center for i in instances]
    return cls(
        list(instances),
        centers,
        [position_word(c, shape) for c in centers],
        size_words(instances),
        [i.area for i in instances],
    )

  def _base(self, q: Query, j: int) -> bool:
    if self.instances[j].cls != q.cls:
      return False
    if q.size is not None and self.size[j] != q.size:
      return False
    if q.pos is not None and self.pos[j] != q.pos:
      return False
    if q.rel is not None:
      word, k = q.rel
      if j == k or relation(self.centers[j], self.centers[k]) != word:
        return False
    return True

  def _key(self, extreme: str, j: int) -> float:
    r, c = self.centers[j]
    return {
        "largest": self.areas[j],
        "smallest": -self.areas[j],
        "leftmost": -c,
        "rightmost": c,
        "topmost": -r,
        "bottommost": r,
    }[extreme]

  def matching(self, q: Query) -> list[int]:
    """Indices of the instances the query describes."""
    hits = [j for j in range(len(self.instances)) if self._base(q, j)]
    if q.extreme is None or not hits:
      return hits
    best = max(self._key(q.extreme, j) for j in hits)
    return [j for j in hits if self._key(q.extreme, j) == best]

  def unique(self, q: Query | None, i: int) -> bool:
    return q is not None and self.matching(q) == [i]


def render(q: Query, anchor: Query | None = None) -> str:
  """The English text of a query: "the small building left of the road"."""
  adjective = q.extreme or q.size
  words = ["the"] + ([adjective] if adjective else []) + [q.cls]
  if q.rel is not None:
    words += [q.rel[0], render(anchor)]
  if q.pos is not None:
    words.append(position_phrase(q.pos))
  return " ".join(words)


def _anchor(scene: Scene2D, i: int) -> tuple[int, Query] | None:
  """Nearest other instance (other classes first) with a unique
  relation-free description."""
  ci = np.array(scene.centers[i])
  cls_i = scene.instances[i].cls
  order = sorted(
      (k for k in range(len(scene.instances)) if k != i),
      key=lambda k: (
          scene.instances[k].cls == cls_i,
          float(np.sum((np.array(scene.centers[k]) - ci) ** 2)),
      ),
  )
  for k in order:
    cls_k = scene.instances[k].cls
    for q in (
        Query(cls_k),
        Query(cls_k, pos=scene.pos[k]),
        *(Query(cls_k, extreme=e) for e in EXTREMES[:2]),
    ):
      if scene.unique(q, k):
        return k, q
  return None


def _extreme_qualifier(scene: Scene2D, q: Query, i: int) -> Query | None:
  """`q` plus the first superlative that singles out i, if any."""
  for e in EXTREMES:
    cand = dataclasses.replace(q, extreme=e)
    if scene.unique(cand, i):
      return cand
  return None


def _candidates(scene: Scene2D, i: int):
  """[(query, fallbacks, anchor query)] for target i: a query that is not
  unique is replaced by its first unique fallback (a qualifier added)."""
  cls, pos, size = scene.instances[i].cls, scene.pos[i], scene.size[i]
  base = Query(cls)
  out = []
  if scene.unique(base, i):
    out.append((base, [], None))
  at = Query(cls, pos=pos)
  out.append(
      (
          at,
          [
              Query(cls, pos=pos, size=size) if size else None,
              _extreme_qualifier(scene, at, i),
          ],
          None,
      )
  )
  if size:
    out.append((Query(cls, size=size), [Query(cls, size=size, pos=pos)], None))
  for e in EXTREMES:
    q = Query(cls, extreme=e)
    if len(scene.matching(base)) > 1 and scene.unique(q, i):
      out.append((q, [], None))
  anchor = _anchor(scene, i)
  if anchor is not None:
    k, aq = anchor
    rq = Query(cls, rel=(relation(scene.centers[i], scene.centers[k]), k))
    out.append(
        (
            rq,
            [
                dataclasses.replace(rq, size=size) if size else None,
                _extreme_qualifier(scene, rq, i),
            ],
            aq,
        )
    )
  return out


def referring_expressions(
    instances: Sequence[Instance], shape: Sequence[int]
) -> tuple[list[tuple[str, int]], collections.Counter]:
  """All unique expressions of an image: ([(text, instance index)], stats).

  stats counts "kept" expressions, "qualified" ones (made unique by an added
  size/position/superlative qualifier) and "dropped_ambiguous" ones (still
  matching two or more instances).
  """
  scene = Scene2D.of(instances, shape)
  stats = collections.Counter()
  out = []
  for i in range(len(instances)):
    seen = set()
    for q, fallbacks, anchor in _candidates(scene, i):
      if not scene.unique(q, i):
        q = next((f for f in fallbacks if scene.unique(f, i)), None)
        if q is None:
          stats["dropped_ambiguous"] += 1
          continue
        stats["qualified"] += 1
      text = render(q, anchor)
      if text not in seen:
        seen.add(text)
        out.append((text, i))
  stats["kept"] = len(out)
  return out, stats
