"""Magnitude pruning (Han et al. 2015) and the METHODS registry of the weight-pruning methods."""
import json

import pytest
import torch

from prunekit.config import from_dict, to_dict
from prunekit.errors import ConfigError
from prunekit.methods import METHODS

WEIGHT_METHODS = ["magnitude", "agp", "lth", "admm"]


@pytest.fixture(scope="module")
def digits(digits_slice):
    # a small slice keeps each training run well under a second
    return digits_slice(400, 200)


@pytest.mark.parametrize("name", WEIGHT_METHODS)
def test_registry_and_config_round_trip(name):
    info = METHODS.get(name)
    assert info.name == name and info.kind == "weight" and info.paper
    cfg = info.config_cls()
    d = to_dict(cfg)
    json.dumps(d)
    assert from_dict(info.config_cls, d) == cfg
    with pytest.raises(ConfigError, match="bogus"):
        from_dict(info.config_cls, {**d, "bogus": 1})


@pytest.mark.parametrize("name, key", [("magnitude", "finetune"), ("agp", "finetune"), ("lth", "finetune"),
                                       ("admm", "finetune"), ("admm", "admm")])
def test_nested_train_overrides_keep_method_defaults(name, key):
    info = METHODS.get(name)
    cfg = from_dict(info.config_cls, {key: {"epochs": 2}})
    tc = getattr(cfg, key)
    assert tc.epochs == 2 and tc.augment is False  # method default, not TrainConfig's augment=True
    with pytest.raises(ConfigError, match=f"{key}.*epoch"):
        from_dict(info.config_cls, {key: {"epoch": 2}})


@pytest.mark.parametrize("kwargs, msg", [
    ({"sparsity": 1.0}, "sparsity"), ({"scope": "net"}, "scope"), ({"criterion": "l3"}, "criterion"),
    ({"rounds": 3}, "rounds must be 1"), ({"schedule": "iterative", "rounds": 0}, "rounds"),
])
def test_config_errors(kwargs, msg):
    cls = METHODS.get("magnitude").config_cls
    with pytest.raises(ConfigError, match=msg):
        cls(**kwargs)


def test_round_masks_follow_the_geometric_schedule(make_mlp):
    from prunekit.methods.magnitude import MagnitudeConfig, round_masks
    from prunekit.sparse import masks_sparsity

    net = make_mlp(hidden=(300, 100))
    cfg = MagnitudeConfig(sparsity=0.75, schedule="iterative", rounds=2)
    m1 = round_masks(net, cfg, 0)
    for n, m in m1.items():  # every layer at exactly 50% (sizes are even)
        assert int(m.sum()) * 2 == m.numel(), n
    m2 = round_masks(net, cfg, 1, existing=m1)
    assert masks_sparsity(m2) == pytest.approx(0.75, abs=1e-4)
    assert all(bool((m2[n] <= m1[n]).all()) for n in m1)  # never revives


def test_std_criterion_reaches_target_sparsity(make_mlp):
    from prunekit.methods.magnitude import MagnitudeConfig, round_masks
    from prunekit.sparse import masks_sparsity, std_threshold_masks

    net = make_mlp(hidden=(300, 100))
    cfg = MagnitudeConfig(sparsity=0.8, criterion="std")
    assert masks_sparsity(round_masks(net, cfg, 0)) == pytest.approx(0.8, abs=2e-3)
    fixed = MagnitudeConfig(sparsity=0.8, criterion="std", quality=0.5)
    assert all(torch.equal(round_masks(net, fixed, 0)[n], m)
               for n, m in std_threshold_masks(net, 0.5).items())


@pytest.mark.parametrize("schedule, rounds, scope", [("oneshot", 1, "layer"), ("iterative", 2, "global")])
def test_magnitude_prune_end_to_end(digits, schedule, rounds, scope, make_mlp):
    from prunekit.methods.magnitude import MagnitudeConfig, magnitude_prune

    net = make_mlp(hidden=(300, 100))
    cfg = MagnitudeConfig(sparsity=0.9, scope=scope, schedule=schedule, rounds=rounds,
                          finetune={"epochs": 1, "weight_decay": 1e-2, "momentum": 0.9})
    res = magnitude_prune(net, digits, cfg, progress=False)
    assert res.final["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert [r["stage"] for r in res.records][:2] == ["dense", "pruned"]
    assert sum(r["stage"] == "finetune" for r in res.records) == rounds
    params = dict(net.named_parameters())
    for n, m in res.masks.items():  # retraining with momentum + weight decay kept them at exactly 0
        assert torch.all(params[n].detach()[~m] == 0), n
    rep = res.sparsity_report()
    assert rep.total.sparsity == pytest.approx(0.9, abs=1e-3)
    if scope == "layer":
        assert all(abs(r.sparsity - 0.9) < 1e-3 for r in rep.rows)
    json.dumps(res.to_dict())
