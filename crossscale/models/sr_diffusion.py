"""Diffusion SR: a small conditional denoiser and a few-step DDIM sampler.

The denoiser sees `concat(x_t, up)` where `up = resize(map_bands(lr))` is the
bicubic-upsampled LR on the HR grid (SR3-style conditioning by concatenated
channels), plus a sinusoidal embedding of the diffusion time t in [0, 1]. It
is a U-Net-ish conv net (residual conv blocks with a per-block time bias,
stride-2 downsampling, nearest upsampling, skip concatenation).

What is diffused: x0 = hr - base with base = `up` when `residual` and the
bands match (the bicubic residual, as SR3/ResShift-style models do; a far
easier target), else x0 = hr. Noise schedule: cosine (Nichol & Dhariwal
2021), alpha_bar(t) = cos^2((t + s) / (1 + s) * pi / 2) / cos^2(s / (1 + s) *
pi / 2), clipped to [1e-4, 1]; x_t = sqrt(ab) x0 + sqrt(1 - ab) eps.

Training (`__call__`): t ~ U(0, 1), eps ~ N(0, I) from the "dropout" RNG
stream (the trainer provides it; a fixed key otherwise), and the simplified
loss mean((pred - target)^2) with target eps ("eps") or
v = sqrt(ab) eps - sqrt(1 - ab) x0 ("v"): aux_losses {"diffusion"}.

Sampling (`predict`): deterministic DDIM (eta = 0) over `sample_steps`
uniform times 1 = t_0 > t_1 > ... > t_n = 0 from x_{t_0} ~ N(0, I) drawn from
the explicit `rng` (default `jax.random.key(sample_seed)`, so evaluation is
reproducible): x_{t_{i+1}} = sqrt(ab_{i+1}) x0_hat + sqrt(1 - ab_{i+1})
eps_hat. The last step returns x0_hat, so one step returns the model's x0
prediction at t = 1.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from crossscale.models import layers, sr


def alpha_bar(t: jnp.ndarray, s: float = 0.008) -> jnp.ndarray:
  """Cosine schedule `[...]` -> `[...]` in [1e-4, 1]."""
  f = lambda u: jnp.cos((u + s) / (1 + s) * math.pi / 2) ** 2
  return jnp.clip(f(t) / f(jnp.zeros_like(t)), 1e-4, 1.0)


def timestep_embedding(t: jnp.ndarray, dim: int) -> jnp.ndarray:
  """`t [B]` in [0, 1] -> `[B, dim]` sinusoids of 1000 t (DDPM's scale)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half) / half)
  arg = 1000.0 * t[:, None] * freqs[None]
  return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], -1)


class ResBlock(nn.Module):
  """GroupNorm-SiLU-conv twice with a time bias between: `[B, H, W, F_in]`
  (+ `temb [B, E]`) -> `[B, H, W, features]`."""

  features: int

  @nn.compact
  def __call__(self, x, temb):
    groups = lambda c: math.gcd(c, 8)
    h = nn.silu(
        layers.GroupNorm(num_groups=groups(x.shape[-1]), name="norm0")(x)
    )
    h = layers.Conv(self.features, (3, 3), name="conv0")(h)
    h = (
        h
        + layers.Dense(self.features, axes=("embed", "conv_out"), name="temb")(
            temb
        )[:, None, None]
    )
    h = nn.silu(
        layers.GroupNorm(num_groups=groups(self.features), name="norm1")(h)
    )
    h = layers.Conv(self.features, (3, 3), name="conv1")(h)
    if x.shape[-1] != self.features:
      x = layers.Conv(self.features, (1, 1), name="skip")(x)
    return x + h


class Denoiser(nn.Module):
  """`x_t [B, H, W, C]`, `cond [B, H, W, C']`, `t [B]` -> `[B, H, W, C]`
  (eps or v). H, W are padded (edge) to a multiple of 2^(levels-1)."""

  out_bands: int
  widths: tuple[int, ...] = (64, 128, 128)
  time_dim: int = 128

  @nn.compact
  def __call__(self, x_t, cond, t):
    _, h, w, _ = x_t.shape
    m = 2 ** (len(self.widths) - 1)
    x = jnp.concatenate([x_t, cond], -1)
    x = jnp.pad(x, ((0, 0), (0, -h % m), (0, -w % m), (0, 0)), mode="edge")
    temb = timestep_embedding(t, self.time_dim)
    temb = layers.Dense(self.time_dim, name="time0")(temb)
    temb = layers.Dense(self.time_dim, name="time1")(nn.silu(temb))
    temb = nn.silu(temb)  # [B, E]
    x = layers.Conv(self.widths[0], (3, 3), name="head")(x)
    skips = []
    for i, f in enumerate(self.widths):
      x = ResBlock(f, name=f"down{i}")(x, temb)
      skips.append(x)
      if i < len(self.widths) - 1:
        x = layers.Conv(f, (3, 3), strides=(2, 2), name=f"pool{i}")(x)
    x = ResBlock(self.widths[-1], name="mid")(x, temb)
    for i in reversed(range(len(self.widths))):
      if i < len(self.widths) - 1:
        b, hh, ww, c = x.shape
        x = jax.image.resize(x, (b, 2 * hh, 2 * ww, c), "nearest")
      x = ResBlock(self.widths[i], name=f"up{i}")(
          jnp.concatenate([x, skips[i]], -1), temb
      )
    x = nn.silu(
        layers.GroupNorm(
            num_groups=math.gcd(self.widths[0], 8), name="norm_out"
        )(x)
    )
    return layers.Conv(self.out_bands, (3, 3), name="tail")(x)[:, :h, :w]


class DiffusionSR(sr.SRModel):
  """Conditional diffusion SR (see the module doc).

  Attributes:
    out_bands: C_out; scale: LR -> HR factor when `out_hw` is not given.
    widths, time_dim: the denoiser (levels of the U-Net).
    prediction: "v" (default; well-conditioned at every t) or "eps".
    residual: diffuse hr - bicubic(lr) when bands match (see module doc).
    band_map: see `sr.map_bands` (for the conditioning / residual base).
    sample_steps: DDIM steps in `predict`; sample_seed: its default key.
  """

  out_bands: int = 3
  scale: float = 4.0
  widths: tuple[int, ...] = (64, 128, 128)
  time_dim: int = 128
  prediction: str = "v"
  residual: bool = True
  band_map: tuple[tuple[int, ...], ...] | None = None
  sample_steps: int = 8
  sample_seed: int = 0

  def setup(self):
    if self.prediction not in ("eps", "v"):
      raise ValueError(
          f"config.model.prediction={self.prediction!r}: use " "'eps' or 'v'."
      )
    self.denoiser = Denoiser(self.out_bands, tuple(self.widths), self.time_dim)

  def condition(self, lr, out_hw):
    """(cond `[B, H, W, C_cond]`, base `[B, H, W, C_out]` or 0.)"""
    if out_hw is None:
      out_hw = (
          round(lr.shape[1] * self.scale),
          round(lr.shape[2] * self.scale),
      )
    up = sr.resize(sr.map_bands(lr, self.band_map), out_hw)
    base = up if self.residual and up.shape[-1] == self.out_bands else 0.0
    return up, base

  def x0_eps(self, x_t, cond, t):
    """The model's (x0_hat, eps_hat) at time `t [B]` from `x_t`."""
    ab = alpha_bar(t)[:, None, None, None]
    a, s = jnp.sqrt(ab), jnp.sqrt(1.0 - ab)
    out = self.denoiser(x_t, cond, t)
    if self.prediction == "v":
      return a * x_t - s * out, s * x_t + a * out
    return (x_t - s * out) / a, out

  def __call__(self, batch: dict, train: bool = False) -> dict:
    del train
    hr = batch.get("hr")
    if hr is None:
      return {"sr": self.predict(batch["lr"]), "aux_losses": {}}
    cond, base = self.condition(batch["lr"], hr.shape[1:3])
    x0 = hr - base
    key = (
        self.make_rng("dropout")
        if self.has_rng("dropout")
        else jax.random.key(0)
    )
    k_t, k_eps = jax.random.split(key)
    t = jax.random.uniform(k_t, (hr.shape[0],))  # [B]
    eps = jax.random.normal(k_eps, hr.shape, hr.dtype)  # [B, H, W, C]
    ab = alpha_bar(t)[:, None, None, None]
    x_t = jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps
    pred = self.denoiser(x_t, cond, t)
    target = (
        eps
        if self.prediction == "eps"
        else jnp.sqrt(ab) * eps - jnp.sqrt(1.0 - ab) * x0
    )
    return {"aux_losses": {"diffusion": jnp.mean(jnp.square(pred - target))}}

  def predict(
      self,
      lr,
      out_hw=None,
      train: bool = False,
      rng=None,
      steps: int | None = None,
  ):
    """DDIM sample `[B, H, W, C_out]`; `rng` (a key) draws x_1."""
    del train
    cond, base = self.condition(lr, out_hw)
    shape = cond.shape[:3] + (self.out_bands,)
    rng = jax.random.key(self.sample_seed) if rng is None else rng
    x = jax.random.normal(rng, shape, jnp.float32)
    return base + ddim_loop(
        lambda x_t, t: self.x0_eps(x_t, cond, t), x, steps or self.sample_steps
    )


def ddim_times(steps: int) -> jnp.ndarray:
  """`[steps + 1]` uniform times from 1 down to 0."""
  if steps < 1:
    raise ValueError(
        f"DDIM needs >= 1 step, got {steps} " "(config.model.sample_steps)."
    )
  return jnp.linspace(1.0, 0.0, steps + 1)


def ddim_loop(x0_eps, x: jnp.ndarray, steps: int) -> jnp.ndarray:
  """Deterministic DDIM from `x` at t = 1: `x0_eps(x_t, t [B]) -> (x0, eps)`.
  A Python loop (steps is small and static); returns the final x0_hat."""
  ts = ddim_times(steps)
  b = x.shape[0]
  x0 = x
  for i in range(steps):
    x0, eps = x0_eps(x, jnp.full((b,), ts[i]))
    if i + 1 < steps:
      ab = alpha_bar(ts[i + 1])
      x = jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps
  return x0


SR_DIFFUSION_MODELS = {"sr_diffusion": DiffusionSR}
