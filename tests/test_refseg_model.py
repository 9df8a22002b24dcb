"""Referring-segmentation model (S4ECA-style dual adapters): shapes, freezing
through the real train step, trainable fraction, language guidance, text
batching, the referring evaluator, backbone checkpoints."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crossscale import (
    evaluators,
    input_pipeline,
    metrics,
    optim,
    partitioning,
    train,
)
from crossscale.models import refseg
from experiments.configs import refseg as refseg_config


def _model(mode="adapters", **model_overrides):
  c = refseg_config.get_config(f"runlocal,mode={mode}")
  c.model.update(model_overrides)
  kwargs = {k: v for k, v in c.model.to_dict().items() if k != "name"}
  return refseg.RefSegModel(**kwargs), c


def _batch(B=4, H=32, L=8, seed=0):
  rng = np.random.default_rng(seed)
  return {
      "hr": rng.normal(size=(B, H, H, 3)).astype(np.float32),
      "text_ids": rng.integers(1000, 2000, (B, L)).astype(np.int32),
      "text_mask": np.ones((B, L), np.int32),
      "mask_target": (rng.random((B, H, H)) > 0.7).astype(np.uint8),
  }


def _init(model, batch):
  return nn.meta.unbox(
      jax.jit(lambda r: model.init(r, batch))(jax.random.key(0))["params"]
  )


def _flat(tree):
  return {
      optim.param_path(p): np.asarray(v)
      for p, v in jax.tree_util.tree_leaves_with_path(tree)
  }


@pytest.fixture(scope="module")
def tiny():
  """(model, config, batch, params) of the runlocal config, initialised once."""
  model, c = _model()
  batch = _batch()
  return model, c, batch, _init(model, batch)


def _zeros_params(model, batch):
  """Parameters as zeros from shapes only (no compile)."""
  shapes = jax.eval_shape(
      lambda: nn.meta.unbox(model.init(jax.random.key(0), batch)["params"])
  )
  return jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes)


def test_shapes_and_losses(tiny):
  model, _, batch, params = tiny
  out = jax.jit(lambda p, b: model.apply({"params": p}, b))(params, batch)
  assert out["mask_logits"].shape == (4, 32, 32)
  assert set(out["aux_losses"]) == {"bce", "dice"}
  assert all(
      v.shape == () and np.isfinite(v) for v in out["aux_losses"].values()
  )
  for k in ("iou", "inter", "union"):
    assert out["metrics"][k].shape == (4,)
  # The per-example counts are those of crossscale.metrics on (logits > 0).
  i, u = metrics.intersection_union(
      np.asarray(out["mask_logits"]) > 0, batch["mask_target"]
  )
  np.testing.assert_array_equal(out["metrics"]["inter"], i)
  np.testing.assert_array_equal(out["metrics"]["union"], u)


def test_frozen_params_bitwise_unchanged_through_train_step(tiny):
  model, c, batch, params = tiny
  tx = optim.make_optimizer(c.optim, 10)
  state = train.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=jax.random.key_data(jax.random.key(0)),
  )
  # No optimizer state for frozen parameters: Adam's two moments of the
  # trainable ones (plus scalar counts) only.
  trainable, total = optim.trainable_fraction(params, c.optim.frozen)
  opt_floats = sum(
      x.size for x in jax.tree.leaves(state.opt_state) if x.dtype == jnp.float32
  )
  assert opt_floats == 2 * trainable < 2 * total
  step = jax.jit(train.make_train_step(model, tx, c.task, {}))
  before = _flat(params)
  for i in range(3):
    state, m = step(state, batch, jax.random.key_data(jax.random.key(i)))
    assert np.isfinite(float(m["loss"]))
  after = _flat(state.params)
  labels = _flat(optim.param_labels(params, c.optim.frozen))
  frozen = [k for k, l in labels.items() if l == "frozen"]
  assert any(k.startswith("text_encoder/") for k in frozen)
  assert any(k.startswith("backbone/") and "/dwconv/" in k for k in frozen)
  for k in frozen:
    assert np.array_equal(before[k], after[k]), k  # bitwise
  for k in (
      "decoder/head/kernel",
      "text_adapter/queries",
      "visual_adapter/scale_select/kernel",
      "stage_adapter_0/up/kernel",
      "backbone/stem_norm/scale",
  ):
    assert labels[k] == "train" and not np.array_equal(before[k], after[k]), k


@pytest.mark.parametrize(
    "mode,expect",
    [
        ("decoder_only", lambda k: k.startswith("decoder/")),
        ("full", lambda k: not k.startswith("text_encoder/")),
    ],
)
def test_modes_train_what_they_say(mode, expect):
  model, c = _model(mode)
  params = jax.eval_shape(
      lambda: nn.meta.unbox(
          model.init(jax.random.key(0), _batch(B=1))["params"]
      )
  )
  for k, l in _flat(optim.param_labels(params, c.optim.frozen)).items():
    assert (l == "train") == expect(k), (mode, k)


def test_default_config_trains_under_3_percent():
  c = refseg_config.get_config()
  assert c.model.text_encoder == "minilm"
  kwargs = {k: v for k, v in c.model.to_dict().items() if k != "name"}
  model = refseg.RefSegModel(**kwargs)
  params = jax.eval_shape(
      lambda: nn.meta.unbox(
          model.init(jax.random.key(0), _batch(B=1, H=64, L=32))["params"]
      )
  )
  trainable, total = optim.trainable_fraction(params, c.optim.frozen)
  assert total > 22_000_000  # MiniLM (22.6M) + backbone + adapters
  assert trainable / total < 0.03


def _two_squares(n, H=32, seed=0):
  """Images with a bright square on the left and one on the right; text
  token 2001 = "left", 2002 = "right"; the target is the named square."""
  rng = np.random.default_rng(seed)
  hr = rng.normal(0, 0.1, (n, H, H, 3)).astype(np.float32)
  tgt = np.zeros((n, H, H), np.uint8)
  side = rng.integers(0, 2, n)
  ids = np.full((n, 4), 1000, np.int32)
  for i in range(n):
    r = rng.integers(4, H - 12)
    hr[i, r : r + 8, 3:11] += 1.0
    r2 = rng.integers(4, H - 12)
    hr[i, r2 : r2 + 8, H - 11 : H - 3] += 1.0
    if side[i] == 0:
      tgt[i, r : r + 8, 3:11] = 1
    else:
      tgt[i, r2 : r2 + 8, H - 11 : H - 3] = 1
    ids[i, 1] = 2001 + side[i]
  return {
      "hr": hr,
      "text_ids": ids,
      "text_mask": np.ones_like(ids),
      "mask_target": tgt,
  }


def test_language_guidance_changes_the_mask():
  """After a short adapter training on a task only the text disambiguates,
  two expressions on the same image give different masks, each near its own
  target."""
  model, c = _model()
  c.optim.lr = 3e-3
  tx = optim.make_optimizer(c.optim, 10**6)
  data = _two_squares(64)
  params = _init(model, data)
  state = train.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=jax.random.key_data(jax.random.key(0)),
  )
  step = jax.jit(train.make_train_step(model, tx, c.task, {}))
  for i in range(120):
    idx = np.arange(16) + 16 * (i % 4)
    state, _ = step(
        state,
        {k: v[idx] for k, v in data.items()},
        jax.random.key_data(jax.random.key(i)),
    )
  test = _two_squares(8, seed=1)
  swapped = dict(
      test,
      text_ids=np.where(
          test["text_ids"] > 2000, 4003 - test["text_ids"], test["text_ids"]
      ),
  )
  apply = jax.jit(lambda p, b: model.apply({"params": p}, b))
  a = np.asarray(apply(state.params, test)["mask_logits"]) > 0
  b = np.asarray(apply(state.params, swapped)["mask_logits"]) > 0
  assert (a != b).mean() > 0.05  # the expression moves the mask
  iou = metrics.refseg_metrics(a, test["mask_target"])["mIoU"]
  assert iou > 0.4, iou


def test_text_fields_are_batched_from_the_record_text(tmp_path):
  from crossscale import shards
  from crossscale.models import text_encoder
  from data import referring

  d = str(tmp_path / "ref")
  referring.build("toyworld", d, counts={"train": 8, "val": 4, "test": 4})
  fields = ("hr", "text_ids", "text_mask", "mask_target")
  batch = next(
      iter(input_pipeline.eval_dataset(d, "test", batch_size=4, fields=fields))
  )
  L = input_pipeline.TEXT_MAX_LEN
  assert (
      batch["text_ids"].shape == (4, L) and batch["text_ids"].dtype == np.int32
  )
  assert batch["text_mask"].shape == (4, L)
  assert batch["mask_target"].shape == (4, 64, 64)
  # Same ids as tokenising the records' own text.
  import grain

  from crossscale import records

  m = shards.load_manifest(d)
  src = grain.sources.ArrayRecordDataSource(
      shards.shard_paths(d, m, "test", False)
  )
  texts = [records.decode(src[i]).text for i in range(4)]
  tok = text_encoder.load_tokenizer(text_encoder.default_path())
  want = text_encoder.tokenize(tok, texts, L)
  np.testing.assert_array_equal(batch["text_ids"], want["input_ids"])
  np.testing.assert_array_equal(batch["text_mask"], want["attention_mask"])
  assert all(texts) and (batch["text_mask"].sum(1) > 2).all()


def test_referring_evaluator_matches_independent_metrics(tmp_path):
  from data import referring

  d = str(tmp_path / "ref")
  referring.build("toyworld", d, counts={"train": 4, "val": 4, "test": 6})
  model, c = _model()
  fields = tuple(c.data.fields)
  mesh = partitioning.make_mesh(c.mesh)
  ev = evaluators.get_evaluator(
      "referring",
      model,
      data_dir=d,
      split="test",
      batch_size=8,
      task=c.task,
      mesh=mesh,
      fields=fields,
  )
  first = next(
      iter(input_pipeline.eval_dataset(d, "test", batch_size=8, fields=fields))
  )
  params = _init(model, {k: v for k, v in first.items() if k != "valid"})
  res = ev.run(params)
  apply = jax.jit(lambda p, b: model.apply({"params": p}, b))
  preds, trues = [], []
  for b in input_pipeline.eval_dataset(d, "test", batch_size=8, fields=fields):
    logits = apply(params, b)["mask_logits"]
    preds.append(np.asarray(logits)[b["valid"]] > 0)
    trues.append(b["mask_target"][b["valid"]])
  want = metrics.refseg_metrics(np.concatenate(preds), np.concatenate(trues))
  assert res["num_examples"] == want["num_samples"]
  for k in ("oIoU", "mIoU", "Prec@0.5", "Prec@0.9"):
    assert res[k] == pytest.approx(want[k], abs=1e-6), k


def test_backbone_init_npz_and_missing_file(tmp_path):
  model, _ = _model()
  params = _zeros_params(model, _batch(B=1))
  bb = jax.tree.map(lambda x: np.full_like(x, 0.5), params["backbone"])
  path = str(tmp_path / "bb.npz")
  refseg.save_backbone(path, bb)
  loaded = model.clone(backbone_init=path).load_pretrained(params)
  assert all((x == 0.5).all() for x in jax.tree.leaves(loaded["backbone"]))
  assert not any((x == 0.5).any() for x in jax.tree.leaves(loaded["decoder"]))
  with pytest.raises(FileNotFoundError, match="backbone_init"):
    model.clone(backbone_init=str(tmp_path / "nope.npz")).load_pretrained(
        params
    )
  other, _ = _model(backbone={"widths": (8, 16, 32), "depths": (1, 1, 1)})
  with pytest.raises(ValueError, match="shape"):
    other.clone(backbone_init=path).load_pretrained(
        _zeros_params(other, _batch(B=1))
    )
