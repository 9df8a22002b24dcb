r"""Runs a model exported by crossscale.export: jax + numpy only.

This module imports nothing of crossscale's training code, models, flax,
optax or orbax (a test checks it), so a serving process needs only `jax`,
`numpy` and `flatbuffers` (to deserialize); it can be copied alone.

  from crossscale import serving
  m = serving.load("exports/xs")
  out = m.predict(lr, hr)                  # standardised inputs, as in training
  out = m.predict(lr_raw, hr_raw, normalize=True)   # raw pixels
  out["logits"], out["embedding"], out["tile_indices"]
  s = m.sample(lr)                         # before buying tiles
  s["tile_logits"], s["tile_indices"]      # [B, G*G], [B, k] best first
  m.class_names, m.manifest, m.functions   # {"predict": ..., "sample": ...}

Inputs may have any batch size (the batch dimension is symbolic); other
dimensions must match the manifest. Outputs are numpy arrays. With
`normalize=True`, "lr"/"hr" inputs are standardised per band with the
dataset's statistics stored in the manifest, and an SR output "sr" is
mapped back to raw HR units.

A directory holds:
  manifest.json        functions (inputs/outputs, symbolic dim "b"), params
                       (keys, shapes, dtypes, sha256), model, classes,
                       normalisation, versions, platforms
  params.safetensors   flat "a/b/kernel" keys, read here with numpy
  <function>.jaxexport serialized `jax.export.Exported` (StableHLO), called
                       as f(params, *inputs) -> {name: array}

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
  ):
    self.directory, self.manifest = directory, manifest
    self.params, self.functions = params, functions
    self.class_names = list(manifest.get("class_names") or [])
    self.model_name = manifest["model"]["name"]
    for name, fn in functions.items():
      setattr(self, name, fn)

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
) -> dict[str, np.ndarray]:
  info = manifest["params"]
  path = os.path.join(directory, info["file"])
  if not os.path.exists(path):
    raise ExportError(
        f"parameter file {path} not found (named by "
        f"{os.path.join(directory, MANIFEST)}); {_FIX}."
    )
  with open(path, "rb") as f:
    buf = f.read()
  tensors, _ = parse_safetensors(buf, path)
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
  return tensors


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
  host_params = _load_params(directory, manifest, verify_sha)
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
  return ExportedModel(directory, manifest, params, functions)
