"""experiments.pretrain.benefit: the arms compare() trains and how it summarises them
(training replaced by a recorder; the runs themselves are the benchmark's)."""

import pytest

from experiments.pretrain import benefit


def test_compare_arms_frozen_parts_and_gains(monkeypatch, tmp_path):
  seen = []
  acc = {
      ("", False): 0.5,
      ("PRE", False): 0.6,
      ("", True): 0.2,
      ("PRE", True): 0.7,
  }

  def fake_train(config, workdir):
    frozen = bool(config.optim.get("frozen"))
    seen.append(
        (
            config.model_init,
            frozen,
            tuple(config.optim.frozen),
            config.seed,
            config.total_steps,
            workdir,
        )
    )
    a = acc[(config.model_init, frozen)] + 0.01 * config.seed
    return {
        "final": {"accuracy": a, "mAP_macro": a, "drift": 0.1, "hr_tiles": 8.0}
    }

  monkeypatch.setattr(benefit.train, "train_and_evaluate", fake_train)
  out = benefit.compare(
      "DATA", True, 7, 2, "PRE", 1.0, str(tmp_path), ("hr_encoder",), probe=True
  )
  assert len(seen) == 8 and {s[3] for s in seen} == {0, 1}
  assert all(s[4] == 7 for s in seen)
  frozen = [s for s in seen if s[1]]
  assert {s[0] for s in frozen} == {"", "PRE"}
  assert all(s[2] == ("^hr_encoder/",) for s in frozen)
  assert len({s[5] for s in seen}) == 8  # one workdir per run
  names = [r["init"] for r in out["summary"]]
  assert names == [
      "scratch",
      "pretrained",
      "scratch_frozen",
      "pretrained_frozen",
  ]
  assert out["accuracy_gain"] == pytest.approx(0.1)
  assert out["frozen_gain"] == pytest.approx(0.5)
  assert out["seeds_ahead"] == 2
  assert out["summary"][0]["accuracy"] == pytest.approx(0.505)

  seen.clear()
  out = benefit.compare("DATA", True, 7, 1, "PRE", 1.0, str(tmp_path / "b"))
  assert len(seen) == 2 and "frozen_gain" not in out
