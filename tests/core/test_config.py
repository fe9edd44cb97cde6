from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from prunekit.config import from_dict, load_yaml, to_dict
from prunekit.errors import ConfigError


@dataclass
class Inner:
    bits: int = 8


@dataclass
class Cfg:
    lr: float = 0.1
    epochs: int = 3
    schedule: Literal["cosine", "step"] = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)
    layers: Optional[list[str]] = None
    inner: Inner = field(default_factory=Inner)
    verbose: bool = False


def test_round_trip():
    cfg = Cfg(lr=0.5, milestones=(0.3,), layers=["fc"], inner=Inner(bits=5))
    assert from_dict(Cfg, to_dict(cfg)) == cfg
    assert to_dict(cfg)["milestones"] == [0.3]


def test_int_accepted_for_float():
    assert from_dict(Cfg, {"lr": 1}).lr == 1.0


@pytest.mark.parametrize("data,msg", [
    ({"lrr": 0.1}, r"unknown key lrr for Cfg"),
    ({"epochs": "3"}, r"epochs: expected an integer, got '3'"),
    ({"epochs": True}, r"epochs: expected an integer"),
    ({"schedule": "linear"}, r"schedule: must be one of 'cosine', 'step'"),
    ({"inner": {"bitz": 3}}, r"unknown key inner.bitz"),
    ({"inner": {"bits": 2.5}}, r"inner.bits: expected an integer"),
    ({"milestones": 0.5}, r"milestones: expected a list"),
    ({"verbose": "yes"}, r"verbose: expected true or false"),
])
def test_errors_name_the_key(data, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(Cfg, data)


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml(lst)
    ok = tmp_path / "ok.yaml"
    ok.write_text("lr: 0.2\n")
    assert from_dict(Cfg, load_yaml(ok)).lr == 0.2
