"""experiments.cross_scale.pair_cells: cells from several work dirs paired
by seed and scene exactly as tradeoff.paired_vs pairs one sweep's; a cell
without predictions is one message naming the file and the fix."""

import json
import os

import numpy as np
import pytest

from crossscale import train
from experiments.cross_scale import pair_cells, tradeoff

LABELS = np.eye(4, dtype=np.float32)[np.arange(40) % 4]  # [40, 4] one-hot


def _cell(root, name, seed, right):
  """A run dir whose first `right` of 40 scenes are predicted correctly."""
  d = os.path.join(root, f"{name}_s{seed}")
  os.makedirs(d)
  logits = np.where(LABELS > 0, 1.0, 0.0)
  logits[right:] = np.roll(logits[right:], 1, axis=1)
  np.savez(
      os.path.join(d, train.PREDICTIONS.format("test")),
      logits=logits,
      labels=LABELS,
  )
  with open(os.path.join(d, "final_metrics.json"), "w") as f:
    json.dump({"final": {"accuracy": right / 40}}, f)  # the trainer's layout
  return d


def test_pairs_cells_across_work_dirs(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  for s in (0, 1):
    _cell(b, "ours", s, 30 + s)
    _cell(a, "random", s, 20)
    _cell(a, "dense", s, 36)
  out = str(tmp_path / "paired.json")
  res = pair_cells.main(
      [
          "--seeds=0,1",
          f"--ours=0.125={b}/ours_s{{seed}}",
          f"--cell=random:0.125={a}/random_s{{seed}}",
          f"--cell=dense:1={a}/dense_s{{seed}}",
          "--note=test",
          f"--out={out}",
      ]
  )
  cells = {
      "ours": {
          0.125: [f"{b}/ours_s0", f"{b}/ours_s1"],
          1.0: [f"{a}/dense_s0", f"{a}/dense_s1"],
      },
      "random": {0.125: [f"{a}/random_s0", f"{a}/random_s1"]},
  }
  assert res["paired_vs_ours"] == tradeoff.paired_vs(cells, "accuracy")
  rows = {r["method"]: r for r in res["paired_vs_ours"]}
  assert rows["random"]["diff_points"] == pytest.approx(100 * 10.5 / 40)
  assert rows["dense"]["diff_points"] == pytest.approx(-100 * 5.5 / 40)
  saved = json.load(open(out))
  assert saved["final"] == {
      "ours@0.125": [0.75, 0.775],
      "dense@1": [0.9, 0.9],
      "random@0.125": [0.5, 0.5],
  }
  assert saved["provenance"]["command"] and saved["note"] == "test"


def test_missing_predictions_and_bad_specs_are_one_message(tmp_path):
  d = str(tmp_path / "empty_s0")
  os.makedirs(d)
  with pytest.raises(FileNotFoundError, match="crossscale.evaluate"):
    pair_cells.build_cells(
        [f"0.125={tmp_path}/empty_s{{seed}}"], [], [0], "test"
    )
  with pytest.raises(ValueError, match="METHOD:BUDGET=PATH"):
    pair_cells.parse_cell("random=somewhere", [0])
  with pytest.raises(ValueError, match="no \\{seed\\}"):
    pair_cells.parse_cell("random:0.125=one_dir", [0, 1])
