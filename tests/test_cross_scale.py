"""The cross-scale model: cost grows with k, gradients reach the sampler,
baselines run through the same module, the metrics it reports, and on a
tiny world it learns, its sampler beating random tiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crossscale import metrics, tile_grid
from crossscale.models import cross_scale
from crossscale.models import sampler as sampler_lib
from tests import helpers

B, G, HR, LR, C, K = 4, 4, 32, 8, 3, 5
SMALL = dict(
    lr_encoder=dict(width=16, depth=1, num_heads=2, mlp_dim=32),
    hr_encoder=dict(width=16, depth=1, num_heads=2, mlp_dim=32, target_side=4),
    sampler=dict(width=8, depth=1, num_heads=2),
    predictor=dict(width=16, depth=1, num_heads=2, mlp_dim=32),
    embed_dim=8,
)


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  return {
      "lr": jnp.asarray(rng.normal(size=(B, LR, LR, C)), jnp.float32),
      "hr": jnp.asarray(rng.normal(size=(B, HR, HR, C)), jnp.float32),
      "labels": jnp.asarray(np.eye(K)[rng.integers(0, K, B)], jnp.float32),
  }


def _model(**kw):
  cfg = {**SMALL, **kw}
  return cross_scale.CrossScaleModel(num_classes=K, grid=G, **cfg)


def _init(model, batch):
  return model.init(
      {"params": jax.random.key(0), "selection": jax.random.key(1)}, batch
  )["params"]


def _rngs(i=0):
  return {"dropout": jax.random.key(i), "selection": jax.random.key(i + 1)}


def test_gather_tiles_matches_slicing():
  x = jnp.arange(2 * 8 * 8 * 1, dtype=jnp.float32).reshape(2, 8, 8, 1)
  idx = jnp.array([[3, 0], [1, 2]])
  got = tile_grid.gather_tiles(x, idx, 2)
  for b in range(2):
    for j in range(2):
      n = int(idx[b, j])
      r, c = divmod(n, 2)
      np.testing.assert_array_equal(
          got[b, j], x[b, r * 4 : r * 4 + 4, c * 4 : c * 4 + 4]
      )


def test_hr_encoder_sees_only_gathered_tiles():
  """The step's HR-encoder convolutions run on B*k tiles (observed + the
  same number of latent targets), never on all B*N tiles."""
  batch = _batch()
  model = _model(budget=2)
  params = _init(model, batch)
  jaxpr = str(
      jax.make_jaxpr(
          lambda p: model.apply({"params": p}, batch, train=True, rngs=_rngs())
      )(params)
  )
  tile_px = HR // G
  assert f"f32[{B * 2},{tile_px},{tile_px},{C}]" in jaxpr
  assert f"f32[{B * G * G},{tile_px},{tile_px},{C}]" not in jaxpr


def test_perturbed_forward_is_the_hard_selection_and_trains_the_sampler():
  batch = _batch()
  soft = _model(
      budget=0.25, selection=dict(mode="perturbed", sigma=0.5, num_samples=64)
  )
  hard = _model(budget=0.25, selection=dict(mode="hard"))
  params = _init(soft, batch)
  out_s = soft.apply({"params": params}, batch, train=True, rngs=_rngs())
  out_h = hard.apply({"params": params}, batch, train=True, rngs=_rngs())
  np.testing.assert_allclose(out_s["logits"], out_h["logits"], atol=1e-5)

  def loss(p, model):
    out = model.apply({"params": p}, batch, train=True, rngs=_rngs())
    return metrics.task_loss(out["logits"], batch["labels"], "single_label")

  g_soft = jax.jit(jax.grad(lambda p: loss(p, soft)))(params)["sampler"]
  g_hard = jax.jit(jax.grad(lambda p: loss(p, hard)))(params)["sampler"]
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_soft)) > 0
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_hard)) == 0


def test_counterfactual_probe_keeps_the_forward_and_values_unbought_tiles():
  """selection.counterfactual: the latent-target tiles not bought enter the
  predictor at weight 0 (forward unchanged), and the task gradient at that
  weight is the loss's directional derivative along buying the tile: equal
  to a finite difference of the loss with the tile's latent blended in."""
  batch = _batch()
  sel = dict(mode="perturbed", sigma=0.5, num_samples=64)
  plain = _model(budget=2, selection=sel)
  probe = _model(budget=2, selection={**sel, "counterfactual": True})
  params = _init(plain, batch)
  out_p = plain.apply({"params": params}, batch, train=True, rngs=_rngs())
  out_c = probe.apply({"params": params}, batch, train=True, rngs=_rngs())
  np.testing.assert_allclose(out_c["logits"], out_p["logits"], atol=1e-6)
  for name in ("latent", "sampler"):
    np.testing.assert_allclose(
        out_c["aux_losses"][name], out_p["aux_losses"][name], atol=1e-6
    )

  def loss(p, model):
    out = model.apply({"params": p}, batch, train=True, rngs=_rngs())
    return metrics.task_loss(out["logits"], batch["labels"], "single_label")

  g_p = jax.jit(jax.grad(lambda p: loss(p, plain)))(params)["sampler"]
  g_c = jax.jit(jax.grad(lambda p: loss(p, probe)))(params)["sampler"]
  diff = max(
      float(jnp.abs(a - b).max())
      for a, b in zip(jax.tree.leaves(g_p), jax.tree.leaves(g_c))
  )
  assert diff > 1e-6, "the probe must add task gradient to the sampler"

  # What the probe's weight means: d loss / d w at w = 0 for a tile t not
  # bought, where w blends t's HR latent into the predictor's input.
  idx = out_p["tile_indices"]  # [B, 2]
  context, _ = plain.apply(
      {"params": params}, batch["lr"], method=plain.lr_context
  )
  px = tile_grid.to_tiles(batch["hr"], G)
  t = jnp.array(
      [
          [n for n in range(G * G) if n not in set(map(int, row))][0]
          for row in np.asarray(idx)
      ]
  )[
      :, None
  ]  # [B, 1]
  all_idx = jnp.concatenate([idx, t], 1)
  lat = plain.apply(
      {"params": params},
      jnp.take_along_axis(px, all_idx[..., None, None, None], 1),
      method=plain.encode_tiles,
  )

  def loss_at(w):
    weight = jnp.concatenate([jnp.ones((B, 2)), jnp.full((B, 1), w)], 1)
    tok = plain.apply(
        {"params": params}, context, all_idx, weight, lat, method=plain.complete
    )
    logits, _ = plain.apply(
        {"params": params}, tok, context, method=plain.head_logits
    )
    return metrics.task_loss(logits, batch["labels"], "single_label")

  loss_at = jax.jit(loss_at)
  eps = 1e-3
  fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
  np.testing.assert_allclose(jax.grad(loss_at)(0.0), fd, rtol=2e-2, atol=1e-5)
  np.testing.assert_allclose(
      loss_at(0.0),
      metrics.task_loss(out_p["logits"], batch["labels"], "single_label"),
      rtol=1e-5,
  )


@pytest.mark.parametrize(
    "policy, budget",
    [
        *[(p, 0.25) for p in cross_scale.POLICIES],
        ("learned", 0),
        ("learned", 1.0),
        ("cnn", 0.25),
    ],
)
def test_every_policy_and_budget_runs_and_accounts_cost(policy, budget):
  batch = _batch()
  if policy == "oracle":  # reads the generator's object map
    batch[cross_scale.ORACLE_FIELD] = jnp.zeros((B, HR, HR), jnp.uint8)
  if policy == "cnn":  # the conv tile encoder
    model = _model(budget=budget, hr_encoder=dict(kind="cnn", width=16))
  else:
    model = _model(budget=budget, policy=policy)
  params = _init(model, batch)
  out = model.apply(
      {"params": params},
      batch,
      train=False,
      rngs={"selection": jax.random.key(0)},
  )
  k = round(budget * G * G)
  assert out["logits"].shape == (B, K)
  np.testing.assert_array_equal(out["metrics"]["hr_tiles"], k)
  np.testing.assert_array_equal(out["metrics"]["hr_pixels"], k * (HR // G) ** 2)
  # Drift: the completed latents vs the HR encoder's, on unbought tiles only.
  np.testing.assert_allclose(
      out["metrics"]["drift"],
      _drift_by_hand(model, params, batch, out),
      rtol=1e-4,
      atol=1e-5,
  )
  assert out["embedding"].shape == (B, 8)
  np.testing.assert_allclose(
      np.linalg.norm(out["embedding"], axis=-1), 1, atol=1e-4
  )


def test_oracle_buys_the_tiles_of_the_object_map_first():
  """Tiles 5 (most object pixels), 10 and 3 hold objects: they are bought
  first, by object share; the k-th tile is a random empty one. Without the
  map the error names the config key to set."""
  batch = _batch()
  t = HR // G
  objects = np.zeros((B, HR, HR), np.uint8)
  for tile, side in ((5, 3), (10, 2), (3, 1)):  # 9, 4 and 1 pixels
    r, c = divmod(tile, G)
    objects[:, r * t : r * t + side, c * t : c * t + side] = 7
  batch[cross_scale.ORACLE_FIELD] = jnp.asarray(objects)
  model = _model(budget=0.25, policy="oracle")
  params = _init(model, batch)
  plan = model.apply(
      {"params": params},
      batch,
      rngs={"selection": jax.random.key(1)},
      method="plan",
  )
  idx = np.asarray(plan["tile_indices"])
  np.testing.assert_array_equal(idx[:, :3], [[5, 10, 3]] * B)
  assert not set(idx[:, 3].tolist()) & {5, 10, 3}
  del batch[cross_scale.ORACLE_FIELD]
  with pytest.raises(ValueError, match="add 'mask_objects' to config.data"):
    model.apply(
        {"params": params}, batch, rngs={"selection": jax.random.key(1)}
    )


def _drift_by_hand(model, params, batch, out):
  """Per scene, the mean over the tiles not bought of 1 - cos(completed
  latent, HR encoder latent of the true tile); 0 when all are bought."""
  idx, valid = out["tile_indices"], out["tile_valid"]

  def latents(m):
    context, _ = m.lr_context(batch["lr"])
    seen = m.encode_tiles(tile_grid.gather_tiles(batch["hr"], idx, G))
    tokens = m.complete(context, idx, valid.astype(jnp.float32), seen)
    return m.to_latent(tokens), m.encode_tiles(
        tile_grid.to_tiles(batch["hr"], G)
    )

  pred, true = map(np.asarray, model.apply({"params": params}, method=latents))
  cos = (pred * true).sum(-1) / (
      np.linalg.norm(pred, axis=-1) * np.linalg.norm(true, axis=-1)
  )  # [B, N]
  want = np.zeros(B)
  for b in range(B):
    bought = set(np.asarray(idx[b])[np.asarray(valid[b])].tolist())
    rest = [n for n in range(G * G) if n not in bought]
    want[b] = (1 - cos[b, rest]).mean() if rest else 0.0
  return want


def test_heuristic_picks_the_detailed_tiles():
  lr = np.zeros((1, 8, 8, 1), np.float32)
  lr[0, 2:4, 6:8, 0] = [[1, -1], [-1, 1]]  # detail in tile (1, 3) = 7
  lr[0, 4:6, 0:2, 0] = [[2, 0], [0, 2]]  # stronger detail in tile (2, 0) = 8
  s = tile_grid.tile_statistic(jnp.asarray(lr), 4)
  assert list(np.argsort(-np.asarray(s[0]))[:2]) == [8, 7]


def test_sampler_prior_starts_from_the_heuristic_ranking_and_learns():
  lr = jnp.asarray(
      np.random.default_rng(3).normal(size=(2, 8, 8, 3))
      * np.linspace(0.1, 3.0, 16).reshape(1, 4, 4, 1).repeat(2, 1).repeat(2, 2),
      jnp.float32,
  )
  prior = cross_scale.lr_detail_prior(lr, 4)  # [B, 16]
  np.testing.assert_allclose(prior.mean(-1), 0.0, atol=1e-5)
  np.testing.assert_array_equal(
      np.argsort(-np.asarray(prior), -1),
      np.argsort(-np.asarray(tile_grid.tile_statistic(lr, 4)), -1),
  )
  plain = cross_scale.Sampler(4, width=8, num_heads=2)
  with_prior = cross_scale.Sampler(4, width=8, num_heads=2, prior=2.0)
  p0 = plain.init(jax.random.key(0), lr)
  p1 = with_prior.init(jax.random.key(0), lr)
  assert float(p1["params"]["prior_weight"].unbox()) == 2.0
  np.testing.assert_allclose(
      with_prior.apply(p1, lr) - plain.apply(p0, lr), 2.0 * prior, atol=1e-5
  )
  g = jax.jit(jax.grad(lambda p: (with_prior.apply(p, lr) * prior).sum()))(p1)
  assert float(g["params"]["prior_weight"].unbox()) > 0


def test_sampler_targets_detail_and_completion_error():
  """The sampler's regression targets over all unobserved tiles: HR detail,
  the predictor's completion error (log cosine distance), or their sum."""
  batch = _batch()
  rng = np.random.default_rng(5)
  observed = np.zeros((B, G * G), bool)
  observed[:, :2] = True  # k = 2 bought: tiles 0, 1
  pred = jnp.asarray(rng.normal(size=(B, G * G, 16)), jnp.float32)
  logits = jnp.asarray(rng.normal(size=(B, G * G)), jnp.float32)

  def losses(target):
    model = _model(budget=2, num_target_tiles=G * G - 2, sampler_target=target)
    params = _init(model, batch)
    out = model.apply(
        {"params": params},
        batch["hr"],
        pred,
        jnp.asarray(observed),
        logits,
        LR,
        method=model.latent_losses,
        rngs=_rngs(),
    )
    hr_lat = model.apply(
        {"params": params},
        tile_grid.to_tiles(batch["hr"], G),
        method=model.encode_tiles,
    )  # [B, N, D]
    return out, hr_lat

  (latent, l_c), hr_lat = losses({"completion": 1.0})
  unobs = np.asarray(~observed)
  err = np.asarray(cross_scale.cosine_distance(pred, hr_lat))[unobs]
  z = np.log(err + 1e-4)
  z = (z - z.mean()) / (z.std() + 1e-3)
  np.testing.assert_allclose(float(latent), err.mean(), rtol=1e-5)
  np.testing.assert_allclose(
      float(l_c), ((np.asarray(logits)[unobs] - z) ** 2).mean(), rtol=1e-4
  )

  (_, l_d), _ = losses({"detail": 1.0})
  zd = np.log(
      np.asarray(
          tile_grid.hr_detail(tile_grid.to_tiles(batch["hr"], G), HR // LR)
      )[unobs]
      + 1e-4
  )
  zd = (zd - zd.mean()) / (zd.std() + 1e-3)
  np.testing.assert_allclose(
      float(l_d), ((np.asarray(logits)[unobs] - zd) ** 2).mean(), rtol=1e-4
  )
  (_, l_dc), _ = losses({"detail": 1.0, "completion": 0.5})
  np.testing.assert_allclose(
      float(l_dc),
      ((np.asarray(logits)[unobs] - zd - 0.5 * z) ** 2).mean(),
      rtol=1e-4,
  )
  (_, l_default), _ = losses(None)
  np.testing.assert_allclose(float(l_default), float(l_d), rtol=1e-6)
  with pytest.raises(ValueError, match="sampler_target.*known: .*detail"):
    losses({"variance": 1.0})
  with pytest.raises(ValueError, match=r"sampler_target \['completion'\] < 0"):
    losses({"detail": 1.0, "completion": -1.0})


def test_evidence_target_is_the_mil_pooling_weight_of_the_positive_classes():
  """Tile 2 of scene 0 carries class 0 (positive) alone: the bought tiles'
  targets put it first; class 1 (absent) counts for nothing."""
  per_token = np.zeros((2, 6, 2), np.float32)  # [B, N, K]
  per_token[0, 2, 0] = 3.0
  per_token[:, 4, 1] = 5.0  # a strong but absent class
  labels = np.array([[1, 0], [1, 0]], np.float32)
  idx = np.array([[2, 4, 0], [1, 4, 5]])
  got = np.asarray(
      sampler_lib.evidence_target(
          jnp.asarray(per_token), jnp.asarray(labels), jnp.asarray(idx), 2.0
      )
  )
  w = np.exp(2.0 * per_token[..., 0])
  e = w / w.sum(1, keepdims=True)  # [B, N] class 0's pooling weights
  z = np.log(np.take_along_axis(e, idx, 1) + 1e-4)
  np.testing.assert_allclose(got, (z - z.mean()) / (z.std() + 1e-3), rtol=1e-5)
  assert got[0].argmax() == 0 and got[0, 0] > got[1].max()
  np.testing.assert_allclose(got[0, 1], got[0, 2], rtol=1e-5)  # class 1: no


def test_evidence_target_adds_a_regression_on_the_bought_tiles():
  batch = _batch()

  def sampler_loss(evidence):
    model = _model(
        budget=0.25,
        head_type="mil",
        sampler_target={"detail": 1.0, "evidence": evidence},
    )
    params = _init(model, batch)
    out = model.apply({"params": params}, batch, train=True, rngs=_rngs())
    return float(out["aux_losses"]["sampler"])

  plain, with_evidence = sampler_loss(0.0), sampler_loss(1.0)
  assert np.isfinite(with_evidence) and with_evidence > plain + 1e-3
  with pytest.raises(ValueError, match="evidence needs.*head_type='mil'"):
    _init(_model(sampler_target={"evidence": 1.0}), batch)


def test_objects_target_regresses_every_tile_onto_the_object_map():
  """The oracle_sampler reference: logits regress onto the standardised
  'tile holds an object' of the generator's map (tiles 5 and 10 here)."""
  batch = _batch()
  t = HR // G
  objects = np.zeros((B, HR, HR), np.uint8)
  objects[:, t + 1, t + 1] = 3  # tile 5
  objects[:, 2 * t, 2 * t + 2] = 1  # tile 10
  batch[cross_scale.ORACLE_FIELD] = jnp.asarray(objects)
  model = _model(budget=0.25, sampler_target={"objects": 2.0})
  params = _init(model, batch)
  s = jnp.asarray(np.random.default_rng(0).normal(size=(B, G * G)))
  idx = jnp.zeros((B, 4), jnp.int32)
  args = (s, idx, jnp.ones((B, 4), bool), jnp.zeros((B, G * G, 16)))
  got = model.apply(
      {"params": params}, batch, *args, method=model.label_sampler_loss
  )
  has = np.zeros((B, G * G), np.float32)
  has[:, [5, 10]] = 1
  z = (has - has.mean()) / (has.std() + 1e-3)
  want = 2.0 * ((np.asarray(s) - z) ** 2).mean()
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  del batch[cross_scale.ORACLE_FIELD]
  with pytest.raises(ValueError, match="objects reads.*mask_objects"):
    model.apply(
        {"params": params}, batch, *args, method=model.label_sampler_loss
    )


def test_mil_pooling_goes_from_mean_to_max_with_its_sharpness():
  batch = _batch()
  params = _init(_model(head_type="mil"), batch)
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.normal(size=(B, G * G, 16)), jnp.float32)
  context = jnp.asarray(rng.normal(size=(B, 3, 16)), jnp.float32)
  both = jnp.concatenate([tokens, context], 1)  # [B, T, D], T = 19
  per_token = _model(head_type="mil").apply(
      {"params": params}, both, method=lambda m, x: m.head(x)
  )  # [B, T, K]

  def pooled(r):
    m = _model(head_type="mil", mil_sharpness=r)
    return m.apply(
        {"params": params},
        tokens,
        context,
        method=lambda m, t, c: m.head_logits(t, c)[0],
    )

  T, x = both.shape[1], np.asarray(per_token, np.float64)
  for r in (0.5, 1.0, 4.0):  # (logsumexp(r x) - log T) / r
    lse = np.log(np.exp(r * x).sum(1))
    np.testing.assert_allclose(
        pooled(r), (lse - np.log(T)) / r, rtol=1e-4, atol=1e-5
    )
  np.testing.assert_allclose(pooled(1e-2), x.mean(1), atol=0.02)
  np.testing.assert_allclose(pooled(1e4), x.max(1), atol=1e-3)
  with pytest.raises(ValueError, match="mil_sharpness"):
    _init(_model(head_type="mil", mil_sharpness=0.0), batch)


def test_uniform_indices_spread_over_the_grid():
  np.testing.assert_array_equal(
      cross_scale.uniform_indices(16, 4), [2, 6, 10, 14]
  )
  assert len(set(np.asarray(cross_scale.uniform_indices(100, 13)))) == 13


def test_hr_only_completion_has_no_lr_path():
  model = _model(
      budget=0.25,
      predictor=dict(
          width=16, depth=1, num_heads=2, mlp_dim=32, lr_guidance=False
      ),
  )
  params = _init(model, _batch())
  assert "cross_attn" not in params["predictor0"]
  # Its output does not depend on the LR view at all.
  b1, b2 = _batch(0), _batch(0)
  b2["lr"] = b2["lr"] * 0
  model = _model(
      budget=0.25,
      policy="uniform",
      predictor=dict(
          width=16, depth=1, num_heads=2, mlp_dim=32, lr_guidance=False
      ),
  )
  params = _init(model, b1)
  o1 = model.apply(
      {"params": params}, b1, rngs={"selection": jax.random.key(0)}
  )
  o2 = model.apply(
      {"params": params}, b2, rngs={"selection": jax.random.key(0)}
  )
  np.testing.assert_allclose(o1["logits"], o2["logits"], atol=1e-5)


def test_budget_errors_are_clear():
  model = _model(budget=17)
  with pytest.raises(ValueError, match="17"):
    _init(model, _batch())
  with pytest.raises(ValueError, match="policy"):
    _init(_model(policy="oracle"), _batch())


def test_retrieval_metrics_hand_case():
  emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float64)
  emb /= np.linalg.norm(emb, axis=1, keepdims=True)
  labels = np.array([[1, 0], [1, 0], [0, 1], [1, 0]])
  m = metrics.retrieval_metrics(emb, labels, ks=(1, 2))
  # Query 0: ranking 1(+), 3(+), 2 -> AP@1 = 1, AP@2 = (1 + 1) / 2 = 1.
  # Query 3: ranking 2(-), 1(+), 0(+) -> AP@1 = 0; AP@2 = (1/2) / 2.
  # Query 2 has no relevant item: skipped.
  # Query 1: ranking 0(+), 3(+) -> 1, 1.
  assert m["scene_AP@1"] == pytest.approx((1 + 1 + 0) / 3)
  assert m["scene_AP@2"] == pytest.approx((1 + 1 + 0.25) / 3)
  assert m["scene_recall@1"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)


def test_per_class_budgets_buy_p_c_tiles_per_scene():
  """P_c per class: in training each scene buys its true class's P_c tiles;
  at inference the LR-only budget head picks the class."""
  batch = _batch(3)
  budgets = (1, 2, 3, 4, 5)
  model = _model(class_budgets=budgets, policy="heuristic")
  params = _init(model, batch)
  out = model.apply({"params": params}, batch, train=True, rngs=_rngs())
  want = np.asarray(budgets)[np.asarray(batch["labels"]).argmax(1)]
  np.testing.assert_array_equal(out["metrics"]["hr_tiles"], want)
  assert "budget_cls" in out["aux_losses"]
  ev = model.apply({"params": params}, batch, rngs=_rngs())
  assert set(np.asarray(ev["metrics"]["hr_tiles"]).tolist()) <= set(budgets)
  # Unbought slots never reach the predictor: zeroing their pixels (they
  # are zeros already) or changing unbought HR tiles changes nothing.
  hr2 = batch["hr"] + 5.0 * (1 - _bought_pixels(model, params, batch))
  ev2 = model.apply({"params": params}, {**batch, "hr": hr2}, rngs=_rngs())
  np.testing.assert_allclose(ev["logits"], ev2["logits"], atol=1e-5)


def _bought_pixels(model, params, batch):
  """`[B, H, W, 1]` 1.0 on the HR pixels of the tiles the model bought."""
  scores = tile_grid.tile_statistic(batch["lr"], G)
  out = model.apply({"params": params}, batch, rngs=_rngs())
  t = HR // G
  mask = np.zeros((B, HR, HR, 1), np.float32)
  order = np.argsort(-np.asarray(scores), axis=1, kind="stable")
  for b in range(B):
    for n in order[b, : int(out["metrics"]["hr_tiles"][b])]:
      r, c = divmod(int(n), G)
      mask[b, r * t : (r + 1) * t, c * t : (c + 1) * t] = 1.0
  return mask


def test_price_budget_spends_at_most_the_total():
  batch = _batch(4)
  rng = np.random.default_rng(0)
  prices = jnp.asarray(rng.uniform(0.5, 2.0, (B, G * G)), jnp.float32)
  model = _model(cost=dict(total=3.0, k_max=8))
  params = _init(model, batch)
  out = model.apply(
      {"params": params}, {**batch, "tile_prices": prices}, rngs=_rngs()
  )
  bought = np.asarray(out["metrics"]["hr_tiles"])
  assert (bought >= 1).all() and (bought <= 8).all()
  # Uniform price 1 with total 3 buys exactly 3 tiles per scene.
  model3 = _model(cost=dict(total=3.0, price=1.0, k_max=8))
  out3 = model3.apply({"params": params}, batch, rngs=_rngs())
  np.testing.assert_array_equal(out3["metrics"]["hr_tiles"], 3.0)
  with pytest.raises(ValueError, match="cost total"):
    _init(_model(cost=dict(total=-1.0)), batch)


@pytest.mark.parametrize("kind", ["per_class", "price"])
def test_plan_from_lr_is_the_selection_inference_makes(kind):
  """`plan` (LR only, what export's `sample` runs before buying) returns the
  tiles and validity that the full inference call then buys."""
  batch = _batch(5)
  prices = jnp.asarray(
      np.random.default_rng(1).uniform(0.5, 2.0, (B, G * G)), jnp.float32
  )
  model = (
      _model(class_budgets=(1, 2, 3, 4, 5))
      if kind == "per_class"
      else _model(cost=dict(total=3.0, k_max=8))
  )
  batch = {**batch, "tile_prices": prices}
  params = _init(model, batch)
  out = model.apply({"params": params}, batch, rngs=_rngs())
  plan = model.apply(
      {"params": params},
      {"lr": batch["lr"], "tile_prices": prices},
      rngs=_rngs(),
      method="plan",
  )
  np.testing.assert_array_equal(plan["tile_valid"], out["tile_valid"])
  valid = np.asarray(plan["tile_valid"])
  np.testing.assert_array_equal(
      np.where(valid, plan["tile_indices"], -1),
      np.where(valid, out["tile_indices"], -1),
  )
  np.testing.assert_array_equal(valid.sum(1), out["metrics"]["hr_tiles"])
  assert plan["tile_indices"].shape == (B, model.k())


# A world where the choice of tile decides: one object per scene, two
# classes told apart only by the object's HR texture (stripe orientation),
# no class tint in the terrain; one HR tile of 16 is bought per scene.
TINY_WORLD = dict(
    hr_size=32,
    grid=4,
    classes=("hstripes", "vstripes"),
    max_objects=1,
    max_distractors=0,
    context_strength=0.0,
)


@pytest.fixture(scope="module")
def trained_on_tiny_world(tmp_path_factory):
  """(model, host params, data dir): the runlocal cross-scale config (HR
  encoder 32 wide, 2 deep) trained 250 steps of 32 on TINY_WORLD through the
  trainer's init and step, on one device (seconds: 8 fake devices on 2
  cores would triple the step time)."""
  from crossscale import input_pipeline, partitioning, shards, train
  from data import toyworld
  from experiments.configs import cross_scale as config

  d = str(tmp_path_factory.mktemp("tiny_world"))
  toyworld.build(
      d,
      toyworld.ToyworldConfig(**TINY_WORLD),
      num_train=1024,
      num_val=16,
      num_test=256,
      seed=0,
  )
  c = config.get_config("runlocal")
  c.data.path = d
  c.update_from_flattened_dict(
      {
          "total_steps": 250,
          "batch_size": 32,
          "model.budget": 1 / 16,
          "model.hr_encoder.width": 32,
          "model.hr_encoder.depth": 2,
          "optim.lr": 3e-3,
          "optim.warmup_steps": 10,
          "aux_weights.retrieval": 0.0,
      }
  )
  manifest = shards.load_manifest(d)
  model, tx = train.make_model(c, manifest), train.make_tx(c)
  mesh = partitioning.make_mesh(c.mesh, jax.devices()[:1])
  fields = tuple(c.data.fields)
  example = train.example_batch(manifest, fields, c.batch_size)
  state, state_sh = train.init_state(c, model, tx, example, mesh)
  step = train.jit_train_step(
      c, model, tx, mesh, state_sh, train.task_of(c, manifest)
  )
  batches = iter(
      input_pipeline.train_dataset(
          d, batch_size=c.batch_size, seed=0, fields=fields
      )
  )
  for i in range(c.total_steps):
    batch = partitioning.put_batch(next(batches), mesh)
    state, _ = step(state, batch, jax.random.key_data(jax.random.key(i)))
  return model, jax.device_get(state.params), d


def test_learns_above_chance_on_a_tiny_world(trained_on_tiny_world):
  model, params, d = trained_on_tiny_world
  accuracy = helpers.accuracy_by_hand(model, params, d, ("lr", "hr", "labels"))
  assert accuracy >= 0.7, accuracy  # chance: 0.5 (0.75-0.86 over seeds 0-3)


def test_learned_sampler_beats_random_tiles_where_it_must(
    trained_on_tiny_world,
):
  """The same trained model fed random tiles instead of its sampler's: one
  tile in 16 holds the class, so random tiles leave it near chance."""
  model, params, d = trained_on_tiny_world
  fields = ("lr", "hr", "labels")
  learned = helpers.accuracy_by_hand(model, params, d, fields)
  random = helpers.accuracy_by_hand(
      model.clone(policy="random"), params, d, fields
  )
  # Seeds 0-3: 0.75-0.86 vs 0.50-0.56, a gap of 0.19-0.35.
  assert learned - random >= 0.15, (learned, random)
