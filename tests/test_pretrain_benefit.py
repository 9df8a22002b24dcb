"""experiments.pretrain.benefit: the arms compare() trains, how it summarises
them (training replaced by a recorder) and the configs it trains."""

import pytest

from crossscale import run_config
from experiments.configs import pretrain
from experiments.cross_scale import tradeoff
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


@pytest.mark.parametrize("quick", [True, False])
def test_config_args_build_the_old_pretrain_and_finetune_configs(quick):
  """pretrain.py:quick,steps=N (:sweep,steps=N) is what
  benefit.pretrain_config(data_dir, quick, N) built at 8b9d2da (the
  pretraining config with the tradeoff sweep's encoders), and
  finetune_config starts from the tradeoff sweep's config."""
  xs = tradeoff.sweep_config(quick, "D")
  flat = {
      k: v
      for k, v in run_config.as_flat(pretrain.get_config()).items()
      if not k.startswith("evals.")
  }
  for part in ("lr_encoder", "hr_encoder", "sampler"):
    flat = {k: v for k, v in flat.items() if not k.startswith(f"model.{part}.")}
    flat.update(run_config.flatten({"model": {part: xs.model[part].to_dict()}}))
  flat.update(
      {
          "data.path": "D",
          "model.contrast_tiles": 8,
          "batch_size": xs.batch_size,
          "total_steps": 70,
          "optim.warmup_steps": 7,
          "checkpoint.every": 70,
          "eval_every": 10**9,
          "log_every": 100,
          "evals.test.type": "classification",
          "evals.test.split": "test",
      }
  )
  c = pretrain.get_config(f"{benefit.config_arg(quick)},steps=70")
  c.data.path = "D"
  c.model.contrast_tiles = 8
  assert run_config.as_flat(c) == flat
  assert c.batch_size == 32  # the sweeps' batch, quick or not

  ft = benefit.finetune_config("D", quick, 50, 3, "PRE", 0.5, ("hr_encoder",))
  want = run_config.as_flat(xs)
  want.update(
      {
          "model.budget": 1 / 8,
          "seed": 3,
          "total_steps": 50,
          "model_init": "PRE",
          "model_init_lr_scale": 0.5,
          "model_init_keys": ["hr_encoder"],
      }
  )
  assert run_config.as_flat(ft) == want
