"""Issue 22: the band table and the wavelength band embedding."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from crossscale import bands, shards, train
from crossscale.models import convnet, cross_scale, vit

S2_12 = (
    "B01", "B02", "B03", "B04", "B05", "B06",
    "B07", "B08", "B8A", "B09", "B11", "B12",
)  # fmt: skip


def test_band_table_names_and_unknown_band_error():
  assert bands.lookup("B04") == (665.0, 31.0)  # Sentinel-2 red
  assert bands.lookup("B4") == (655.0, 37.0)  # Landsat 8 OLI red
  assert bands.lookup("red") == bands.lookup("R")
  assert bands.lookup("sr_b5") == bands.lookup("B5")
  wl = bands.wavelengths(("R", "G", "B", "NIR"))
  assert wl.shape == (4, 2) and wl.dtype == np.float32
  assert wl[3, 0] > wl[0, 0] > wl[1, 0] > wl[2, 0]  # NIR > R > G > B
  with pytest.raises(ValueError, match="unknown band 'B13'.*Known bands: R, G"):
    bands.lookup("B13")
  with pytest.raises(ValueError, match="no band names"):
    bands.wavelengths(())


def _apply_bands(module, params, x, names):
  return module.clone(bands=names).apply({"params": params}, x)


@pytest.mark.parametrize(
    "module",
    [
        vit.Encoder(
            width=16, depth=1, num_heads=2, mlp_dim=16,
            band_embedding="wavelength", bands=("R", "G", "B"),
        ),
        convnet.ConvEncoder(
            width=16, depth=1, band_embedding="wavelength",
            bands=("R", "G", "B"),
        ),
    ],  # fmt: skip
    ids=["vit", "cnn"],
)
def test_one_encoder_reads_3_4_and_12_bands_with_the_same_params(module):
  rng = np.random.default_rng(0)
  x12 = jnp.asarray(rng.normal(size=(2, 8, 8, 12)), jnp.float32)
  params = module.init(jax.random.key(0), x12[..., :3])["params"]
  outs = {}
  for names in (("R", "G", "B"), ("R", "G", "B", "NIR"), S2_12):
    x = x12[..., : len(names)]
    outs[len(names)] = _apply_bands(module, params, x, names)
    assert np.all(np.isfinite(outs[len(names)]))
  assert outs[3].shape == outs[4].shape == outs[12].shape
  assert not np.allclose(outs[3], outs[4], atol=1e-3)
  # Bands are read by wavelength, not position: reordering the channels
  # together with their names changes nothing ...
  perm = _apply_bands(module, params, x12[..., 2::-1], ("B", "G", "R"))
  np.testing.assert_allclose(perm, outs[3], rtol=1e-4, atol=1e-5)
  # ... and renaming them does.
  renamed = _apply_bands(module, params, x12[..., :3], ("B", "G", "R"))
  assert not np.allclose(renamed, outs[3], atol=1e-3)


def test_cross_scale_params_do_not_depend_on_the_bands():
  def shapes(lr_bands, hr_bands):
    m = cross_scale.CrossScaleModel(
        num_classes=3,
        grid=2,
        lr_encoder=dict(width=8, depth=1, num_heads=2, mlp_dim=8),
        hr_encoder=dict(kind="cnn", width=8, depth=1),
        sampler=dict(width=8, depth=1, num_heads=2),
        predictor=dict(width=8, depth=1, num_heads=2, mlp_dim=8),
        band_embedding="wavelength",
        lr_bands=lr_bands,
        hr_bands=hr_bands,
        select_impl="reference",
    )
    batch = {
        "lr": jnp.zeros((1, 4, 4, len(lr_bands))),
        "hr": jnp.zeros((1, 16, 16, len(hr_bands))),
    }
    v = jax.eval_shape(
        lambda: m.init(
            {"params": jax.random.key(0), "selection": jax.random.key(0)},
            batch,
        )
    )
    return jax.tree.map(lambda s: s.shape, v["params"])

  rgb = shapes(("R", "G", "B"), ("R", "G", "B"))
  assert rgb == shapes(S2_12[5:11], ("B02", "B03", "B04", "B08"))
  with pytest.raises(ValueError, match="unknown band 'X1'"):
    shapes(("X1",), ("R",))


def test_make_model_takes_bands_and_gsd_from_the_manifest(toyworld_small):
  manifest = shards.load_manifest(toyworld_small)
  from experiments.configs import cross_scale as cfg  # pylint: disable=g-import-not-at-top

  c = cfg.get_config("runlocal")
  assert isinstance(c, ml_collections.ConfigDict)
  c.model.band_embedding = "wavelength"
  m = train.make_model(c, manifest)
  assert m.lr_bands == tuple(manifest.lr_bands) == ("R", "G", "B")
  assert (m.lr_gsd, m.hr_gsd) == (manifest.lr_gsd, manifest.hr_gsd)
  c.model.hr_bands = ("B02", "B03", "B04")  # an override wins
  assert train.make_model(c, manifest).hr_bands == ("B02", "B03", "B04")
