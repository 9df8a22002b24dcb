"""Tiled SR inference equals untiled inference; GeoTIFF window streaming."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crossscale import sliding_window
from crossscale.models import sr


def _params(model, lr, seed=0):
  """LeCun-normal parameters from eval_shape (no compiled init)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), {"lr": lr})["params"]
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(
          rng.normal(0, 1 / np.sqrt(np.prod(s.shape[:-1])), s.shape),
          jnp.float32,
      ),
      shapes,
  )


@pytest.mark.parametrize(
    "n,n_out,tile,overlap",
    [(37, 74, 16, 6), (40, 100, 12, 5), (300, 5010, 64, 16), (9, 18, 16, 4)],
)
def test_axis_tiles_cover_align_and_overlap(n, n_out, tile, overlap):
  starts, t, q = sliding_window.axis_tiles(n, n_out, tile, overlap)
  assert starts[0] == 0 and starts[-1] + t == n  # clamped to borders
  assert all(s % q == 0 for s in starts) and t % q == 0 or t == n
  assert all((s * n_out) % n == 0 for s in starts)  # on HR pixel edges
  gaps = np.diff(starts)
  assert (gaps > 0).all() and (t - gaps >= overlap).all()


def test_axis_tiles_errors_say_what_to_change():
  with pytest.raises(ValueError, match="tile >= 31"):
    sliding_window.axis_tiles(31, 518, 16, 4)  # 518/31: q = 31
  with pytest.raises(ValueError, match="lower overlap"):
    sliding_window.axis_tiles(40, 80, 8, 8)


def test_blend_weights_zero_margin_and_border():
  w = sliding_window.blend_weights(
      20, at_start=False, at_end=True, overlap_hr=8, ramp_frac=0.5
  )
  assert (w[:2] == 0).all() and (w[2:6] > 0).all() and (w[6:] == 1).all()
  assert (np.diff(w[1:7]) > 0).all()
  assert (sliding_window.blend_weights(20, True, True, 8, 0.5) == 1).all()


@pytest.fixture(scope="module")
def edsr_fn():
  """A tiny EDSR x2 (translation-equivariant; receptive-field radius 12 HR
  pixels: 5 LR convs and one HR conv) as a jitted predict fn."""
  model = sr.EDSR(out_bands=2, scale=2, features=8, num_blocks=1)
  return sr.predict_fn(model, _params(model, jnp.zeros((1, 8, 8, 3))))


@pytest.mark.parametrize("tile,overlap,ramp", [(16, 12, 0.0), (32, 24, 0.5)])
def test_tiled_equals_untiled_conv(edsr_fn, tile, overlap, ramp):
  lr = np.random.default_rng(0).normal(size=(37, 45, 3)).astype(np.float32)
  full = np.asarray(edsr_fn(lr[None], (74, 90)))[0]
  out = sliding_window.tiled_apply(
      edsr_fn, lr, 2, tile=tile, overlap=overlap, batch=3, ramp_frac=ramp
  )
  assert out.shape == (74, 90, 2)
  np.testing.assert_allclose(out, full, atol=1e-5, rtol=0)


def test_tiled_overlap_too_small_is_visible(edsr_fn):
  """Sanity check of the test above: margins below the receptive field
  leave seams."""
  lr = np.random.default_rng(0).normal(size=(37, 45, 3)).astype(np.float32)
  full = np.asarray(edsr_fn(lr[None], (74, 90)))[0]
  out = sliding_window.tiled_apply(
      edsr_fn, lr, 2, tile=16, overlap=4, ramp_frac=0.0
  )
  assert np.abs(out - full).max() > 1e-2


@pytest.mark.parametrize("scale,hw", [(3, (20, 17)), (2.5, (40, 30))])
def test_tiled_equals_untiled_bicubic(scale, hw):
  lr = np.random.default_rng(1).normal(size=(*hw, 3)).astype(np.float32)
  fn = sr.predict_fn(sr.Bicubic(), {})
  out_hw = (round(hw[0] * scale), round(hw[1] * scale))
  full = np.asarray(fn(lr[None], out_hw))[0]
  out = sliding_window.tiled_apply(
      fn, lr, scale, tile=12, overlap=8, batch=4, ramp_frac=0.0
  )
  assert out.shape == (*out_hw, 3)
  np.testing.assert_allclose(out, full, atol=1e-4, rtol=0)


def test_tiled_implicit_real_scale():
  """ImplicitSR at x2.5: tiles start on HR pixel edges (q = 2), so each
  tile's query grid is a slice of the global one."""
  model = sr.ImplicitSR(out_bands=2, features=4, num_blocks=0, hidden=(8,))
  fn = sr.predict_fn(model, _params(model, jnp.zeros((1, 8, 8, 3))))
  lr = np.random.default_rng(2).normal(size=(30, 24, 3)).astype(np.float32)
  full = np.asarray(fn(lr[None], (75, 60)))[0]
  out = sliding_window.tiled_apply(
      fn, lr, 2.5, tile=16, overlap=10, batch=4, ramp_frac=0.0
  )
  np.testing.assert_allclose(out, full, atol=1e-4, rtol=0)


def test_geotiff_streaming_matches_in_memory(shared_data, tmp_path):
  rasterio = pytest.importorskip("rasterio")
  src_path = os.path.join(
      shared_data, "spacenet", "preproc_tutorial", "ms1.tif"
  )
  if not os.path.exists(src_path):
    pytest.skip(f"{src_path} not found")
  fn = sr.predict_fn(sr.Bicubic(), {})
  rows_read = []

  def pre(a):  # [n, w, C] raw -> [0, 1]-ish
    rows_read.append(a.shape[0])
    return a.astype(np.float32) / 2047.0

  dst = str(tmp_path / "sr.tif")
  H, W = sliding_window.tiled_apply_geotiff(
      src_path, dst, fn, 2, tile=64, overlap=16, batch=4, preprocess=pre
  )
  with rasterio.open(src_path) as src, rasterio.open(dst) as out:
    lr = np.moveaxis(src.read(), 0, -1).astype(np.float32) / 2047.0
    assert (
        (out.height, out.width, out.count) == (H, W, src.count) == (600, 600, 4)
    )
    assert out.crs == src.crs
    assert out.transform.almost_equals(
        src.transform @ rasterio.Affine.scale(0.5)
    )
    assert out.bounds == pytest.approx(src.bounds)
    sr_img = np.moveaxis(out.read(), 0, -1)
  assert max(rows_read) == 64  # never more than one LR strip
  mem = sliding_window.tiled_apply(fn, lr, 2, tile=64, overlap=16, batch=4)
  np.testing.assert_allclose(sr_img, mem, atol=1e-6, rtol=0)
  full = np.asarray(fn(lr[None], (600, 600)))[0]
  np.testing.assert_allclose(sr_img, full, atol=1e-4, rtol=0)
