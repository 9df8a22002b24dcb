"""Image fidelity metrics for SR, batched in JAX: PSNR and SSIM per band,
and a perceptual feature distance from one of our own encoders.

All take `[B, H, W, C]` images on a caller-given `data_range` (GeoSR-Bench
scores on [0, 1], i.e. data_range=1, after resizing SR to the HR grid with
`resize_to_hr`) and return per-band values `[B, C]`; `fidelity` adds the
band means `[B]`.

The Frechet distance (FID-style, `frechet_distance`) compares two *sets* of
feature vectors `[N, D]` (e.g. `pooled_features` of SR and HR test windows)
through their Gaussian fits, in float64 NumPy. With N <= D windows the
sample covariance has rank <= N - 1 < D: the distance is still defined (the
matrix square roots are taken of positive semi-definite matrices) but biased
upwards and noisy; `frechet_note` says so, and callers should report it only
from `frechet_min_samples(D)` = D + 1 windows (full-rank covariances) on.

SSIM is scikit-image's `structural_similarity(x, y, data_range=L,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)` band by band:
an 11-tap Gaussian window (radius int(3.5 sigma + 0.5) = 5), K1 = 0.01,
K2 = 0.03, and the mean of the SSIM map over the pixels at least 5 from the
border. Those pixels' windows never leave the image, so a "valid" filter
gives exactly skimage's cropped map (its reflect padding never matters).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def resize_to_hr(
    sr: jnp.ndarray, hr_hw: Sequence[int], method: str = "cubic"
) -> jnp.ndarray:
  """`[B, h, w, C]` -> `[B, *hr_hw, C]` (antialiased when shrinking); a
  no-op when the grids already match."""
  b, h, w, c = sr.shape
  if (h, w) == tuple(hr_hw):
    return sr
  return jax.image.resize(sr, (b, int(hr_hw[0]), int(hr_hw[1]), c), method)


def _check(x, y, name):
  if x.shape != y.shape or x.ndim != 4:
    raise ValueError(
        f"{name}: images must both be [B, H, W, C] of one shape, "
        f"got {x.shape} and {y.shape}; resize SR to the HR grid "
        "with image_metrics.resize_to_hr first."
    )


@jax.jit
def psnr(x: jnp.ndarray, y: jnp.ndarray, data_range: float) -> jnp.ndarray:
  """Per-band PSNR in dB, `[B, C]`: 10 log10(L^2 / MSE) (inf when equal)."""
  _check(x, y, "psnr")
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  mse = jnp.mean(jnp.square((x - y) / data_range), axis=(1, 2))
  return -10.0 * jnp.log10(mse)


def gaussian_window(
    sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE
) -> np.ndarray:
  """Normalised 1-D Gaussian `[2r+1]`, r = int(truncate * sigma + 0.5) (as
  scipy.ndimage.gaussian_filter builds it)."""
  r = int(truncate * sigma + 0.5)
  k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
  return k / k.sum()


def _filter_valid(x: jnp.ndarray, k: np.ndarray) -> jnp.ndarray:
  """Separable valid filtering of `[..., H, W, C]` by `k [n]` -> `[..., H-n+1,
  W-n+1, C]`, as a sum of shifted slices (exact, no padding)."""
  n = len(k)
  h, w = x.shape[-3], x.shape[-2]
  x = sum(float(k[i]) * x[..., i : h - n + 1 + i, :, :] for i in range(n))
  return sum(float(k[i]) * x[..., :, i : w - n + 1 + i, :] for i in range(n))


@functools.partial(jax.jit, static_argnames="sigma")
def ssim(
    x: jnp.ndarray, y: jnp.ndarray, data_range: float, sigma: float = SSIM_SIGMA
) -> jnp.ndarray:
  """Per-band mean SSIM `[B, C]` of `[B, H, W, C]` images (see module doc).

  Computed on x / L, y / L (SSIM is unchanged: C1, C2 scale with L^2) and
  with moments taken about each band's mean, so float32 keeps ~1e-6 accuracy
  for large data ranges (e.g. uint16).
  """
  _check(x, y, "ssim")
  k = gaussian_window(sigma)
  if min(x.shape[1:3]) < len(k):
    raise ValueError(
        f"ssim needs images of at least {len(k)}x{len(k)} "
        f"pixels (the Gaussian window), got {x.shape[1:3]}."
    )
  x = jnp.asarray(x, jnp.float32) / data_range
  y = jnp.asarray(y, jnp.float32) / data_range
  cx = jnp.mean(x, axis=(1, 2), keepdims=True)  # [B, 1, 1, C]
  cy = jnp.mean(y, axis=(1, 2), keepdims=True)
  xs, ys = x - cx, y - cy
  moments = _filter_valid(jnp.stack([xs, ys, xs * xs, ys * ys, xs * ys]), k)
  mx, my, mxx, myy, mxy = moments  # [B, H', W', C]
  vx, vy, vxy = mxx - mx * mx, myy - my * my, mxy - mx * my
  ux, uy = mx + cx, my + cy
  c1, c2 = SSIM_K1**2, SSIM_K2**2
  s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / (
      (ux * ux + uy * uy + c1) * (vx + vy + c2)
  )
  return jnp.mean(s, axis=(1, 2))


def fidelity(
    sr: jnp.ndarray, hr: jnp.ndarray, data_range: float = 1.0, clip: bool = True
) -> dict[str, jnp.ndarray]:
  """PSNR and SSIM of `sr` against `hr` (both `[B, H, W, C]`; SR is resized
  to the HR grid first, and clipped to [0, data_range] when `clip`).

  Returns {"psnr": [B], "ssim": [B], "psnr_per_band": [B, C],
  "ssim_per_band": [B, C]} (the band means per example: the evaluators'
  per-example metrics convention).
  """
  sr = resize_to_hr(sr, hr.shape[1:3])
  if clip:
    sr = jnp.clip(sr, 0.0, data_range)
  p, s = psnr(sr, hr, data_range), ssim(sr, hr, data_range)
  return {
      "psnr": p.mean(-1),
      "ssim": s.mean(-1),
      "psnr_per_band": p,
      "ssim_per_band": s,
  }


def feature_distance(
    encoder_apply: Callable,
    params,
    x: jnp.ndarray,
    y: jnp.ndarray,
    eps: float = 1e-10,
) -> jnp.ndarray:
  """Perceptual feature distance `[B]` between images `x`, `y` `[B, H, W, C]`.

  `encoder_apply(params, images)` returns a list of feature maps `[B, h_l,
  w_l, C_l]` (any of our encoders). Per layer, every feature vector is
  normalised to unit length over channels, then the squared difference is
  summed over channels and averaged over positions; the result is the mean
  over layers (in [0, 4]). This is the LPIPS recipe with uniform channel
  weights and our own encoder: not LPIPS, whose learned weights and
  ImageNet backbones it does not use.
  """
  _check(x, y, "feature_distance")
  fx, fy = encoder_apply(params, x), encoder_apply(params, y)
  if not fx:
    raise ValueError(
        "feature_distance: encoder_apply returned no feature "
        "maps; it must return a list of [B, h, w, C] arrays."
    )
  return feature_distance_of_maps(fx, fy, eps)


def feature_distance_of_maps(
    fx: Sequence[jnp.ndarray], fy: Sequence[jnp.ndarray], eps: float = 1e-10
) -> jnp.ndarray:
  """`feature_distance` from precomputed feature maps (lists of `[B, h_l,
  w_l, C_l]`): `[B]`."""
  if not fx or len(fx) != len(fy):
    raise ValueError(
        f"feature_distance: {len(fx)} and {len(fy)} feature maps; need the "
        "same non-zero number of [B, h, w, C] arrays for both images."
    )
  per_layer = []
  for a, b in zip(fx, fy):
    a = a / (jnp.linalg.norm(a, axis=-1, keepdims=True) + eps)
    b = b / (jnp.linalg.norm(b, axis=-1, keepdims=True) + eps)
    per_layer.append(jnp.sum(jnp.square(a - b), axis=-1).mean(axis=(1, 2)))
  return jnp.mean(jnp.stack(per_layer), axis=0)


def pooled_features(maps: Sequence[jnp.ndarray]) -> jnp.ndarray:
  """Feature maps `[B, h_l, w_l, C_l]` -> `[B, sum_l C_l]`: each layer
  averaged over positions, layers concatenated (the Frechet distance's
  per-window vectors)."""
  return jnp.concatenate([m.mean(axis=(1, 2)) for m in maps], axis=-1)


def gaussian_stats(
    x: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """(mean `[D]`, covariance `[D, D]`, ddof 1) of rows `x` `[N, D]` in
  float64; `weights` `[N]` are integer repeat counts (a bootstrap draw:
  the same as stacking row i weights[i] times)."""
  x = np.asarray(x, np.float64)
  if weights is None:
    weights = np.ones(len(x), np.int64)
  weights = np.asarray(weights, np.int64)
  n = int(weights.sum())
  if x.ndim != 2 or n < 2:
    raise ValueError(
        f"gaussian_stats needs [N, D] rows with N >= 2 (weighted), got "
        f"shape {x.shape} and {n} rows."
    )
  mu = weights @ x / n
  xc = x - mu
  cov = (xc * weights[:, None]).T @ xc / (n - 1)
  return mu, cov


def psd_sqrt(cov: np.ndarray) -> np.ndarray:
  """Symmetric square root `[D, D]` of a positive semi-definite matrix
  (eigen-decomposition; round-off negative eigenvalues clipped to 0)."""
  w, v = np.linalg.eigh((cov + cov.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_gaussians(
    mu1: np.ndarray,
    cov1: np.ndarray,
    mu2: np.ndarray,
    cov2: np.ndarray,
    sqrt1: np.ndarray | None = None,
) -> float:
  """Frechet (2-Wasserstein squared) distance between N(mu1, cov1) and
  N(mu2, cov2): |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((R cov2
  R)^1/2), R = cov1^1/2 (the same trace as FID's tr((cov1 cov2)^1/2), but
  of a symmetric PSD matrix, so exact for singular covariances too).
  `sqrt1`: cov1^1/2 when the caller already has it."""
  r = psd_sqrt(cov1) if sqrt1 is None else sqrt1
  m = r @ cov2 @ r
  eig = np.linalg.eigvalsh((m + m.T) / 2)
  cross = np.sqrt(np.clip(eig, 0.0, None)).sum()
  d = np.sum(np.square(mu1 - mu2)) + np.trace(cov1) + np.trace(cov2)
  return float(max(d - 2.0 * cross, 0.0))


def frechet_min_samples(dim: int) -> int:
  """Windows needed for a full-rank `[dim, dim]` sample covariance."""
  return int(dim) + 1


def frechet_note(n: int, dim: int) -> str | None:
  """Why a Frechet distance of `n` windows of `dim` features is unreliable
  (None when the covariances can be full rank)."""
  if n >= frechet_min_samples(dim):
    return None
  return (
      f"{n} windows for {dim} features: covariance rank <= {n - 1} < {dim}, "
      "so the Frechet distance is biased upwards; needs >= "
      f"{frechet_min_samples(dim)} windows"
  )


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
  """Frechet distance between the Gaussian fits of feature sets `x` `[N,
  D]` and `y` `[M, D]` (FID's formula on our features; 0 for identical
  sets, invariant to the order of the rows). See the module doc for N <=
  D."""
  if np.shape(x)[1:] != np.shape(y)[1:]:
    raise ValueError(
        f"frechet_distance: feature sizes differ, {np.shape(x)} vs "
        f"{np.shape(y)}."
    )
  return frechet_gaussians(*gaussian_stats(x), *gaussian_stats(y))
