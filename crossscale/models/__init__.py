"""Models, picked by name from `config.model.name`: the one place to add one.

A model is a linen Module called as `model.apply({"params": p}, batch,
train=..., rngs=...)` returning {"logits": [B, K], "aux_losses": {name: ()}}:
the trainer adds the task loss on the logits to the weighted aux losses.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from crossscale.models import vit

_MODELS = {
    "lr_vit": vit.LRClassifier,
}


def get_model(name: str, **kwargs: Any) -> nn.Module:
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r} (config.model.name); known: "
                     f"{sorted(_MODELS)}")
  return _MODELS[name](**kwargs)
