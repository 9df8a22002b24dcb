"""SR models: shapes, band mapping, bicubic against hand-computed values, a
few L1 training steps on a toy problem."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from crossscale import sensor
from crossscale.models import sr

TINY = {
    "edsr": lambda c, s: sr.EDSR(
        out_bands=c, scale=s, features=8, num_blocks=1
    ),
    "swinir": lambda c, s: sr.SwinIRLike(
        out_bands=c,
        scale=s,
        embed_dim=8,
        depths=(2,),
        num_heads=2,
        window_size=4,
        upsample_features=8,
    ),
    "implicit": lambda c, s: sr.ImplicitSR(
        out_bands=c, scale=s, features=8, num_blocks=1, hidden=(16,)
    ),
}


def fast_init(model, *args, seed=0, method=None):
  """Parameters of `model` without compiling its init (XLA:CPU takes seconds
  per threefry-initialised tree): shapes from eval_shape, LeCun-normal
  kernels, zero biases, unit norm scales, N(0, 0.02) position biases."""
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), *args, method=method)
  )["params"]
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      std = 1.0 / np.sqrt(np.prod(s.shape[:-1]))
    elif "relative_position_bias" in name:
      std = 0.02
    else:
      return jnp.full(s.shape, 1.0 if "scale" in name else 0.0, s.dtype)
    return jnp.asarray(rng.normal(0, std, s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _batch(b, h, w, c_in, c_out, scale, seed=0):
  rng = np.random.default_rng(seed)
  return {
      "lr": jnp.asarray(rng.normal(size=(b, h, w, c_in)), jnp.float32),
      "hr": jnp.asarray(
          rng.normal(size=(b, round(h * scale), round(w * scale), c_out)),
          jnp.float32,
      ),
  }


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("c_in,c_out,scale", [(3, 3, 2), (12, 4, 4)])
def test_shapes(name, c_in, c_out, scale):
  """eval_shape: the contract's shapes without compiling (fast)."""
  model = TINY[name](c_out, scale)
  batch = _batch(2, 6, 10, c_in, c_out, scale)
  variables = jax.eval_shape(model.init, jax.random.key(0), batch)
  out = jax.eval_shape(model.apply, variables, batch)
  assert out["sr"].shape == (2, 6 * scale, 10 * scale, c_out)
  assert out["aux_losses"]["l1"].shape == ()
  pred = jax.eval_shape(
      lambda v, x: model.apply(v, x, (13, 29), method="predict"),
      variables,
      batch["lr"],
  )
  assert pred.shape == (2, 13, 29, c_out)  # resized / queried to any grid


def test_swinir_runs_and_pads_to_windows():
  model = TINY["swinir"](4, 2)
  batch = _batch(1, 9, 6, 12, 4, 2)  # 9x6 is not a window multiple
  variables = {"params": fast_init(model, batch)}
  out = jax.jit(model.apply)(variables, batch)
  assert out["sr"].shape == (1, 18, 12, 4)
  assert np.isfinite(np.asarray(out["sr"])).all()
  np.testing.assert_allclose(
      out["aux_losses"]["l1"], np.abs(out["sr"] - batch["hr"]).mean(), rtol=1e-6
  )


@pytest.fixture(scope="module")
def implicit():
  """A tiny ImplicitSR 12 -> 4 bands and its parameters."""
  model = TINY["implicit"](4, 16.7)
  params = fast_init(model, {"lr": jnp.zeros((1, 6, 6, 12))})
  predict = jax.jit(
      lambda p, x, hw: model.apply({"params": p}, x, hw, method="predict"),
      static_argnums=2,
  )
  return model, params, predict


def test_implicit_any_scale(implicit):
  model, params, predict = implicit
  lr = _batch(2, 6, 6, 12, 4, 1)["lr"]
  out = jax.eval_shape(model.apply, {"params": params}, {"lr": lr})
  assert out["sr"].shape == (2, 100, 100, 4)  # default: round(6 * 16.7)
  for lr_hw, out_hw in [
      ((6, 6), (100, 100)),  # x16.7
      ((5, 7), (37, 53)),
  ]:  # x7.4 by x7.57
    pred = predict(params, lr[:, : lr_hw[0], : lr_hw[1]], out_hw)
    assert pred.shape == (2, *out_hw, 4)
    assert np.isfinite(np.asarray(pred)).all()


def test_implicit_local_ensemble_is_continuous(implicit):
  """The 4 neighbours' area weights vary smoothly: on a smooth LR the SR has
  no jumps where the neighbour set changes (x10: at LR centres, HR columns 4|5,
  14|15, ...) larger than its other steps."""
  _, params, predict = implicit
  y, x = np.mgrid[0:6, 0:6] / 6.0
  lr = np.repeat((np.sin(3 * y) + np.cos(2 * x))[None, ..., None], 12, -1)
  out = np.asarray(predict(params, jnp.asarray(lr, jnp.float32), (60, 60)))[
      0, ..., 0
  ]
  steps = np.abs(np.diff(out, axis=1))
  switch = steps[:, 4::10]  # columns 4|5, 14|15: the neighbour switch
  others = np.delete(steps, np.s_[4::10], axis=1)
  assert switch.max() < 3 * others.max() + 1e-6


def test_pixel_shuffle_matches_index_formula():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 4, 2 * 9))
  out = np.asarray(sr.pixel_shuffle(jnp.asarray(x), 3))
  assert out.shape == (2, 9, 12, 2)
  for b, i, j, c in [(0, 0, 0, 0), (1, 4, 7, 1), (0, 8, 11, 1), (1, 5, 2, 0)]:
    assert out[b, i, j, c] == pytest.approx(
        x[b, i // 3, j // 3, c * 9 + (i % 3) * 3 + j % 3], rel=1e-6
    )


def test_shift_mask_separates_rolled_regions():
  m = sr.shift_mask(8, 8, 4, 2)  # 4 windows of 16 tokens
  assert m.shape == (4, 16, 16)
  assert (m[0] == 0).all()  # top-left: one region
  assert (m[1] == 0).sum() == 2 * 8 * 8  # top-right: 2 regions of 8
  assert (m[3] == m[3].T).all() and (np.diag(m[3]) == 0).all()
  # The bottom-right window holds 4 regions of 2x2 tokens: 4 * 4 * 4 pairs
  # may attend (same region), the other 256 - 64 are masked.
  assert (m[3] == 0).sum() == 64


def _keys(t, a=-0.5):
  t = np.abs(t)
  return np.where(
      t <= 1,
      (a + 2) * t**3 - (a + 3) * t**2 + 1,
      np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0),
  )


def test_bicubic_interior_matches_keys_kernel_and_ramp():
  rng = np.random.default_rng(0)
  h, w, s = 12, 10, 4
  lr = rng.normal(size=(h, w))
  out = np.asarray(
      sr.Bicubic(scale=s).apply(
          {"params": {}},
          jnp.asarray(lr[None, ..., None], jnp.float32),
          method="predict",
      )
  )[0, ..., 0]

  # Independent separable Keys interpolation at HR pixel centres.
  def axis_weights(n_in, n_out):
    c = (np.arange(n_out) + 0.5) / s - 0.5  # LR coordinates
    return _keys(c[:, None] - np.arange(n_in)[None, :])  # [n_out, n_in]

  ref = axis_weights(h, h * s) @ lr @ axis_weights(w, w * s).T
  inner = (slice(2 * s, -2 * s), slice(2 * s, -2 * s))  # all taps inside
  np.testing.assert_allclose(out[inner], ref[inner], atol=1e-5)
  # A linear ramp is reproduced exactly in the interior.
  yy, xx = np.mgrid[0:h, 0:w]
  ramp = 0.3 * yy - 0.7 * xx + 2.0
  out = np.asarray(
      sr.Bicubic(scale=s).apply(
          {"params": {}},
          jnp.asarray(ramp[None, ..., None], jnp.float32),
          method="predict",
      )
  )[0, ..., 0]
  cy = (np.arange(h * s) + 0.5) / s - 0.5
  cx = (np.arange(w * s) + 0.5) / s - 0.5
  np.testing.assert_allclose(
      out[inner], (0.3 * cy[:, None] - 0.7 * cx[None] + 2.0)[inner], atol=1e-5
  )


def test_bicubic_band_map_and_errors():
  batch = _batch(1, 4, 4, 12, 4, 2)
  model = sr.Bicubic(scale=2, band_map=((3,), (2,), (1,), (7, 8)))
  out = model.apply({"params": {}}, batch)
  lr = np.asarray(batch["lr"])[0]
  mapped = np.stack(
      [lr[..., 3], lr[..., 2], lr[..., 1], (lr[..., 7] + lr[..., 8]) / 2], -1
  )
  ref = sr.Bicubic(scale=2).apply(
      {"params": {}}, jnp.asarray(mapped[None]), method="predict"
  )
  np.testing.assert_allclose(out["sr"], ref, atol=1e-5)
  with pytest.raises(ValueError, match="band_map"):
    sr.Bicubic(band_map=((12,),)).apply({"params": {}}, batch)
  with pytest.raises(ValueError, match="out_bands"):
    sr.Bicubic(scale=2).apply({"params": {}}, batch)  # 12 bands vs 4
  with pytest.raises(ValueError, match="ImplicitSR"):
    jax.eval_shape(
        sr.EDSR(out_bands=4, scale=2.5).init, jax.random.key(0), batch
    )


def _toy_pairs(n=4, hr=16, scale=2, bands=2, seed=0):
  """Smooth HR fields and their area-downsampled LR (an invertible-ish toy)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:hr, 0:hr] / hr
  hrs = []
  for _ in range(n):
    f = rng.uniform(1, 3, (bands, 2))
    ph = rng.uniform(0, 6, (bands,))
    hrs.append(
        np.stack(
            [
                np.sin(2 * np.pi * (f[b, 0] * yy + f[b, 1] * xx) + ph[b])
                for b in range(bands)
            ],
            -1,
        )
    )
  hrs = np.stack(hrs).astype(np.float32)
  lrs = np.stack([sensor.area_downsample(x, scale) for x in hrs])
  return {"lr": jnp.asarray(lrs, jnp.float32), "hr": jnp.asarray(hrs)}


@pytest.mark.parametrize("name", ["edsr", "implicit"])
def test_l1_training_lowers_loss(name):
  batch = _toy_pairs()
  model = TINY[name](2, 2)
  params = fast_init(model, batch)
  opt = optax.adam(3e-3)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    def loss_fn(p):
      out = model.apply(
          {"params": p},
          batch,
          train=True,
          rngs={"dropout": jax.random.key(1), "selection": jax.random.key(2)},
      )
      return sum(out["aux_losses"].values())

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for _ in range(25):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.6 * losses[0], losses


def test_default_configs_build():
  """Default (paper-sized) configs trace; parameter counts stay in range."""
  batch = _batch(1, 16, 16, 3, 3, 4)
  counts = {}
  for name, cls in [
      ("edsr", sr.EDSR),
      ("swinir", sr.SwinIRLike),
      ("implicit", sr.ImplicitSR),
  ]:
    v = jax.eval_shape(cls(out_bands=3).init, jax.random.key(0), batch)
    counts[name] = sum(x.size for x in jax.tree.leaves(v["params"]))
  assert 1.3e6 < counts["edsr"] < 1.7e6, counts  # EDSR-baseline x4
  assert 0.8e6 < counts["swinir"] < 1.4e6, counts  # SwinIR-light scale
  assert 1.3e6 < counts["implicit"] < 1.8e6, counts  # LIIF, EDSR-baseline
  assert set(sr.SR_MODELS) == {
      "sr_bicubic",
      "sr_edsr",
      "sr_swinir",
      "sr_implicit",
  }
