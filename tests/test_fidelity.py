"""PSNR / SSIM against scikit-image; the perceptual feature distance."""

import glob
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from crossscale import fidelity as im


def _skimage(x, y, data_range):
  """Per-band skimage PSNR and SSIM `[B, C]` (float64, band by band)."""
  b, _, _, c = x.shape
  ssim = [
      [
          structural_similarity(
              x[i, ..., k],
              y[i, ..., k],
              data_range=data_range,
              gaussian_weights=True,
              sigma=1.5,
              use_sample_covariance=False,
          )
          for k in range(c)
      ]
      for i in range(b)
  ]
  psnr = [
      [
          peak_signal_noise_ratio(
              x[i, ..., k], y[i, ..., k], data_range=data_range
          )
          for k in range(c)
      ]
      for i in range(b)
  ]
  return np.array(psnr), np.array(ssim)


@pytest.mark.parametrize(
    "shape,data_range,dtype",
    [
        ((2, 11, 11, 1), 1.0, np.float64),  # the smallest allowed image
        ((2, 32, 40, 3), 1.0, np.float64),
        ((1, 57, 23, 4), 255.0, np.uint8),
        ((1, 48, 64, 2), 65535.0, np.uint16),
        ((3, 20, 31, 12), 2.0, np.float64),
    ],
)
def test_psnr_ssim_match_skimage(shape, data_range, dtype):
  rng = np.random.default_rng(sum(shape))
  # Smooth structure + noise of varying strength: SSIM spans a wide range.
  yy, xx = np.mgrid[0 : shape[1], 0 : shape[2]]
  base = 0.5 + 0.4 * np.sin(yy / 3.0)[..., None] * np.cos(xx / 5.0)[..., None]
  x = np.clip(base + rng.normal(0, 0.05, shape), 0, 1)
  noise = rng.uniform(0.01, 0.3, (shape[0], 1, 1, shape[3]))
  y = np.clip(x + rng.normal(0, 1, shape) * noise, 0, 1)
  x, y = x * data_range, y * data_range
  if dtype != np.float64:
    x, y = np.rint(x).astype(dtype), np.rint(y).astype(dtype)
  ref_p, ref_s = _skimage(x, y, data_range)
  p = np.asarray(im.psnr(x, y, data_range))
  s = np.asarray(im.ssim(x, y, data_range))
  assert p.shape == s.shape == shape[::3]
  np.testing.assert_allclose(s, ref_s, atol=1e-4, rtol=0)
  np.testing.assert_allclose(p, ref_p, atol=1e-3, rtol=1e-5)
  assert ref_s.min() < 0.9  # the check covers imperfect reconstructions


def test_identity_and_fidelity_dict():
  rng = np.random.default_rng(0)
  hr = rng.uniform(0, 1, (2, 24, 24, 3))
  assert np.allclose(im.ssim(hr, hr, 1.0), 1.0, atol=1e-6)
  assert np.isinf(im.psnr(hr, hr, 1.0)).all()
  lr = hr.reshape(2, 12, 2, 12, 2, 3).mean((2, 4))
  out = im.fidelity(jnp.asarray(lr), jnp.asarray(hr), 1.0)
  assert out["psnr_per_band"].shape == out["ssim_per_band"].shape == (2, 3)
  np.testing.assert_allclose(
      out["psnr"], out["psnr_per_band"].mean(-1), rtol=1e-6
  )
  up = np.clip(np.asarray(im.resize_to_hr(jnp.asarray(lr), (24, 24))), 0, 1)
  np.testing.assert_allclose(
      out["ssim_per_band"], _skimage(up, hr, 1.0)[1], atol=1e-4
  )


def test_errors_name_the_fix():
  with pytest.raises(ValueError, match="resize_to_hr"):
    im.psnr(np.zeros((1, 8, 8, 1)), np.zeros((1, 16, 16, 1)), 1.0)
  with pytest.raises(ValueError, match="at least 11x11"):
    im.ssim(np.zeros((1, 10, 30, 1)), np.zeros((1, 10, 30, 1)), 1.0)


class _Pyramid(nn.Module):
  """A tiny conv feature pyramid: `[B, H, W, C]` -> 3 maps at 1, 1/2, 1/4."""

  @nn.compact
  def __call__(self, x):
    feats = []
    for i, width in enumerate((8, 16, 16)):
      x = nn.relu(
          nn.Conv(width, (3, 3), strides=(1 if i == 0 else 2), name=f"conv{i}")(
              x
          )
      )
      feats.append(x)
    return feats


def _real_image(shared_data):
  from PIL import Image  # pylint: disable=import-outside-toplevel

  paths = sorted(
      glob.glob(os.path.join(shared_data, "rsscn7", "fResident", "*.jpg"))
  )
  if not paths:
    pytest.skip("rsscn7/fResident images not found")
  img = np.asarray(Image.open(paths[0]).convert("RGB"), np.float32) / 255.0
  return img[100:164, 100:164][None]  # [1, 64, 64, 3]


def test_feature_distance(shared_data):
  x = _real_image(shared_data)
  model = _Pyramid()
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  rng = np.random.default_rng(1)  # LeCun-normal kernels, no compiled init
  params = jax.tree.map(
      lambda s: jnp.asarray(
          rng.normal(0, 1 / np.sqrt(np.prod(s.shape[:-1])), s.shape),
          jnp.float32,
      ),
      shapes,
  )
  apply = jax.jit(lambda p, a: model.apply({"params": p}, a))
  dist = jax.jit(lambda a, b: im.feature_distance(apply, params, a, b))
  noise = rng.normal(0, 1, x.shape).astype(np.float32)
  ys = [np.clip(x + s * noise, 0, 1) for s in (0.01, 0.03, 0.1, 0.3)]
  assert float(dist(x, x)[0]) == pytest.approx(0.0, abs=1e-7)
  np.testing.assert_allclose(dist(x, ys[1]), dist(ys[1], x), rtol=1e-5)
  d = [float(dist(x, y)[0]) for y in ys]
  assert all(a < b for a, b in zip(d, d[1:])), d
  assert 0.0 < d[0] and d[-1] <= 4.0


# ---------------------------------------------------------- Frechet distance


def test_frechet_gaussians_closed_forms():
  """1-D: (m1 - m2)^2 + (s1 - s2)^2; diagonal covariances: the sum over
  dimensions; a rotated covariance: invariant to a common rotation."""
  one = im.frechet_gaussians(
      np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])
  )
  assert one == pytest.approx(9.0 + 1.0)
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  a, b = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.0])  # b singular
  want = 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = im.frechet_gaussians(mu1, np.diag(a), mu2, np.diag(b))
  assert got == pytest.approx(want, rel=1e-10)
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
  rot = im.frechet_gaussians(
      q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T
  )
  assert rot == pytest.approx(want, rel=1e-8)


def test_frechet_distance_of_samples():
  """Identical sets: 0; row order and the side do not matter; weights are
  repeat counts; shifting one set by v adds |v|^2."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(40, 4))
  y = rng.normal(size=(30, 4)) @ rng.normal(size=(4, 4))
  assert im.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
  d = im.frechet_distance(x, y)
  assert d > 0.1
  assert im.frechet_distance(x[::-1], rng.permutation(y)) == pytest.approx(d)
  assert im.frechet_distance(y, x) == pytest.approx(d)
  v = np.array([1.0, -2.0, 0.5, 0.0])
  assert im.frechet_distance(x, x + v) == pytest.approx(np.sum(v * v))
  w = rng.integers(0, 3, size=40)
  mu, cov = im.gaussian_stats(x, w)
  mu_r, cov_r = im.gaussian_stats(np.repeat(x, w, axis=0))
  np.testing.assert_allclose(mu, mu_r)
  np.testing.assert_allclose(cov, cov_r, atol=1e-12)
  np.testing.assert_allclose(cov_r, np.cov(np.repeat(x, w, 0), rowvar=False))
  with pytest.raises(ValueError, match="feature sizes differ"):
    im.frechet_distance(x, y[:, :3])


def test_frechet_few_windows_is_defined_but_flagged():
  """N <= D: singular covariances, still finite and >= 0; the note names
  the minimum (D + 1 windows)."""
  rng = np.random.default_rng(2)
  x, y = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
  assert np.linalg.matrix_rank(im.gaussian_stats(x)[1]) == 4
  d = im.frechet_distance(x, y)
  assert np.isfinite(d) and d > 0
  assert im.frechet_min_samples(8) == 9
  assert "needs >= 9 windows" in im.frechet_note(5, 8)
  assert im.frechet_note(9, 8) is None


def test_pooled_features_and_distance_of_maps():
  maps = [
      jnp.arange(2 * 2 * 3 * 2, dtype=jnp.float32).reshape(2, 2, 3, 2),
      jnp.ones((2, 1, 1, 3)),
  ]
  p = np.asarray(im.pooled_features(maps))
  assert p.shape == (2, 5)
  np.testing.assert_allclose(p[0, :2], [5.0, 6.0])  # mean over 6 positions
  np.testing.assert_allclose(p[:, 2:], 1.0)
  assert float(im.feature_distance_of_maps(maps, maps).max()) == 0.0
  other = [maps[0], -maps[1]]  # unit vectors opposite: distance 4
  np.testing.assert_allclose(
      im.feature_distance_of_maps(maps, other), [2.0, 2.0], rtol=1e-6
  )
