"""crossscale.evaluate: a trained run on another records dataset, through
the final-eval code path of training; datasets that do not fit are refused
with every mismatch named."""

import json
import os
import shutil

import pytest

from crossscale import evaluate, shards
from tests import geo_helpers as gh
from tests import helpers


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  d = gh.rgb_dataset(tmp_path_factory.mktemp("rgb"))
  return d, gh.untrained_run(d, str(tmp_path_factory.mktemp("run")))


def test_refuses_a_dataset_that_does_not_fit(run, tmp_path):
  _, workdir = run
  other = str(tmp_path / "other")
  helpers.tiny_dataset(
      other, n_train=2, n_val=2, classes=4, hr=64, scale=4, grid=4,
      lr_bands=("R", "G", "NIR"), hr_bands=gh.RGB,
  )  # fmt: skip
  with pytest.raises(SystemExit) as e:
    evaluate.main(
        ["--workdir", workdir, "--dataset", other, "--split", "val", "--out",
         str(tmp_path / "o")]
    )  # fmt: skip
  msg = str(e.value)
  assert msg.startswith("crossscale.evaluate: ") and other in msg
  for what in ("LR bands", "grid 4x4", "--grid 8", "classes differ"):
    assert what in msg, (what, msg)
  assert "HR bands" not in msg and "GSD ratio" not in msg
  assert not os.path.exists(tmp_path / "o")


def test_fit_problems_names_the_scale():
  m = shards.Manifest(
      "a", 1, ["c0"], [16, 16, 3], [64, 64, 3], ["R"], ["R"], 4.0, 1.0, 8,
      {}, {}, {},
  )  # fmt: skip
  n = shards.Manifest(
      "b", 1, ["c0"], [16, 16, 3], [64, 64, 3], ["R"], ["R"], 8.0, 2.0, 8,
      {}, {}, {},
  )  # fmt: skip
  assert evaluate.fit_problems(m, n, ("lr", "hr")) == []
  n.lr_gsd = 16.0
  (p,) = evaluate.fit_problems(m, n, ("lr", "hr"))
  assert "scale" in p and "--scale 4" in p


def test_a_name_is_found_beside_the_run_or_sent_to_the_wrapper(run, tmp_path):
  data, workdir = run
  name = shards.load_manifest(data).name
  # A sibling whose manifest.json this code cannot read (another tool's,
  # an older schema) is skipped, not fatal.
  foreign = os.path.join(os.path.dirname(os.path.abspath(data)), "zz_other")
  os.makedirs(foreign, exist_ok=True)
  with open(os.path.join(foreign, shards.MANIFEST), "w") as f:
    f.write("{}")
  try:
    assert evaluate.find_records(name, workdir) == os.path.abspath(data)
  finally:
    shutil.rmtree(foreign)
  with pytest.raises(SystemExit) as e:
    evaluate.main(
        [
            "--workdir",
            workdir,
            "--dataset",
            "no_such_set",
            "--out",
            str(tmp_path),
        ]
    )
  assert "python -m experiments.evaluate" in str(e.value)
  assert "no_such_set" in str(e.value)


@pytest.mark.slow  # ~10 s: compiles the model's eval
def test_evaluate_writes_the_final_eval_of_a_run(run, tmp_path):
  data, workdir = run
  from crossscale import export, train  # pylint: disable=g-import-not-at-top

  metrics = evaluate.main(
      ["--workdir", workdir, "--dataset", data, "--split", "val", "--out",
       str(tmp_path)]
  )  # fmt: skip
  stored = json.load(open(tmp_path / evaluate.METRICS_FILE))
  assert stored["final"] == metrics and stored["evaluated"]["step"] == 1
  assert metrics["num_examples"] == 6.0
  # Accuracy checked independently (tests/helpers.accuracy_by_hand).
  config = export.load_config(workdir)
  manifest = shards.load_manifest(data)
  params, _ = export.restore_params(config, manifest, workdir)
  model = export.build_model(config, manifest)
  acc = helpers.accuracy_by_hand(
      model, params, data, config.data.fields, split="val"
  )
  assert metrics["accuracy"] == pytest.approx(acc)
  preds = tmp_path / train.PREDICTIONS.format("val")
  assert preds.exists()
