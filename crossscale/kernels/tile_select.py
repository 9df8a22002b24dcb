"""The tile-selection hot path: select the best tiles and gather them.

From tile logits `[B, N]` (N = G*G tiles of a row-major HR grid) and a budget,
produce the selected tile indices `[B, k_max]` (descending score, ties to the
lowest index, NaN last), their validity `[B, k_max]` (slot j valid where
j < k_b) and the selected HR tiles `[B, k_max, t, t, C]` read straight from
the HR scenes `[B, H, W, C]`: unselected tiles are never read, and invalid
slots are zeros.

- `kernel`: one fused Pallas call, one program per scene: ranks the logits
  by pairwise comparison (no sort), then copies only the k selected tiles
  (ref copies on GPU and in interpret mode, HBM->HBM DMA on TPU).
- `tile_select_reference.reference`: the plain-JAX contract it must equal.
- `select_and_gather(..., impl="auto")`: the dispatcher (the kernel only on
  the backends in `VERIFIED_BACKENDS`, where it was run and checked against
  the reference on the device; the reference elsewhere; `impl="kernel"`
  forces it, interpreted on the CPU),
  under a count budget (k_max, optional `k: [B]`) or a price budget
  (`prices`, `total`); `select`: the same selection without the gather.

Depends only on its reference and `crossscale.budgets`. Gradients: none for
the (integer) selection; the gather's backward scatters tile cotangents into
the selected tiles of a zero `[B, H, W, C]`.
"""

from __future__ import annotations

import functools

import einops
import jax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton
import jax.numpy as jnp

from crossscale import budgets
from crossscale.kernels import tile_select_reference as ref

IMPLS = ("auto", "kernel", "reference")
# Backends where `impl="auto"` takes the kernel: only those where
# `python -m benchmarks.tile_select_speed --device-check` passed on the
# device (kernel == reference; record the run in benchmarks/README.md).
# None yet: the kernel has run in interpret mode and lowering only.
VERIFIED_BACKENDS: frozenset[str] = frozenset()
_CHUNK = 128  # logits compared per vector step when ranking


# ----------------------------------------------------------------- kernel


def _beats(key_j, cls_j, j, key_i, cls_i, i):
  """`[I, J]` bool: tile j ranks before tile i. Order: class (0 number,
  1 NaN, 2 padding) ascending, then score descending, then index."""
  cj, ci = cls_j[None, :], cls_i[:, None]
  xj, xi = key_j[None, :], key_i[:, None]
  same = cj == ci
  return (
      (cj < ci)
      | (same & (xj > xi))
      | (same & (xj == xi) & (j[None, :] < i[:, None]))
  )


def _classes(x, pos, n_valid):
  """`x: [M]` float32 -> (score with NaN as 0, class 0/1/2) for ranking."""
  nan = jnp.isnan(x)
  cls = jnp.where(pos >= n_valid, 2, nan.astype(jnp.int32))
  return jnp.where(nan, 0.0, x), cls


def _rank_row(logits_ref, n_valid: int):
  """Ranks `[Np]` int32 of one padded logits row `[1, Np]` (0 = best)."""
  n_pad = logits_ref.shape[-1]
  pos = jax.lax.broadcasted_iota(jnp.int32, (n_pad,), 0)
  key, cls = _classes(logits_ref[0, :].astype(jnp.float32), pos, n_valid)

  def chunk(c, rank):
    start = pl.multiple_of(c * _CHUNK, _CHUNK)
    xj = logits_ref[0, pl.ds(start, _CHUNK)].astype(jnp.float32)
    j = start + jax.lax.broadcasted_iota(jnp.int32, (_CHUNK,), 0)
    kj, cj = _classes(xj, j, n_valid)
    return rank + _beats(kj, cj, j, key, cls, pos).astype(jnp.int32).sum(1)

  return jax.lax.fori_loop(
      0, n_pad // _CHUNK, chunk, jnp.zeros((n_pad,), jnp.int32)
  )


def _select_gather_kernel(
    logits_ref,
    k_ref,
    hr_ref,
    idx_ref,
    valid_ref,
    tiles_ref,
    *scratch,
    grid: int,
    tile: int,
    channels: int,
    k_max: int,
    n_valid: int,
    dma: bool,
):
  """One scene per program.

  logits_ref `[1, Np]`; k_ref `[1]` int32; idx_ref / valid_ref `[1, Kp]`
  int32 (Np, Kp powers of two; padding ranks last).
  Row path (GPU/Triton and interpret): hr_ref `[H*W*C]` (this scene,
  flat), tiles_ref `[k_max*t*t*C]`; each selected tile is t row copies of
  t*C contiguous values (masked to a power-of-two width).
  DMA path (TPU): hr_ref `[B, G, t, G, t*C]`, tiles_ref `[B, k_max, t, t*C]`
  in HBM, scratch = (zeros `[t, t*C]` in VMEM,).
  """
  # Blocks are [1, Np] / [1, Kp] (TPU tiling wants the full trailing dims).
  rank = _rank_row(logits_ref, n_valid)  # [Np]
  pos = jax.lax.broadcasted_iota(jnp.int32, rank.shape, 0)
  slots = jax.lax.broadcasted_iota(jnp.int32, (idx_ref.shape[-1],), 0)
  idx = jnp.where(rank[None, :] == slots[:, None], pos[None, :], 0).sum(1)
  b = pl.program_id(0)
  k = jnp.clip(k_ref[b] if dma else k_ref[0], 0, k_max)
  idx_ref[0, :] = idx
  valid_ref[0, :] = (slots < k).astype(jnp.int32)
  t, C = tile, channels
  row = t * C  # contiguous values per row
  width = pl.next_power_of_2(row)
  lanes = jax.lax.broadcasted_iota(jnp.int32, (width,), 0)
  in_row = lanes < row
  hr_row_stride = grid * row  # W * C

  def copy(s, carry):
    # The tile of slot s by reducing the ranks, never by reading back idx_ref:
    # TPU reads no scalar from vector memory, and on Triton a read of what
    # other threads of this program just stored is unordered (no barrier).
    n = jnp.where(rank == s, pos, 0).sum()
    gy, gx = n // grid, n % grid
    if dma:
      pltpu.sync_copy(hr_ref.at[b, gy, :, gx, :], tiles_ref.at[b, s])
      return carry

    def one_row(r, c):
      src = (gy * t + r) * hr_row_stride + gx * row
      vals = pltriton.load(hr_ref.at[pl.ds(src, width)], mask=in_row, other=0)
      pltriton.store(
          tiles_ref.at[pl.ds((s * t + r) * row, width)], vals, mask=in_row
      )
      return c

    return jax.lax.fori_loop(0, t, one_row, carry)

  def zero(s, carry):
    if dma:
      pltpu.sync_copy(scratch[0], tiles_ref.at[b, s])
      return carry

    def one_row(r, c):
      pltriton.store(
          tiles_ref.at[pl.ds((s * t + r) * row, width)],
          jnp.zeros((width,), tiles_ref.dtype),
          mask=in_row,
      )
      return c

    return jax.lax.fori_loop(0, t, one_row, carry)

  if dma:
    scratch[0][...] = jnp.zeros(scratch[0].shape, scratch[0].dtype)
  jax.lax.fori_loop(0, k, copy, 0)
  jax.lax.fori_loop(k, k_max, zero, 0)


def _pad_logits(logits: jax.Array) -> jax.Array:
  """`[B, N]` -> `[B, Np]`, Np = a power of two >= max(N, _CHUNK) (padding
  ranks last; Triton wants power-of-two vector shapes)."""
  n = logits.shape[1]
  n_pad = max(pl.next_power_of_2(n), _CHUNK)
  return jnp.pad(logits, ((0, 0), (0, n_pad - n)))


def kernel(
    logits: jax.Array,
    hr: jax.Array,
    grid: int,
    k_max: int,
    k: jax.Array | None = None,
    *,
    interpret=False,
    dma: bool | None = None,
):
  """The fused Pallas select + gather; same contract as `reference`.

  interpret: False on GPU/TPU; True (generic) or `pltpu.InterpretParams()`
  (TPU semantics, DMAs included) to run on the CPU. dma: copy tiles by
  HBM->HBM DMA (default: on TPU, or with TPU interpret params); otherwise
  the row path (the GPU path, run as is by the interpreter).
  """
  B, N = logits.shape
  H, W, C = hr.shape[1:]
  t = H // grid
  if dma is None:
    dma = isinstance(interpret, pltpu.InterpretParams) or (
        interpret is False and jax.default_backend() == "tpu"
    )
  k = (
      jnp.full((B,), k_max, jnp.int32)
      if k is None
      else jnp.broadcast_to(jnp.asarray(k, jnp.int32), (B,))
  )
  padded = _pad_logits(logits)[:, None, :]  # [B, 1, Np]
  n_pad = padded.shape[-1]
  k_pad = max(pl.next_power_of_2(max(k_max, 1)), 1)
  row = lambda b: (b, 0, 0)
  in_specs = [
      pl.BlockSpec((None, 1, n_pad), row),
      # TPU: the counts as scalars in SMEM (whole array).
      pl.BlockSpec(memory_space=pltpu.SMEM)
      if dma
      else pl.BlockSpec((1,), lambda b: (b,)),
  ]
  out_shape = [
      jax.ShapeDtypeStruct((B, 1, k_pad), jnp.int32),
      jax.ShapeDtypeStruct((B, 1, k_pad), jnp.int32),
  ]
  out_specs = [
      pl.BlockSpec((None, 1, k_pad), row),
      pl.BlockSpec((None, 1, k_pad), row),
  ]
  scratch, params = [], None
  if dma:
    hr_in = hr.reshape(B, grid, t, grid, t * C)  # free reshape
    in_specs.append(pl.BlockSpec(memory_space=pl.ANY))
    out_shape.append(jax.ShapeDtypeStruct((B, k_max, t, t * C), hr.dtype))
    out_specs.append(pl.BlockSpec(memory_space=pl.ANY))
    scratch = [pltpu.VMEM((t, t * C), hr.dtype)]
  else:
    hr_in = hr.reshape(B, H * W * C)  # free reshape
    size = k_max * t * t * C
    in_specs.append(pl.BlockSpec((None, H * W * C), lambda b: (b, 0)))
    out_shape.append(jax.ShapeDtypeStruct((B, size), hr.dtype))
    out_specs.append(pl.BlockSpec((None, size), lambda b: (b, 0)))
    if interpret is False:  # GPU: Triton (refs stay in global memory)
      params = pltriton.CompilerParams(num_warps=4, num_stages=1)
  idx, valid, tiles = pl.pallas_call(
      functools.partial(
          _select_gather_kernel,
          grid=grid,
          tile=t,
          channels=C,
          k_max=k_max,
          n_valid=N,
          dma=dma,
      ),
      out_shape=out_shape,
      grid=(B,),
      in_specs=in_specs,
      out_specs=out_specs,
      scratch_shapes=scratch,
      interpret=interpret,
      compiler_params=params,
      name="tile_select_gather",
  )(padded, k, hr_in)
  return (
      idx[:, 0, :k_max],
      valid[:, 0, :k_max].astype(bool),
      tiles.reshape(B, k_max, t, t, C),
  )


# ------------------------------------------------------------- dispatcher


def _check(logits, hr, grid: int, k_max: int, impl: str) -> None:
  if impl not in IMPLS:
    raise ValueError(
        f"impl={impl!r} (config.model.select_impl) must be one of {IMPLS}"
    )
  if logits.ndim != 2 or hr.ndim != 4 or logits.shape[0] != hr.shape[0]:
    raise ValueError(
        f"expected logits [B, N] and hr [B, H, W, C] with the "
        f"same B, got {logits.shape} and {hr.shape}"
    )
  n = logits.shape[1]
  if n != grid * grid or hr.shape[1] != hr.shape[2] or hr.shape[1] % grid:
    raise ValueError(
        f"logits {logits.shape} and hr {hr.shape} do not form a {grid}x{grid} "
        f"tile grid: N must be grid**2 and H = W divisible by grid"
    )
  budgets.check_k(k_max, n, "k_max")


def use_kernel(impl: str, backend: str | None = None) -> bool:
  """`auto` -> the kernel on a backend in `VERIFIED_BACKENDS` (default: JAX's
  default backend), the reference elsewhere; `kernel` / `reference` as
  named."""
  if impl == "auto":
    return (backend or jax.default_backend()) in VERIFIED_BACKENDS
  return impl == "kernel"


def select_and_gather(
    logits: jax.Array,
    hr: jax.Array,
    grid: int,
    k_max: int,
    k: jax.Array | None = None,
    *,
    prices: jax.Array | None = None,
    total=None,
    fill: bool = False,
    impl: str = "auto",
    interpret: bool | None = None,
):
  """Selected tiles under a count or a price budget.

  logits: `[B, N]`; hr: `[B, H, W, C]`; k_max: static int (with a price
  budget, a cap on the tiles one scene can afford; N always works).
  Count budget: k, optional `[B]` counts <= k_max. Price budget: prices
  `[B, N]` and total (scalar or `[B]`): tiles bought greedily by
  sigmoid(logits) / price (`tile_select_reference.price_budget`), best logit
  first; validate on the host with `budgets.check_cost_budget`.
  Returns (idx `[B, k_max]` int32, valid `[B, k_max]` bool,
  tiles `[B, k_max, t, t, C]`). Differentiable in `hr` (scatter backward).
  """
  _check(logits, hr, grid, k_max, impl)
  logits, k = ref.budgeted(logits, k_max, k, prices, total, fill)
  if use_kernel(impl):
    if interpret is None:
      interpret = jax.default_backend() == "cpu"
    fn = functools.partial(kernel, interpret=interpret)
  else:
    fn = ref.reference
  return _with_scatter_vjp(fn, logits, hr, grid, k_max, k)


def select(logits, k_max: int, k=None, *, prices=None, total=None, fill=False):
  """The selection of `select_and_gather` without the gather (what a model
  plans before buying tiles): (idx `[B, k_max]`, valid `[B, k_max]`). The
  kernel fuses the selection with the gather; its indices equal these."""
  logits, k = ref.budgeted(logits, k_max, k, prices, total, fill)
  return ref.topk_indices(logits, k_max, k)


# --------------------------------------------------------------- gradient


def _with_scatter_vjp(fn, logits, hr, grid, k_max, k):
  """Runs `fn` with a backward that scatters tile cotangents into `hr`."""

  @jax.custom_vjp
  def run(logits, hr, k):
    return fn(logits, hr, grid, k_max, k)

  def fwd(logits, hr, k):
    out = fn(logits, hr, grid, k_max, k)
    return out, (out[0], out[1], logits, k)

  def bwd(res, cts):
    idx, valid, logits, k = res
    g = jnp.where(valid[:, :, None, None, None], cts[2], 0)  # [B, k, t, t, C]
    B, _, t, _, C = g.shape
    g_tiles = jnp.zeros((B, grid * grid, t, t, C), g.dtype)
    g_tiles = g_tiles.at[jnp.arange(B)[:, None], idx].add(g)
    g_hr = einops.rearrange(
        g_tiles, "b (gy gx) t1 t2 c -> b (gy t1) (gx t2) c", gy=grid, gx=grid
    )
    k_ct = None if k is None else jnp.zeros(k.shape, jax.dtypes.float0)
    return jnp.zeros_like(logits), g_hr, k_ct

  run.defvjp(fwd, bwd)
  return run(logits, hr, k)
