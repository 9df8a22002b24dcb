"""Models, picked by name from `config.model.name`: the one place to add one.

A model is a linen Module called as `model.apply({"params": p}, batch,
train=..., rngs=...)` returning {"logits": [B, K], "aux_losses": {name: ()}}
and optionally
"metrics": {name: [B]} (per-example values the evaluators average) and
"embedding": [B, E] (L2-normalised, for retrieval metrics). The trainer adds
the task loss on the logits (when there are logits) to the weighted aux
losses. Models are called with rngs "dropout" and "selection". A model may
define `load_pretrained(params) -> params` (host trees): the trainer calls it
after initialisation, e.g. to load frozen pretrained encoders.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from crossscale.models import (
    cross_scale,
    cross_scale_pretrain,
    dense_backbones,
    refseg,
    sr,
    sr_diffusion,
    sr_gan,
    vit,
)

_MODELS = {
    "lr_vit": vit.LRClassifier,
    "cross_scale": cross_scale.CrossScaleModel,
    "xs_pretrain": cross_scale_pretrain.CrossScalePretrain,
    **sr.SR_MODELS,
    **sr_gan.SR_GAN_MODELS,
    **sr_diffusion.SR_DIFFUSION_MODELS,
    "refseg": refseg.RefSegModel,
    "refseg_backbone_cls": refseg.BackboneClassifier,
    "downstream": dense_backbones.DownstreamModel,
}


def field_names(name: str) -> set[str]:
  """The constructor fields of model `name` (the trainer fills `num_classes`
  and `grid` from the dataset where a model has them)."""
  _check(name)
  return {f.name for f in dataclasses.fields(_MODELS[name])}


def _check(name: str) -> None:
  if name not in _MODELS:
    raise ValueError(
        f"unknown model {name!r} (config.model.name); known: "
        f"{sorted(_MODELS)}"
    )


def get_model(name: str, **kwargs: Any) -> nn.Module:
  _check(name)
  return _MODELS[name](**kwargs)
