"""What plan and predict need of a trained cross-scale run or its export.

`load(workdir=..., export_dir=...)` -> `RunSpec`: the run's scene sizes,
tile grid, bands, GSDs (and whether they are true ground distances),
normalisation, budget, classes, and `score(lr [B, h, w, C]) -> tile logits
[B, G*G]`: the sampler's logits, from the in-process model
(`model.apply(..., method="plan")`) or the export's `sample` function (the
same program, so the same logits).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import numpy as np

from crossscale import shards

MODEL_BATCH = 32  # scenes per model call (fixed: one compile)


@dataclasses.dataclass
class RunSpec:
  """A run as plan/predict use it. Shapes are [h, w, C] (LR), [H, W, C]."""

  lr_shape: tuple[int, int, int]
  hr_shape: tuple[int, int, int]
  grid: int
  lr_bands: list[str]
  hr_bands: list[str]
  lr_gsd: float
  hr_gsd: float
  gsd_known: bool  # records carry true metres (else: ratio only)
  stats: dict[str, tuple[np.ndarray, np.ndarray]]  # "lr"/"hr": mean, std
  k: int  # the run's tiles per scene
  class_names: list[str]
  multi_label: bool
  score: Callable[[np.ndarray], np.ndarray]
  source: dict
  model: Any = None  # in-process only (predict)
  params: Any = None

  @property
  def scale(self) -> float:
    return self.lr_gsd / self.hr_gsd

  @property
  def n_tiles(self) -> int:
    return self.grid * self.grid

  def standardise(self, x: np.ndarray, side: str = "lr") -> np.ndarray:
    mean, std = self.stats[side]
    return (x.astype(np.float32) - mean) / std


def batched(fn: Callable, batch: int = MODEL_BATCH) -> Callable:
  """`fn` (array -> array or pytree of arrays) on fixed-size batches of
  `x: [S, ...]` (the last one padded): one compile whatever S."""

  def call(x: np.ndarray):
    outs = []
    for s in range(0, len(x), batch):
      part = x[s : s + batch]
      n = len(part)
      if n < batch:
        part = np.concatenate(
            [part, np.zeros((batch - n,) + part.shape[1:], part.dtype)]
        )
      outs.append(jax.tree.map(lambda a, n=n: np.asarray(a)[:n], fn(part)))
    return jax.tree.map(lambda *a: np.concatenate(a), *outs)

  return call


def _stats(band_stats: dict) -> dict:
  return {
      k: (np.asarray(v["mean"], np.float32), np.asarray(v["std"], np.float32))
      for k, v in band_stats.items()
  }


def from_workdir(
    workdir: str, data_dir: str | None = None, step: int | None = None
) -> RunSpec:
  """The run in `workdir` restored in-process (its records directory from
  its config, or `data_dir`)."""
  # pylint: disable=g-import-not-at-top  (training code only when needed)
  from crossscale import export
  from crossscale.models import cross_scale

  config = export.load_config(workdir)
  path = export.records_dir(config, data_dir)
  manifest = shards.load_manifest(path)
  model = export.build_model(config, manifest)
  if not isinstance(model, cross_scale.CrossScaleModel):
    raise ValueError(
        f"{workdir} is a {config.model.name!r} run: planning needs a "
        "cross_scale run (a sampler that scores HR tiles from the LR view)."
    )
  model = model.clone(select_impl="reference")
  params, step = export.restore_params(config, manifest, workdir, step)

  @jax.jit
  def logits(p, lr):
    out = model.apply(
        {"params": p},
        {"lr": lr},
        rngs={"selection": jax.random.key(0)},
        method="plan",
    )
    return out["tile_logits"]

  return RunSpec(
      lr_shape=tuple(manifest.lr_shape),
      hr_shape=tuple(manifest.hr_shape),
      grid=model.grid,
      lr_bands=list(manifest.lr_bands),
      hr_bands=list(manifest.hr_bands),
      lr_gsd=float(manifest.lr_gsd),
      hr_gsd=float(manifest.hr_gsd),
      gsd_known=manifest.gsd_known,
      stats=_stats(manifest.band_stats),
      k=int(model.k()),
      class_names=list(manifest.class_names),
      multi_label=bool(manifest.multi_label),
      score=batched(lambda x: logits(params, x)),
      source={"workdir": workdir, "step": int(step), "records": path},
      model=model,
      params=params,
  )


def from_export(export_dir: str) -> RunSpec:
  """An export directory (crossscale.export) through crossscale.serving."""
  from crossscale import serving  # pylint: disable=g-import-not-at-top

  m = serving.load(export_dir)
  if "sample" not in m.functions:
    raise ValueError(
        f"{export_dir} exports no `sample` function ({m.model_name}): "
        "planning needs an export of a cross_scale run."
    )
  d, tiles = m.manifest["dataset"], m.manifest["model"]["tiles"]
  return RunSpec(
      lr_shape=tuple(d["lr_shape"]),
      hr_shape=tuple(d["hr_shape"]),
      grid=int(tiles["grid"]),
      lr_bands=list(d["lr_bands"]),
      hr_bands=list(d["hr_bands"]),
      lr_gsd=float(d["lr_gsd"]),
      hr_gsd=float(d["hr_gsd"]),
      gsd_known=(m.card or {}).get(
          "gsd_known", shards.gsd_in_metres(d.get("name", ""), d.get("builder"))
      ),
      stats=_stats(m.manifest["normalization"]),
      k=int(tiles["k"]),
      class_names=list(m.class_names),
      multi_label=bool((m.card or {}).get("multi_label", False)),
      score=batched(lambda x: m.sample(x)["tile_logits"]),
      source={"export": export_dir, **m.manifest.get("source", {})},
  )


def load(
    workdir: str | None = None,
    export_dir: str | None = None,
    data_dir: str | None = None,
    step: int | None = None,
) -> RunSpec:
  if bool(workdir) == bool(export_dir):
    raise ValueError("give one of --workdir RUN or --export DIR.")
  if workdir:
    return from_workdir(workdir, data_dir, step)
  return from_export(export_dir)


# A raster whose band means sit this many training stds away, or this
# factor below, is taken to be in other pixel units (uint16 reflectance
# for a uint8-trained model, [0, 1] floats, ...).
UNIT_STDS, UNIT_FACTOR = 10.0, 20.0


def pixel_unit_problems(
    means: np.ndarray, spec: RunSpec, side: str, names: Sequence[str]
) -> list[str]:
  """Each band whose raster mean `means [C]` is implausible in the units
  the run was trained on (`spec.stats[side]`); [] when all look right."""
  mean, std = (np.asarray(v, np.float64) for v in spec.stats[side])
  out = []
  for name, m, mu, s in zip(names, means, mean, std):
    far = abs(m - mu) > UNIT_STDS * s
    small = mu > 0 and m < mu / UNIT_FACTOR
    if np.isfinite(m) and (far or small):
      out.append(f"band {name!r} averages {m:.4g} vs {mu:.4g} +- {s:.3g}")
  return out


def check_pixel_units(
    means: np.ndarray,
    spec: RunSpec,
    side: str,
    names: Sequence[str],
    flag: str,
    path: str,
) -> None:
  """ValueError naming the raster, the bands and the fix when its pixels
  look like other units than the run's training data."""
  bad = pixel_unit_problems(means, spec, side, names)
  if bad:
    mean = np.asarray(spec.stats[side][0], np.float64)
    ratio = float(np.nanmedian(mean / np.where(means == 0, np.nan, means)))
    raise ValueError(
        f"{flag} {path}: its pixels look like other units than the run's "
        f"{side.upper()} training data ({'; '.join(bad)}). Rescale them "
        f"with --{'hr_' if side == 'hr' else ''}pixel_scale F (pixels are "
        f"multiplied by F; about {ratio:.3g} would match the means), or "
        "pass --pixel_scale 1 if the units are right."
    )


def in_raster_units(spec: RunSpec, side: str, scale: float) -> RunSpec:
  """`spec` standardising raster pixels multiplied by `scale`:
  (scale x - mean) / std == (x - mean / scale) / (std / scale)."""
  if not scale > 0:
    raise ValueError(f"--pixel_scale must be > 0, got {scale}")
  mean, std = spec.stats[side]
  stats = {**spec.stats, side: (mean / scale, std / scale)}
  return dataclasses.replace(spec, stats=stats)


def in_units_of(
    spec: RunSpec,
    means: np.ndarray,
    side: str,
    scale: float | None,
    flag: str,
    path: str,
) -> RunSpec:
  """`spec` for a raster with band means `means [C]`: with --pixel_scale
  (`scale`) in those units; without, checked (`check_pixel_units`)."""
  if scale is None:
    names = spec.lr_bands if side == "lr" else spec.hr_bands
    check_pixel_units(means, spec, side, names, flag, path)
    return spec
  return in_raster_units(spec, side, scale)


def planning_gsd(
    spec: RunSpec, raster_gsd: float, hr_gsd: float | None, path: str
) -> tuple[float | None, str]:
  """(LR metres per planning pixel or None = the raster's own, a note).

  --hr_gsd wins; else a run with a true GSD plans at its LR GSD (resampling
  the raster; a raster more than 4x off is an error naming the fix); else
  at the raster's own resolution."""
  if hr_gsd is not None:
    lr = hr_gsd * spec.scale
    return lr, (
        f"--hr_gsd {hr_gsd:g} m: planning at {lr:g} m per LR pixel "
        f"(raster: {raster_gsd:.3g} m)"
    )
  if not spec.gsd_known:
    return None, (
        "the run's records carry no true GSD: planning at the raster's own "
        f"resolution ({raster_gsd:.3g} m per LR pixel, so HR tiles at "
        f"{raster_gsd / spec.scale:.3g} m per pixel); --hr_gsd overrides"
    )
  ratio = spec.lr_gsd / raster_gsd
  if not 0.25 <= ratio <= 4.0:
    raise ValueError(
        f"--lr {path} is at {raster_gsd:.3g} m per pixel but the run's LR is "
        f"at {spec.lr_gsd:.3g} m ({ratio:.2f}x apart; resampling more than "
        "4x is refused): use imagery near the run's GSD, or pass --hr_gsd "
        f"{raster_gsd / spec.scale:.3g} to plan at the raster's resolution."
    )
  if math.isclose(ratio, 1.0, rel_tol=1e-3):
    return None, f"raster at the run's LR GSD ({spec.lr_gsd:g} m)"
  return spec.lr_gsd, (
      f"resampling the raster from {raster_gsd:.3g} m to the run's LR GSD "
      f"{spec.lr_gsd:g} m"
  )
