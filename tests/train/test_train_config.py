import json

import pytest
import yaml

from prunekit.errors import ConfigError
from prunekit.train import TrainConfig


def test_defaults_round_trip_dict_json_yaml():
    cfg = TrainConfig(epochs=7, optimizer="adamw", lr=3e-4, schedule="step", milestones=[3, 5], gamma=0.5,
                      warmup_epochs=0.5, num_threads=2, device="cpu", distributed=False)
    d = cfg.to_dict()
    assert d["milestones"] == [3, 5] and d["num_threads"] == 2
    assert TrainConfig.from_dict(d) == cfg
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert TrainConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


def test_partial_dict_keeps_defaults_and_ints_count_as_floats():
    cfg = TrainConfig.from_dict({"epochs": 2, "lr": 1})
    assert cfg.epochs == 2 and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.batch_size == TrainConfig().batch_size


@pytest.mark.parametrize("key,value", [
    ("epochs", "3"), ("epochs", 2.5), ("epochs", True), ("lr", "fast"), ("augment", 1),
    ("milestones", 3), ("milestones", [1.5]), ("optimizer", 1), ("num_threads", "2"),
])
def test_wrong_type_names_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"\b{key}\b"):
        TrainConfig.from_dict({key: value})


@pytest.mark.parametrize("key,value", [
    ("optimizer", "sgdd"), ("schedule", "linear"), ("lr", 0.0), ("batch_size", 0), ("epochs", -1),
    ("label_smoothing", 1.0), ("milestones", [5, 2]), ("num_threads", 0), ("seed", -1),
])
def test_bad_value_names_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"\b{key}\b"):
        TrainConfig.from_dict({key: value})


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown key epoch\b"):
        TrainConfig.from_dict({"epoch": 3})


def test_constructor_validates_too():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")


def test_replace_validates():
    cfg = TrainConfig().replace(epochs=3)
    assert cfg.epochs == 3
    with pytest.raises(ConfigError, match="nope"):
        TrainConfig().replace(nope=1)


def test_load_yaml_file_and_errors_name_the_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("epochs: 4\noptimizer: adam\nlr: 0.001\n")
    assert TrainConfig.load(good) == TrainConfig(epochs=4, optimizer="adam", lr=0.001)
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 4\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*learning_rate"):
        TrainConfig.load(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        TrainConfig.load(tmp_path / "missing.yaml")
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.load(notmap)
