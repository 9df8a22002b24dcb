"""crossscale.optim: per-path learning-rate scales and frozen parameters."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from crossscale import optim


def _params():
  return {
      "encoder": {"dense": {"kernel": jnp.ones((3, 2))}},
      "head": {"kernel": jnp.ones((2, 4)), "bias": jnp.zeros((4,))},
  }


def _cfg(**kw):
  base = dict(
      name="sgd", lr=0.5, momentum=0.0, warmup_steps=0, schedule="constant"
  )
  return ml_collections.ConfigDict({**base, **kw})


def test_lr_scale_multiplies_matching_updates_only():
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  plain = optim.make_optimizer(_cfg(), 10)
  scaled = optim.make_optimizer(_cfg(lr_scale=(("^encoder/", 0.1),)), 10)
  u_plain, _ = plain.update(grads, plain.init(params), params)
  u_scaled, _ = scaled.update(grads, scaled.init(params), params)
  np.testing.assert_allclose(
      u_scaled["encoder"]["dense"]["kernel"],
      0.1 * u_plain["encoder"]["dense"]["kernel"],
      rtol=1e-6,
  )
  for k in ("kernel", "bias"):
    np.testing.assert_array_equal(u_scaled["head"][k], u_plain["head"][k])
  # SGD at lr 0.5 (after the one warmup step the constant schedule holds it).
  np.testing.assert_allclose(u_plain["head"]["kernel"], -0.5, rtol=1e-6)


def test_first_matching_scale_wins_and_adamw_decay_is_scaled():
  params = _params()
  factors = optim.path_factors(params, (("kernel$", 0.5), ("^head/", 0.0)))
  assert factors["encoder"]["dense"]["kernel"] == 0.5
  assert factors["head"]["kernel"] == 0.5  # first match: "kernel$"
  assert factors["head"]["bias"] == 0.0
  cfg = _cfg(
      name="adamw", lr=1e-2, weight_decay=0.1, lr_scale=(("^encoder/", 0.25),)
  )
  tx = optim.make_optimizer(cfg, 10)
  zero = jax.tree.map(jnp.zeros_like, params)
  upd, _ = tx.update(zero, tx.init(params), params)
  # Zero gradients: the update is the decoupled decay -lr * wd * p, scaled.
  np.testing.assert_allclose(upd["head"]["kernel"], -1e-2 * 0.1, rtol=1e-5)
  np.testing.assert_allclose(
      upd["encoder"]["dense"]["kernel"], -0.25 * 1e-2 * 0.1, rtol=1e-5
  )


def test_lr_scale_composes_with_frozen_and_clipping():
  params = _params()
  cfg = _cfg(
      lr_scale=(("^encoder/", 0.1),), frozen=("^head/bias",), grad_clip=1e9
  )
  tx = optim.make_optimizer(cfg, 10)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  upd, _ = tx.update(grads, state, params)
  assert float(jnp.abs(upd["head"]["bias"]).max()) == 0.0
  np.testing.assert_allclose(
      upd["encoder"]["dense"]["kernel"], -0.05, rtol=1e-6
  )
  new = optax.apply_updates(params, upd)
  np.testing.assert_allclose(new["head"]["kernel"], 0.5, rtol=1e-6)


def test_bad_lr_scale_entry_is_a_clear_error():
  with pytest.raises(ValueError, match="lr_scale"):
    optim.path_factors(_params(), (("^encoder/",),))


def test_model_init_lr_scale_targets_the_initialised_subtrees():
  from crossscale import train  # pylint: disable=g-import-not-at-top

  c = ml_collections.ConfigDict(
      dict(
          optim=_cfg(lr_scale=(("^head/", 2.0),)),
          total_steps=10,
          model_init="",
          model_init_keys=("encoder",),
          model_init_lr_scale=0.1,
      )
  )
  assert train.optim_config(c) is c.optim  # no model_init: unchanged
  c.model_init = "/some/run"
  assert tuple(map(tuple, train.optim_config(c).lr_scale)) == (
      ("^encoder/", 0.1),
      ("^head/", 2.0),
  )
  params = _params()
  tx = train.make_tx(c)
  upd, _ = tx.update(
      jax.tree.map(jnp.ones_like, params), tx.init(params), params
  )
  np.testing.assert_allclose(
      upd["encoder"]["dense"]["kernel"], -0.05, rtol=1e-6
  )
  np.testing.assert_allclose(upd["head"]["kernel"], -1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "name,arg",
    [
        ("lr_vit", "runlocl"),
        ("cross_scale", "budget=1"),
        ("refseg", "runlocal,mdoe=full"),
        ("sr", "family=edsr"),
        ("downstream", "backbone=unet,tsk=segmentation"),
        ("pretrain", "txt"),
    ],
)
def test_config_args_are_checked(name, arg):
  import importlib  # pylint: disable=g-import-not-at-top

  mod = importlib.import_module(f"experiments.configs.{name}")
  with pytest.raises(ValueError, match=f"unknown config arg .* for {name}.py"):
    mod.get_config(arg)


def test_frozen_for_holds_matching_params_for_a_fraction_of_steps():
  params = _params()
  # 10 steps, encoder held for the first 3 (round(0.3 * 10)); AdamW decay
  # would move a held parameter too, so use it to check the hold is total.
  cfg = _cfg(name="adamw", lr=1e-2, weight_decay=0.1)
  cfg.frozen_for = (("^encoder/", 0.3),)
  tx = optim.make_optimizer(cfg, 10)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  moved = []
  for _ in range(5):
    upd, state = jax.jit(tx.update)(grads, state, params)
    moved.append(float(jnp.abs(upd["encoder"]["dense"]["kernel"]).max()) > 0)
    assert float(jnp.abs(upd["head"]["kernel"]).max()) > 0  # never held
  assert moved == [False, False, False, True, True]
  with pytest.raises(ValueError, match="frozen_for"):
    optim.make_optimizer(_cfg(frozen_for=(("^encoder/", 2.0),)), 10)
