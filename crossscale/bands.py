"""Spectral bands by name: centre wavelength and width, in nanometres.

The one table the sensor-agnostic band embedding reads
(`model.band_embedding="wavelength"`, crossscale/models/layers.py
`WavelengthConv`): a band is known by the name records carry
(`records.Scene.lr_bands` / `hr_bands`, the manifest's `lr_bands` /
`hr_bands`) and mapped to (centre nm, width nm), so one encoder reads RGB,
RGB+NIR (NAIP), Sentinel-2 and Landsat with the same parameters.

Naming: generic camera bands "R", "G", "B", "NIR"; Sentinel-2 MSI bands
zero-padded as its files name them ("B01".."B12", "B8A"); Landsat 8/9 OLI
bands unpadded as theirs do ("B1".."B9"). "B10" and "B11" are therefore
Sentinel-2's (cirrus 1375 nm, SWIR 1610 nm); Landsat's thermal bands are
"TIRS_B10" / "TIRS_B11". Geoworld's LR bands "L1".."L3" are synthetic mixes
of its R, G, B (data/geoworld.py LR_RESPONSE): their centres are the
response-weighted means of R, G, B and their widths span the mix.
Values: Sentinel-2A MSI and Landsat 8 OLI/TIRS spectral response summaries
(centre, bandwidth), rounded to the nanometre.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# name -> (centre nm, width nm)
BANDS: dict[str, tuple[float, float]] = {
    # Generic RGB(+NIR) cameras (aerial, NAIP, Google Earth).
    "R": (660.0, 60.0),
    "G": (555.0, 70.0),
    "B": (480.0, 70.0),
    "NIR": (842.0, 115.0),
    # Sentinel-2A MSI.
    "B01": (443.0, 21.0),
    "B02": (490.0, 66.0),
    "B03": (560.0, 36.0),
    "B04": (665.0, 31.0),
    "B05": (705.0, 15.0),
    "B06": (740.0, 15.0),
    "B07": (783.0, 20.0),
    "B08": (842.0, 106.0),
    "B8A": (865.0, 21.0),
    "B09": (945.0, 20.0),
    "B10": (1375.0, 31.0),
    "B11": (1610.0, 91.0),
    "B12": (2190.0, 175.0),
    # Landsat 8/9 OLI (B8: panchromatic) and TIRS.
    "B1": (443.0, 16.0),
    "B2": (482.0, 60.0),
    "B3": (561.0, 57.0),
    "B4": (655.0, 37.0),
    "B5": (865.0, 28.0),
    "B6": (1609.0, 85.0),
    "B7": (2201.0, 187.0),
    "B8": (590.0, 172.0),
    "B9": (1373.0, 20.0),
    "TIRS_B10": (10895.0, 590.0),
    "TIRS_B11": (12005.0, 1010.0),
    # Geoworld's synthetic LR bands (mixes of its R, G, B).
    "L1": (616.0, 200.0),
    "L2": (567.0, 200.0),
    "L3": (529.0, 200.0),
}

# Aliases records may carry for the generic bands.
ALIASES = {
    "RED": "R",
    "GREEN": "G",
    "BLUE": "B",
    "SR_B1": "B1",
    "SR_B2": "B2",
    "SR_B3": "B3",
    "SR_B4": "B4",
    "SR_B5": "B5",
    "SR_B6": "B6",
    "SR_B7": "B7",
}


def lookup(name: str) -> tuple[float, float]:
  """(centre nm, width nm) of band `name` (exact, else an alias, case-
  insensitive); an unknown name is a ValueError naming the known ones."""
  if name in BANDS:
    return BANDS[name]
  key = ALIASES.get(name.upper(), name.upper())
  if key in BANDS:
    return BANDS[key]
  raise ValueError(
      f"unknown band {name!r}: crossscale/bands.py has no wavelength for it. "
      f"Known bands: {', '.join(BANDS)} (aliases: {', '.join(ALIASES)}). "
      "Add the band's centre and width (nm) to BANDS, or name the records' "
      "bands as one of these (config.model.lr_bands / hr_bands override the "
      "manifest's names)."
  )


def wavelengths(names: Sequence[str]) -> np.ndarray:
  """`[C, 2]` float32 (centre, width) in nanometres for bands `names`."""
  if not len(names):
    raise ValueError(
        "no band names: model.band_embedding='wavelength' needs the bands of "
        "every input (config.model.lr_bands / hr_bands, or the manifest's)"
    )
  return np.asarray([lookup(n) for n in names], np.float32)
