"""The fused select + gather kernel (interpret mode) against the reference."""

import json

import jax
from jax.experimental.pallas import tpu as pltpu
import jax.numpy as jnp
import numpy as np
import pytest

from crossscale.kernels import tile_select as ts
from crossscale.kernels import tile_select_reference as ref


def _inputs(seed, B, grid, t, C, dtype=jnp.float32, ties=False, nans=False):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(B, grid * grid))
  if ties:  # few distinct values: many ties, +-0.0 among them
    logits = rng.integers(-2, 3, size=logits.shape).astype(np.float64)
    logits[:, ::5] = -0.0
  if nans:
    logits[rng.random(logits.shape) < 0.1] = np.nan
    logits[0, :2] = [np.inf, -np.inf]
  hr = rng.normal(size=(B, grid * t, grid * t, C))
  return jnp.asarray(logits, dtype), jnp.asarray(hr, dtype)


def _assert_same(a, b):
  for name, x, y in zip(("idx", "valid", "tiles"), a, b):
    assert x.dtype == y.dtype and x.shape == y.shape, name
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


CASES = [  # B, grid, t, C, k_max, per-sample k, dtype, ties, nans
    (2, 3, 4, 3, 1, False, jnp.float32, False, False),  # odd N=9, k=1
    (2, 3, 4, 3, 9, False, jnp.float32, False, False),  # k = N
    (3, 5, 2, 12, 4, True, jnp.float32, False, False),  # per-sample k
    (4, 7, 2, 1, 6, True, jnp.bfloat16, True, False),  # bf16 + ties
    (2, 11, 3, 4, 15, False, jnp.float32, True, True),  # N=121, NaN, inf
    (1, 12, 2, 3, 18, True, jnp.bfloat16, False, False),  # N=144 > chunk
    (2, 32, 1, 2, 128, True, jnp.float32, True, False),  # N=1024, k=N/8
]


@pytest.mark.parametrize("B,grid,t,C,k_max,per_sample,dtype,ties,nans", CASES)
def test_kernel_equals_reference(
    B, grid, t, C, k_max, per_sample, dtype, ties, nans
):
  logits, hr = _inputs(B * grid + k_max, B, grid, t, C, dtype, ties, nans)
  k = None
  if per_sample:
    k = (
        jnp.asarray(
            np.random.default_rng(k_max).integers(0, k_max + 1, B), jnp.int32
        )
        .at[0]
        .set(k_max)
    )
  want = ref.reference(logits, hr, grid, k_max, k)
  _assert_same(ts.kernel(logits, hr, grid, k_max, k, interpret=True), want)


def test_tpu_dma_path_equals_reference():
  """The TPU variant (scenes in HBM, DMA per selected tile, zero scratch)
  under Pallas' TPU interpreter."""
  logits, hr = _inputs(3, 3, 6, 4, 3, ties=True)
  k = jnp.array([1, 7, 0], jnp.int32)
  _assert_same(
      ts.kernel(logits, hr, 6, 7, k, interpret=pltpu.InterpretParams()),
      ref.reference(logits, hr, 6, 7, k),
  )


def test_reference_semantics_by_hand():
  logits = jnp.array([[0.5, 2.0, 2.0, jnp.nan, -1.0, 0.5, 3.0, 0.0, 2.0]])
  hr = jnp.arange(6 * 6, dtype=jnp.float32).reshape(1, 6, 6, 1)
  idx, valid, tiles = ref.reference(logits, hr, 3, 5, jnp.array([4]))
  assert idx.tolist() == [[6, 1, 2, 8, 0]]  # ties: lowest index first
  assert valid.tolist() == [[True, True, True, True, False]]
  # tile 6 = row 2, col 0 of the 3x3 grid: HR rows 4..5, cols 0..1
  np.testing.assert_array_equal(tiles[0, 0, :, :, 0], [[24, 25], [30, 31]])
  assert not np.asarray(tiles[0, 4]).any()  # invalid slot is zeros
  nan_last = ref.reference(logits, hr, 3, 9)[0][0, -1]
  assert int(nan_last) == 3


@pytest.mark.parametrize("impl", ["reference", "kernel"])
def test_gather_backward_scatters_into_selected_tiles(impl):
  logits, hr = _inputs(7, 2, 4, 3, 2)
  k = jnp.array([3, 5], jnp.int32)
  w = jax.random.normal(jax.random.key(0), (2, 5, 3, 3, 2))

  def loss(hr, impl):
    return (ts.select_and_gather(logits, hr, 4, 5, k, impl=impl)[2] * w).sum()

  g = jax.grad(loss)(hr, impl)

  # Independent: autodiff through plain take_along_axis of all tiles.
  def plain(hr):
    idx, valid = ref.topk_indices(logits, 5, k)
    tiles = hr.reshape(2, 4, 3, 4, 3, 2).transpose(0, 1, 3, 2, 4, 5)
    tiles = tiles.reshape(2, 16, 3, 3, 2)
    sel = jnp.take_along_axis(tiles, idx[:, :, None, None, None], axis=1)
    return (sel * valid[:, :, None, None, None] * w).sum()

  np.testing.assert_allclose(g, jax.grad(plain)(hr), rtol=0, atol=1e-6)
  # Nothing flows into tiles that were not bought.
  idx, valid, _ = ref.reference(logits, hr, 4, 5, k)
  touched = np.zeros((2, 16), bool)
  for b in range(2):
    touched[b, np.asarray(idx[b])[np.asarray(valid[b])]] = True
  g_tiles = np.abs(np.asarray(g)).reshape(2, 4, 3, 4, 3, 2).sum((2, 4, 5))
  assert ((g_tiles.reshape(2, 16) > 0) == touched).all()


@pytest.mark.parametrize("impl", ["reference", "kernel"])
def test_cost_budget(impl):
  logits, hr = _inputs(11, 2, 5, 2, 3)
  prices = jnp.asarray(
      np.random.default_rng(1).uniform(0.5, 3, (2, 25)), jnp.float32
  )
  total = jnp.array([4.0, 10.0])
  idx, valid, tiles = ts.select_and_gather(
      logits, hr, 5, 25, prices=prices, total=total, impl=impl
  )
  bought = np.asarray(
      ref.select_under_cost(jax.nn.sigmoid(logits), prices, total)
  )
  for b in range(2):
    chosen = np.asarray(idx[b])[np.asarray(valid[b])]
    assert set(chosen.tolist()) == set(np.flatnonzero(bought[b]).tolist())
    assert float(prices[b, chosen].sum()) <= float(total[b]) + 1e-6
    scores = np.asarray(logits[b, chosen])
    assert (np.diff(scores) <= 0).all()  # best first
  assert not np.asarray(tiles)[~np.asarray(valid)].any()


@pytest.mark.parametrize("budget", ["count", "per_scene", "price"])
def test_select_is_the_selection_of_select_and_gather(budget):
  """`select` (what a model plans from the LR view alone) returns the
  indices and validity that `select_and_gather` (kernel and reference)
  gathers, under every budget."""
  logits, hr = _inputs(5, 3, 4, 2, 2, ties=True)
  kw = {
      "count": {},
      "per_scene": {"k": jnp.array([0, 2, 5], jnp.int32)},
      "price": {
          "prices": jnp.asarray(
              np.random.default_rng(2).uniform(0.5, 2, (3, 16)), jnp.float32
          ),
          "total": jnp.array([1.0, 3.0, 6.0]),
      },
  }[budget]
  idx, valid = ts.select(logits, 5, **kw)
  for impl in ("reference", "kernel"):
    got = ts.select_and_gather(logits, hr, 4, 5, impl=impl, **kw)
    np.testing.assert_array_equal(got[0], idx, err_msg=impl)
    np.testing.assert_array_equal(got[1], valid, err_msg=impl)
  if budget != "count":  # the budgets leave slots unbought
    assert not np.asarray(valid).all()


def test_auto_dispatch_trusts_only_verified_backends(monkeypatch):
  # No backend has run the kernel on its device yet: auto is the reference
  # on GPU and TPU too, until --device-check passes there.
  assert ts.VERIFIED_BACKENDS == frozenset()
  for backend in ("cpu", "gpu", "tpu"):
    assert not ts.use_kernel("auto", backend)
    assert ts.use_kernel("kernel", backend)
    assert not ts.use_kernel("reference", backend)
  monkeypatch.setattr(ts, "VERIFIED_BACKENDS", frozenset({"gpu"}))
  assert ts.use_kernel("auto", "gpu") and not ts.use_kernel("auto", "tpu")


def test_device_check_on_cpu_checks_the_interpreted_kernel(tmp_path):
  from benchmarks import tile_select_speed as bench

  out = bench.main(["--device-check", "--out", str(tmp_path)])
  saved = json.loads((tmp_path / "tile_select_device_check.json").read_text())
  assert saved["passed"] and all(c["equal"] for c in saved["cases"])
  assert {c["case"] for c in saved["cases"]} >= {"ties", "nan", "prices"}
  # The CPU interpreter verifies no device and times nothing.
  assert saved["interpreted"] and not saved["verified"] and not out["rows"]


def test_auto_dispatch_uses_reference_on_cpu():
  logits, hr = _inputs(0, 2, 4, 2, 1)
  assert not ts.use_kernel("auto")
  jaxpr = str(
      jax.make_jaxpr(
          lambda l, h: ts.select_and_gather(l, h, 4, 3, impl="auto")
      )(logits, hr)
  )
  assert "pallas_call" not in jaxpr
  forced = str(
      jax.make_jaxpr(
          lambda l, h: ts.select_and_gather(l, h, 4, 3, impl="kernel")
      )(logits, hr)
  )
  assert "pallas_call" in forced


def test_bad_inputs_are_clear_errors():
  logits, hr = _inputs(0, 2, 4, 2, 1)
  with pytest.raises(ValueError, match="k_max = 17"):
    ts.select_and_gather(logits, hr, 4, 17)
  with pytest.raises(ValueError, match="tile grid"):
    ts.select_and_gather(logits, hr, 3, 2)
  with pytest.raises(ValueError, match=r"impl=.*config\.model\.select_impl"):
    ts.select_and_gather(logits, hr, 4, 2, impl="triton")
  with pytest.raises(ValueError, match="no tile count k"):
    ts.select_and_gather(logits, hr, 4, 2, jnp.ones(2, jnp.int32), prices=hr)


@pytest.mark.parametrize(
    "grid,t,C,k_max", [(10, 32, 3, 12), (32, 8, 12, 128), (5, 6, 5, 3)]
)
def test_kernel_lowers_for_gpu_triton(grid, t, C, k_max):
  """No GPU here: lower the GPU (Triton) kernel for CUDA on the CPU, which
  runs Pallas' Triton lowering and MLIR verification (power-of-two shapes,
  indexing); compiling to PTX needs a GPU."""
  from jax import export

  logits = jax.ShapeDtypeStruct((4, grid * grid), jnp.float32)
  hr = jax.ShapeDtypeStruct((4, grid * t, grid * t, C), jnp.bfloat16)
  fn = jax.jit(
      lambda l, h: ts.kernel(l, h, grid, k_max, interpret=False, dma=False)
  )
  exp = export.export(
      fn,
      platforms=["cuda"],
      disabled_checks=[
          export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")
      ],
  )(logits, hr)
  assert "xla.gpu.triton" in exp.mlir_module()


@pytest.mark.parametrize("grid,t,C,k_max", [(10, 32, 3, 12), (32, 8, 12, 128)])
def test_kernel_lowers_for_tpu_mosaic(grid, t, C, k_max, monkeypatch):
  """No TPU here: lower the TPU (DMA) kernel through Pallas' Mosaic lowering
  (block-shape rules, SMEM/VMEM/HBM placement, supported ops) for a v5e,
  registered as the CPU's 'TPU info' (a jax-internal table)."""
  from jax import export
  from jax._src.pallas.mosaic import tpu_info  # pylint: disable=g-import-not-at-top

  monkeypatch.setitem(
      tpu_info.registry,
      jax.devices()[0].device_kind,
      lambda: tpu_info.get_tpu_info_for_chip(tpu_info.ChipVersion.TPU_V5E, 1),
  )
  logits = jax.ShapeDtypeStruct((4, grid * grid), jnp.float32)
  hr = jax.ShapeDtypeStruct((4, grid * t, grid * t, C), jnp.float32)
  fn = jax.jit(
      lambda l, h: ts.kernel(l, h, grid, k_max, interpret=False, dma=True)
  )
  exp = export.export(fn, platforms=["tpu"])(logits, hr)
  assert "tpu_custom_call" in exp.mlir_module()
