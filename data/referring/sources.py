"""The raster sources of the referring builder, each -> LabelledImages.

One function per source, reading from the shared data root `src`:

  toyworld            toyworld scenes' "objects" masks (generated here)
  spacenet_buildings  spacenet/sample_geotiff.tif + geotiff_labels.geojson
  spacenet_roads      spacenet/road_mask_input.tif + sample_road_raster_mask.tif
  levircd             levircd/{A,B,label}: change masks over the A/B pair
  elevation           geotiff/elevation/{dsm,hag}.tif + buildings.geojson

`rasterise_geojson` burns vector labels onto an image's grid.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Mapping
import warnings

import numpy as np

from crossscale import records
from data import common, image_folder
from data.referring import chipping

SOURCES = (
    "toyworld",
    "spacenet_buildings",
    "spacenet_roads",
    "levircd",
    "elevation",
)


def _read_raster(path: str):
  """(`[H, W, C]` pixels, transform, crs string, nodata) of a GeoTIFF."""
  import rasterio  # pylint: disable=import-outside-toplevel

  if not os.path.isfile(path):
    raise records.DataError(
        f"{path} not found: set CROSSSCALE_SHARED_DATA to "
        "the folder holding the shared data, or pass --src."
    )
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
    with rasterio.open(path) as src:
      img = np.moveaxis(src.read(), 0, -1)
      crs = src.crs.to_string() if src.crs else None
      return img, src.transform, crs, src.nodata


def _check_aligned(a: np.ndarray, b: np.ndarray, pa: str, pb: str) -> None:
  if a.shape[:2] != b.shape[:2]:
    raise records.DataError(
        f"{pa} is {a.shape[0]}x{a.shape[1]} but its mask {pb} is "
        f"{b.shape[0]}x{b.shape[1]}: image and mask must share one pixel grid."
    )


def _check_same_grid(pi: str, tr, crs, pm: str, mtr, mcrs) -> None:
  """A georeferenced image's mask must carry the same georeference: a mask
  without one cannot be shown to lie on the image (SpaceNet's
  sample_fp_mask.tif has none, and its footprints are of another scene)."""
  if crs is None:
    return
  if mcrs is None or mcrs != crs or not mtr.almost_equals(tr):
    raise records.DataError(
        f"{pm} (crs {mcrs}, transform {tuple(mtr)[:6]}) is not on the grid "
        f"of its image {pi} (crs {crs}, transform {tuple(tr)[:6]}): a mask "
        "must be georeferenced to its image; rasterise the vector labels "
        "onto the image grid instead (rasterise_geojson)."
    )


def rasterise_geojson(
    path: str, shape: tuple[int, int], transform, crs: str
) -> np.ndarray:
  """`[H, W]` int32 ids (1..N, 0 = none) of the N features of the GeoJSON at
  `path`, reprojected from the file's CRS (its "crs" member, else CRS84 as
  RFC 7946 says) to `crs` and burnt onto the grid of `transform`."""
  from rasterio import features, warp  # pylint: disable=import-outside-toplevel

  if not os.path.isfile(path):
    raise records.DataError(
        f"{path} not found: set CROSSSCALE_SHARED_DATA to "
        "the folder holding the shared data, or pass --src."
    )
  with open(path) as f:
    fc = json.load(f)
  src_crs = (fc.get("crs") or {}).get("properties", {}).get("name", "EPSG:4326")
  src_crs = src_crs.replace("urn:ogc:def:crs:", "").replace("::", ":")
  if src_crs in ("OGC:1.3:CRS84", "OGC:CRS84"):
    src_crs = "EPSG:4326"  # lon/lat order, as EPSG:4326 x/y in rasterio
  shapes = [
      (warp.transform_geom(src_crs, crs, feat["geometry"]), i + 1)
      for i, feat in enumerate(fc["features"])
  ]
  return features.rasterize(
      shapes, out_shape=shape, transform=transform, fill=0, dtype="int32"
  )


def _spacenet(
    src: str, image: str, mask: str, cls: str, band: str
) -> list[chipping.LabelledImage]:
  pi, pm = os.path.join(src, "spacenet", image), os.path.join(
      src, "spacenet", mask
  )
  img, tr, crs, _ = _read_raster(pi)
  if mask.endswith(".geojson"):
    labels, kind, names = (
        rasterise_geojson(pm, img.shape[:2], tr, crs),
        "instance",
        {0: cls},
    )
  else:
    m, mtr, mcrs, _ = _read_raster(pm)
    _check_aligned(img, m, pi, pm)
    _check_same_grid(pi, tr, crs, pm, mtr, mcrs)
    labels, kind, names = (m[..., 0] > 0).astype(np.uint8), "class", {1: cls}
  gsd = abs(tr.a)
  if crs and "4326" in crs:
    gsd *= 111_320.0  # degrees -> metres at the equator (about 0.3 m here)
  return [
      chipping.LabelledImage(
          id=os.path.splitext(image)[0],
          image=img,
          bands=(band,),
          gsd=gsd,
          labels=labels,
          kind=kind,
          names=names,
          crs=crs,
          transform=tr,
      )
  ]


def source_spacenet_buildings(src: str) -> list[chipping.LabelledImage]:
  """sample_geotiff.tif (900x900 pan, 0.5 m) + its building footprints
  (geotiff_labels.geojson, 43 polygons, rasterised onto the image grid, one
  instance each). The raster masks beside it (sample_*mask*.tif) carry no
  georeference and show another scene's footprints: not used."""
  return _spacenet(
      src, "sample_geotiff.tif", "geotiff_labels.geojson", "building", "PAN"
  )


def source_spacenet_roads(src: str) -> list[chipping.LabelledImage]:
  """road_mask_input.tif (1300x1300, ~0.3 m) + its road raster mask."""
  return _spacenet(
      src, "road_mask_input.tif", "sample_road_raster_mask.tif", "road", "B1"
  )


def source_levircd(
    src: str, stats: collections.Counter
) -> list[chipping.LabelledImage]:
  """LEVIR-CD pairs: A and B stacked as 6 bands, the change mask as class 1.

  Split: the file-name prefix (train_/val_/test_: the release's split); pairs
  without a label or with A/B sizes differing are skipped and counted.
  """
  root = os.path.join(src, "levircd")
  if not os.path.isdir(os.path.join(root, "label")):
    raise records.DataError(
        f"{root}/label not found: LEVIR-CD needs A/, B/ " "and label/ folders."
    )
  out = []
  for f in sorted(os.listdir(os.path.join(root, "A"))):
    lab = os.path.join(root, "label", f)
    if not os.path.isfile(lab):
      stats["levircd_without_label"] += 1
      continue
    a, _ = image_folder.read_image(os.path.join(root, "A", f))
    b, _ = image_folder.read_image(os.path.join(root, "B", f))
    m, _ = image_folder.read_image(lab)
    if a.shape != b.shape or a.shape[:2] != m.shape[:2]:
      stats["levircd_size_mismatch"] += 1
      continue
    prefix = f.split("_")[0]
    out.append(
        chipping.LabelledImage(
            id=os.path.splitext(f)[0],
            image=np.concatenate([a, b], -1),
            bands=("A_R", "A_G", "A_B", "B_R", "B_G", "B_B"),
            gsd=0.5,
            labels=(m[..., 0] > 0).astype(np.uint8),
            kind="class",
            names={1: "changed building"},
            split=prefix if prefix in common.SPLITS else None,
        )
    )
  return out


def source_elevation(
    src: str, stats: collections.Counter
) -> list[chipping.LabelledImage]:
  """dsm + hag (2 m, float32) with buildings.geojson rasterised per building.

  Nodata (-9999) is filled with 0 and counted."""
  root = os.path.join(src, "geotiff", "elevation")
  bands = []
  for name in ("dsm", "hag"):
    img, tr, crs, nodata = _read_raster(os.path.join(root, f"{name}.tif"))
    band = img[..., 0].astype(np.float32)
    bad = ~np.isfinite(band) | (
        (band == nodata) if nodata is not None else False
    )
    stats["elevation_nodata_filled"] += int(bad.sum())
    bands.append(np.where(bad, 0.0, band))
  H, W = bands[0].shape
  ids = rasterise_geojson(
      os.path.join(root, "buildings.geojson"), (H, W), tr, crs
  )
  return [
      chipping.LabelledImage(
          id="elevation",
          image=np.stack(bands, -1),
          bands=("dsm", "hag"),
          gsd=abs(tr.a),
          labels=ids,
          kind="instance",
          names={0: "building"},
          crs=crs,
          transform=tr,
      )
  ]


TOYWORLD_NAMES = {
    "hstripes": "horizontally striped object",
    "vstripes": "vertically striped object",
    "checker": "checkered object",
    "diagonal": "diagonally striped object",
    "antidiagonal": "anti-diagonally striped object",
    "blocks": "blocky object",
}


def source_toyworld(
    counts: Mapping[str, int], seed: int
) -> tuple[list[chipping.LabelledImage], list[str]]:
  """toyworld scenes (their own LR, split and grid) with their objects mask.

  Objects are half-filled textures: pieces 1 px apart are merged (use
  merge_gap=1); two objects of one class that touch become one instance.
  """
  from data import toyworld  # pylint: disable=import-outside-toplevel

  cfg = toyworld.ToyworldConfig()
  names = {
      k + 1: TOYWORLD_NAMES.get(c, f"{c} object")
      for k, c in enumerate(cfg.classes)
  }
  items = [
      chipping.LabelledImage(
          id=s.id,
          image=s.hr,
          bands=s.hr_bands,
          gsd=s.hr_gsd,
          labels=s.masks["objects"],
          kind="class",
          names=names,
          split=s.split,
          lr=s.lr,
      )
      for s in toyworld.generate(cfg, dict(counts), seed)
  ]
  return items, [names[k] for k in sorted(names)]
