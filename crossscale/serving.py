r"""Runs a model exported by crossscale.export: jax + numpy only.

This module imports nothing of crossscale's training code, models, flax,
optax or orbax (a test checks it), so a serving process needs only `jax`,
`numpy` and `flatbuffers` (to deserialize); it can be copied alone (with
crossscale/sensor.py for `lr_from_hr`).

  from crossscale import serving
  m = serving.load("exports/xs")
  out = m.predict(lr, hr)                  # standardised inputs, as in training
  out = m.predict(lr_raw, hr_raw, normalize=True)   # raw pixels
  out["logits"], out["embedding"], out["tile_indices"]
  s = m.sample(lr)                         # before buying tiles
  s["tile_logits"], s["tile_indices"]      # [B, G*G], [B, k] best first
  m.class_names, m.manifest, m.functions   # {"predict": ..., "sample": ...}
  m.card                                   # the model card (None: old export)
  m.check_raster(bands=[...], gsd=0.5, shape=(H, W, C))  # ExportError
  serving.check_raster(m.card, bands=..., gsd=..., side="hr")  # [problems]
  lr = serving.lr_from_hr(hr, m.card)      # the LR view when only HR is at hand

Inputs may have any batch size (the batch dimension is symbolic); other
dimensions must match the manifest. Outputs are numpy arrays. With
`normalize=True`, "lr"/"hr" inputs are standardised per band with the
dataset's statistics stored in the manifest, and an SR output "sr" is
mapped back to raw HR units.

A directory holds:
  manifest.json        functions (inputs/outputs, symbolic dim "b"), params
                       (keys, shapes, dtypes, sha256), model, classes,
                       normalisation, versions, platforms, "model_card"
  params.safetensors   flat "a/b/kernel" keys, read here with numpy; its
                       metadata "model_card" holds the card as JSON
  <function>.jaxexport serialized `jax.export.Exported` (StableHLO), called
                       as f(params, *inputs) -> {name: array}

The model card (manifest "model_card", written by `crossscale.export.
model_card`; exports written before it have none and load with `card`
None) says what a raster must be for this model: "bands" {"lr", "hr"},
"gsd_m" {"lr", "hr"} in metres (null with "gsd_known" false when the
records carried no true GSD), "normalization", "image_size" {"lr", "hr"},
"grid", "tile_px", "class_names", "multi_label", "budget" (mode ratio /
count / per_class / cost, k, policy, selection) and "degradation" (how the
dataset's LR was made: source "sensor.degrade" with scale, psf_sigma,
noise_std, or "raster" with the scale). `check_raster` names each mismatch
and its fix.

Loading checks the directory before running anything: a missing file, a
missing or unexpected parameter key, a shape/dtype mismatch or a sha256
mismatch raises `ExportError` naming the file, the key and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "crossscale-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARAMS = "params.safetensors"
FUNCTION_SUFFIX = ".jaxexport"
BATCH_DIM = "b"
CARD_KEY = "model_card"  # in manifest.json and the safetensors metadata

_FIX = (
    "re-export it with `python launch.py --workdir RUN --export_to DIR` "
    "(or copy the whole export directory again)"
)


class ExportError(ValueError):
  """An export directory that cannot be loaded as it is."""


# ------------------------------------------------------- safetensors (numpy)
# The format (https://github.com/huggingface/safetensors): an 8-byte
# little-endian header length N, N bytes of JSON {name: {"dtype", "shape",
# "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
# tensors' little-endian bytes, offsets relative to the end of the header.

_ST_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(jnp.bfloat16),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("bool"),
}
_ST_CODES = {v: k for k, v in _ST_DTYPES.items()}


def _st_code(dtype: np.dtype, key: str) -> str:
  dtype = (
      np.dtype(dtype).newbyteorder("<")
      if np.dtype(dtype).byteorder == ">"
      else np.dtype(dtype)
  )
  if dtype not in _ST_CODES:
    raise ExportError(
        f"parameter {key!r} has dtype {dtype}, which safetensors "
        f"cannot store; cast it to one of {sorted(_ST_CODES)}."
    )
  return _ST_CODES[dtype]


def save_safetensors(
    path: str,
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
) -> None:
  """Writes `tensors` ({name: array}) to `path` (atomically, by rename)."""
  header: dict[str, Any] = {}
  if metadata:
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
  blobs, offset = [], 0
  for name in sorted(tensors):
    a = np.asarray(tensors[name])
    code = _st_code(a.dtype, name)
    data = np.ascontiguousarray(a.astype(_ST_DTYPES[code], copy=False))
    raw = data.tobytes()
    header[name] = {
        "dtype": code,
        "shape": list(a.shape),
        "data_offsets": [offset, offset + len(raw)],
    }
    blobs.append(raw)
    offset += len(raw)
  head = json.dumps(header, separators=(",", ":")).encode()
  head += b" " * (-len(head) % 8)  # align the data to 8 bytes
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(head)))
    f.write(head)
    for raw in blobs:
      f.write(raw)
  os.replace(tmp, path)


def parse_safetensors(
    buf: bytes, where: str = "<bytes>"
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """(tensors, metadata) from a safetensors file's bytes (zero-copy views)."""
  bad = (
      f"{where} is not a valid safetensors file (truncated or corrupted)"
      f": {_FIX}."
  )
  if len(buf) < 8:
    raise ExportError(bad)
  (n,) = struct.unpack("<Q", buf[:8])
  if 8 + n > len(buf):
    raise ExportError(bad)
  try:
    header = json.loads(bytes(buf[8 : 8 + n]).decode())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ExportError(f"{bad} ({e})") from e
  if not isinstance(header, dict):
    raise ExportError(bad)
  metadata = header.pop("__metadata__", None) or {}
  data = memoryview(buf)[8 + n :]
  out = {}
  for name, info in header.items():
    try:
      dtype = _ST_DTYPES[info["dtype"]]
      shape = tuple(int(d) for d in info["shape"])
      begin, end = (int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as e:
      raise ExportError(f"{bad} (entry {name!r}: {e!r})") from e
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not 0 <= begin <= end <= len(data) or end - begin != size:
      raise ExportError(
          f"{bad} (entry {name!r} has data offsets "
          f"[{begin}, {end}) for shape {shape} {dtype})"
      )
    out[name] = np.frombuffer(data[begin:end], dtype).reshape(shape)
  return out, metadata


def load_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  with open(path, "rb") as f:
    return parse_safetensors(f.read(), path)


def sha256_bytes(buf: bytes) -> str:
  return hashlib.sha256(buf).hexdigest()


def sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      h.update(chunk)
  return h.hexdigest()


# ------------------------------------------------------------------ loading


def _shape_str(shape) -> str:
  return "[" + ", ".join(str(d) for d in shape) + "]"


def _platform() -> str:
  """The platform name jax.export uses for the default backend."""
  backend = jax.default_backend()
  if backend == "gpu":
    version = jax.devices()[0].client.platform_version.lower()
    return "rocm" if "rocm" in version else "cuda"
  return backend


class Function:
  """One exported function: `f(*inputs, normalize=False) -> {name: np.ndarray}`.

  Inputs are positional in the manifest's order or keywords by name.
  """

  def __init__(
      self,
      name: str,
      spec: dict,
      exported,
      params: dict,
      normalization: dict,
      path: str,
  ):
    self.name, self.spec, self.exported, self.path = name, spec, exported, path
    self.input_names = [i["name"] for i in spec["inputs"]]
    self._params = params
    self._stats = {
        k: (np.asarray(v["mean"], np.float32), np.asarray(v["std"], np.float32))
        for k, v in (normalization or {}).items()
    }
    self._call = jax.jit(exported.call)

  def __repr__(self):
    ins = ", ".join(
        f"{i['name']}: {i['dtype']}{_shape_str(i['shape'])}"
        for i in self.spec["inputs"]
    )
    outs = ", ".join(
        f"{k}: {o['dtype']}{_shape_str(o['shape'])}"
        for k, o in self.spec["outputs"].items()
    )
    return f"<{self.name}({ins}) -> {{{outs}}}>"

  def _bind(self, args, kwargs) -> list[Any]:
    if len(args) > len(self.input_names):
      raise TypeError(
          f"{self.name}() takes {len(self.input_names)} inputs "
          f"({', '.join(self.input_names)}), got {len(args)}"
      )
    bound = dict(zip(self.input_names, args))
    for k, v in kwargs.items():
      if k not in self.input_names:
        raise TypeError(
            f"{self.name}() got an unexpected input {k!r}; it "
            f"takes {self.input_names}"
        )
      if k in bound:
        raise TypeError(f"{self.name}() got input {k!r} twice")
      bound[k] = v
    missing = [n for n in self.input_names if n not in bound]
    if missing:
      raise TypeError(
          f"{self.name}() is missing inputs {missing}; it takes "
          f"{self.input_names}"
      )
    return [bound[n] for n in self.input_names]

  def _prepare(self, values, normalize: bool) -> list[jax.Array]:
    out, batch = [], None
    for spec, x in zip(self.spec["inputs"], values):
      name, want = spec["name"], spec["shape"]
      x = x if isinstance(x, jax.Array) else np.asarray(x)
      if x.ndim != len(want) or any(
          w != BATCH_DIM and int(w) != d for w, d in zip(want, x.shape)
      ):
        raise ExportError(
            f"{self.name}: input {name!r} has shape {list(x.shape)}; the "
            f"export takes {_shape_str(want)} ({BATCH_DIM} = any batch size). "
            "Resize or tile the input, or export a model trained at this "
            "size."
        )
      b = x.shape[want.index(BATCH_DIM)] if BATCH_DIM in want else None
      if b is not None:
        if batch is not None and b != batch:
          raise ExportError(
              f"{self.name}: inputs disagree on the batch size "
              f"({batch} vs {b} for {name!r})."
          )
        batch = b
      stats = spec.get("normalized_as")
      if normalize and stats:
        mean, std = self._stats[stats]
        x = (jnp.asarray(x, jnp.float32) - mean) / std
      out.append(jnp.asarray(x, spec["dtype"]))
    return out

  def __call__(
      self, *args, normalize: bool = False, **kwargs
  ) -> dict[str, np.ndarray]:
    inputs = self._prepare(self._bind(args, kwargs), normalize)
    out = self._call(self._params, *inputs)
    result = {}
    for k, v in out.items():
      stats = self.spec["outputs"][k].get("normalized_as")
      if normalize and stats:
        mean, std = self._stats[stats]
        v = v * std + mean
      result[k] = np.asarray(v)
    return result


class ExportedModel:
  """A loaded export: one attribute per function (`m.predict`, `m.sample`)."""

  def __init__(
      self,
      directory: str,
      manifest: dict,
      params: dict,
      functions: dict[str, Function],
      card: dict | None = None,
  ):
    self.directory, self.manifest = directory, manifest
    self.params, self.functions = params, functions
    self.class_names = list(manifest.get("class_names") or [])
    self.model_name = manifest["model"]["name"]
    self.card = card
    for name, fn in functions.items():
      setattr(self, name, fn)

  def check_raster(self, **kwargs) -> None:
    """`check_raster(self.card, **kwargs)`; raises ExportError listing every
    mismatch and its fix (and when the export has no card)."""
    if self.card is None:
      raise ExportError(
          f"{self.directory} has no model card (exported before cards "
          f"existed): {_FIX}."
      )
    problems = check_raster(self.card, **kwargs)
    if problems:
      raise ExportError(
          f"the raster does not match {self.model_name} from "
          f"{self.directory}:\n  " + "\n  ".join(problems)
      )

  def __repr__(self):
    return (
        f"<ExportedModel {self.model_name} from {self.directory}: "
        + ", ".join(repr(f) for f in self.functions.values())
        + ">"
    )


def _read_manifest(directory: str) -> dict:
  path = os.path.join(directory, MANIFEST)
  if not os.path.exists(path):
    raise ExportError(
        f"{path} not found: {directory} is not a crossscale "
        f"export directory; {_FIX}."
    )
  try:
    with open(path) as f:
      manifest = json.load(f)
  except json.JSONDecodeError as e:
    raise ExportError(f"{path} is not valid JSON ({e}); {_FIX}.") from e
  if manifest.get("format") != FORMAT:
    raise ExportError(f"{path} is not a {FORMAT} manifest; {_FIX}.")
  if manifest.get("format_version") != FORMAT_VERSION:
    raise ExportError(
        f"{path} has format version {manifest.get('format_version')}; this "
        f"loader reads version {FORMAT_VERSION}. Use the crossscale version "
        f"that wrote it ({manifest.get('versions', {}).get('crossscale')}) "
        f"or {_FIX}."
    )
  return manifest


def _load_params(
    directory: str, manifest: dict, verify_sha: bool
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  info = manifest["params"]
  path = os.path.join(directory, info["file"])
  if not os.path.exists(path):
    raise ExportError(
        f"parameter file {path} not found (named by "
        f"{os.path.join(directory, MANIFEST)}); {_FIX}."
    )
  with open(path, "rb") as f:
    buf = f.read()
  tensors, metadata = parse_safetensors(buf, path)
  expected = info["keys"]
  for key, want in expected.items():
    if key not in tensors:
      raise ExportError(
          f"{path} has no parameter {key!r} (the manifest lists "
          f"{len(expected)} keys, the file {len(tensors)}): the file belongs "
          f"to another export or was rewritten; {_FIX}."
      )
    got = tensors[key]
    if (
        list(got.shape) != list(want["shape"])
        or str(got.dtype) != want["dtype"]
    ):
      raise ExportError(
          f"{path}: parameter {key!r} is {got.dtype}{list(got.shape)} but the "
          f"export expects {want['dtype']}{want['shape']}: the file belongs to "
          f"another model or config; {_FIX}."
      )
  extra = sorted(set(tensors) - set(expected))
  if extra:
    raise ExportError(
        f"{path} has parameters the manifest does not list: "
        f"{extra[:5]}{' ...' if len(extra) > 5 else ''}; {_FIX}."
    )
  if verify_sha:
    digest = sha256_bytes(buf)
    if digest != info["sha256"]:
      raise ExportError(
          f"{path}: sha256 {digest} does not match the manifest's "
          f"{info['sha256']}: the file is corrupted or was modified after "
          f"export; {_FIX}."
      )
  return tensors, metadata


def _check_function_params(name: str, path: str, exported, params: dict):
  """The exported function's parameter inputs == the manifest's keys."""
  args_avals = jax.tree.unflatten(exported.in_tree, exported.in_avals)[0]
  p_avals = args_avals[0]
  if set(p_avals) != set(params):
    missing = sorted(set(p_avals) - set(params))
    raise ExportError(
        f"{path} ({name}) takes parameters the manifest does not "
        f"list ({missing[:5]}) or the reverse: the directory "
        f"mixes files of different exports; {_FIX}."
    )
  for k, aval in p_avals.items():
    if tuple(aval.shape) != params[k].shape or aval.dtype != params[k].dtype:
      raise ExportError(
          f"{path} ({name}): parameter {k!r} is {aval.dtype}{list(aval.shape)}"
          f" in the function but {params[k].dtype}{list(params[k].shape)} in "
          f"the params file; {_FIX}."
      )


def load(
    directory: str, *, verify_sha: bool = True, device: jax.Device | None = None
) -> ExportedModel:
  """Loads an export directory (see the module docstring)."""
  directory = os.path.abspath(directory)
  manifest = _read_manifest(directory)
  host_params, metadata = _load_params(directory, manifest, verify_sha)
  platform = _platform()
  if platform not in manifest.get("platforms", []):
    raise ExportError(
        f"{directory} was exported for {manifest.get('platforms')}, not for "
        f"this machine's {platform!r}; re-export with `--platforms "
        f"{platform}` (or run on one of those platforms)."
    )
  device = device or jax.devices()[0]
  params = {k: jax.device_put(v, device) for k, v in host_params.items()}
  functions = {}
  for name, spec in manifest["functions"].items():
    path = os.path.join(directory, spec["file"])
    if not os.path.exists(path):
      raise ExportError(f"function file {path} ({name}) not found; {_FIX}.")
    with open(path, "rb") as f:
      blob = f.read()
    if verify_sha and sha256_bytes(blob) != spec["sha256"]:
      raise ExportError(
          f"{path} ({name}): sha256 does not match the "
          f"manifest: the file is corrupted or was modified; "
          f"{_FIX}."
      )
    try:
      exported = jax.export.deserialize(bytearray(blob))
    except Exception as e:  # pylint: disable=broad-except
      raise ExportError(
          f"{path} ({name}) could not be deserialized ({e}); "
          "check that this jax can read exports of jax "
          f"{manifest.get('versions', {}).get('jax')}, or "
          f"{_FIX}."
      ) from e
    _check_function_params(name, path, exported, host_params)
    functions[name] = Function(
        name, spec, exported, params, manifest.get("normalization"), path
    )
  return ExportedModel(
      directory, manifest, params, functions, card_of(manifest, metadata)
  )


# ------------------------------------------------------------- model card


def card_of(manifest: dict, metadata: Mapping[str, str]) -> dict | None:
  """The model card of an export: the manifest's, else the params file's
  metadata (JSON), else None (exports written before cards)."""
  if manifest.get(CARD_KEY):
    return manifest[CARD_KEY]
  if metadata.get(CARD_KEY):
    try:
      return json.loads(metadata[CARD_KEY])
    except json.JSONDecodeError as e:
      raise ExportError(
          f"the params file's model card is not JSON ({e}); {_FIX}."
      ) from e
  return None


def _band_problems(got: list[str], want: list[str], side: str) -> list[str]:
  if len(got) != len(want):
    return [
        f"{side} bands: the raster has {len(got)} {got}, the model takes "
        f"{len(want)} {want}: select (or stack) the raster's bands in that "
        "order."
    ]
  norm = lambda names: [str(n).strip().lower() for n in names]
  if norm(got) != norm(want):
    return [
        f"{side} band names {got} differ from the model's {want}: reorder "
        "the raster's bands to that order (if they are the same bands "
        "under other names, pass the model's names)."
    ]
  return []


def _gsd_problems(card: dict, gsd: float, side: str, rtol: float):
  want = (card.get("gsd_m") or {}).get(side)
  if not card.get("gsd_known", want is not None) or want is None:
    return []  # the records carried no true GSD: nothing to compare
  ratio = float(gsd) / float(want)
  if abs(ratio - 1.0) <= rtol:
    return []
  fix = (
      f"resample the raster to {want:g} m pixels (e.g. gdalwarp -tr "
      f"{want:g} {want:g} -r average IN.tif OUT.tif)"
  )
  if side == "lr" and card.get("degradation"):
    fix += "; or, from an HR raster, make the LR with serving.lr_from_hr"
  return [
      f"{side} GSD: the raster has {float(gsd):g} m pixels, the model was "
      f"trained on {want:g} m ({ratio:.3g}x): {fix}."
  ]


def _shape_problems(card: dict, shape, side: str) -> list[str]:
  want_hw = (card.get("image_size") or {}).get(side)
  bands = (card.get("bands") or {}).get(side) or []
  out = []
  if len(shape) == 3 and bands and shape[2] != len(bands):
    out.append(
        f"{side} shape {list(shape)}: {shape[2]} bands, the model takes "
        f"{len(bands)} {bands}: select the bands in that order."
    )
  if want_hw and (shape[0] < want_hw[0] or shape[1] < want_hw[1]):
    out.append(
        f"{side} shape {list(shape)}: smaller than the model's "
        f"{want_hw[0]}x{want_hw[1]} px input: use a larger raster or pad it "
        f"to {want_hw[0]}x{want_hw[1]}."
    )
  return out


def check_raster(
    card: dict,
    *,
    bands=None,
    gsd: float | None = None,
    shape=None,
    side: str = "lr",
    rtol: float = 0.05,
) -> list[str]:
  """Each way a raster of `side` ("lr" or "hr") fails to match the model
  card: its band names, its GSD in metres (within `rtol`; not checked when
  the card says the records carried no true GSD) and its shape [H, W] or
  [H, W, C] (at least the model's image size). [] when it matches; each
  entry names the mismatch and its fix."""
  if side not in ("lr", "hr"):
    raise ValueError(f"side must be 'lr' or 'hr', got {side!r}")
  out = []
  if bands is not None:
    out += _band_problems(list(bands), list(card["bands"][side]), side)
  if gsd is not None:
    out += _gsd_problems(card, gsd, side, rtol)
  if shape is not None:
    out += _shape_problems(card, tuple(shape), side)
  return out


def lr_from_hr(
    hr,
    card: dict,
    *,
    seed: int = 0,
    psf_sigma: float | None = None,
    noise_std: float | None = None,
) -> np.ndarray:
  """The LR view of `hr` (`[H, W, C]` or `[B, H, W, C]`, raw pixels) made as
  the model's dataset made it: `crossscale.sensor.degrade` with the card's
  degradation (scale, PSF, noise; `psf_sigma` / `noise_std` override it,
  e.g. noise_std=0 for a noise-free view). A dataset whose LR were real
  rasters records no PSF: pass both to approximate it."""
  from crossscale import sensor  # pylint: disable=g-import-not-at-top

  d = card.get("degradation") if card else None
  if not d:
    raise ExportError(
        "the model card records no LR degradation (the dataset's builder "
        "wrote none): make the LR view with the sensor that made the "
        f"training LR, or {_FIX}."
    )
  psf = d.get("psf_sigma") if psf_sigma is None else psf_sigma
  noise = d.get("noise_std") if noise_std is None else noise_std
  if psf is None or noise is None:
    raise ExportError(
        f"the model trained on real LR rasters ({d.get('scale')}x coarser "
        "than HR), whose PSF and noise are unknown: pass psf_sigma= and "
        "noise_std= (e.g. 0.5 and 0.0) to approximate them."
    )
  hr = np.asarray(hr)
  one = hr.ndim == 3
  rng = np.random.default_rng(seed)
  kw = {"data_range": d["data_range"]} if d.get("data_range") else {}
  out = [
      sensor.degrade(x, int(d["scale"]), rng, psf, noise, **kw)
      for x in (hr[None] if one else hr)
  ]
  return out[0] if one else np.stack(out)
