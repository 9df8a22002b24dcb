"""Issue 22: GSD-aware positions, GSD augmentation and the gsd_shift sweep."""

import importlib.util
import json
import os

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crossscale import gsd_render, input_pipeline, shards
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


def test_position_gain_scales_every_ground_position_embedding():
  gold = _golden_module()
  batch = gold.tiny_batch()
  rngs = {"params": jax.random.key(0), "selection": jax.random.key(1)}
  m = gold.tiny_model(
      "cnn", gsd_positions=True, lr_gsd=4.0, hr_gsd=1.0, position_gain=0.02
  )
  shapes = jax.eval_shape(lambda: m.init(rngs, batch))["params"]
  names = {
      "/".join(str(getattr(k, "key", k)) for k in path)
      for path, x in jax.tree_util.tree_leaves_with_path(nn.unbox(shapes))
      if "pos_gain" in str(path[-1]) and x.shape == ()
  }
  assert names == {
      "tile_pos_gain",
      "sampler/pixel_pos_gain",
      "sampler/tile_pos_gain",
      "lr_encoder/pos_gain",
  }  # the cnn HR encoder has no positions
  # The predictor's gain scales its tile positions.
  v = jax.tree.map(lambda a: jnp.full(a.shape, 0.02, a.dtype), shapes)
  p = m.apply({"params": v}, batch, method="tile_positions")
  tile_m = 4.0 * batch["lr"].shape[1] / 4  # LR GSD x LR pixels per tile
  want = layers.gsd_positions(4, 4, jnp.full([2], tile_m), p.shape[-1], 1.0)
  np.testing.assert_allclose(p, 0.02 * want, rtol=1e-5, atol=1e-7)
  # An encoder's gain starts at its init and learns.
  enc = vit.Encoder(
      width=16, depth=0, patch_size=4, gsd_positions=True, position_gain=0.02
  )
  images, gsd = jnp.ones([2, 16, 16, 3]), jnp.array([1.0, 3.0])
  v = enc.init(jax.random.key(0), images, gsd=gsd)["params"]
  assert float(nn.unbox(v["pos_gain"])) == pytest.approx(0.02)
  g = jax.grad(lambda p: jnp.sum(enc.apply({"params": p}, images, gsd=gsd)))
  assert abs(float(nn.unbox(g(v)["pos_gain"]))) > 0


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
  y = gsd_render.rescale_scene(x, factor, nb, lr_gsd=4.0, hr_gsd=1.0)
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
  same = gsd_render.rescale_scene(x, 1.0)
  np.testing.assert_array_equal(same["hr"], x["hr"])
  np.testing.assert_array_equal(same["lr"], x["lr"])
  y = gsd_render.rescale_scene(x, 0.5, lr_gsd=4.0, hr_gsd=1.0)
  assert (y["lr_gsd"], y["hr_gsd"]) == (2.0, 0.5)
  err = np.abs(_block_mean(y["hr"]) - y["lr"]).max()
  assert err < 0.05 * np.abs(x["hr"]).max()
  # The centre crop: y's corner pixel is x's pixel (8, 8) region.
  assert abs(y["hr"][0, 0, 1] - x["hr"][8, 8, 1]) < 0.05
  with pytest.raises(ValueError, match="needs 8 neighbouring"):
    gsd_render.rescale_scene(x, 2.0, [x])


def _ref_axis(x, axis, start, length, n_out, nearest):
  """The pre-optimisation `_resample_axis` (whole axis, float64 sums)."""
  x = np.moveaxis(x, axis, 0)
  n, step = x.shape[0], length / n_out
  bshape = (-1,) + (1,) * (x.ndim - 1)
  if nearest:
    centres = start + (np.arange(n_out) + 0.5) * step
    idx = np.clip(np.floor(centres).astype(np.int64), 0, n - 1)
    return np.moveaxis(x[idx], 0, axis)
  x = x.astype(np.float32)
  if step >= 1.0:
    csum = np.concatenate(
        [np.zeros((1,) + x.shape[1:]), np.cumsum(x, 0, dtype=np.float64)]
    )
    edges = np.clip(start + np.arange(n_out + 1) * step, 0.0, n)
    k = np.minimum(np.floor(edges).astype(np.int64), n - 1)
    integral = csum[k] + (edges - k).reshape(bshape) * x[k]
    width = np.maximum(np.diff(edges), 1e-9).reshape(bshape)
    out = (integral[1:] - integral[:-1]) / width
  else:
    u = np.clip(start + (np.arange(n_out) + 0.5) * step - 0.5, 0.0, n - 1)
    i0 = np.floor(u).astype(np.int64)
    t = (u - i0).reshape(bshape)
    out = x[i0] * (1.0 - t) + x[np.minimum(i0 + 1, n - 1)] * t
  return np.moveaxis(out.astype(np.float32), 0, axis)


def _ref_rescale(x, factor, neighbours, offset):
  """The pre-optimisation `rescale_scene`'s spatial arrays, unrounded: the
  whole m x m mosaic canvas, resampled."""
  H, W = x["hr"].shape[:2]
  scale = H // x["lr"].shape[0]
  m = gsd_render.mosaic_cells(factor) if factor > 1 else 1
  c, others = m // 2, iter(neighbours)
  cells = [[x if (i, j) == (c, c) else next(others) for j in range(m)]
           for i in range(m)]  # fmt: skip
  if factor > 1:
    y0, x0 = c * H - (factor - 1) * H / 2, c * W - (factor - 1) * W / 2
  else:
    y0, x0 = (1 - factor) * H * offset[0], (1 - factor) * W * offset[1]
  out = {}
  for k in ("lr", "hr", "mask_c"):
    img = np.concatenate([np.concatenate([s[k] for s in r], 1) for r in cells])
    div = scale if k == "lr" else 1
    for axis, start, n in ((0, y0, H), (1, x0, W)):
      n_out, near = x[k].shape[axis], k.startswith("mask_")
      img = _ref_axis(img, axis, start / div, factor * n / div, n_out, near)
    out[k] = img
  return out


@pytest.mark.parametrize("raw", [False, True])
def test_rescale_scene_matches_the_whole_mosaic_reference(raw):
  r = np.random.default_rng(7)
  stats = {"lr": {"mean": [90.0, 130.0], "std": [40.0, 70.0]}}
  stats["hr"] = {"mean": [100.0, 120.0, 140.0], "std": [50.0, 60.0, 30.0]}
  norm = input_pipeline.Normalize(stats)

  def scene():  # raw uint8; non-square, LR 3x coarser with other bands
    return {
        "lr": r.integers(0, 256, (8, 12, 2), dtype=np.uint8),
        "hr": r.integers(0, 256, (24, 36, 3), dtype=np.uint8),
        "mask_c": r.integers(0, 5, (24, 36), dtype=np.uint8),
        "labels": np.eye(3)[0],
    }

  for factor in (0.5, 0.7, 1.0, 1.6, 2.0, 3.3, 4.0):
    x, nb = scene(), [scene() for _ in range(24)]
    offset = tuple(r.uniform(size=2))
    if raw:  # render_split: raw scenes, rounded back to uint8
      got = gsd_render.rescale_scene(x, factor, nb, offset=offset)
      want = _ref_rescale(x, factor, nb, offset)
    else:  # GsdAugment: `x` normalised, neighbours standardised in place
      x = norm.map(x)
      got = gsd_render.rescale_scene(
          x, factor, nb, offset=offset, neighbour_stats=stats
      )
      want = _ref_rescale(x, factor, [norm.map(s) for s in nb], offset)
    for k, ref in want.items():
      assert got[k].dtype == x[k].dtype and got[k].shape == x[k].shape
      assert got[k].flags.c_contiguous
      if k == "mask_c":
        np.testing.assert_array_equal(got[k], ref)
      elif not raw:
        np.testing.assert_allclose(got[k], ref, atol=1e-4, rtol=0)
      else:  # equal, except float rounding across a .5 of np.rint
        off = got[k] != np.clip(np.rint(ref), 0, 255)
        half = np.abs(ref - np.floor(ref) - 0.5) < 1e-3
        assert np.all(half[off]), (factor, k, ref[off])
    assert got["lr_gsd"] == factor and got["labels"] is x["labels"]


def _pipeline_kw(batch_size: int, gsd_augment) -> dict:
  """train_dataset's arguments for the GSD augmentation tests."""
  return dict(
      batch_size=batch_size,
      seed=3,
      fields=("lr", "hr", "labels"),
      augment=False,
      gsd_augment=gsd_augment,
      num_threads=1,
  )


def test_gsd_augment_pipeline_is_seeded_resumable_and_aligned(toyworld_small):
  kw = _pipeline_kw(8, (0.5, 2.0))
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


def test_gsd_augment_prob_keeps_the_rest_native(toyworld_small):
  kw = _pipeline_kw(16, (2.0, 2.0))  # every re-rendered scene at 2x
  m = shards.load_manifest(toyworld_small)
  plain = next(iter(input_pipeline.train_dataset(toyworld_small, **kw)))
  once = next(
      iter(
          input_pipeline.train_dataset(
              toyworld_small, **kw, gsd_augment_prob=1.0
          )
      )
  )
  for k in plain:  # prob 1 draws nothing extra: today's stream
    np.testing.assert_array_equal(once[k], plain[k])
  native = input_pipeline.train_dataset(
      toyworld_small, **{**kw, "gsd_augment": ()}
  )
  want = next(iter(native))  # the same scenes, in the same order
  half = next(
      iter(
          input_pipeline.train_dataset(
              toyworld_small, **kw, gsd_augment_prob=0.5
          )
      )
  )
  f = half["lr_gsd"] / m.lr_gsd
  kept = np.isclose(f, 1.0)
  assert np.all(kept | np.isclose(f, 2.0)) and 0 < kept.sum() < 16
  np.testing.assert_array_equal(half["hr"][kept], want["hr"][kept])
  np.testing.assert_array_equal(half["lr"][kept], want["lr"][kept])
  assert not np.allclose(half["hr"][~kept], want["hr"][~kept])
  np.testing.assert_allclose(half["hr_gsd"][kept], m.hr_gsd)
  for bad in (0.0, 1.5):
    with pytest.raises(ValueError, match="gsd_augment_prob"):
      input_pipeline.train_dataset(toyworld_small, **kw, gsd_augment_prob=bad)


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
  rows = gsd_shift.paired_vs_ours(out, "accuracy", reference="random")
  assert [r["method"] for r in rows] == ["ours", "ours"]
  by_f = {r["gsd_factor"]: r for r in rows}
  assert by_f[1.0]["diff_points"] == pytest.approx(-100.0)
  assert by_f[1.0]["verdict"] == "behind"
  with pytest.raises(SystemExit, match="--reference nope"):
    gsd_shift.main(["--out", "/tmp/unused", "--reference", "nope"])


def test_standardise_equals_the_broadcast_formula():
  r = np.random.default_rng(0)
  x = r.integers(0, 256, (9, 7, 3), dtype=np.uint8)
  mean, std = [90.0, 110.5, 130.25], [40.0, 55.5, 61.0]
  want = (x.astype(np.float32) - np.float32(mean)) / np.float32(std)
  got = input_pipeline.standardise(x, mean, std)
  assert got.dtype == np.float32 and got.shape == x.shape
  np.testing.assert_array_equal(got, want)


def _class_source(n_classes=3, per_class=4, hw=8):
  """Scenes whose pixels all equal their class id (raw), one-hot labels."""
  scenes = [
      {
          "lr": np.full((hw // 2, hw // 2, 1), c, np.float32),
          "hr": np.full((hw, hw, 1), c, np.float32),
          "labels": np.eye(n_classes, dtype=np.float32)[c],
      }
      for c in range(n_classes)
      for _ in range(per_class)
  ]
  return scenes


def test_same_label_mosaics_hold_only_the_centres_class():
  import types

  src = _class_source()
  stats = {k: {"mean": [0.0], "std": [1.0]} for k in ("lr", "hr")}
  manifest = types.SimpleNamespace(
      task="single_label", class_names=["a", "b", "c"], name="fake"
  )

  class Source(list):  # what GsdAugment reads: len, [i], .manifest
    pass

  source = Source(src)
  source.manifest = manifest
  pools = gsd_render.class_pools(source)
  assert [p.tolist() for p in pools] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                         [8, 9, 10, 11]]  # fmt: skip
  rng = np.random.default_rng(0)
  same = gsd_render.GsdAugment(source, stats, (3.0, 3.0), pools=pools)
  mixed = gsd_render.GsdAugment(source, stats, (3.0, 3.0))
  x = src[5]  # class 1
  for _ in range(3):  # every pixel of a 3x zoom-out is class 1's
    y = same.random_map(x, rng)
    assert np.all(y["hr"] == 1.0) and np.all(y["lr"] == 1.0)
  assert any(np.any(mixed.random_map(x, rng)["hr"] != 1.0) for _ in range(3))
  manifest.task = "multi_label"
  with pytest.raises(ValueError, match="single-label"):
    gsd_render.class_pools(source)


def test_gsd_shift_same_label_neighbours_and_variants():
  from experiments.cross_scale import gsd_shift

  classes = np.array([0, 1, 0, 2, 0, 1])
  for i in (0, 1, 2, 4, 5):  # scene 3 is alone in class 2
    nb = gsd_shift.same_label_neighbours(i, classes, 8, seed=0)
    assert len(nb) == 8 and i not in nb and np.all(classes[nb] == classes[i])
  with pytest.raises(ValueError, match="only one of its class"):
    gsd_shift.same_label_neighbours(3, classes, 8, seed=0)
  m = gsd_shift.parse_methods("lr_only", ["noaug:data.gsd_augment=()"])
  assert m["lr_only"] == gsd_shift.METHODS["lr_only"]
  budget, over = m["noaug"]
  assert budget == 0.125 and over["data.gsd_augment"] == ()
  assert over["model.gsd_positions"] is True  # ours' options, kept
  with pytest.raises(ValueError, match="NAME:KEY=VALUE"):
    gsd_shift.parse_methods("ours", ["ours:data.gsd_augment=()"])
  m = gsd_shift.parse_methods("ours,dense", ["rnd:data.gsd_neighbours=random"])
  single = gsd_shift.for_task(m, "single_label")
  assert single["ours"][1]["data.gsd_neighbours"] == "same_label"
  assert single["rnd"][1]["data.gsd_neighbours"] == "random"  # said so
  assert "data.gsd_neighbours" not in single["dense"][1]  # no augmentation
  assert gsd_shift.for_task(m, "multi_label") == m
  # A variant's own records are recorded relative to the data roots.
  m = gsd_shift.parse_methods("", ["ms:data.path=/elsewhere/geo_ms"])
  rel = gsd_shift._relative_paths(m["ms"][1])  # pylint: disable=protected-access
  assert rel["data.path"] == "other:geo_ms" and m["ms"][1] != rel
