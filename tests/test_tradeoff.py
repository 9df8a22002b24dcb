"""experiments.cross_scale.tradeoff: seeds, tables, figure, configs (no
training)."""

import os

import numpy as np
import pytest

from crossscale import run_config, train
from experiments.configs import cross_scale
from experiments.cross_scale import sweep_args, tradeoff


def test_mean_runs_averages_seeds_and_keeps_their_spread():
  runs = [
      {"accuracy": 0.5, "mAP_macro": 0.6, "hr_tiles": 8.0, "drift": None},
      {"accuracy": 0.7, "mAP_macro": 0.8, "hr_tiles": 8.0, "drift": None},
  ]
  m = tradeoff._mean_runs(runs)  # pylint: disable=protected-access
  assert m["accuracy"] == pytest.approx(0.6)
  assert m["mAP_macro"] == pytest.approx(0.7)
  assert m["hr_tiles"] == 8.0
  assert m["drift"] is None
  assert m["accuracy_seeds"] == [0.5, 0.7]
  assert m["accuracy_std"] == pytest.approx(0.1)
  # Multi-label runs have no accuracy: no spread either.
  m = tradeoff._mean_runs([{"accuracy": None, "mAP_macro": 0.4}])  # pylint: disable=protected-access
  assert m["accuracy"] is None and "accuracy_std" not in m


def test_table_and_plot_with_and_without_spread(tmp_path):
  methods = {
      "ours": {
          "budget": [0.0, 0.125],
          "accuracy": [0.4, 0.8],
          "accuracy_std": [0.0, 0.02],
          "mAP": [0.5, 0.9],
          "hr_tiles": [0.0, 8.0],
          "hr_fraction": [0.0, 0.125],
          "drift": [0.1, 0.05],
          "AP@10": [0.2, 0.6],
      },
      "old": {
          "budget": [0.0, 0.125],
          "accuracy": [0.4, 0.7],
          "mAP": [0.5, 0.8],
          "hr_tiles": [0.0, 8.0],
          "hr_fraction": [0.0, 0.125],
          "drift": [0.1, 0.2],
          "AP@10": [0.2, 0.5],
      },
  }
  rows = tradeoff.table_rows(methods)
  assert [r["accuracy_std"] for r in rows] == [0.0, 0.02, None, None]
  path = tmp_path / "t.png"
  tradeoff.plot({"dataset": "d", "methods": methods}, str(path))
  assert path.stat().st_size > 1000


def test_seeds_start_at_first_seed(monkeypatch, tmp_path):
  """--first_seed extends an earlier batch: cells train seeds first_seed..
  first_seed+seeds-1 and the spread lists them in that order."""
  import types

  monkeypatch.setattr(
      tradeoff.shards,
      "load_manifest",
      lambda d: (
          types.SimpleNamespace(grid=4, name="fake", task="single_label")
      ),
  )
  trained = []

  def fake_run(config, workdir, defaults=None):
    trained.append((config.seed, config.model.budget, workdir))
    return {
        "accuracy": config.seed / 10,
        "mAP_macro": 0.5,
        "hr_tiles": config.model.budget * 16,
    }

  monkeypatch.setattr(tradeoff, "run_one", fake_run)
  res = tradeoff.run_tradeoff(
      str(tmp_path),
      methods=("heuristic",),
      budgets=(0.25,),
      seeds=2,
      first_seed=3,
      work_dir=str(tmp_path),
  )
  assert [s for s, _, _ in trained] == [3, 4]
  assert trained[0][2].endswith("heuristic_0.2500_s3")
  assert res["methods"]["heuristic"]["accuracy_seeds"] == [[0.3, 0.4]]


def test_a_finished_cell_is_read_back_not_retrained(monkeypatch, tmp_path):
  """A relaunched sweep (same --work_dir) reuses a cell whose config.json
  matches and stops on one trained with another config."""
  import json

  config = tradeoff.sweep_config(True, str(tmp_path))
  cell = tmp_path / "ours_0.1250"
  calls = []

  def fake_train(c, workdir):
    calls.append(workdir)
    cell.mkdir(exist_ok=True)
    (cell / "config.json").write_text(c.to_json_best_effort(indent=1))
    (cell / "final_metrics.json").write_text(
        json.dumps({"final": {"accuracy": 0.75}})
    )
    return {"final": {"accuracy": 0.75}}

  monkeypatch.setattr(tradeoff.train, "train_and_evaluate", fake_train)
  assert tradeoff.run_one(config, str(cell)) == {"accuracy": 0.75}
  assert tradeoff.run_one(config, str(cell)) == {"accuracy": 0.75}
  assert len(calls) == 1
  config.model.budget = 0.25
  with pytest.raises(
      ValueError, match=r"different config \(model.budget\).*new --work_dir"
  ):
    tradeoff.run_one(config, str(cell))


def test_an_option_added_since_a_run_keeps_it_readable(tmp_path):
  """A cell trained before an option existed is read back while the option
  holds its default, and is a different config once it does not."""
  import json

  defaults = tradeoff.sweep_config(True, str(tmp_path))
  stored = json.loads(defaults.to_json_best_effort())
  del stored["model"]["selection"]["counterfactual"]  # an older run
  cell = tmp_path / "ours_0.1250"
  cell.mkdir()
  (cell / "config.json").write_text(json.dumps(stored))
  (cell / "final_metrics.json").write_text(
      json.dumps({"final": {"accuracy": 0.5}})
  )
  config = tradeoff.sweep_config(True, str(tmp_path))
  assert tradeoff.run_one(config, str(cell), defaults) == {"accuracy": 0.5}
  assert run_config.differences(stored, config) == [
      "model.selection.counterfactual"
  ]  # strict without defaults
  config.model.selection.counterfactual = True
  with pytest.raises(ValueError, match="selection.counterfactual"):
    tradeoff.run_one(config, str(cell), defaults)
  stored["model"]["retired_option"] = 1  # an option removed
  assert run_config.differences(stored, defaults, defaults) == [
      "model.retired_option"
  ]


def test_parse_overrides():
  assert sweep_args.parse_overrides(
      [
          "model.sampler_target.completion=1.0",
          "model.policy=random",
          "model.budget=3",
      ]
  ) == {
      "model.sampler_target.completion": 1.0,
      "model.policy": "random",
      "model.budget": 3,
  }
  with pytest.raises(ValueError, match="KEY=VALUE"):
    sweep_args.parse_overrides(["model.budget"])


def test_methods_and_variants():
  m = tradeoff.parse_methods(
      "ours,heuristic",
      [
          "ours_cf:model.selection.counterfactual=True",
          "ours_cf:model.sampler.prior=1.0",
          "deep:model.predictor.depth=4",
      ],
  )
  assert list(m) == ["ours", "heuristic", "ours_cf", "deep"]
  assert m["heuristic"] == {"model.policy": "heuristic"}
  assert m["ours_cf"] == {
      "model.policy": "learned",
      "model.selection.counterfactual": True,
      "model.sampler.prior": 1.0,
  }
  assert m["deep"] == {"model.policy": "learned", "model.predictor.depth": 4}
  assert tradeoff.METHODS["ours"] == {"model.policy": "learned"}
  # The sampler's targets only choose tiles: budget 0 / 1 cells are shared.
  assert all(
      tradeoff.selection_only(k, v)
      for k, v in tradeoff.METHODS["oracle_sampler"].items()
  )
  assert not tradeoff.selection_only("model.predictor.depth", 4)
  assert tradeoff.selection_only("optim.frozen_for", (("^sampler/", 0.5),))
  assert not tradeoff.selection_only("optim.frozen_for", (("^lr_enc", 1),))
  with pytest.raises(ValueError, match="herustic: unknown; known: ours"):
    tradeoff.parse_methods("ours,herustic", [])
  for bad in ("ours_cf", "random:model.budget=2", ":model.budget=2"):
    with pytest.raises(ValueError, match="NAME:KEY=VALUE"):
      tradeoff.parse_methods("ours", [bad])


def _write_predictions(d, logits, labels, split="test"):
  os.makedirs(d, exist_ok=True)
  np.savez(
      os.path.join(d, train.PREDICTIONS.format(split)),
      logits=np.asarray(logits, np.float32),
      labels=np.asarray(labels, np.float32),
  )


def test_paired_vs_pairs_by_seed_and_scene_with_intervals(tmp_path):
  """ours@1/8 is right on every scene, random@1/8 on half, LR-only on none,
  dense on all: +50 points (interval around it, above 0), +100 (interval
  [100, 100]) and a tie at exactly 0."""
  n, k = 40, 4
  labels = np.eye(k)[np.arange(n) % k]
  right, wrong = labels * 5.0, np.roll(labels, 1, axis=1) * 5.0
  half = np.where((np.arange(n) % 2 == 0)[:, None], right, wrong)
  cells = {}
  for name, b, logits in (
      ("ours", 0.125, right),
      ("random", 0.125, half),
      ("ours", 0.0, wrong),  # the shared LR-only run
      ("ours", 1.0, right),  # the shared dense run
  ):
    dirs = []
    for seed in range(2):
      d = str(tmp_path / f"{name}_{b}_s{seed}")
      _write_predictions(d, logits, labels)
      dirs.append(d)
    cells.setdefault(name, {})[b] = dirs
  cells["random"][0.0] = cells["ours"][0.0]  # shared, skipped for random
  rows = {r["method"]: r for r in tradeoff.paired_vs(cells, "accuracy")}
  assert set(rows) == {"random", "lr_only", "dense"}
  r = rows["random"]
  assert (r["budget"], r["seeds"], r["scenes"]) == (0.125, 2, n)
  assert r["diff_points"] == pytest.approx(50.0)
  assert 25 < r["low_points"] < 50 < r["high_points"] < 75
  assert r["verdict"] == "ahead"
  assert rows["lr_only"]["low_points"] == pytest.approx(100.0)
  d = rows["dense"]
  assert (d["diff_points"], d["low_points"], d["high_points"]) == (0, 0, 0)
  assert d["verdict"] == "tie"
  # A cell without per-scene predictions (an older run) has no row.
  os.remove(
      os.path.join(cells["random"][0.125][1], train.PREDICTIONS.format("test"))
  )
  assert {r["method"] for r in tradeoff.paired_vs(cells, "accuracy")} == {
      "lr_only",
      "dense",
  }
  assert tradeoff.paired_vs(cells, "accuracy", ref="missing") == []


def test_a_run_from_before_the_prior_default_is_not_the_default_now(tmp_path):
  """A run whose config.json lacks model.sampler.prior trained with the
  plain sampler (the module default 0.0): it is not a run of today's
  default (prior 1.0), and it is one of `--set model.sampler.prior=0.0`."""
  import json

  defaults = tradeoff.sweep_config(True, str(tmp_path))
  assert defaults.model.sampler.prior == 1.0
  stored = json.loads(defaults.to_json_best_effort())
  del stored["model"]["sampler"]["prior"]
  assert run_config.differences(stored, defaults, defaults) == [
      "model.sampler.prior"
  ]
  plain = tradeoff.sweep_config(True, str(tmp_path))
  plain.model.sampler.prior = 0.0
  assert run_config.differences(stored, plain, defaults) == []


def test_cells_carry_their_seed_and_a_one_seed_cell_is_seed_0(tmp_path):
  work = str(tmp_path)
  assert tradeoff.cell_dir(work, "ours", 0.125, 0) == f"{work}/ours_0.1250_s0"
  assert tradeoff.cell_dir(work, "ours", 0.125, 3) == f"{work}/ours_0.1250_s3"
  (tmp_path / "ours_0.1250").mkdir()  # an older one-seed sweep
  assert tradeoff.cell_dir(work, "ours", 0.125, 0) == f"{work}/ours_0.1250"
  assert tradeoff.cell_dir(work, "ours", 0.125, 1) == f"{work}/ours_0.1250_s1"
  (tmp_path / "ours_0.1250_s0").mkdir()
  assert tradeoff.cell_dir(work, "ours", 0.125, 0) == f"{work}/ours_0.1250_s0"


def test_main_without_step_time_writes_the_sweep_only(monkeypatch, tmp_path):
  """--no_step_time (adding seeds to a sweep) trains nothing to time steps and
  records step_time as null; the sweep's table and paired rows still land."""
  import json
  import types

  monkeypatch.setattr(
      tradeoff.shards,
      "load_manifest",
      lambda d: (
          types.SimpleNamespace(grid=4, name="fake", task="single_label")
      ),
  )
  monkeypatch.setattr(tradeoff.registry, "resolve", lambda *a: str(tmp_path))

  def fake_run(config, workdir, defaults=None):
    del defaults
    good = config.model.policy == "learned"
    labels = np.eye(2)[np.arange(20) % 2]
    _write_predictions(workdir, labels if good else 1 - labels, labels)
    return {
        "accuracy": 0.5 + 0.1 * good + config.seed / 100,
        "mAP_macro": 0.5,
        "hr_tiles": config.model.budget * 16,
    }

  monkeypatch.setattr(tradeoff, "run_one", fake_run)

  def no_timing(*a, **k):
    raise AssertionError("timed a step under --no_step_time")

  monkeypatch.setattr(tradeoff.step_time, "time_train_step", no_timing)
  out = tmp_path / "out"
  tradeoff.main(
      [
          "--dataset",
          "fake",
          "--quick",
          "--out",
          str(out),
          "--methods",
          "ours,heuristic",
          "--budgets",
          "0.25",
          "--seeds",
          "2",
          "--first_seed",
          "10",
          "--no_step_time",
          "--work_dir",
          str(tmp_path / "work"),
      ]
  )
  # <dataset>_<schedule>_s<first>-<last>.json, with provenance
  res = json.loads((out / "fake_quick_s10-11.json").read_text())
  assert res["provenance"]["datasets"] == {"data": "other:" + tmp_path.name}
  assert res["provenance"]["command"].startswith("python ")
  assert res["step_time"] is None
  assert res["methods"]["ours"]["accuracy_seeds"] == [[0.7, 0.71]]
  assert res["methods"]["heuristic"]["accuracy_seeds"] == [[0.6, 0.61]]
  rows = {r["method"]: r for r in res["paired_vs_ours"]}
  assert set(rows) == {"heuristic"}  # budgets 0 and 1 were not trained
  assert rows["heuristic"]["metric"] == "accuracy"
  assert rows["heuristic"]["diff_points"] == pytest.approx(100.0)
  assert rows["heuristic"]["verdict"] == "ahead"
  assert res["split"] == "test"


def _old_sweep_config(quick: bool, data_dir: str) -> dict:
  """What tradeoff.base_config(quick, data_dir) built at 8b9d2da (before the
  config args), flattened: the default config, sweep bookkeeping, and the
  quick sizes."""
  flat = {
      k: v
      for k, v in run_config.as_flat(cross_scale.get_config()).items()
      if not k.startswith("evals.")  # c.evals = ConfigDict()
  }
  flat.update(
      {
          "data.path": data_dir,
          "checkpoint.every": 10**9,
          "eval_every": 10**9,
          "log_every": 100,
      }
  )
  if quick:
    flat.update(
        {
            "batch_size": 32,
            "total_steps": 400,
            "optim.warmup_steps": 40,
            "model.lr_encoder.width": 32,
            "model.lr_encoder.depth": 1,
            "model.lr_encoder.num_heads": 2,
            "model.lr_encoder.mlp_dim": 64,
            "model.hr_encoder.width": 32,
            "model.hr_encoder.depth": 2,
            "model.predictor.width": 32,
            "model.predictor.depth": 1,
            "model.predictor.num_heads": 2,
            "model.predictor.mlp_dim": 64,
            "model.sampler.width": 16,
            "model.embed_dim": 32,
        }
    )
  return flat


@pytest.mark.parametrize("quick", [True, False])
def test_config_args_build_the_old_sweep_configs(quick):
  """cross_scale.py:quick / :sweep are what base_config(quick) built: the
  cells of earlier sweeps stay readable (run_one compares configs)."""
  got = run_config.as_flat(tradeoff.sweep_config(quick, "D"))
  assert got == _old_sweep_config(quick, "D")
  assert tradeoff.toyworld_options(True) == {
      **cross_scale.get_config().toyworld.to_dict(),
      **{
          "num_train": 2000,
          "num_val": 64,
          "num_test": 500,
      },
  }


def test_a_cell_stopped_by_sigterm_says_how_to_resume(monkeypatch, tmp_path):
  monkeypatch.setattr(
      tradeoff.train, "train_and_evaluate", lambda c, w: {"preempted_at": 7}
  )
  c = tradeoff.sweep_config(True, str(tmp_path))
  with pytest.raises(SystemExit, match="SIGTERM at step 7 .* same --work_dir"):
    tradeoff.run_one(c, str(tmp_path / "cell"))


def test_budget_0_and_1_cells_are_shared_only_by_selection_methods(
    toyworld_small, tmp_path, monkeypatch
):
  """random and heuristic share ours' LR-only / dense cells; a variant that
  changes the model (not only its tiles) trains its own, with its override."""
  trained = {}

  def fake_run_one(config, workdir, defaults=None):
    del defaults
    trained[os.path.basename(workdir)] = config
    return {"accuracy": 0.5, "mAP_macro": 0.5, "hr_tiles": 1.0}

  monkeypatch.setattr(tradeoff, "run_one", fake_run_one)
  methods = tradeoff.parse_methods(
      "ours,random,heuristic", ["sharp:model.mil_sharpness=4.0"]
  )
  tradeoff.run_tradeoff(
      toyworld_small, methods=methods, budgets=(0.0, 0.125, 1.0),
      runlocal=True, work_dir=str(tmp_path),
  )  # fmt: skip
  shared = {d for d in trained if d.startswith(("lr_only", "dense"))}
  assert shared == {
      "lr_only_0.0000_s0", "dense_1.0000_s0",
      "lr_only_sharp_0.0000_s0", "dense_sharp_1.0000_s0",
  }  # fmt: skip
  for d in shared:
    assert trained[d].model.policy == "uniform"
    assert (trained[d].model.mil_sharpness == 4.0) == ("sharp" in d)
