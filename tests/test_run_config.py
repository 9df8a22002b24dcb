"""crossscale.run_config: a run's stored config against the one about to run."""

import json

from crossscale import run_config
from experiments.configs import cross_scale


def _stored(config) -> dict:
  return json.loads(config.to_json_best_effort())


def test_differences_describe_and_the_flags_that_restore_them():
  old = cross_scale.get_config("runlocal")
  new = cross_scale.get_config("runlocal")
  new.update_from_flattened_dict(
      {"total_steps": 7, "model.policy": "random", "model.sampler.prior": 0.5}
  )
  stored = _stored(old)
  keys = run_config.differences(stored, new)
  assert keys == ["model.policy", "model.sampler.prior", "total_steps"]
  assert run_config.describe(stored, new, ["total_steps"]) == (
      f"  total_steps: {old.total_steps} -> 7"
  )
  flags = run_config.restoring_flags(stored, new, keys)
  assert flags == (
      f"--config.model.policy={old.model.policy} "
      f"--config.model.sampler.prior={old.model.sampler.prior} "
      f"--config.total_steps={old.total_steps}"
  )
  assert run_config.differences(stored, old) == []


def test_an_absent_key_is_its_value_then_or_a_difference():
  """A stored config without model.sampler.prior ran with 0.0 (the default
  then); any other key the run lacks is a difference unless `defaults`
  says the run had that value."""
  new = cross_scale.get_config("runlocal")
  stored = _stored(new)
  del stored["model"]["sampler"]["prior"]
  del stored["model"]["selection"]["counterfactual"]
  assert run_config.differences(stored, new) == [
      "model.sampler.prior",
      "model.selection.counterfactual",
  ]
  assert run_config.describe(stored, new, ["model.sampler.prior"]) == (
      f"  model.sampler.prior: 0.0 -> {new.model.sampler.prior}"
  )
  assert run_config.differences(stored, new, defaults=new) == [
      "model.sampler.prior"
  ]
  # The flags set back what the run had; a key it lacked has no flag.
  assert (
      run_config.restoring_flags(
          stored, new, ["model.sampler.prior", "model.selection.counterfactual"]
      )
      == "--config.model.sampler.prior=0.0"
  )
  # Other models' configs never gain the key.
  assert run_config.differences({"a": {"b": 1}}, {"a": {"b": 1}}) == []


def test_flag_values_read_back_by_config_flags():
  stored = {"x": True, "y": [1, 2], "z": "a b"}
  new = {"x": False, "y": [3], "z": "c"}
  assert run_config.restoring_flags(stored, new, ["x", "y", "z"]) == (
      "--config.x=true '--config.y=(1, 2)' '--config.z=a b'"
  )


def test_load_stored(tmp_path):
  assert run_config.load_stored(str(tmp_path)) is None
  (tmp_path / "config.json").write_text('{"a": 1}')
  assert run_config.load_stored(str(tmp_path)) == {"a": 1}
