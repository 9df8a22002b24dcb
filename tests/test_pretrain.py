"""Cross-scale pretraining: its pieces, and its checkpoint initialising the
cross-scale model, the SR GAN's perceptual features and refseg's backbone."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crossscale import checkpoint, optim, partitioning, shards, train
from crossscale.models import cross_scale_pretrain, refseg, sr_gan
from experiments.configs import cross_scale
from experiments.configs import pretrain as pretrain_config


def test_pool_to_grid_means_tokens_inside_each_tile():
  tok = jnp.arange(16.0).reshape(1, 4, 4, 1)
  got = cross_scale_pretrain.pool_to_grid(tok, 2)[0, :, 0]
  # tile (0,0) holds tokens 0,1,4,5 ...
  np.testing.assert_allclose(got, [2.5, 4.5, 10.5, 12.5])
  assert cross_scale_pretrain.pool_to_grid(jnp.ones((2, 3, 3, 5)), 2).shape == (
      2,
      4,
      5,
  )


def test_patchify_and_patch_mask():
  img = jnp.arange(2 * 4 * 4 * 1.0).reshape(2, 4, 4, 1)
  p = cross_scale_pretrain.patchify(img, 2)
  assert p.shape == (2, 4, 4)
  np.testing.assert_array_equal(p[0, 1], [2, 3, 6, 7])  # top-right patch
  m = cross_scale_pretrain.patch_mask(jax.random.key(0), 3, 4, 0.5)
  assert m.shape == (3, 16) and (m.sum(1) == 8).all()


def test_detail_residual_removes_lr_block_means():
  from crossscale import tile_grid

  x = jnp.arange(16.0).reshape(1, 1, 4, 4, 1)
  r = tile_grid.detail_residual(x, 2)
  # top-left 2x2 block [0, 1, 4, 5], mean 2.5
  np.testing.assert_allclose(r[0, 0, :2, :2, 0], [[-2.5, -1.5], [1.5, 2.5]])
  np.testing.assert_allclose(r.reshape(2, 2, 2, 2).sum((1, 3)), 0.0, atol=1e-6)
  np.testing.assert_allclose(
      tile_grid.detail_residual(jnp.ones((1, 2, 4, 4, 3)), 4), 0.0
  )


def test_pair_sigmoid_loss_by_hand():
  a = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  b = jnp.array([[1.0, 0.0], [0.6, 0.8]])
  t, bias = 2.0, -1.0
  logits = np.exp(t) * np.asarray(a @ b.T) + bias
  z = np.array([[1, -1], [-1, 1]])
  want = -np.log(1 / (1 + np.exp(-z * logits))).sum() / 2
  got = cross_scale_pretrain.pair_sigmoid_loss(a, b, jnp.log(jnp.exp(t)), bias)
  assert float(got) == pytest.approx(want, rel=1e-5)


def test_readable_class_names():
  assert cross_scale_pretrain.readable("fResident") == "resident"
  assert cross_scale_pretrain.readable("dRiverLake") == "river lake"
  assert cross_scale_pretrain.readable("SeaLake") == "sea lake"
  assert cross_scale_pretrain.readable("Annual_Crop") == "annual crop"
  assert (
      cross_scale_pretrain.readable("Coniferous forest") == "coniferous forest"
  )


def _init(config, data_dir):
  manifest = shards.load_manifest(data_dir)
  model = train.make_model(config, manifest)
  tx = optim.make_optimizer(config.optim, config.total_steps)
  batch = train.example_batch(manifest, config.data.fields, 8)
  mesh = partitioning.make_mesh(config.mesh)
  return model, train.init_state(config, model, tx, batch, mesh)[0]


def _random_params(model, batch, seed=0):
  """Parameters of `model` as seeded random arrays, from shapes only."""
  shapes = jax.eval_shape(
      lambda: nn.meta.unbox(
          model.init(
              {"params": jax.random.key(0), "selection": jax.random.key(0)},
              batch,
              train=False,
          )["params"]
      )
  )
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda x: rng.normal(size=x.shape).astype(x.dtype), shapes
  )


@pytest.fixture(scope="module")
def pretrain_run(toyworld_small, tmp_path_factory):
  """Pretraining params (with the refseg backbone), saved the way runs save
  them (an orbax TrainState-like tree under workdir/checkpoints/<step>)."""
  c = pretrain_config.get_config("runlocal,backbone")
  c.model.hr_encoder.update(stride=1)
  manifest = shards.load_manifest(toyworld_small)
  model = train.make_model(c, manifest)
  params = _random_params(
      model, train.example_batch(manifest, c.data.fields, 2)
  )
  workdir = str(tmp_path_factory.mktemp("pre"))
  ckpt = checkpoint.Checkpointer(workdir + "/checkpoints", 1)
  ckpt.save(7, {"step": np.int32(7), "params": params}, {})
  ckpt.close()
  return workdir, params


def test_pretrained_encoders_initialise_cross_scale(
    pretrain_run, toyworld_small
):
  workdir, pre = pretrain_run
  c = cross_scale.get_config("runlocal")
  c.model.hr_encoder.update(stride=1)
  c.data.path = toyworld_small
  c.model_init = workdir
  _, state = _init(c, toyworld_small)
  params = jax.device_get(state.params)
  for key in ("lr_encoder", "hr_encoder", "sampler"):
    jax.tree.map(np.testing.assert_array_equal, params[key], pre[key])
  # Another width: the error names the setting and the mismatch.
  xs = train.make_model(c, shards.load_manifest(toyworld_small))
  c.model.lr_encoder.update(width=24)
  other = train.make_model(c, shards.load_manifest(toyworld_small))
  batch = train.example_batch(
      shards.load_manifest(toyworld_small), c.data.fields, 2
  )
  with pytest.raises(ValueError, match=r"config.model_init.*shape"):
    checkpoint.init_from(
        _random_params(other, batch),
        workdir,
        c.model_init_keys,
        "config.model_init",
    )
  with pytest.raises(FileNotFoundError, match="config.model_init"):
    checkpoint.init_from(
        _random_params(xs, batch),
        workdir + "/nope",
        c.model_init_keys,
        "config.model_init",
    )
  with pytest.raises(ValueError, match="no 'predictor0'"):
    checkpoint.init_from(
        _random_params(xs, batch), workdir, ("predictor0",), "config.model_init"
    )


def test_pretrained_run_initialises_refseg_backbone_and_gan_features(
    pretrain_run,
):
  workdir, pre = pretrain_run
  rc = refseg.RefSegModel(
      **{
          k: v
          for k, v in pretrain_config.refseg.get_config("runlocal")
          .model.to_dict()
          .items()
          if k != "name"
      }
  )
  batch = {
      "hr": np.zeros((1, 32, 32, 3), np.float32),
      "text_ids": np.ones((1, 8), np.int32),
      "text_mask": np.ones((1, 8), np.int32),
  }
  shapes = jax.eval_shape(
      lambda: nn.meta.unbox(rc.init(jax.random.key(0), batch)["params"])
  )
  params = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes)
  loaded = rc.clone(backbone_init=workdir, text_encoder="tiny").load_pretrained(
      params
  )
  jax.tree.map(
      np.testing.assert_array_equal, loaded["backbone"], pre["backbone"]
  )

  width = pre["hr_encoder"]["conv0"]["kernel"].shape[-1]
  depth = len([k for k in pre["hr_encoder"] if k.startswith("conv")])
  gan = sr_gan.ESRGAN(
      out_bands=3,
      scale=2,
      features=8,
      growth=4,
      num_blocks=1,
      disc_widths=(4, 8),
      perceptual_width=width,
      perceptual_depth=depth,
      perceptual_init=workdir,
  )
  gb = {
      "lr": np.zeros((1, 4, 4, 3), np.float32),
      "hr": np.zeros((1, 8, 8, 3), np.float32),
  }
  gshapes = jax.eval_shape(
      lambda: nn.meta.unbox(gan.init(jax.random.key(0), gb)["params"])
  )
  gparams = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), gshapes)
  got = gan.load_pretrained(gparams)["perceptual"]
  for conv in [f"conv{i}" for i in range(depth)]:
    np.testing.assert_array_equal(
        got[conv]["kernel"], pre["hr_encoder"][conv]["kernel"]
    )


def test_text_prompts_are_frozen_minilm_embeddings(toyworld_small):
  c = pretrain_config.get_config("runlocal,text")
  manifest = shards.load_manifest(toyworld_small)
  model = train.make_model(c, manifest)
  params = model.load_pretrained(
      _random_params(model, train.example_batch(manifest, c.data.fields, 2))
  )
  want = cross_scale_pretrain.prompt_embeddings(
      [
          cross_scale_pretrain.PROMPT.format(cross_scale_pretrain.readable(n))
          for n in manifest.class_names
      ]
  )
  np.testing.assert_allclose(params["class_text"], want, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(want, axis=1), 1.0, atol=1e-5)
  labels = optim.param_labels(params, c.optim.frozen)
  assert labels["class_text"] == "frozen"
  assert labels["text_proj"]["kernel"] == "train"


def test_learned_feature_distance_from_the_pretraining_run(
    pretrain_run, toyworld_small
):
  """The SR evaluator's "hrenc_dist": feature distance in the pretrained HR
  encoder's convs (config.evals.<name>.feature_init)."""
  from crossscale import evaluators, fidelity
  from crossscale.models import sr

  workdir, pre = pretrain_run
  apply, params = sr_gan.encoder_feature_net(workdir, 3)
  assert set(params) == {k for k in pre["hr_encoder"] if k.startswith("conv")}
  for k, v in params.items():
    np.testing.assert_array_equal(v["kernel"], pre["hr_encoder"][k]["kernel"])
  x = jnp.asarray(
      np.random.default_rng(0).uniform(size=(2, 16, 16, 3)), jnp.float32
  )
  assert float(fidelity.feature_distance(apply, params, x, x).max()) == 0
  assert (
      float(fidelity.feature_distance(apply, params, x, x[:, ::-1]).min()) > 0
  )
  ev = evaluators.SREvaluator(
      sr.SR_MODELS["sr_bicubic"](scale=4),
      data_dir=toyworld_small,
      split="test",
      batch_size=8,
      task="",
      limit=8,
      feature_init=workdir,
      mesh=partitioning.make_mesh((("data", -1),)),
  )
  res = ev.run({})
  assert res["num_examples"] == 8
  assert np.isfinite(res["hrenc_dist"]) and res["hrenc_dist"] > 0
  assert np.isfinite(res["bicubic_hrenc_dist"])
  assert res["hrenc_dist"] != pytest.approx(res["randfeat_dist"])
  with pytest.raises(FileNotFoundError, match="feature_init"):
    sr_gan.encoder_feature_net(workdir + "/nope", 3)


def _standardise_tiles(x):
  """Per tile and channel zero mean, unit std: `[B, T, t, t, C]`."""
  m = x.mean((2, 3), keepdims=True)
  return (x - m) / x.std((2, 3), keepdims=True)


def test_tile_views_are_affine_per_channel_and_shifted():
  x = jax.random.normal(jax.random.key(0), (2, 5, 8, 8, 3))
  v = cross_scale_pretrain.tile_views(jax.random.key(1), x, 0)
  assert v.shape == x.shape
  zx, zv = _standardise_tiles(x), _standardise_tiles(v)
  # Without shift each tile/channel is +-(an affine map) of the original ...
  sign = jnp.sign((zx * zv).mean((2, 3), keepdims=True))
  np.testing.assert_allclose(zv, sign * zx, atol=1e-4)
  # ... one sign per tile (brightness inversion), both signs occur.
  assert (jnp.abs(sign.std(-1)) < 1e-6).all()
  assert 0 < float((sign[..., 0] < 0).mean()) < 1
  # With a shift of at most 1 px every tile is a rolled affine view.
  v = cross_scale_pretrain.tile_views(jax.random.key(2), x, 1)
  zv = _standardise_tiles(v)
  rolled = [
      jnp.roll(zx, (dy, dx), axis=(2, 3))
      for dy in (-1, 0, 1)
      for dx in (-1, 0, 1)
  ]
  err = jnp.stack(
      [
          jnp.minimum(
              jnp.abs(zv - r).max((2, 3, 4)), jnp.abs(zv + r).max((2, 3, 4))
          )
          for r in rolled
      ]
  )  # [9, B, T]
  assert (err.min(0) < 1e-4).all()
  assert (err[4] > 1e-2).any()  # some tile did move


def test_detail_weighted_tiles_pick_the_tiles_with_hr_detail():
  hr = jnp.zeros((3, 16, 16, 1))
  rng = np.random.default_rng(0)
  hr = hr.at[:, 4:8, 8:12].set(rng.normal(size=(3, 4, 4, 1)))  # tile 6
  hr = hr.at[:, 12:16, 0:4].set(rng.normal(size=(3, 4, 4, 1)))  # tile 12
  idx = cross_scale_pretrain.detail_weighted_tiles(
      jax.random.key(0), hr, 4, 2, 2
  )
  assert idx.shape == (3, 2)
  for row in np.asarray(idx):
    assert sorted(row) == [6, 12]
  idx = cross_scale_pretrain.detail_weighted_tiles(
      jax.random.key(0), hr, 4, 2, 5
  )
  assert all(len(set(r)) == 5 for r in np.asarray(idx).tolist())


def test_tile_contrast_loss_trains_the_hr_encoder(toyworld_small):
  c = pretrain_config.get_config("runlocal")
  c.model.contrast_tiles = 3
  manifest = shards.load_manifest(toyworld_small)
  model = train.make_model(c, manifest)
  batch = jax.tree.map(
      jnp.asarray, train.example_batch(manifest, c.data.fields, 4)
  )
  rngs = {"params": jax.random.key(0), "selection": jax.random.key(1)}
  params = jax.jit(
      lambda b: nn.meta.unbox(model.init(rngs, b, train=False)["params"])
  )(batch)
  assert "contrast_proj" in params

  def loss(p):
    out = model.apply(
        {"params": p}, batch, train=True, rngs={"selection": jax.random.key(2)}
    )
    return out["aux_losses"]["hr_contrast"], out

  (l, out), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  assert np.isfinite(float(l)) and float(l) > 0
  assert 0.0 <= float(out["metrics"]["contrast_top1"][0]) <= 1.0
  hr_grad = sum(
      float(jnp.abs(v).sum()) for v in jax.tree.leaves(g["hr_encoder"])
  )
  lr_grad = sum(
      float(jnp.abs(v).sum()) for v in jax.tree.leaves(g["lr_encoder"])
  )
  assert hr_grad > 0 and lr_grad == 0
  # Off by default: no parameters, no loss.
  c.model.contrast_tiles = 0
  model = train.make_model(c, manifest)
  out = jax.jit(
      lambda b: model.apply(
          model.init(rngs, b, train=False),
          b,
          train=True,
          rngs={"selection": jax.random.key(2)},
      )
  )(batch)
  assert "hr_contrast" not in out["aux_losses"]
