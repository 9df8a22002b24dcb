"""experiments.cross_scale.tile_value: the loss drop from buying one more
tile, its first-order estimate, and how scorers agree with it."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crossscale import input_pipeline, metrics, shards, tile_grid
from experiments.cross_scale import tile_value

pytestmark = pytest.mark.xdist_group("tiny_xs_run")  # conftest.tiny_xs_run


@pytest.fixture
def run(tiny_xs_run):
  return tiny_xs_run


def test_values_by_direct_computation(run):
  model, params = run.model, run.params
  batch = next(
      iter(
          input_pipeline.eval_dataset(
              run.config.data.path,
              "test",
              batch_size=8,
              fields=("lr", "hr", "labels"),
          )
      )
  )
  batch = {f: jnp.asarray(batch[f]) for f in ("lr", "hr", "labels")}
  out = jax.tree.map(
      np.asarray,
      jax.jit(  # one compile, not op-by-op dispatch of the vmap
          lambda p, b: tile_value.scene_tile_values(model, p, b, "single_label")
      )(params, batch),
  )
  k, n = model.k(), model.n_tiles
  assert out["bought"].sum(1).tolist() == [k] * 8
  # Buying a tile already bought changes nothing.
  np.testing.assert_allclose(out["value"][out["bought"]], 0, atol=1e-6)

  # An unbought tile t, bought through the model's own k+1 tile path.
  def apply(method, *a):
    return model.apply(
        {"params": params},
        *a,
        method=method,
        rngs={"selection": jax.random.key(0)},
    )

  plan = apply("plan", {"lr": batch["lr"]})
  t = np.argmax(~out["bought"], axis=1)  # [B]
  idx = jnp.concatenate([plan["tile_indices"], jnp.asarray(t)[:, None]], 1)
  px = jnp.take_along_axis(
      tile_grid.to_tiles(batch["hr"], model.grid), idx[..., None, None, None], 1
  )
  lat = apply("encode_tiles", px)
  context, _ = apply("lr_context", batch["lr"])

  @jax.jit
  def loss_at(w):  # [B]
    weight = jnp.concatenate([jnp.ones((8, k)), jnp.full((8, 1), w)], 1)
    logits, _ = apply(
        "head_logits", apply("complete", context, idx, weight, lat), context
    )
    return metrics.example_losses(logits, batch["labels"], "single_label")

  rows = np.arange(8)
  np.testing.assert_allclose(
      out["value"][rows, t], loss_at(0.0) - loss_at(1.0), atol=1e-5
  )
  eps = 1e-3
  fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
  np.testing.assert_allclose(
      out["first_order"][rows, t], -fd, rtol=2e-2, atol=1e-4
  )
  np.testing.assert_allclose(  # jitted vs eager: float32 rounding
      out["own_policy"], plan["tile_logits"], rtol=1e-5, atol=1e-5
  )
  assert out["hr_detail"].shape == out["lr_detail"].shape == (8, n)


def test_agreement_by_hand():
  rho, top = tile_value.agreement(
      np.array([3.0, 2.0, 1.0]), np.array([0.1, 0.3, -0.2]), 2
  )
  assert rho == pytest.approx(0.5)  # ranks (3,2,1) vs (2,3,1)
  assert top == pytest.approx(0.4)
  rho, top = tile_value.agreement(
      np.array([1.0, 1.0]), np.array([-0.1, -0.2]), 1
  )
  assert rho is None and top == pytest.approx(-0.1)  # constant: stable order
  res = {"s": {"top_k": 0.3}, "best_k": 0.5, "random_k": 0.1}
  assert tile_value.capture(res, "s") == pytest.approx(0.5)


def test_run_values_over_the_test_split(run, tmp_path):
  res = tile_value.run_values(run)
  assert res["scenes"] == 64 and res["k"] == run.model.k()
  for s in tile_value.SCORERS:
    assert -1.0 <= res[s]["spearman"] <= 1.0
    assert res["random_k"] - 1e-6 <= res["best_k"]
    assert res[s]["top_k"] <= res["best_k"] + 1e-6
  both = tile_value.mean_over_seeds([res, res])
  assert both["lr_detail"] == pytest.approx(res["lr_detail"])
  tile_value.main(["--runs", f"ours={run.workdir}", "--out", str(tmp_path)])
  # <dataset>_steps<N>_s<first>-<last>.json (--runs is seed 0)
  dataset = shards.load_manifest(run.config.data.path).name
  name = f"{dataset}_steps{run.config.total_steps}_s0-0.json"
  assert (tmp_path / name).exists(), os.listdir(tmp_path)
