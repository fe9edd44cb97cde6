"""SearchConfig: round trip and errors naming the key."""
import json

import pytest

from prunekit.errors import ConfigError
from prunekit.search import SearchConfig


def test_round_trip_through_json():
    cfg = SearchConfig(method="metapruning", macs=0.3, evolution={"iterations": 3}, supernet={"epochs": 2})
    again = SearchConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.evolution_config().iterations == 3 and again.evolution_config().population == 50
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
])
def test_bad_values_raise_naming_the_key(d, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        SearchConfig.from_dict(d)
