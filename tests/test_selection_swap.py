"""experiments.cross_scale.selection_swap: a trained run fed each source's
tiles; its own sampler reproduces its test accuracy; overlaps by hand."""

import json
import os

import numpy as np
import pytest

from crossscale import input_pipeline, shards, tile_grid
from crossscale.models import cross_scale
from experiments.cross_scale import selection_swap

pytestmark = pytest.mark.xdist_group("tiny_xs_run")  # conftest.tiny_xs_run


@pytest.fixture
def run(tiny_xs_run):
  return tiny_xs_run


def test_swap_matrix(run):
  with open(os.path.join(run.workdir, "final_metrics.json")) as f:
    own = json.load(f)["final"]["accuracy"]
  res = selection_swap.swap([run])
  assert res["sources"] == ["ours", "heuristic", "uniform", "random"]
  assert res["metric"] == "accuracy"
  manifest = shards.load_manifest(run.config.data.path)
  n = manifest.grid**2
  k = n // 4
  assert res["k"] == k  # budget 1/4 of the grid
  # Its own sampler: exactly the run's final test accuracy.
  assert res["accuracy"]["ours"]["ours"] == pytest.approx(own, abs=1e-6)
  for s in res["sources"]:
    assert 0.0 <= res["accuracy"]["ours"][s] <= 1.0
    assert res["overlap"][s][s] == 1.0
  # heuristic vs uniform, by hand: top-k LR detail vs the fixed grid slots.
  data_dir = run.config.data.path
  lrs = []
  for b in input_pipeline.eval_dataset(
      data_dir, "test", batch_size=16, fields=("lr",)
  ):
    lrs.append(np.asarray(b["lr"])[np.asarray(b["valid"]).astype(bool)])
  stat = np.asarray(
      tile_grid.tile_statistic(np.concatenate(lrs), manifest.grid)
  )
  top = np.argsort(-stat, axis=1, kind="stable")[:, :k]
  uni = set(np.asarray(cross_scale.uniform_indices(n, k)).tolist())
  want = np.mean([len(set(t) & uni) / k for t in top.tolist()])
  assert res["overlap"]["heuristic"]["uniform"] == pytest.approx(want)
  assert res["overlap"]["uniform"]["heuristic"] == pytest.approx(want)
  # The share of object tiles (any mask_objects pixel) the heuristic buys.
  masks = []
  for b in input_pipeline.eval_dataset(
      data_dir, "test", batch_size=16, fields=("mask_objects",)
  ):
    masks.append(np.asarray(b["mask_objects"])[np.asarray(b["valid"]) > 0])
  m = np.concatenate(masks) > 0  # [S, H, W]
  t = m.shape[1] // manifest.grid
  objects = m.reshape(len(m), manifest.grid, t, manifest.grid, t).any((2, 4))
  objects = objects.reshape(len(m), n)
  want = np.take_along_axis(objects, top, 1).sum() / objects.sum()
  assert res["object_recall"]["heuristic"] == pytest.approx(want)
  assert set(res["object_recall"]) == set(res["sources"])
  # The detail target's ceiling: the k tiles of most sub-LR-pixel HR
  # detail (variance inside each LR pixel's block), by hand.
  hrs = []
  for b in input_pipeline.eval_dataset(
      data_dir, "test", batch_size=16, fields=("hr",)
  ):
    hrs.append(np.asarray(b["hr"])[np.asarray(b["valid"]) > 0])
  hr = np.concatenate(hrs)  # [S, H, W, C]
  s = hr.shape[1] // manifest.lr_shape[0]
  g, ts = manifest.grid, t // s
  blocks = hr.reshape(len(hr), g, ts, s, g, ts, s, -1)
  var = ((blocks - blocks.mean((3, 6), keepdims=True)) ** 2).mean(
      (2, 3, 5, 6, 7)
  )
  top = np.argsort(-var.reshape(len(hr), n), axis=1, kind="stable")[:, :k]
  want = np.take_along_axis(objects, top, 1).sum() / objects.sum()
  assert res["target_recall"]["detail"] == pytest.approx(want)


def test_object_recall_pools_the_object_tiles_over_scenes():
  objects = np.zeros((2, 6), bool)
  objects[0, [1, 4]] = True
  objects[1, [0, 2, 5]] = True
  idx = np.array([[4, 3], [5, 0]])  # buys 1 of 2, then 2 of 3
  assert selection_swap.object_recall(idx, objects) == pytest.approx(3 / 5)
  assert np.isnan(selection_swap.object_recall(idx, objects & False))


def test_runs_of_different_budgets_are_refused(run):
  other = selection_swap.Run(
      "b8",
      run.workdir,
      run.config,
      run.model.clone(budget=0.125),
      run.params,
      run.task,
  )
  with pytest.raises(ValueError, match="differ in budget"):
    selection_swap.swap([run, other])


def test_a_sampler_of_another_config_is_grafted_with_its_config(run):
  """A run whose sampler lacks the heuristic prior (one parameter fewer than
  the default's) feeds its tiles to a run with it, and the other way round."""
  assert run.model.sampler["prior"] == 1.0  # the default config's sampler
  sampler = {**dict(run.model.sampler), "prior": 0.0}
  params = dict(run.params)
  params["sampler"] = {
      k: v for k, v in run.params["sampler"].items() if k != "prior_weight"
  }
  plain = selection_swap.Run(
      "ours_plain",
      run.workdir,
      run.config,
      run.model.clone(sampler=sampler),
      params,
      run.task,
  )
  res = selection_swap.swap([run, plain])
  assert res["sources"][:2] == ["ours", "ours_plain"]
  for a in ("ours", "ours_plain"):
    for b in res["sources"]:
      assert 0.0 <= res["accuracy"][a][b] <= 1.0
  # The same predictor fed the same sampler's tiles scores the same.
  assert res["accuracy"]["ours_plain"]["ours"] == pytest.approx(
      res["accuracy"]["ours"]["ours"]
  )
  # Without its prior term the sampler ranks the tiles differently.
  assert res["overlap"]["ours"]["ours_plain"] < 1.0


def test_overlap():
  a = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
  b = np.array([[3, 2, 9, 8], [4, 5, 6, 7]])
  assert selection_swap.overlap(a, b) == pytest.approx((0.5 + 1.0) / 2)


def test_find_cells_groups_a_sweep_by_seed(tmp_path):
  for name in (
      "ours_0.2500_s0",
      "heuristic_0.2500_s0",
      "ours_0.2500_s1",
      "ours_0.1250_s0",
      "random_0.2500_s1",
      "lr_only_0.0000",
  ):
    (tmp_path / name).mkdir()
    (tmp_path / name / "final_metrics.json").write_text("{}")
  (tmp_path / "heuristic_0.2500_s1").mkdir()  # unfinished: no metrics
  other = tmp_path / "more"
  (other / "heuristic_0.2500").mkdir(parents=True)  # one seed, no suffix
  (other / "heuristic_0.2500" / "final_metrics.json").write_text("{}")
  cells = selection_swap.find_cells([str(tmp_path)], 0.25)
  assert {s: sorted(m) for s, m in cells.items()} == {
      0: ["heuristic", "ours"],
      1: ["ours", "random"],
  }
  assert cells[1]["random"] == str(tmp_path / "random_0.2500_s1")
  with pytest.raises(ValueError, match="two cells for heuristic seed 0"):
    selection_swap.find_cells([str(tmp_path), str(other)], 0.25)
  with pytest.raises(FileNotFoundError, match="no finished cell at budget"):
    selection_swap.find_cells([str(tmp_path)], 0.5)
  only = selection_swap.find_cells([str(tmp_path)], 0.25, seeds=[1])
  assert list(only) == [1] and sorted(only[1]) == ["ours", "random"]
  with pytest.raises(FileNotFoundError, match=r"seeds \[2\]"):
    selection_swap.find_cells([str(tmp_path)], 0.25, seeds=[1, 2])


def test_mean_tables_average_seeds():
  a = {
      "k": 2,
      "split": "test",
      "sources": ["ours", "heuristic"],
      "accuracy": {"ours": {"ours": 0.8, "heuristic": 0.6}},
      "overlap": {"ours": {"ours": 1.0, "heuristic": 0.5}},
  }
  b = {
      "k": 2,
      "split": "test",
      "sources": ["ours", "heuristic"],
      "accuracy": {
          "ours": {"ours": 0.6, "heuristic": 0.6},
          "heuristic": {"ours": 0.1, "heuristic": 0.2},
      },
      "overlap": {"ours": {"ours": 1.0, "heuristic": 0.7}},
  }
  m = selection_swap.mean_tables([a, b])
  assert m["accuracy"] == {
      "ours": {"ours": pytest.approx(0.7), "heuristic": pytest.approx(0.6)}
  }
  assert m["overlap"]["ours"]["heuristic"] == pytest.approx(0.6)


def test_parse_runs():
  assert selection_swap.parse_runs("ours=/a,heuristic=/b/c") == {
      "ours": "/a",
      "heuristic": "/b/c",
  }
  for bad in ("ours", "=/a", "ours=/a,heuristic"):
    with pytest.raises(ValueError, match="expected NAME=WORKDIR"):
      selection_swap.parse_runs(bad)
