"""Sharding from the config: logical axes -> mesh, sharded steps equal the
1-device step on (data, fsdp, model) meshes, cross-mesh checkpoint restore,
activation rematerialisation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

from crossscale import checkpoint, optim, partitioning, shards, train
from experiments.configs import cross_scale

MESHES = {"8x1x1": (8, 1, 1), "4x2x1": (4, 2, 1), "2x2x2": (2, 2, 2)}


def _mesh(sizes, devices=None):
  cfg = tuple(zip(("data", "fsdp", "model"), sizes))
  return partitioning.make_mesh(cfg, devices)


def _setup(data_dir, **overrides):
  c = cross_scale.get_config("runlocal")
  c.data.path = data_dir
  c.batch_size = 8
  c.update_from_flattened_dict(overrides)
  manifest = shards.load_manifest(data_dir)
  model = train.make_model(c, manifest)
  tx = optim.make_optimizer(c.optim, c.total_steps)
  rng = np.random.default_rng(0)
  batch = {
      "lr": rng.normal(size=[8] + manifest.lr_shape).astype(np.float32),
      "hr": rng.normal(size=[8] + manifest.hr_shape).astype(np.float32),
      "labels": np.eye(manifest.num_classes, dtype=np.float32)[
          rng.integers(0, manifest.num_classes, 8)
      ],
  }
  return c, manifest, model, tx, batch


def _train(c, manifest, model, tx, batch, mesh, steps=2):
  example = train.example_batch(manifest, c.data.fields, c.batch_size)
  state, state_sh = train.init_state(c, model, tx, example, mesh)
  step = train.jit_train_step(
      c, model, tx, mesh, state_sh, train.task_of(c, manifest)
  )
  gbatch = partitioning.put_batch(batch, mesh)
  for i in range(steps):
    state, m = step(state, gbatch, jax.random.key_data(jax.random.key(i)))
  return state, state_sh, float(m["loss"])


def _sharded_axes(state):
  """Mesh axes used by any parameter, and whether shards are smaller."""
  axes, smaller = set(), False
  for x in jax.tree.leaves(state.params):
    for entry in x.sharding.spec:
      axes.update((entry,) if isinstance(entry, str) else (entry or ()))
    smaller |= x.addressable_shards[0].data.shape != x.shape
  return axes, smaller


@pytest.fixture(scope="module")
def single_device_run(toyworld_small):
  setup = _setup(toyworld_small)
  state, _, loss = _train(*setup, _mesh((1, 1, 1), jax.devices()[:1]))
  return setup, jax.device_get(state.params), loss


@pytest.mark.parametrize("name", list(MESHES))
def test_sharded_step_equals_single_device(name, single_device_run):
  assert jax.device_count() == 8, "run with 8 fake CPU devices"
  setup, params1, loss1 = single_device_run
  state, _, loss = _train(*setup, _mesh(MESHES[name]))
  assert loss == pytest.approx(loss1, rel=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
      params1,
      jax.device_get(state.params),
  )
  axes, smaller = _sharded_axes(state)
  expected = {a for a, n in zip(("fsdp", "model"), MESHES[name][1:]) if n > 1}
  assert axes == expected and smaller == bool(expected)
  # The optimizer moments are sharded like their parameters.
  adam = [
      s
      for s in jax.tree.leaves(
          state.opt_state,
          is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState),
      )
      if isinstance(s, optax.ScaleByAdamState)
  ]
  assert len(adam) == 1
  mu = adam[0].mu
  if mu is not None:
    jax.tree.map(
        lambda p, m: (p.sharding == m.sharding)
        or pytest.fail(f"moment sharding {m.sharding} != param {p.sharding}"),
        state.params,
        mu,
    )


def test_encoders_sampler_predictor_parameters_are_annotated(toyworld_small):
  c, manifest, model, tx, _ = _setup(toyworld_small)
  mesh = _mesh((2, 2, 2))
  example = train.example_batch(manifest, c.data.fields, c.batch_size)
  _, state_sh = train.init_state(c, model, tx, example, mesh)
  specs = {
      jax.tree_util.keystr(k): s.spec
      for k, s in jax.tree_util.tree_leaves_with_path(state_sh.params)
  }
  for group in ("lr_encoder", "hr_encoder", "sampler", "predictor0"):
    in_group = [s for k, s in specs.items() if group in k]
    assert in_group and any(s != P() for s in in_group), group
  kernel = [
      s
      for k, s in specs.items()
      if "predictor0" in k
      and "self_attn" in k
      and "query" in k
      and "kernel" in k
  ][0]
  assert kernel == P("fsdp", "model", None)  # [embed, heads, kv]


def test_logical_to_spec_rules():
  mesh = _mesh((2, 2, 2))
  assert partitioning.logical_to_spec(("embed", "mlp"), (16, 32), mesh) == P(
      "fsdp", "model"
  )
  # Not divisible by the mesh axis -> replicated; an axis is used once.
  assert partitioning.logical_to_spec(("embed", "mlp"), (3, 1), mesh) == P(
      None, None
  )
  assert partitioning.logical_to_spec(("conv_in", "embed"), (4, 4), mesh) == P(
      "fsdp", None
  )
  assert partitioning.logical_to_spec(("batch", None), (8, 3), mesh) == P(
      ("data", "fsdp"), None
  )
  with pytest.raises(ValueError, match="no rule in config.sharding.rules"):
    partitioning.logical_to_spec(("vocab",), (8,), mesh)


def test_checkpoint_saved_on_one_mesh_restores_on_another(
    toyworld_small, tmp_path
):
  c, manifest, model, tx, _ = _setup(toyworld_small)
  example = train.example_batch(manifest, c.data.fields, c.batch_size)
  # A state on (8, 1, 1), made distinct from a fresh init by a shift.
  state, _ = train.init_state(c, model, tx, example, _mesh((8, 1, 1)))
  state = state.replace(
      step=state.step + 1, params=jax.tree.map(lambda p: p + 0.5, state.params)
  )
  ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1, keep=1)
  ckpt.save(1, state, {"position": 5}, force=True)
  ckpt.wait()
  ckpt.close()

  mesh = _mesh((2, 2, 2))
  fresh, state_sh = train.init_state(c, model, tx, example, mesh)
  ckpt = checkpoint.Checkpointer(str(tmp_path), save_every=1, keep=1)
  restored, data_state = ckpt.restore(
      checkpoint.abstract_with_shardings(fresh, state_sh)
  )
  ckpt.close()
  assert data_state == {"position": 5} and int(restored.step) == 1
  jax.tree.map(
      lambda a, b: np.testing.assert_array_equal(a, b),
      jax.device_get(state.params),
      jax.device_get(restored.params),
  )
  jax.tree.map(
      lambda x, sh: x.sharding == sh
      or pytest.fail(f"restored {x.sharding} != target {sh}"),
      restored,
      state_sh,
  )
  assert _sharded_axes(restored) == ({"fsdp", "model"}, True)


def test_one_process_saves_small_replicated_arrays_whole(tmp_path, monkeypatch):
  """Replicated over 8 devices, a small array is written by one replica,
  not sliced per replica (one compiled slice program each): orbax's
  default slices it, the Checkpointer's threshold does not."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  slices = []
  real = jax.lax.slice_in_dim
  monkeypatch.setattr(
      jax.lax, "slice_in_dim", lambda *a, **k: slices.append(1) or real(*a, **k)
  )
  mesh = _mesh((8, 1, 1))
  x = jax.device_put(np.arange(64, dtype=np.float32), NamedSharding(mesh, P()))

  def save(d):
    ckpt = checkpoint.Checkpointer(str(tmp_path / d), save_every=1, keep=1)
    ckpt.save(1, {"x": x}, {}, force=True)
    ckpt.wait()
    ckpt.close()
    return len(slices)

  assert save("ours") == 0
  ours = checkpoint._save_small_arrays_whole
  monkeypatch.setattr(checkpoint, "_save_small_arrays_whole", lambda: None)
  ocp.type_handlers.register_type_handler(
      jax.Array, ocp.type_handlers.ArrayHandler(), override=True
  )
  try:
    assert save("orbax_default") > 0
  finally:
    ours()  # the registry is process-wide: put the threshold back


def test_remat_gives_the_same_loss_and_gradients(toyworld_small):
  c, manifest, model, _, batch = _setup(toyworld_small)
  batch = {k: v[:2] for k, v in batch.items()}
  params = jax.jit(lambda b: model.init({"params": jax.random.key(0)}, b))(
      batch
  )["params"]
  rngs = {"dropout": jax.random.key(1), "selection": jax.random.key(2)}

  def loss_and_grad(m):
    f = lambda p: m.apply({"params": p}, batch, train=True, rngs=rngs)[
        "aux_losses"
    ]["latent"]
    return jax.jit(jax.value_and_grad(f)), str(
        jax.make_jaxpr(jax.grad(f))(params)
    )

  c.model.remat = True
  remat_model = train.make_model(c, manifest)
  (f0, jaxpr0), (f1, jaxpr1) = loss_and_grad(model), loss_and_grad(remat_model)
  assert "checkpoint" in jaxpr1 or "remat" in jaxpr1
  assert "checkpoint" not in jaxpr0 and "remat" not in jaxpr0
  (l0, g0), (l1, g1) = f0(params), f1(params)
  assert float(l1) == pytest.approx(float(l0), rel=1e-6)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      g0,
      g1,
  )


@pytest.mark.parametrize("name", ["edsr", "swinir", "implicit", "text"])
def test_sr_and_text_parameters_all_carry_logical_axes(name):
  """Every parameter is created with logical axis names, so the sharding
  rules (not a silent replication) decide where it lives."""
  from crossscale.models import sr  # pylint: disable=g-import-not-at-top
  from crossscale.models import text_encoder as te

  lr = jnp.zeros((1, 8, 8, 3))
  ids = jnp.zeros((1, 4), jnp.int32)
  module, args = {
      "edsr": (sr.EDSR(out_bands=3, scale=2, features=8, num_blocks=1), (lr,)),
      "swinir": (
          sr.SwinIRLike(
              out_bands=3,
              scale=2,
              embed_dim=8,
              depths=(2,),
              num_heads=2,
              window_size=4,
              upsample_features=8,
          ),
          (lr,),
      ),
      "implicit": (
          sr.ImplicitSR(
              out_bands=3, scale=2, features=8, num_blocks=1, hidden=(16,)
          ),
          (lr,),
      ),
      "text": (
          te.TextEncoder(
              te.BertConfig(
                  vocab_size=20,
                  hidden_size=8,
                  num_hidden_layers=1,
                  num_attention_heads=2,
                  intermediate_size=16,
                  max_position_embeddings=8,
              )
          ),
          (ids, ids),
      ),
  }[name]
  method = None if name == "text" else module.predict
  boxed = jax.eval_shape(
      lambda: module.init(jax.random.key(0), *args, method=method)
  )["params"]
  leaves = jax.tree_util.tree_leaves_with_path(
      boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned)
  )
  bare = [
      jax.tree_util.keystr(k)
      for k, v in leaves
      if not isinstance(v, nn.Partitioned)
  ]
  assert leaves and not bare, bare
  for _, v in leaves:
    assert len(v.names) == len(v.value.shape)
