"""A run's stored config (`workdir/config.json`, written by the trainer)
against the config about to run in that workdir.

Readers: the trainer, resuming a workdir (a config that no longer fits the
checkpoints is named key by key, with the flags that restore it); the
tradeoff sweep, deciding whether a finished cell is a run of the config it
asks for; `export.load_config`, rebuilding a run's model; launch.py, naming
the nearest key of a misspelled `--config.KEY=V` (`unknown_keys`).

User errors (a config that cannot run, bad data) raise `records.DataError`
or its subclass `ConfigError` here; launch.py prints the message alone and
exits 1 (no traceback).
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
from typing import Any, Sequence

import ml_collections

from crossscale import records

CONFIG_FILE = "config.json"

# Options whose default changed after they were added: a stored config
# without the key ran with this value (the module's default then), not with
# today's default.
VALUE_WHEN_ABSENT = {"model.sampler.prior": 0.0, "model.budget_tiles": -1}

_ABSENT = "(absent)"


class ConfigError(records.DataError):
  """A config that cannot run: the message names the key and the fix."""


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  """{"a.b": v} of a nested dict."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def as_flat(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
  """Flattened plain values of a config (as its config.json stores them)."""
  if isinstance(config, ml_collections.ConfigDict):
    config = json.loads(config.to_json_best_effort())
  return flatten(config)


def load_stored(workdir: str) -> dict | None:
  """The parsed config.json of `workdir`, or None if it has none."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _old_values(stored: dict, new: dict) -> dict[str, Any]:
  old = flatten(stored)
  for k, v in VALUE_WHEN_ABSENT.items():
    if k in new:
      old.setdefault(k, v)
  return old


def differences(stored: dict, config, defaults=None) -> list[str]:
  """Flattened keys where a run's stored config (its config.json, parsed)
  and `config` differ. A key only `config` has (an option added since that
  run) is no difference while it holds the value the run had without it:
  `VALUE_WHEN_ABSENT` for an option whose default has changed since, else
  its value in `defaults` (the config a sweep starts from; options are added
  with a default that keeps the old behaviour). Without `defaults` such a
  key is a difference."""
  new = as_flat(config)
  old = _old_values(stored, new)
  base = as_flat(defaults) if defaults is not None else {}
  return sorted(
      k
      for k in old.keys() | new.keys()
      if not (k in old and k in new and old[k] == new[k])
      and not (k not in old and k in base and new[k] == base[k])
  )


def describe(stored: dict, config, keys: list[str]) -> str:
  """'key: stored -> now' for each of `keys`, one per line."""
  new = as_flat(config)
  old = _old_values(stored, new)
  return "\n".join(
      f"  {k}: {old.get(k, _ABSENT)} -> {new.get(k, _ABSENT)}" for k in keys
  )


def restoring_flags(stored: dict, config, keys: list[str]) -> str:
  """launch.py flags (`--config.KEY=VALUE`) that set `keys` back to their
  stored values (keys the stored run lacks are left out)."""
  old = _old_values(stored, as_flat(config))
  return " ".join(
      shlex.quote(f"--config.{k}={_flag_value(old[k])}")
      for k in keys
      if k in old
  )


def _flag_value(v: Any) -> str:
  if isinstance(v, bool):
    return str(v).lower()
  if isinstance(v, (list, tuple)):
    return str(tuple(v))
  return str(v)


def _override_key(arg: str) -> str | None:
  """ "--config.a.b=v" (or "--config.a.b") -> "a.b"; else None."""
  if not arg.startswith("--config."):
    return None
  return arg[len("--config.") :].split("=", 1)[0]


def _known(key: str, flat: dict[str, Any]) -> bool:
  """A leaf key or a prefix of leaf keys (a whole sub-config)."""
  return key in flat or any(k.startswith(key + ".") for k in flat)


def nearest_key(key: str, config) -> str | None:
  """The config key closest to `key` (difflib), or None."""
  flat = as_flat(config)
  keys = set(flat) | {k.rsplit(".", 1)[0] for k in flat if "." in k}
  close = difflib.get_close_matches(key, sorted(keys), n=1, cutoff=0.6)
  return close[0] if close else None


def unknown_keys(argv: Sequence[str], config) -> list[str]:
  """The `--config.KEY=V` overrides in `argv` whose KEY `config` lacks,
  each as a one-line message with the nearest existing key."""
  flat = as_flat(config)
  out = []
  for arg in argv:
    key = _override_key(arg)
    if key is None or _known(key, flat):
      continue
    near = nearest_key(key, config)
    hint = f"; did you mean --config.{near}?" if near else ""
    out.append(f"--config.{key}: the config has no key {key!r}{hint}")
  return out


# Models that learn without labels (config.model.name -> when).
_LABEL_FREE = {"xs_pretrain": lambda m: not m.get("text")}
_CLASSIFICATION = ("auto", "single_label", "multi_label")


def check_labelled(config, manifest, model_fields) -> None:
  """Records without labels (no class names, e.g. data.geotiff_pairs without
  --mask) given to a classifier (a model with `num_classes` among its
  `model_fields` on a classification task): a DataError naming the configs
  that train on unlabelled pairs."""
  name = config.model.name
  if manifest.num_classes or config.get("task") not in _CLASSIFICATION:
    return
  label_free = _LABEL_FREE.get(name)
  if (label_free and label_free(config.model)) or (
      "num_classes" not in model_fields
  ):
    return
  raise records.DataError(
      f"dataset {manifest.name!r} has no labels (no class names: e.g. "
      f"data.geotiff_pairs without --mask), and model {name!r} is a "
      "classifier. Unlabelled LR/HR pairs train cross-scale pretraining "
      "(experiments/configs/pretrain.py) or super-resolution "
      "(experiments/configs/sr.py); or label the records (geotiff_pairs "
      "--mask NAME=FILE, or an image folder of class sub-folders)."
  )
