"""Writes tests/golden/cross_scale_options_off.npz: a tiny cross-scale
model's parameter paths and shapes and its eval logits / train losses at a
fixed init and batch (tests/test_gsd.py checks that issue 22's options, off,
leave them unchanged). Written from commit ebd0720 (before issue 22):

  PYTHONPATH=<a checkout of that commit> python3 \
      tests/golden/make_cross_scale_golden.py
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from crossscale.models import cross_scale

OUT = os.path.join(os.path.dirname(__file__), "cross_scale_options_off.npz")


def tiny_model(kind: str, **kwargs):
  """A tiny cross-scale model; HR tile encoder `kind` ("cnn" | "vit")."""
  hr = (
      dict(kind="cnn", width=16, depth=1)
      if kind == "cnn"
      else dict(kind="vit", width=16, depth=1, num_heads=2, mlp_dim=32)
  )
  return cross_scale.CrossScaleModel(
      num_classes=5,
      grid=4,
      budget=0.25,
      lr_encoder=dict(width=16, depth=1, num_heads=2, mlp_dim=32),
      hr_encoder=hr,
      sampler=dict(width=16, depth=1, num_heads=2, prior=1.0),
      predictor=dict(width=16, depth=1, num_heads=2, mlp_dim=32),
      embed_dim=8,
      select_impl="reference",
      **kwargs,
  )


def tiny_batch():
  rng = np.random.default_rng(0)
  return {
      "lr": jnp.asarray(rng.normal(size=(2, 16, 16, 3)), jnp.float32),
      "hr": jnp.asarray(rng.normal(size=(2, 64, 64, 3)), jnp.float32),
      "labels": jnp.asarray(np.eye(5)[[0, 3]], jnp.float32),
  }


def outputs(model, batch) -> dict[str, np.ndarray]:
  """{"params:<path>": shape, "logits_eval", "logits_train", "latent"}."""
  v = model.init(
      {"params": jax.random.key(0), "selection": jax.random.key(1)},
      batch,
      train=False,
  )
  ev = model.apply(v, batch, rngs={"selection": jax.random.key(2)})
  tr = model.apply(
      v,
      batch,
      train=True,
      rngs={"selection": jax.random.key(2), "dropout": jax.random.key(3)},
  )
  out = {
      "params:" + jax.tree_util.keystr(p): np.asarray(np.shape(x))
      for p, x in jax.tree_util.tree_leaves_with_path(
          jax.tree.map(np.asarray, v["params"])
      )
  }
  out["logits_eval"] = np.asarray(ev["logits"])
  out["logits_train"] = np.asarray(tr["logits"])
  out["latent"] = np.asarray(tr["aux_losses"]["latent"])
  return out


if __name__ == "__main__":
  res = {}
  for k in ("cnn", "vit"):
    out = outputs(tiny_model(k), tiny_batch())
    res.update({f"{k}/{n}": v for n, v in out.items()})
  np.savez_compressed(OUT, **res)
  print(f"wrote {OUT}: {len(res)} entries")
