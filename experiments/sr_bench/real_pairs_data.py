"""The LR/HR pairs of sr_real_pairs (../shared/data): windows, spatial
train / val / test splits, scaling to [0, 1].

Real pairs (the LR is its own acquisition): spacenet_pan_ms (MS 4 bands ->
pan, 2x), landsat8_pan_ms / landsat7_pan_ms (B2-B4 -> B8 pan, 2x),
worldstrat (Sentinel-2 RGB -> SPOT RGB, 2x, cross-sensor); their reference
is the least-squares band map "bicubic_ls".
Synthetic 4x pairs (real HR without labels, LR = crossscale.sensor.degrade
through data.geotiff_pairs' synthetic mode: Gaussian PSF sigma 0.5 LR px,
area downsampling, 1% noise, as UC Merced 4x): spacenet_pan_x4 (the pan
tiles, 0.5 -> 2 m), naip_x4 (NAIP RGBN, 5 -> 20 m); same radiometry on
both sides, so their reference is plain "bicubic".
Every split is spatial and the val windows are carved out of the former
train windows (SPLIT_RULES): models are chosen on val and trained on train
only.
"""

from __future__ import annotations

import os
import re
import tempfile

import numpy as np

from crossscale import shards
from data import common as data_common

REAL = ("spacenet_pan_ms", "landsat8_pan_ms", "landsat7_pan_ms", "worldstrat")
SYNTHETIC = ("spacenet_pan_x4", "naip_x4")
PAIRS = REAL + SYNTHETIC
SPLITS = ("train", "val", "test")
MAX_ZERO_FRAC = 0.05
L8 = "landsat_pan_ms/LC08_L1TP_195025_20130707_20170503_01_T1"
L7 = "landsat_pan_ms/LE07_L1TP_195025_20010730_20170204_01_T1"
SPACENET = "spacenet/preproc_tutorial"
NAIP = "geotiff/naip/m_4709963_se_14_1_"
NAIP_DATES = ("20100629", "20150926", "20200831")
# Window grid positions ("<stem>_r<row>_c<col>", window units).
SPACENET_VAL_ROWS = (7, 8)  # of pan2: its two southern window rows
NAIP_VAL_COLS, NAIP_TEST_COLS = (9, 10), (11, 12, 13)
SPLIT_RULES = {
    "spacenet": "tile: pan3 test; pan2 window rows 7-8 (its south edge) "
    "val; pan1 + pan2 rows 0-6 train",
    "landsat": "window columns 0-1 train, 2 val, 3-4 test (east strip)",
    "worldstrat": "window columns 0-6 train, 7-8 val, 9-11 test (east "
    "quarter)",
    "naip": "window columns 0-8 train (2010, 2015, 2020), 9-10 val and "
    "11-13 test (2020 only: one date per place in the evaluated windows)",
}


def row_col(scene_id: str) -> tuple[int, int]:
  r, c = re.search(r"_r(\d+)_c(\d+)$", scene_id).groups()
  return int(r), int(c)


def geotiff_windows(
    hr: list[str], lr: list[str] | None, scene_px: int, lr_scale=None
) -> tuple[list[dict], object, list[str]]:
  """Windows of one pair built by data.geotiff_pairs (its own seeded split
  is ignored: callers split spatially); `lr` None: LR = sensor.degrade of
  the HR at `lr_scale` (seeded per window). Returns (windows {"id", "row",
  "col", "lr" [h, w, C_lr], "hr" [H, W, C_hr]} float32 in raw units, the
  manifest, dropped ids): windows with more than MAX_ZERO_FRAC all-zero
  pixels on either side are dropped."""
  from data import geotiff_pairs  # pylint: disable=import-outside-toplevel

  with tempfile.TemporaryDirectory() as tmp:
    m = geotiff_pairs.build(
        tmp, hr, lr, scene_px=scene_px, grid=4, lr_scale=lr_scale
    )
    out, dropped = [], []
    for split in m.splits:
      for s in shards.iter_scenes(tmp, split, verify=False):
        # Fill without a nodata tag (pan2/pan3 have a zero top third).
        if (
            max((s.hr == 0).all(-1).mean(), (s.lr == 0).all(-1).mean())
            > MAX_ZERO_FRAC
        ):
          dropped.append(s.id)
          continue
        r, c = row_col(s.id)
        out.append(
            {
                "id": s.id,
                "row": r,
                "col": c,
                "lr": s.lr.astype(np.float32),
                "hr": s.hr.astype(np.float32),
            }
        )
  return sorted(out, key=lambda w: w["id"]), m, sorted(dropped)


def split_windows(windows: list[dict], which) -> dict:
  """{"train" | "val" | "test": windows} by `which(window)` (a split name,
  or None to leave the window out)."""
  out = {k: [] for k in SPLITS}
  for w in windows:
    k = which(w)
    if k is not None:
      out[k].append(w)
  for k, v in out.items():
    if not v:
      raise ValueError(f"no {k} windows: the spatial split rule left none.")
  return out


def _spacenet_which(w: dict) -> str:
  if w["id"].startswith("pan3_"):
    return "test"
  if w["id"].startswith("pan2_") and w["row"] in SPACENET_VAL_ROWS:
    return "val"
  return "train"


def _spacenet(src: str, x4: bool) -> dict:
  base = os.path.join(src, SPACENET)
  wins, dropped = [], []
  for i in (1, 2, 3):
    w, m, drop = geotiff_windows(
        [os.path.join(base, f"pan{i}.tif")],
        None if x4 else [os.path.join(base, f"ms{i}.tif")],
        64,
        4 if x4 else None,
    )
    wins += w
    dropped += drop
  fill = (
      f"pan2 and pan3 have a zero fill over their top third without a "
      f"nodata tag: {len(dropped)} windows with more than "
      f"{MAX_ZERO_FRAC:.0%} zero pixels dropped."
  )
  d = {
      "split": split_windows(wins, _spacenet_which),
      "scale": m.builder["scale"],
      "lr_bands": list(m.lr_bands),
      "hr_bands": ["pan"],
      "gsd": [m.lr_gsd, m.hr_gsd],
      "split_rule": SPLIT_RULES["spacenet"],
      "dropped_windows": dropped,
  }
  if x4:
    return {
        **d,
        "files": f"{SPACENET}/pan{{1,2,3}}.tif",
        "degradation": m.builder.get("degradation"),
        "notes": [
            fill,
            "SYNTHETIC 4x: LR = sensor.degrade of each 64 px pan window "
            "(uint16 DN; PSF sigma 0.5 LR px, area 4x, noise 1% of the "
            "window's value range), 0.5 m -> 2 m.",
        ],
    }
  return {
      **d,
      "files": f"{SPACENET}/{{pan,ms}}{{1,2,3}}.tif",
      "notes": [
          fill,
          "MS and pan of the same satellite acquisition (data README); MS "
          "bands 1-4 as stored in the sample (float64 DN), pan uint16: a "
          "4 -> 1 band SR (spectral mapping + 2x).",
      ],
  }


def _landsat(src: str, base: str, lr_bands: tuple[int, ...]) -> dict:
  p = os.path.join(src, base)
  wins, m, dropped = geotiff_windows(
      [f"{p}_B8.TIF"], [f"{p}_B{b}.TIF" for b in lr_bands], 16
  )
  split = split_windows(
      wins,
      lambda w: "test"
      if w["col"] >= 3
      else ("val" if w["col"] == 2 else "train"),
  )
  return {
      "split": split,
      "scale": m.builder["scale"],
      "lr_bands": list(m.lr_bands),
      "hr_bands": list(m.hr_bands),
      "gsd": [m.lr_gsd, m.hr_gsd],
      "files": f"{base}_B{{8,{','.join(map(str, lr_bands))}}}.TIF",
      "split_rule": SPLIT_RULES["landsat"],
      "dropped_windows": dropped,
      "notes": [
          f"one 82 px (1.2 km) pan scene: {len(wins)} windows of 16 px, "
          "too small for more than a smoke-level estimate; int16 DN, "
          "nodata windows dropped by geotiff_pairs."
      ],
  }


def _worldstrat(src: str, scene_px: int = 64) -> dict:
  from PIL import Image  # pylint: disable=import-outside-toplevel

  root = os.path.join(src, "worldstrat")
  read = lambda f: np.asarray(
      Image.open(os.path.join(root, f)).convert("RGB"), np.float32
  )
  lr, hr = read("L1.png"), read("HR.png")  # [400, 400, 3], [800, 800, 3]
  scale = hr.shape[0] // lr.shape[0]
  if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
    raise ValueError(
        f"{root}: HR {hr.shape} is not an integer multiple of LR {lr.shape}."
    )
  p = scene_px // scale
  wins = [
      {
          "id": f"worldstrat_r{r}_c{c}",
          "row": r,
          "col": c,
          "lr": lr[r * p : (r + 1) * p, c * p : (c + 1) * p],
          "hr": hr[
              r * scene_px : (r + 1) * scene_px,
              c * scene_px : (c + 1) * scene_px,
          ],
      }
      for r in range(hr.shape[0] // scene_px)
      for c in range(hr.shape[1] // scene_px)
  ]
  ncol = hr.shape[1] // scene_px
  first_test = ncol - ncol // 4  # 9 of 12: columns 9-11 test, 7-8 val
  split = split_windows(
      wins,
      lambda w: "test"
      if w["col"] >= first_test
      else ("val" if w["col"] >= first_test - 2 else "train"),
  )
  return {
      "split": split,
      "scale": scale,
      "lr_bands": ["R", "G", "B"],
      "hr_bands": ["R", "G", "B"],
      "gsd": [None, None],
      "files": "worldstrat/{L1,HR}.png",
      "split_rule": SPLIT_RULES["worldstrat"],
      "notes": [
          "CROSS-SENSOR: a Sentinel-2 revisit (L1.png) vs SPOT (HR.png), "
          "both 8-bit display renders with their own stretch, different "
          "dates and spectral responses; the files are 2x of each other as "
          "given (the native ground resolutions differ more). Radiometry "
          "differs (see radiometry), so plain bicubic is penalised for "
          "colour, not only for detail: compare against bicubic_ls."
      ],
  }


def _naip_which(w: dict) -> str | None:
  if w["col"] in NAIP_TEST_COLS or w["col"] in NAIP_VAL_COLS:
    if not w["id"].startswith(f"m_4709963_se_14_1_{NAIP_DATES[-1]}_"):
      return None  # earlier dates of an evaluated place: left out
    return "test" if w["col"] in NAIP_TEST_COLS else "val"
  return "train"


def _naip(src: str) -> dict:
  wins, dropped = [], []
  for date in NAIP_DATES:
    w, m, drop = geotiff_windows(
        [os.path.join(src, f"{NAIP}{date}.tif")], None, 64, 4
    )
    wins += w
    dropped += drop
  return {
      "split": split_windows(wins, _naip_which),
      "scale": m.builder["scale"],
      "lr_bands": ["R", "G", "B", "NIR"],
      "hr_bands": ["R", "G", "B", "NIR"],
      "gsd": [m.lr_gsd, m.hr_gsd],
      "files": f"{NAIP}{{{','.join(NAIP_DATES)}}}.tif",
      "split_rule": SPLIT_RULES["naip"],
      "dropped_windows": dropped,
      "degradation": m.builder.get("degradation"),
      "notes": [
          "SYNTHETIC 4x: LR = sensor.degrade of each 64 px NAIP window "
          "(uint8 RGBN, 5 m as stored; PSF sigma 0.5 LR px, area 4x, noise "
          "1% of 255), 5 m -> 20 m; one quarter-quad in three years: the "
          "train windows hold all three dates of their place, val and test "
          "the 2020 one only."
      ],
  }


def reference(name: str) -> str:
  """The reference of a pair's intervals: the band map across sensors,
  plain bicubic where both sides share the radiometry (synthetic)."""
  return "bicubic" if name in SYNTHETIC else "bicubic_ls"


def load_pair(name: str, src: str | None = None) -> dict:
  """{"train"|"val"|"test": {"lr": [N, h, w, C_lr], "hr": [N, H, W, C_hr]}
  in [0, 1] float32, "windows": {split: ids}, "scale", bands,
  "split_rule", "reference", "radiometry", "notes"}; each side scaled by
  its train 99.9th percentile."""
  src = src or data_common.SHARED_DATA
  loaders = {
      "spacenet_pan_ms": lambda: _spacenet(src, False),
      "landsat8_pan_ms": lambda: _landsat(src, L8, (2, 3, 4)),
      "landsat7_pan_ms": lambda: _landsat(src, L7, (2, 3, 4)),
      "worldstrat": lambda: _worldstrat(src),
      "spacenet_pan_x4": lambda: _spacenet(src, True),
      "naip_x4": lambda: _naip(src),
  }
  if name not in loaders:
    raise ValueError(f"unknown pair {name!r}; known: {', '.join(PAIRS)}")
  d = loaders[name]()
  split = d.pop("split")
  tr = split["train"]
  if name in SYNTHETIC:  # one scale for both sides: the same radiometry
    hi_hr = float(np.percentile(np.stack([w["hr"] for w in tr]), 99.9))
    hi = {"lr": hi_hr, "hr": hi_hr}
  else:
    hi = {
        k: float(np.percentile(np.stack([w[k] for w in tr]), 99.9))
        for k in ("lr", "hr")
    }
  out = {
      "name": name,
      **d,
      "reference": reference(name),
      "percentile_999": hi,
      "windows": {s: [w["id"] for w in ws] for s, ws in split.items()},
  }
  for s, ws in split.items():
    out[s] = {
        k: np.clip(np.stack([w[k] for w in ws]) / hi[k], 0.0, 1.0).astype(
            np.float32
        )
        for k in ("lr", "hr")
    }
  tr = out["train"]
  out["radiometry"] = {
      f"{k}_band_{f}s": [
          round(float(v), 4) for v in getattr(tr[k], f)((0, 1, 2))
      ]
      for k in ("lr", "hr")
      for f in ("mean", "std")
  }
  return out
