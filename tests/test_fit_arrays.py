"""crossscale.train.fit_arrays: the shared train step over in-memory arrays
(random batches, flips only when asked, seeded, data parallel over the
devices that divide the batch, a non-finite loss stops with a message)."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from crossscale import train


class Corner(nn.Module):
  """One scalar fitted to the top-left pixel of `x`: flips move that pixel,
  so the fitted value tells whether the batches were flipped."""

  @nn.compact
  def __call__(self, batch, train=False):
    w = self.param("w", nn.initializers.zeros, ())
    return {"aux_losses": {"l2": jnp.mean((w - batch["x"][:, 0, 0, 0]) ** 2)}}


def _corner_images(n=16):
  x = np.zeros((n, 4, 4, 1), np.float32)
  x[:, 0, 0, 0] = 1.0
  return {"x": x}


def _fit(arrays, **kw):
  model = Corner()
  params = train.init_params(model, {k: v[:1] for k, v in arrays.items()})
  kw = {"steps": 150, "batch_size": 8, "lr": 0.1, "seed": 0, **kw}
  return train.fit_arrays(model, params, arrays, **kw)


def test_flips_only_when_asked():
  plain, losses = _fit(_corner_images(), flips=False)
  assert float(plain["w"]) == pytest.approx(1.0, abs=0.05)
  assert losses[-1] < 0.01 * losses[0]
  # Flipped, the lit pixel is in the corner a quarter of the time.
  flipped, _ = _fit(_corner_images(), flips=True)
  assert 0.05 < float(flipped["w"]) < 0.6


def test_seeded_and_any_batch_size():
  a = _fit(_corner_images(), steps=10)[1]
  b = _fit(_corner_images(), steps=10)[1]
  c = _fit(_corner_images(), steps=10, seed=1)[1]
  assert a == b and a != c
  # 6 images per batch: data parallel over the 6 devices that divide it.
  _, losses = _fit(_corner_images(), steps=3, batch_size=6)
  assert len(losses) == 3 and np.isfinite(losses).all()


def test_non_finite_loss_stops_with_the_learning_rate():
  arrays = _corner_images()
  arrays["x"][:, 0, 0, 0] = np.nan
  with pytest.raises(FloatingPointError, match=r"lower the learning rate"):
    _fit(arrays, steps=2)
