"""A simple sensor model: how an LR view is made from an HR image.

LR = quantise(downsample(blur(HR), scale) + noise). The blur is a Gaussian
point-spread function with sigma = `psf_sigma * scale` HR pixels (the optical
MTF of the coarser sensor), downsampling averages `scale x scale` blocks (the
detector integrates over its footprint), noise is additive Gaussian in units of
the data range. Pure numpy: it runs inside dataset builders.
"""

from __future__ import annotations

import numpy as np


def gaussian_kernel_1d(sigma: float) -> np.ndarray:
  """Normalised 1-D Gaussian `[2r+1]` with r = ceil(3 sigma)."""
  if sigma <= 0:
    return np.ones((1,), np.float64)
  r = int(np.ceil(3 * sigma))
  x = np.arange(-r, r + 1, dtype=np.float64)
  k = np.exp(-0.5 * (x / sigma) ** 2)
  return k / k.sum()


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
  """Separable Gaussian blur of `[H, W, C]` with reflect padding -> float64."""
  k = gaussian_kernel_1d(sigma)
  r = len(k) // 2
  x = img.astype(np.float64)
  if r == 0:
    return x
  x = np.pad(x, ((r, r), (r, r), (0, 0)), mode="reflect")
  # Convolve rows then columns with a sliding-window dot product.
  x = np.lib.stride_tricks.sliding_window_view(x, len(k), axis=0) @ k
  x = np.lib.stride_tricks.sliding_window_view(x, len(k), axis=1) @ k
  return x


def area_downsample(img: np.ndarray, scale: int) -> np.ndarray:
  """Block mean: `[H, W, C]` -> `[H // scale, W // scale, C]`."""
  H, W, C = img.shape
  if H % scale or W % scale:
    raise ValueError(
        f"HR size {H}x{W} is not divisible by the LR scale "
        f"{scale}; crop or resize the HR image first."
    )
  return img.reshape(H // scale, scale, W // scale, scale, C).mean(axis=(1, 3))


def degrade(
    hr: np.ndarray,
    scale: int,
    rng: np.random.Generator,
    psf_sigma: float = 0.5,
    noise_std: float = 0.01,
    data_range: float | None = None,
) -> np.ndarray:
  """Simulates an LR acquisition of `hr: [H, W, C]` -> `[H/s, W/s, C]`.

  Keeps `hr`'s dtype: integer images are rounded and clipped to their dtype
  range, so a uint8 HR gives a uint8 LR. `noise_std` is relative to
  `data_range`: by default 255 for uint8 and the image's own value range
  otherwise (a 12-bit sensor in uint16 must not get noise scaled to 65535).
  """
  if data_range is None:
    if hr.dtype == np.uint8:
      data_range = 255.0
    else:
      data_range = float(np.max(hr)) - float(np.min(hr)) or 1.0
  x = area_downsample(blur(hr, psf_sigma * scale), scale)
  if noise_std > 0:
    x = x + rng.normal(0.0, noise_std * data_range, size=x.shape)
  if np.issubdtype(hr.dtype, np.integer):
    info = np.iinfo(hr.dtype)
    return np.clip(np.rint(x), info.min, info.max).astype(hr.dtype)
  return x.astype(hr.dtype)


def degradation_record(
    scale: int,
    psf_sigma: float | None = None,
    noise_std: float | None = None,
    source: str = "sensor.degrade",
    **extra,
) -> dict:
  """How a dataset's LR was made, for its manifest (builder["degradation"])
  and an export's model card: `source` "sensor.degrade" (`degrade` with
  this scale, PSF and noise) or "raster" (a real LR raster: scale only)."""
  synthetic = source == "sensor.degrade"
  return {
      "source": source,
      "scale": int(scale),
      "psf_sigma": float(psf_sigma) if synthetic else None,
      "noise_std": float(noise_std) if synthetic else None,
      **extra,
  }
