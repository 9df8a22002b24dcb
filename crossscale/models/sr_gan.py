"""Adversarial SR (ESRGAN recipe, Wang et al. 2018) trainable by the shared
trainer in ONE model call.

  generator      RRDB net: conv head, `num_blocks` residual-in-residual dense
                 blocks (23 in ESRGAN), trunk conv + skip, conv + pixel
                 shuffle per prime factor of `scale`, two convs.
  discriminator  VGG-style: (conv 3x3, conv 4x4 stride 2) blocks with
                 LeakyReLU(0.2), no BatchNorm, global mean pool, two Dense:
                 `[B, H, W, C]` -> one logit `[B]` at any image size.
  perceptual     a frozen conv feature net of OURS, never downloaded weights:
                 the HR tile encoder's convs of one of our cross_scale
                 checkpoints when `perceptual_init` names one, else the same
                 architecture with fixed random weights (seed
                 `perceptual_seed`; "random-feature perceptual loss").

Losses (aux_losses; weights in `config.aux_weights`, ESRGAN: l1 1e-2,
perceptual 1.0, adversarial 5e-3): relativistic average GAN (RaGAN) with
C(x) the discriminator's logit, E the batch mean:
  D: BCE(C(hr) - E C(sr), 1) / 2 + BCE(C(sr) - E C(hr), 0) / 2
  G: BCE(C(hr) - E C(sr), 0) / 2 + BCE(C(sr) - E C(hr), 1) / 2

Gradient routing: one total loss, differentiated once; stop-gradients make
it a simultaneous G and D step from the pre-step parameters (docs/design.md;
tests/test_sr_gan_diffusion.py checks the routing numerically).

The discriminator and perceptual parameters are stored as nested parameter
trees ("discriminator", "perceptual") created by their own `init` and used
through `apply`, so a stop-gradient'ed copy can be passed explicitly.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from crossscale import checkpoint
from crossscale.models import layers, sr


def _lrelu(x):
  return nn.leaky_relu(x, 0.2)


# --------------------------------------------------------------- generator


class DenseBlock(nn.Module):
  """ESRGAN's RDB: 5 convs, each seeing the concatenation of all previous
  outputs (growth `growth`), residual scaled by 0.2: `[B, h, w, F]` -> same."""

  features: int
  growth: int = 32

  @nn.compact
  def __call__(self, x):
    feats = [x]
    for i in range(4):
      y = layers.Conv(self.growth, (3, 3), name=f"conv{i}")(
          jnp.concatenate(feats, -1)
      )
      feats.append(_lrelu(y))
    y = layers.Conv(self.features, (3, 3), name="conv4")(
        jnp.concatenate(feats, -1)
    )
    return x + 0.2 * y


class RRDB(nn.Module):
  """Residual in residual dense block: 3 RDBs and a 0.2-scaled skip."""

  features: int
  growth: int = 32

  @nn.compact
  def __call__(self, x):
    y = x
    for i in range(3):
      y = DenseBlock(self.features, self.growth, name=f"rdb{i}")(y)
    return x + 0.2 * y


class RRDBNet(nn.Module):
  """`lr [B, h, w, C_in]` -> `[B, h*scale, w*scale, out_bands]`."""

  out_bands: int
  scale: int = 4
  features: int = 64
  growth: int = 32
  num_blocks: int = 23

  @nn.compact
  def __call__(self, lr):
    x = layers.Conv(self.features, (3, 3), name="head")(lr)  # [B, h, w, F]
    y = x
    for i in range(self.num_blocks):
      y = RRDB(self.features, self.growth, name=f"rrdb{i}")(y)
    x = x + layers.Conv(self.features, (3, 3), name="trunk_conv")(y)
    for i, r in enumerate(sr._prime_factors(self.scale)):  # pylint: disable=protected-access
      x = _lrelu(
          sr.pixel_shuffle(
              layers.Conv(self.features * r * r, (3, 3), name=f"up{i}")(x), r
          )
      )
    x = _lrelu(layers.Conv(self.features, (3, 3), name="hr_conv")(x))
    return layers.Conv(self.out_bands, (3, 3), name="tail")(x)


# ----------------------------------------------------------- discriminator


class Discriminator(nn.Module):
  """VGG-style critic: `[B, H, W, C]` -> logits `[B]` (any H, W)."""

  widths: tuple[int, ...] = (64, 128, 256, 512)
  hidden: int = 100

  @nn.compact
  def __call__(self, x):
    for i, w in enumerate(self.widths):
      x = _lrelu(layers.Conv(w, (3, 3), name=f"conv{i}_0")(x))
      x = _lrelu(layers.Conv(w, (4, 4), strides=(2, 2), name=f"conv{i}_1")(x))
    x = x.mean(axis=(1, 2))  # [B, W_last]
    x = _lrelu(
        layers.Dense(self.hidden, axes=("conv_out", "mlp"), name="dense0")(x)
    )
    return layers.Dense(1, axes=("mlp", "tokens"), name="dense1")(x)[:, 0]


def relativistic_losses(c_real, c_fake):
  """RaGAN (ESRGAN) losses from logits `[B]`: (d_loss, g_loss), scalars."""
  bce = lambda z, target: jnp.mean(  # BCE with logits, target in {0, 1}
      jax.nn.softplus(z) - target * z
  )
  rel_real = c_real - jnp.mean(c_fake)
  rel_fake = c_fake - jnp.mean(c_real)
  d = 0.5 * (bce(rel_real, 1.0) + bce(rel_fake, 0.0))
  g = 0.5 * (bce(rel_real, 0.0) + bce(rel_fake, 1.0))
  return d, g


# -------------------------------------------------------------- perceptual


class ConvFeatures(nn.Module):
  """Conv feature maps `[B, H, W, C]` -> [`[B, H/s, W/s, width]`] * depth:
  the GELU output of every conv. Parameter names match
  `crossscale.models.convnet.ConvEncoder`'s convs (conv0, conv1, ...), so
  an HR tile encoder of ours (cross_scale's hr_encoder, kind "cnn") loads
  into it; its pooling/projection are not used."""

  width: int = 64
  depth: int = 2
  stride: int = 1

  @nn.compact
  def __call__(self, x):
    outs = []
    s = self.stride
    for i in range(self.depth):
      k = (max(3, s), max(3, s)) if i == 0 else (3, 3)
      x = nn.gelu(
          layers.Conv(
              self.width,
              k,
              strides=(s, s) if i == 0 else (1, 1),
              name=f"conv{i}",
          )(x)
      )
      outs.append(x)
    return outs


def random_feature_net(
    bands: int, width: int = 64, depth: int = 2, seed: int = 0
):
  """(apply(params, images) -> list of feature maps, params): the fixed
  random-weight `ConvFeatures` (no training, no downloads) used by the GAN's
  perceptual loss when no `perceptual_init` is given and by the SR
  evaluator's "randfeat_dist" (comparable across SR families)."""
  net = ConvFeatures(width, depth)
  params = net.init(
      jax.random.key(seed), jnp.zeros((1, 16, 16, bands), jnp.float32)
  )["params"]
  params = nn.meta.unbox(params)
  return (lambda p, x: net.apply({"params": p}, x)), params


def encoder_feature_net(
    path: str, bands: int, stride: int = 1, config_key: str = "feature_init"
):
  """(apply, params) like `random_feature_net`, with the convs of the HR
  tile encoder ("hr_encoder", kind "cnn") of a run of ours at `path` (e.g.
  the cross-scale pretraining run): a *learned* feature distance of our own
  encoder (still not LPIPS). Width and depth are read from the checkpoint;
  `stride` must be the encoder's first-conv stride."""
  enc = checkpoint.load_subtree(path, "hr_encoder", config_key)
  convs = sorted(
      (k for k in enc if k.startswith("conv")), key=lambda k: int(k[4:])
  )
  if not convs:
    raise ValueError(
        f"{config_key}={path!r}: its hr_encoder has no conv "
        "layers (a ViT tile encoder?): pass a run whose "
        "hr_encoder is the conv encoder (kind 'cnn')."
    )
  net = ConvFeatures(
      int(np.shape(enc[convs[0]]["kernel"])[-1]), len(convs), stride
  )
  shapes = jax.eval_shape(
      lambda: nn.meta.unbox(
          net.init(
              jax.random.key(0), jnp.zeros((1, 16, 16, bands), jnp.float32)
          )["params"]
      )
  )
  params = checkpoint.replace_checked(
      jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes),
      {k: enc[k] for k in convs},
      f"{config_key}={path!r} (hr_encoder)",
  )
  return (lambda p, x: net.apply({"params": p}, x)), params


# ------------------------------------------------------------------- model


class ESRGAN(sr.SRModel):
  """RRDB generator + RaGAN discriminator + frozen perceptual features.

  `__call__(batch, train)` returns {"sr", "aux_losses": {"l1", "perceptual",
  "adversarial", "discriminator"}, "metrics": {"d_real", "d_fake"}} (see the
  module doc for how one gradient step trains both networks); `predict`
  runs the generator only. All losses are on the HR-normalised pixels.

  Attributes:
    out_bands, scale, features, growth, num_blocks: the RRDB generator
      (ESRGAN: 64, 32, 23 blocks).
    disc_widths: discriminator stage widths (ESRGAN's VGG-128: 64..512).
    perceptual_width / perceptual_depth / perceptual_stride: ConvFeatures.
    perceptual_init: "" (fixed random features, seed `perceptual_seed`) or
      an orbax checkpoint / .npz of ours holding `perceptual_key` params
      (e.g. a cross_scale run's "hr_encoder" with kind "cnn").
    generator_init: "" or a checkpoint of an sr_gan run whose "generator"
      initialises this one (ESRGAN's PSNR-oriented pretraining stage).
  """

  out_bands: int = 3
  scale: int = 4
  features: int = 64
  growth: int = 32
  num_blocks: int = 23
  disc_widths: tuple[int, ...] = (64, 128, 256, 512)
  perceptual_width: int = 64
  perceptual_depth: int = 2
  perceptual_stride: int = 1
  perceptual_init: str = ""
  perceptual_key: str = "hr_encoder"
  perceptual_seed: int = 0
  generator_init: str = ""

  def setup(self):
    s = sr.integer_scale(self.scale, "ESRGAN")
    self.generator = RRDBNet(
        self.out_bands, s, self.features, self.growth, self.num_blocks
    )
    self.disc = Discriminator(tuple(self.disc_widths))
    self.perc = ConvFeatures(
        self.perceptual_width, self.perceptual_depth, self.perceptual_stride
    )
    # Both nets are size-agnostic: initialised on a dummy 32x32 HR image.
    dummy = jnp.zeros((1, 32, 32, self.out_bands), jnp.float32)
    self.d_params = self.param(
        "discriminator", lambda rng: self.disc.init(rng, dummy)["params"]
    )
    self.p_params = self.param(
        "perceptual",
        lambda _: self.perc.init(jax.random.key(self.perceptual_seed), dummy)[
            "params"
        ],
    )

  def predict(self, lr, out_hw=None, train: bool = False):
    del train
    return sr.to_grid(self.generator(lr), out_hw)

  def __call__(self, batch: dict, train: bool = False) -> dict:
    out = super().__call__(batch, train)  # {"sr", {"l1"}}
    hr = batch.get("hr")
    if hr is None:
      return out
    fake = out["sr"]  # [B, H, W, C]
    d_params = self.d_params
    p_params = jax.lax.stop_gradient(self.p_params)  # frozen features
    d_apply = lambda p, x: self.disc.apply({"params": p}, x)
    # D step: gradients reach D params only (SR is stop-gradient'ed).
    c_real = d_apply(d_params, hr)  # [B]
    c_fake_d = d_apply(d_params, jax.lax.stop_gradient(fake))
    d_loss, _ = relativistic_losses(c_real, c_fake_d)
    # G step: gradients reach G params only (D params are stop-gradient'ed).
    c_fake_g = d_apply(jax.lax.stop_gradient(d_params), fake)
    _, g_adv = relativistic_losses(jax.lax.stop_gradient(c_real), c_fake_g)
    f_fake = self.perc.apply({"params": p_params}, fake)
    f_real = self.perc.apply({"params": p_params}, hr)
    perceptual = sum(
        jnp.mean(jnp.abs(a - b)) for a, b in zip(f_fake, f_real)
    ) / len(f_fake)
    out["aux_losses"].update(
        perceptual=perceptual, adversarial=g_adv, discriminator=d_loss
    )
    out["metrics"] = {
        "d_real": jax.nn.sigmoid(c_real - c_fake_d.mean()),
        "d_fake": jax.nn.sigmoid(c_fake_d - c_real.mean()),
    }
    return out

  def load_pretrained(self, params):
    """Host params -> the same with `perceptual_init` / `generator_init`
    loaded (shapes checked)."""
    params = dict(params)
    if self.perceptual_init:
      new = checkpoint.load_subtree(
          self.perceptual_init,
          self.perceptual_key,
          "config.model.perceptual_init",
      )
      new = {k: v for k, v in new.items() if k in params["perceptual"]}
      params["perceptual"] = checkpoint.replace_checked(
          params["perceptual"], new, self.perceptual_init
      )
    if self.generator_init:
      params["generator"] = checkpoint.replace_checked(
          params["generator"],
          checkpoint.load_subtree(
              self.generator_init, "generator", "config.model.generator_init"
          ),
          self.generator_init,
      )
    return params


FROZEN = (r"^perceptual/",)  # config.optim.frozen for sr_gan

SR_GAN_MODELS = {"sr_gan": ESRGAN}
