"""GAN and diffusion SR: shapes, GAN gradient routing (each loss reaches only
the parameters it should), the diffusion loss decreasing, DDIM(1 step) ==
the model's x0 prediction, and the SR evaluator against scikit-image."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from crossscale import evaluators, partitioning, shards
from crossscale.models import sr, sr_diffusion, sr_gan


def _gan(c=3, s=2):
  return sr_gan.ESRGAN(
      out_bands=c,
      scale=s,
      features=8,
      growth=4,
      num_blocks=1,
      disc_widths=(4, 8),
      perceptual_width=4,
  )


def _diffusion(c=3, s=2, **kw):
  return sr_diffusion.DiffusionSR(
      out_bands=c, scale=s, widths=(8, 16), time_dim=16, **kw
  )


def _batch(b, h, w, c_in, c_out, s, seed=0):
  rng = np.random.default_rng(seed)
  return {
      "lr": jnp.asarray(rng.normal(size=(b, h, w, c_in)), jnp.float32),
      "hr": jnp.asarray(rng.normal(size=(b, h * s, w * s, c_out)), jnp.float32),
  }


def _params(model, *args, seed=0, **kw):
  """Random params without compiling the init (shapes by eval_shape):
  LeCun-normal kernels, zero biases, unit norm scales."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *args, **kw))[
      "params"
  ]
  rng = np.random.default_rng(seed)

  def fill(path, x):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      std = 1.0 / np.sqrt(np.prod(x.shape[:-1]))
      return jnp.asarray(rng.normal(0, std, x.shape), x.dtype)
    return jnp.full(x.shape, 1.0 if "scale" in name else 0.0, x.dtype)

  import flax.linen as nn  # pylint: disable=import-outside-toplevel

  return jax.tree_util.tree_map_with_path(fill, nn.meta.unbox(shapes))


@pytest.mark.parametrize("c_in,c_out,s", [(3, 3, 2), (12, 4, 4)])
def test_shapes(c_in, c_out, s):
  batch = _batch(2, 6, 10, c_in, c_out, s)
  for model, losses in (
      (_gan(c_out, s), {"l1", "perceptual", "adversarial", "discriminator"}),
      (_diffusion(c_out, s), {"diffusion"}),
  ):
    v = jax.eval_shape(model.init, jax.random.key(0), batch)
    out = jax.eval_shape(model.apply, v, batch)
    assert set(out["aux_losses"]) == losses
    assert all(x.shape == () for x in out["aux_losses"].values())
    pred = jax.eval_shape(
        lambda v, x, m=model: m.apply(v, x, (13, 29), method="predict"),
        v,
        batch["lr"],
    )
    assert pred.shape == (2, 13, 29, c_out)


def test_gan_gradients_reach_only_the_intended_params():
  """d(G losses) is zero on D and perceptual params and non-zero on G;
  d(D loss) is zero on G and perceptual params and non-zero on D."""
  model = _gan()
  batch = _batch(2, 8, 8, 3, 3, 2)
  params = _params(model, batch)

  names = ("l1", "perceptual", "adversarial", "discriminator")
  # One backward pass per loss (a Jacobian of the 4 losses): the trainer
  # differentiates their weighted sum, whose gradient is the same mix.
  jac = jax.jit(
      jax.jacrev(
          lambda p: jnp.stack(
              [
                  model.apply({"params": p}, batch)["aux_losses"][n]
                  for n in names
              ]
          )
      )
  )
  rows = jac(params)  # leaves [4, ...]
  g = {n: jax.tree.map(lambda x, i=i: x[i], rows) for i, n in enumerate(names)}
  norm = lambda t: float(optax.tree.norm(t))
  for name in ("l1", "perceptual", "adversarial"):
    assert norm(g[name]["generator"]) > 0, name
    assert norm(g[name]["discriminator"]) == 0.0, name
    assert norm(g[name]["perceptual"]) == 0.0, name
  assert norm(g["discriminator"]["discriminator"]) > 0
  assert norm(g["discriminator"]["generator"]) == 0.0
  assert norm(g["discriminator"]["perceptual"]) == 0.0


def test_relativistic_losses_by_hand():
  c_real, c_fake = jnp.array([2.0, 0.0]), jnp.array([-1.0, 1.0])
  d, g = sr_gan.relativistic_losses(c_real, c_fake)
  sp = lambda z: np.log1p(np.exp(z))
  rr, rf = np.array([2.0, 0.0]) - 0.0, np.array([-1.0, 1.0]) - 1.0
  np.testing.assert_allclose(
      d, 0.5 * (sp(-rr).mean() + sp(rf).mean()), rtol=1e-6
  )
  np.testing.assert_allclose(
      g, 0.5 * (sp(rr).mean() + sp(-rf).mean()), rtol=1e-6
  )


def test_diffusion_loss_decreases():
  model = _diffusion(prediction="v")
  batch = _batch(4, 4, 4, 3, 3, 2)
  params = _params(model, batch)
  tx = optax.adam(3e-3)
  key = jax.random.key(1)  # one fixed (t, eps) draw: a deterministic loss

  def loss_fn(p):
    return model.apply({"params": p}, batch, rngs={"dropout": key})[
        "aux_losses"
    ]["diffusion"]

  @jax.jit
  def step(p, o):
    l, g = jax.value_and_grad(loss_fn)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, l

  opt = tx.init(params)
  losses = []
  for _ in range(15):
    params, opt, l = step(params, opt)
    losses.append(float(l))
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_ddim_one_step_is_the_x0_prediction(prediction):
  model = _diffusion(prediction=prediction, residual=True)
  batch = _batch(2, 4, 6, 3, 3, 2)
  params = _params(model, batch)
  key = jax.random.key(7)
  hw = (8, 12)
  one = model.apply(
      {"params": params}, batch["lr"], hw, rng=key, steps=1, method="predict"
  )

  def by_hand(m, lr):
    cond, base = m.condition(lr, hw)
    x1 = jax.random.normal(key, cond.shape[:3] + (3,))
    return base + m.x0_eps(x1, cond, jnp.ones((2,)))[0]

  ref = model.apply({"params": params}, batch["lr"], method=by_hand)
  np.testing.assert_allclose(one, ref, rtol=1e-5, atol=1e-5)
  # Explicit keys: same key, same sample; another key, another sample.
  other = model.apply(
      {"params": params},
      batch["lr"],
      hw,
      steps=1,
      rng=jax.random.key(8),
      method="predict",
  )
  assert not np.allclose(one, other)


def test_ddim_times_and_schedule():
  np.testing.assert_allclose(
      sr_diffusion.ddim_times(4), [1.0, 0.75, 0.5, 0.25, 0.0]
  )
  ab = sr_diffusion.alpha_bar(jnp.linspace(0, 1, 11))
  assert float(ab[0]) == 1.0 and float(ab[-1]) == pytest.approx(1e-4)
  assert np.all(np.diff(np.asarray(ab)) <= 0)


@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory):
  from data import toyworld  # pylint: disable=import-outside-toplevel

  d = str(tmp_path_factory.mktemp("sr_pairs"))
  cfg = toyworld.ToyworldConfig(hr_size=32, grid=4)
  toyworld.build(d, cfg, num_train=2, num_val=2, num_test=5, seed=3)
  return d


def test_sr_evaluator_matches_scikit_image(tiny_pairs):
  model = sr.EDSR(out_bands=3, scale=4, features=4, num_blocks=1)
  manifest = shards.load_manifest(tiny_pairs)
  mesh = partitioning.make_mesh((("data", -1), ("fsdp", 1), ("model", 1)))
  lr0 = jnp.zeros([1] + manifest.lr_shape, jnp.float32)
  params = _params(model, lr0, (32, 32), method="predict", seed=1)
  ev = evaluators.get_evaluator(
      "sr",
      model,
      data_dir=tiny_pairs,
      split="test",
      batch_size=8,
      task="sr",
      mesh=mesh,
      fields=("lr", "hr"),
  )
  res = ev.run(params)
  assert res["num_examples"] == 5

  st = manifest.band_stats
  norm = lambda x, k: (
      (x.astype(np.float32) - np.float32(st[k]["mean"]))
      / np.float32(st[k]["std"])
  )
  psnr, ssim, bpsnr, bssim = [], [], [], []
  for scene in shards.iter_scenes(tiny_pairs, "test"):
    hr = scene.hr.astype(np.float64) / 255.0  # [32, 32, 3]
    out = model.apply(
        {"params": params},
        norm(scene.lr, "lr")[None],
        (32, 32),
        method="predict",
    )[0]
    sr01 = (
        np.clip(
            np.asarray(out, np.float64) * st["hr"]["std"] + st["hr"]["mean"],
            0,
            255,
        )
        / 255.0
    )
    bic = np.clip(
        np.asarray(
            jax.image.resize(
                scene.lr.astype(np.float32) / 255.0, (32, 32, 3), "cubic"
            ),
            np.float64,
        ),
        0,
        1,
    )
    for c in range(3):
      kw = dict(
          data_range=1.0,
          gaussian_weights=True,
          sigma=1.5,
          use_sample_covariance=False,
      )
      psnr.append(
          peak_signal_noise_ratio(hr[..., c], sr01[..., c], data_range=1.0)
      )
      ssim.append(structural_similarity(hr[..., c], sr01[..., c], **kw))
      bpsnr.append(
          peak_signal_noise_ratio(hr[..., c], bic[..., c], data_range=1.0)
      )
      bssim.append(structural_similarity(hr[..., c], bic[..., c], **kw))
  assert res["psnr"] == pytest.approx(np.mean(psnr), abs=2e-3)
  assert res["ssim"] == pytest.approx(np.mean(ssim), abs=2e-4)
  assert res["bicubic_psnr"] == pytest.approx(np.mean(bpsnr), abs=2e-3)
  assert res["bicubic_ssim"] == pytest.approx(np.mean(bssim), abs=2e-4)
  assert res["psnr_R"] == pytest.approx(np.mean(psnr[0::3]), abs=2e-3)
  assert res["psnr_gain"] == pytest.approx(res["psnr"] - res["bicubic_psnr"])
  assert 0.0 <= res["randfeat_dist"] <= 4.0


def test_sr_data_range_rules():
  m = shards.Manifest(
      name="x",
      schema_version=1,
      class_names=[],
      lr_shape=[],
      hr_shape=[],
      lr_bands=[],
      hr_bands=[],
      lr_gsd=1,
      hr_gsd=1,
      grid=1,
      dtypes={"lr": "<u2", "hr": "|u1"},
      band_stats={},
      splits={},
  )
  assert evaluators.sr_data_range(m, "hr") == 255.0
  assert evaluators.sr_data_range(m, "lr") == 65535.0
  m.builder = {"data_range": {"lr": 10000}}
  assert evaluators.sr_data_range(m, "lr") == 10000.0
  m.dtypes["hr"] = "<f4"
  assert evaluators.sr_data_range(m, "hr") == 1.0


def test_gan_loads_our_perceptual_encoder(tmp_path):
  """`perceptual_init` replaces the random features with our encoder's convs
  (an .npz of flat "conv0/kernel" arrays here; an orbax checkpoint's
  "hr_encoder" takes the same path); a shape mismatch says what to fix."""
  batch = _batch(1, 4, 4, 3, 3, 2)
  params = jax.device_get(_params(_gan(), batch))
  rng = np.random.default_rng(0)
  enc = {
      f"{k}/{n}": rng.normal(size=np.shape(v)).astype(np.float32)
      for k, d in params["perceptual"].items()
      for n, v in d.items()
  }
  enc["proj/kernel"] = np.zeros((4, 4), np.float32)  # encoder head: ignored
  np.savez(tmp_path / "enc.npz", **enc)
  model = _gan().clone(perceptual_init=str(tmp_path / "enc.npz"))
  loaded = model.load_pretrained(params)
  np.testing.assert_array_equal(
      loaded["perceptual"]["conv1"]["kernel"], enc["conv1/kernel"]
  )
  np.testing.assert_array_equal(
      loaded["generator"]["head"]["kernel"],
      params["generator"]["head"]["kernel"],
  )
  enc["conv0/kernel"] = np.zeros((3, 3, 3, 5), np.float32)
  np.savez(tmp_path / "bad.npz", **enc)
  with pytest.raises(ValueError, match="another architecture"):
    _gan().clone(perceptual_init=str(tmp_path / "bad.npz")).load_pretrained(
        params
    )
