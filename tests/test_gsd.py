"""Issue 22: GSD-aware positions, GSD augmentation and the gsd_shift sweep."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crossscale import input_pipeline, shards
from crossscale.models import layers, vit

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def _golden_module():
  spec = importlib.util.spec_from_file_location(
      "make_cross_scale_golden",
      os.path.join(GOLDEN, "make_cross_scale_golden.py"),
  )
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_same_ground_position_same_embedding_at_any_gsd():
  enc = vit.Encoder(width=16, depth=0, gsd_positions=True, reference_gsd=2.0)
  # 4-px patches at 1 m and 2-px patches at 2 m: tokens cover the same
  # ground, so they get the same embeddings.
  fine = enc.apply({}, 4, 4, 4, jnp.array([1.0, 3.0]), method="positions")
  coarse = enc.apply({}, 4, 4, 2, jnp.array([2.0, 6.0]), method="positions")
  np.testing.assert_allclose(fine, coarse, atol=1e-6)
  assert fine.shape == (2, 16, 16)
  # A coarser GSD moves every token on the ground: other embeddings.
  assert not np.allclose(fine[0], fine[1], atol=1e-2)
  # Cell (1, 1) of 4 m cells is centred at (6 m, 6 m): 3 units of 2 m.
  emb = layers.gsd_positions(2, 2, jnp.array([4.0]), 16, 2.0)
  want = layers.sincos_2d(jnp.array([6.0 / 2.0, 6.0 / 2.0]), 16)
  np.testing.assert_allclose(emb[0, 3], want, atol=1e-6)


def test_predictor_tile_positions_follow_the_scene_gsd():
  gold = _golden_module()
  m = gold.tiny_model("cnn", gsd_positions=True, lr_gsd=4.0, hr_gsd=1.0)
  batch = gold.tiny_batch()
  v = jax.eval_shape(
      lambda: m.init(
          {"params": jax.random.key(0), "selection": jax.random.key(1)}, batch
      )
  )
  assert "tile_pos" not in v["params"]
  assert "tile_pos" not in v["params"]["sampler"]
  assert "pos_embedding" not in v["params"]["lr_encoder"]
  v = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), v)
  native = m.apply(v, batch, method="tile_positions")  # model.lr_gsd
  half = dict(batch, lr=batch["lr"][:, ::2, ::2], lr_gsd=jnp.full([2], 8.0))
  np.testing.assert_allclose(
      m.apply(v, half, method="tile_positions"), native, atol=1e-6
  )
  twice = dict(batch, lr_gsd=jnp.array([8.0, 4.0]))
  p = m.apply(v, twice, method="tile_positions")
  assert not np.allclose(p[0], native[0], atol=1e-2)
  np.testing.assert_allclose(p[1], native[1], atol=1e-6)


@pytest.mark.parametrize(
    "kind", ["cnn", pytest.param("vit", marks=pytest.mark.slow)]
)
def test_options_off_match_the_golden_from_before_issue_22(kind):
  gold = _golden_module()
  want = np.load(os.path.join(GOLDEN, "cross_scale_options_off.npz"))
  # Off, the scenes' GSDs in the batch change nothing either.
  batch = dict(
      gold.tiny_batch(), lr_gsd=jnp.array([9.0, 1.0]), hr_gsd=jnp.ones([2])
  )
  got = gold.outputs(gold.tiny_model(kind), batch)
  keys = {k for k in got if k.startswith("params:")}
  old = {k[len(kind) + 1 :] for k in want.files if k.startswith(kind + "/")}
  assert keys == {k for k in old if k.startswith("params:")}
  for k in keys:
    np.testing.assert_array_equal(got[k], want[f"{kind}/{k}"])
  for k in ("logits_eval", "logits_train", "latent"):
    np.testing.assert_allclose(
        got[k], want[f"{kind}/{k}"], rtol=1e-4, atol=1e-5
    )


def _pair(seed: int, box: bool = True):
  """A scene whose LR is the HR's 4x4 block mean (a box sensor)."""
  r = np.random.default_rng(seed)
  hr = r.normal(size=(32, 32, 3)).astype(np.float32)
  if not box:  # smooth: the linear upsampling of a zoom-in is accurate
    y, x = np.mgrid[:32, :32] / 32.0
    hr = np.stack([np.sin(3 * x + seed), np.cos(2 * y), x * y], -1)
    hr = hr.astype(np.float32)
  lr = hr.reshape(8, 4, 8, 4, 3).mean((1, 3))
  mask = (np.arange(32)[:, None] < 16).repeat(32, 1).astype(np.uint8)
  return {"lr": lr, "hr": hr, "labels": np.eye(3)[seed % 3], "mask_o": mask}


def _block_mean(hr):
  return hr.reshape(8, 4, 8, 4, 3).mean((1, 3))


@pytest.mark.parametrize("factor", [2.0, 3.0, 4.0])
def test_zoom_out_keeps_lr_and_hr_aligned_and_scales_gsd(factor):
  x = _pair(0)
  nb = [_pair(i) for i in range(1, 25)]
  y = input_pipeline.rescale_scene(x, factor, nb, lr_gsd=4.0, hr_gsd=1.0)
  assert y["lr"].shape == x["lr"].shape and y["hr"].shape == x["hr"].shape
  # Same ground: 8 LR px x 4 m x f == 32 HR px x 1 m x f.
  assert y["lr_gsd"] == 4.0 * factor and y["hr_gsd"] == factor
  assert 8 * y["lr_gsd"] == 32 * y["hr_gsd"]
  # The box sensor still holds: HR downsampled by the scale is the LR.
  np.testing.assert_allclose(_block_mean(y["hr"]), y["lr"], atol=1e-5)
  np.testing.assert_array_equal(y["labels"], x["labels"])
  if factor == 2.0:  # the scene, 2x coarser, in the centre
    centre = x["hr"].reshape(16, 2, 16, 2, 3).mean((1, 3))
    np.testing.assert_allclose(y["hr"][8:24, 8:24], centre, atol=1e-5)
    assert y["mask_o"].dtype == np.uint8
    np.testing.assert_array_equal(y["mask_o"][8:24, 8], [1] * 8 + [0] * 8)


def test_zoom_in_crops_upsamples_and_identity_at_one():
  x = _pair(3, box=False)
  same = input_pipeline.rescale_scene(x, 1.0)
  np.testing.assert_array_equal(same["hr"], x["hr"])
  np.testing.assert_array_equal(same["lr"], x["lr"])
  y = input_pipeline.rescale_scene(x, 0.5, lr_gsd=4.0, hr_gsd=1.0)
  assert (y["lr_gsd"], y["hr_gsd"]) == (2.0, 0.5)
  err = np.abs(_block_mean(y["hr"]) - y["lr"]).max()
  assert err < 0.05 * np.abs(x["hr"]).max()
  # The centre crop: y's corner pixel is x's pixel (8, 8) region.
  assert abs(y["hr"][0, 0, 1] - x["hr"][8, 8, 1]) < 0.05
  with pytest.raises(ValueError, match="needs 8 neighbouring"):
    input_pipeline.rescale_scene(x, 2.0, [x])


def test_gsd_augment_pipeline_is_seeded_resumable_and_aligned(toyworld_small):
  kw = dict(
      batch_size=8,
      seed=3,
      fields=("lr", "hr", "labels"),
      augment=False,
      gsd_augment=(0.5, 2.0),
      num_threads=1,
  )
  it = iter(input_pipeline.train_dataset(toyworld_small, **kw))
  first = next(it)
  state = it.get_state()
  second = next(it)
  m = shards.load_manifest(toyworld_small)
  f = first["lr_gsd"] / m.lr_gsd
  assert first["lr_gsd"].shape == (8,) and np.all((f >= 0.5) & (f <= 2.0))
  assert len(np.unique(f)) > 1
  np.testing.assert_allclose(first["hr_gsd"] / m.hr_gsd, f, rtol=1e-6)
  again = iter(input_pipeline.train_dataset(toyworld_small, **kw))
  again.set_state(state)
  resumed = next(again)
  for k in second:
    np.testing.assert_array_equal(resumed[k], second[k])
  with pytest.raises(ValueError, match="0 < lo <= hi"):
    input_pipeline.train_dataset(toyworld_small, **{**kw, "gsd_augment": (2,)})


def test_render_split_writes_the_test_split_at_a_gsd_factor(
    toyworld_small, tmp_path
):
  from experiments.cross_scale import gsd_shift

  src = shards.load_manifest(toyworld_small)
  out = gsd_shift.render_split(toyworld_small, "test", 2.0, str(tmp_path))
  m = shards.load_manifest(out)
  assert m.num_records("test") == src.num_records("test")
  assert m.band_stats == src.band_stats  # normalised as in training
  scenes = list(shards.iter_scenes(out, "test"))
  orig = list(shards.iter_scenes(toyworld_small, "test"))
  assert [s.id for s in scenes] == [s.id for s in orig]
  assert scenes[0].lr_gsd == 2 * src.lr_gsd and scenes[0].hr_gsd == 2.0
  np.testing.assert_array_equal(scenes[5].labels, orig[5].labels)
  # The scene, 2x coarser, in the centre (uint8 rounding).
  H = src.hr_shape[0]
  centre = orig[0].hr.astype(np.float32)
  centre = centre.reshape(H // 2, 2, H // 2, 2, -1).mean((1, 3))
  got = scenes[0].hr[H // 4 : 3 * H // 4, H // 4 : 3 * H // 4]
  assert np.abs(got - centre).max() <= 0.5 + 1e-4
  # Reused, not rebuilt, when asked again.
  mtime = os.path.getmtime(os.path.join(out, shards.MANIFEST))
  gsd_shift.render_split(toyworld_small, "test", 2.0, str(tmp_path))
  assert os.path.getmtime(os.path.join(out, shards.MANIFEST)) == mtime
  assert not src.gsd_known and not m.gsd_known  # toyworld counts HR pixels


@pytest.mark.slow
def test_gsd_shift_runlocal_smoke(tmp_path):
  from experiments.cross_scale import gsd_shift

  out = tmp_path / "out"
  gsd_shift.main(
      [
          "--runlocal",
          "--out",
          str(out),
          "--work_dir",
          str(tmp_path / "work"),
          "--factors",
          "0.5,1,2",
      ]
  )
  res = json.loads((out / "gsd_shift.json").read_text())
  assert set(res["methods"]) == set(gsd_shift.METHODS)
  for r in res["methods"].values():
    assert r["gsd_factor"] == [0.5, 1.0, 2.0]
    assert all(0.0 <= a <= 1.0 for a in r["accuracy"])
    assert all(
        lo <= a <= hi for a, (lo, hi) in zip(r["accuracy"], r["interval"])
    )
  assert res["provenance"]["datasets"]["data"].startswith(("data:", "other:"))
  assert {(r["method"], r["gsd_factor"]) for r in res["paired_vs_ours"]} == {
      (m, f) for m in gsd_shift.METHODS if m != "ours" for f in (0.5, 1, 2)
  }
  assert (out / "gsd_shift.png").stat().st_size > 1000


def test_paired_vs_ours_per_factor():
  from experiments.cross_scale import gsd_shift

  n, k = 40, 4
  labels = np.eye(k)[np.arange(n) % k]
  right, wrong = labels * 5.0, np.roll(labels, 1, axis=1) * 5.0
  out = {
      "ours": {1.0: [(right, labels)], 2.0: [(wrong, labels)]},
      "random": {1.0: [(wrong, labels)], 2.0: [(wrong, labels)]},
  }
  rows = {r["gsd_factor"]: r for r in gsd_shift.paired_vs_ours(out, "accuracy")}
  assert rows[1.0]["diff_points"] == pytest.approx(100.0)
  assert rows[1.0]["verdict"] == "ahead" and rows[2.0]["verdict"] == "tie"
  assert gsd_shift.paired_vs_ours({"random": out["random"]}, "accuracy") == []
