"""Command-line pieces the sweeps share: --set KEY=VALUE overrides,
--methods name lists, --variant NAME:KEY=VALUE methods."""

from __future__ import annotations

import ast


def parse_overrides(items: list[str]) -> dict:
  """["model.budget=0.25", "model.sampler_target.completion=1.0"] ->
  {key: value}; values are Python literals (strings stay strings)."""
  out = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(
          f"--set {item!r}: expected KEY=VALUE, e.g. "
          "--set model.sampler_target.completion=1.0"
      )
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def known_names(names: str, known) -> list[str]:
  """ "a,b" -> ["a", "b"], each in `known`, else a ValueError naming them."""
  unknown = [m for m in names.split(",") if m and m not in known]
  if unknown:
    raise ValueError(
        f"--methods {','.join(unknown)}: unknown; known: "
        f"{', '.join(known)} (define others with --variant)"
    )
  return [m for m in names.split(",") if m]


def parse_variant(item: str, known, example: str) -> tuple[str, dict]:
  """ "NAME:KEY=VALUE" -> (NAME, {KEY: value}); NAME must be new (not in
  `known`), else a ValueError showing `example`."""
  name, sep, override = item.partition(":")
  if not sep or not name or name in known:
    raise ValueError(
        f"--variant {item!r}: expected NAME:KEY=VALUE with a NAME not in "
        f"{', '.join(known)}, e.g. --variant {example}"
    )
  return name, parse_overrides([override])
