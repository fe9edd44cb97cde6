"""SearchConfig: round trip and errors naming the key."""
import json

import pytest

from prunekit.errors import ConfigError
from prunekit.search import SearchConfig


def test_round_trip_through_json():
    cfg = SearchConfig(method="metapruning", macs=0.3, evolution={"iterations": 3}, supernet={"epochs": 2})
    again = SearchConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    # the default (fast) preset's population, the thorough preset's is the paper's 50
    assert again.evolution_config().iterations == 3 and again.evolution_config().population == 12
    assert again.train_config("supernet").epochs == 2


@pytest.mark.parametrize("d, key", [
    ({"macs": 0.5, "bogus": 1}, "bogus"),
    ({"macs": 0.5, "method": "nas"}, "method"),
    ({"macs": 1.5}, "macs"),
    ({}, "budget"),
    ({"macs": 0.5, "evolution": {"popsize": 3}}, "evolution.popsize"),
    ({"macs": 0.5, "supernet": {"lr": "fast"}}, "supernet.lr"),
    ({"macs": 0.5, "init": "random"}, "init"),
    ({"macs": 0.5, "round_to": "4"}, "round_to"),
    ({"macs": 0.5, "rank": 0}, "rank"),
    ({"macs": 0.5, "hidden": True}, "hidden"),
    ({"macs": 0.5, "budget_floor": 1.0}, "budget_floor"),
    ({"latency_ms": 2.0, "latency_mode": "min"}, "latency_mode"),
    ({"latency_ms": 2.0, "latency_rounds": 0}, "latency_rounds"),
    ({"macs": 0.5, "budget_floor": -0.1}, "budget_floor"),
    ({"macs": 0.5, "preset": "quick"}, "preset"),
    ({"macs": 0.5, "eval_samples": -1}, "eval_samples"),
    ({"macs": 0.5, "supernet_samples": 1.5}, "supernet_samples"),
    ({"macs": 0.5, "calib_batches": 0}, "calib_batches"),
    ({"macs": 0.5, "calib_batch_size": 0}, "calib_batch_size"),
    ({"macs": 0.5, "finetune": {"epochs": "two"}}, "finetune.epochs"),
])
def test_bad_values_raise_naming_the_key(d, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        SearchConfig.from_dict(d)


@pytest.mark.parametrize("preset", ["fast", "thorough"])
def test_preset_values_fill_unset_fields_and_round_trip_through_yaml(preset, tmp_path):
    import yaml

    from prunekit.config import load_yaml
    from prunekit.search.presets import PRESETS

    p = PRESETS[preset]
    cfg = SearchConfig(macs=0.3, preset=preset)
    assert cfg.ratios == p["ratios"] and cfg.calib_batches == p["calib_batches"]
    assert cfg.calib_batch_size == p["calib_batch_size"] and cfg.eval_samples == p["eval_samples"]
    assert cfg.supernet_samples == p["supernet_samples"] and cfg.num_random == p["num_random"]
    assert cfg.greedy_moves == p["greedy_moves"]
    assert cfg.train_config("supernet").epochs == p["supernet"]["epochs"]
    assert cfg.finetune.epochs == p["finetune"]["epochs"]
    assert cfg.evolution_config().population == p["evolution"]["population"]
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    again = SearchConfig.from_dict(load_yaml(path))
    assert again == cfg and again.preset == preset


def test_explicit_values_win_over_the_preset_and_nested_keys_merge():
    cfg = SearchConfig.from_dict({"macs": 0.3, "preset": "thorough", "calib_batches": 1,
                                  "finetune": {"lr": 0.01}, "evolution": {"iterations": 2}, "supernet": {"epochs": 0}})
    assert cfg.calib_batches == 1 and cfg.calib_batch_size == 128
    assert (cfg.finetune.lr, cfg.finetune.epochs) == (0.01, 5)  # the preset's epochs, the user's lr
    assert cfg.evolution_config().iterations == 2 and cfg.evolution_config().population == 50
    assert cfg.train_config("supernet").epochs == 0 and cfg.train_config("supernet").batch_size == 128
    assert SearchConfig(macs=0.3, ratios=[0.5, 1.0]).ratios == [0.5, 1.0]
