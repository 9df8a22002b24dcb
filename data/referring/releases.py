"""Builder: the RefSegRS and RRSIS-D release formats -> referring records.

`build(fmt, src, out_dir, Options(...))` reads a release as published
(RefSegRS: images/, masks/, output_phrase_<split>.txt; RRSIS-D: the refcoco
layout, refs(unc).p + instances.json, COCO polygons or RLE decoded without
pycocotools) and writes one Scene per expression (`text`, `masks["target"]`,
HR the image, LR a degraded copy), checking that every expression is kept.
Images whose size differs from their mask are cropped/padded and counted
(`on_size_mismatch="fix"`) or stop the build ("error"). refs(unc).p is a
pickle: load only files from the official release. The layouts are described
in docs/data.md.

Run: python -m data.referring.releases --format refsegrs --src DIR --out DIR
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import pickle
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from crossscale import records, sensor, shards
from data import common, image_folder

FORMATS = ("refsegrs", "rrsisd")
MISMATCH = ("fix", "error")


@dataclasses.dataclass(frozen=True)
class Expression:
  """One image-expression-mask triplet before it becomes a Scene."""

  image_path: str
  image_key: str  # the image's id in the release
  text: str
  split: str
  mask_fn: object  # () -> [H, W] bool (lazy: masks load per record)
  where: str  # file:line or ref id, for error messages


def fit_to_mask(
    img: np.ndarray, mask_shape: Sequence[int], path: str, mode: str
) -> tuple[np.ndarray, bool]:
  """Crops/zero-pads `img: [h, w, C]` at the bottom/right to `mask_shape`.

  Returns (image, whether it was changed). mode "error" raises instead.
  """
  H, W = mask_shape[:2]
  h, w = img.shape[:2]
  if (h, w) == (H, W):
    return img, False
  if mode == "error":
    raise records.DataError(
        f"{path} is {h}x{w} (HxW) but its mask is {H}x{W}: a known defect of "
        "RRSIS-D/RefSegRS releases. Pass --on_size_mismatch fix to crop/pad "
        "the image to the mask size, or replace the file."
    )
  out = np.zeros((H, W) + img.shape[2:], img.dtype)
  out[: min(h, H), : min(w, W)] = img[:H, :W]
  return out, True


# --- RefSegRS -----------------------------------------------------------------


def read_phrase_file(path: str) -> list[tuple[str, str, int]]:
  """[(image id, expression, line number)] of an output_phrase_*.txt."""
  out = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      key, _, text = line.partition(" ")
      if not text.strip():
        raise records.DataError(
            f"{path}:{n}: line {line!r} has an image id but no expression: "
            "fix or delete the line."
        )
      out.append((key, text.strip(), n))
  return out


def _binary_mask(path: str, threshold: int) -> np.ndarray:
  m, _ = image_folder.read_image(path)
  return m[..., 0] > threshold


def refsegrs_expressions(
    src: str, mask_threshold: int = 50
) -> list[Expression]:
  """Every line of SRC/output_phrase_{train,val,test}.txt as an Expression."""
  out = []
  for split in common.SPLITS:
    path = os.path.join(src, f"output_phrase_{split}.txt")
    if not os.path.isfile(path):
      raise records.DataError(
          f"{path} not found: RefSegRS needs images/, masks/ and "
          "output_phrase_{train,val,test}.txt in --src."
      )
    for key, text, n in read_phrase_file(path):
      img = os.path.join(src, "images", key + ".tif")
      msk = os.path.join(src, "masks", key + ".tif")
      for p in (img, msk):
        if not os.path.isfile(p):
          raise records.DataError(
              f"{path}:{n}: {p} (for id {key!r}) not "
              "found: restore it or remove the line."
          )
      out.append(
          Expression(
              img,
              key,
              text,
              split,
              lambda msk=msk: _binary_mask(msk, mask_threshold),
              f"{path}:{n}",
          )
      )
  return out


# --- RRSIS-D / refcoco-style --------------------------------------------------


def rle_counts_from_string(s: str) -> list[int]:
  """Decodes COCO's compressed RLE string (6 bits per char, 5 data bits +
  continuation bit; counts after the second are deltas to the one two
  before)."""
  counts, p = [], 0
  while p < len(s):
    x, k, more = 0, 0, True
    while more:
      c = ord(s[p]) - 48
      x |= (c & 0x1F) << (5 * k)
      more = bool(c & 0x20)
      p += 1
      k += 1
      if not more and (c & 0x10):
        x |= -1 << (5 * k)
    if len(counts) > 2:
      x += counts[-2]
    counts.append(x)
  return counts


def rle_decode(counts: Sequence[int], h: int, w: int) -> np.ndarray:
  """`[h, w]` bool from run lengths (column-major, first run = zeros)."""
  flat = np.zeros(h * w, bool)
  pos, val = 0, False
  for n in counts:
    flat[pos : pos + n] = val
    pos += n
    val = not val
  return flat.reshape(w, h).T


def polygons_to_mask(
    polys: Sequence[Sequence[float]], h: int, w: int
) -> np.ndarray:
  """`[h, w]` bool: COCO polygons [x1, y1, x2, y2, ...] filled (PIL)."""
  im = Image.new("L", (w, h), 0)
  draw = ImageDraw.Draw(im)
  for poly in polys:
    xy = list(zip(poly[0::2], poly[1::2]))
    if len(xy) >= 3:
      draw.polygon(xy, fill=1, outline=1)
  return np.asarray(im, bool)


def decode_segmentation(seg, h: int, w: int, where: str) -> np.ndarray:
  """A COCO `segmentation` (polygons / RLE / compressed RLE) -> `[h, w]`."""
  if isinstance(seg, list):
    return polygons_to_mask(seg, h, w)
  if isinstance(seg, dict) and "counts" in seg:
    sh, sw = seg.get("size", (h, w))
    counts = seg["counts"]
    if isinstance(counts, (str, bytes)):
      counts = rle_counts_from_string(
          counts.decode() if isinstance(counts, bytes) else counts
      )
    if sum(counts) != sh * sw:
      raise records.DataError(
          f"{where}: RLE covers {sum(counts)} pixels but "
          f"its size is {sh}x{sw}: corrupt annotation."
      )
    return rle_decode(counts, sh, sw)
  raise records.DataError(
      f"{where}: unknown segmentation format "
      f"{type(seg).__name__}: expected polygons or RLE."
  )


def _rrsisd_paths(src: str) -> tuple[str, str, str]:
  ann = os.path.join(src, "rrsisd")
  refs, inst = os.path.join(ann, "refs(unc).p"), os.path.join(
      ann, "instances.json"
  )
  for p in (refs, inst):
    if not os.path.isfile(p):
      raise records.DataError(
          f"{p} not found: RRSIS-D needs rrsisd/refs(unc).p, "
          "rrsisd/instances.json and images/rrsisd/JPEGImages/ in --src."
      )
  for d in (
      os.path.join(src, "images", "rrsisd", "JPEGImages"),
      os.path.join(src, "JPEGImages"),
  ):
    if os.path.isdir(d):
      return refs, inst, d
  raise records.DataError(
      f"{src}: no images/rrsisd/JPEGImages/ (or "
      "JPEGImages/) folder: unpack the release's images."
  )


def rrsisd_expressions(src: str) -> list[Expression]:
  """Every sentence of every ref of refs(unc).p as an Expression."""
  refs_path, inst_path, img_dir = _rrsisd_paths(src)
  with open(refs_path, "rb") as f:
    refs = pickle.load(f)
  with open(inst_path) as f:
    inst = json.load(f)
  images = {im["id"]: im for im in inst["images"]}
  anns = {a["id"]: a for a in inst["annotations"]}
  out = []
  for ref in refs:
    where = f"{refs_path}: ref {ref.get('ref_id')}"
    if ref["image_id"] not in images or ref["ann_id"] not in anns:
      raise records.DataError(
          f"{where} points to image {ref['image_id']} / "
          f"annotation {ref['ann_id']} missing from "
          f"{inst_path}: the two files are from different "
          "releases."
      )
    im, ann = images[ref["image_id"]], anns[ref["ann_id"]]
    fn = lambda ann=ann, im=im, where=where: decode_segmentation(
        ann["segmentation"], im["height"], im["width"], where
    )
    for sent in ref["sentences"]:
      text = (sent.get("raw") or sent.get("sent") or "").strip()
      if not text:
        raise records.DataError(
            f"{where}: an empty sentence " f"{sent!r}: fix the annotation."
        )
      out.append(
          Expression(
              os.path.join(img_dir, im["file_name"]),
              str(ref["image_id"]),
              text,
              ref["split"],
              fn,
              where,
          )
      )
  return out


# --- Scenes -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Options:
  scale: int = 4
  grid: int = 8
  seed: int = 0
  psf_sigma: float = 0.5
  noise_std: float = 0.01
  on_size_mismatch: str = "fix"
  mask_threshold: int = 50


def scenes(
    exprs: Sequence[Expression], opt: Options, stats: collections.Counter
) -> Iterator[records.Scene]:
  """One Scene per Expression; images are read and degraded once each."""
  by_image = collections.defaultdict(list)
  for e in exprs:
    by_image[e.image_path].append(e)
  for index, (path, group) in enumerate(sorted(by_image.items())):
    img, bands = image_folder.read_image(path)
    lr_cache = {}
    for n, e in enumerate(group):
      mask = e.mask_fn()
      fitted, changed = fit_to_mask(img, mask.shape, path, opt.on_size_mismatch)
      if changed and n == 0:
        stats["images_size_fixed"] += 1
        stats.setdefault("fixed_files", []).append(os.path.basename(path))
      key = fitted.shape
      if key not in lr_cache:
        image_folder.check_hr_size(key[0], key[1], opt.scale, opt.grid, path)
        lr_cache[key] = sensor.degrade(
            fitted,
            opt.scale,
            np.random.default_rng([opt.seed, index]),
            psf_sigma=opt.psf_sigma,
            noise_std=opt.noise_std,
        )
      stats["expressions"] += 1
      yield records.Scene(
          id=f"{e.image_key}/e{n:03d}",
          lr=lr_cache[key],
          hr=fitted,
          lr_bands=bands,
          hr_bands=bands,
          lr_gsd=float(opt.scale),
          hr_gsd=1.0,
          grid=opt.grid,
          labels=np.ones(1, np.uint8),
          split=e.split,
          text=e.text,
          masks={"target": mask.astype(np.uint8)},
      )
    stats["images"] += 1


def load_expressions(
    fmt: str, src: str, opt: Options = Options()
) -> list[Expression]:
  if fmt == "refsegrs":
    return refsegrs_expressions(src, opt.mask_threshold)
  if fmt == "rrsisd":
    return rrsisd_expressions(src)
  raise records.DataError(f"unknown --format {fmt!r}; known: {FORMATS}")


def build(
    fmt: str,
    src: str,
    out_dir: str,
    opt: Options = Options(),
    *,
    name: str | None = None,
    records_per_shard: int = 512,
) -> shards.Manifest:
  """Builds records of a RefSegRS / RRSIS-D copy; checks that every
  expression of every image was written (manifest builder["stats"])."""
  if opt.on_size_mismatch not in MISMATCH:
    raise ValueError(f"on_size_mismatch must be one of {MISMATCH}")
  exprs = load_expressions(fmt, src, opt)
  per_image = collections.Counter(e.image_path for e in exprs)
  stats = collections.Counter()
  m = shards.write_dataset(
      out_dir,
      name or fmt,
      scenes(exprs, opt, stats),
      ["target"],
      records_per_shard=records_per_shard,
      builder={
          "builder": "rrsis",
          "format": fmt,
          "src": os.path.abspath(src),
          "options": dataclasses.asdict(opt),
      },
  )
  written = sum(m.num_records(s) for s in m.splits)
  if written != len(exprs):
    raise records.DataError(
        f"{out_dir}: wrote {written} records for "
        f"{len(exprs)} expressions: report this bug."
    )
  m.builder["stats"] = {
      "images": len(per_image),
      "expressions": len(exprs),
      "expressions_per_image": {
          "min": min(per_image.values()),
          "max": max(per_image.values()),
          "mean": round(len(exprs) / len(per_image), 3),
      },
      "images_size_fixed": stats["images_size_fixed"],
      "fixed_files": stats.get("fixed_files", [])[:50],
  }
  path = os.path.join(out_dir, shards.MANIFEST)
  with open(path + ".tmp", "w") as f:
    json.dump(dataclasses.asdict(m), f, indent=1)
  os.replace(path + ".tmp", path)
  return m


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(
      prog="python -m data.referring.releases",
      description=__doc__.split("\n")[0],
  )
  p.add_argument("--format", required=True, choices=FORMATS)
  p.add_argument("--src", required=True, help="the release's root folder")
  p.add_argument("--name", default=None)
  p.add_argument("--scale", type=int, default=4)
  p.add_argument("--grid", type=int, default=8)
  p.add_argument("--on_size_mismatch", choices=MISMATCH, default="fix")
  common.add_common_flags(p)
  a = p.parse_args(argv)
  opt = Options(
      scale=a.scale,
      grid=a.grid,
      seed=a.seed,
      on_size_mismatch=a.on_size_mismatch,
  )
  m = common.run_build(
      lambda: build(
          a.format,
          a.src,
          a.out,
          opt,
          name=a.name,
          records_per_shard=a.records_per_shard,
      ),
      a.out,
  )
  print("stats: " + json.dumps(m.builder["stats"]))


if __name__ == "__main__":
  main()
