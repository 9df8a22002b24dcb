"""Models, picked by name from `config.model.name`: the one place to add one.

A model is a linen Module called as `model.apply({"params": p}, batch,
train=..., rngs=...)` returning {"logits": [B, K], "aux_losses": {name: ()}} and optionally
"metrics": {name: [B]} (per-example values the evaluators average) and
"embedding": [B, E] (L2-normalised, for retrieval metrics). The trainer adds
the task loss on the logits (when there are logits) to the weighted aux
losses. Models are called with rngs "dropout" and "selection". A model may
define `load_pretrained(params) -> params` (host trees): the trainer calls it
after initialisation, e.g. to load frozen pretrained encoders.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from crossscale.models import cross_scale, sr, vit

_MODELS = {
    "lr_vit": vit.LRClassifier,
    "cross_scale": cross_scale.CrossScaleModel,
    **sr.SR_MODELS,
}


def get_model(name: str, **kwargs: Any) -> nn.Module:
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r} (config.model.name); known: "
                     f"{sorted(_MODELS)}")
  return _MODELS[name](**kwargs)
