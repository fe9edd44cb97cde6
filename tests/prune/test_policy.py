"""Policy options: round_to, min_channels, ignored and per-layer settings, MACs/params targets, steps."""
from __future__ import annotations

import pytest
import torch

import prunekit
from prunekit import measure, models
from tests.graph.helpers import randomize


@pytest.fixture(scope="module")
def net_x():
    torch.manual_seed(0)
    return randomize(models.create("resnet20", num_classes=10, in_channels=3)), torch.randn(1, 3, 32, 32)


def _kept(plan):
    return {g.name: g.kept for g in plan.groups}


def test_uniform_ratio_per_group(net_x):
    net, x = net_x
    plan = prunekit.plan(net, x, ratio=0.25)
    for g in plan.groups:
        assert len(g.removed) == int(0.25 * g.size)


def test_round_to_and_min_channels(net_x):
    net, x = net_x
    plan = prunekit.plan(net, x, ratio=0.7, round_to=8)
    assert all(k % 8 == 0 for k in _kept(plan).values())
    plan = prunekit.plan(net, x, ratio=0.95, min_channels=6)
    assert min(_kept(plan).values()) == 6


def test_ignored_layers_keep_outputs(net_x):
    net, x = net_x
    plan = prunekit.plan(net, x, ratio=0.5, ignored_layers=[net.layer1[0].conv1, "layer2"])
    small = plan.apply(net)
    assert small.layer1[0].conv1.out_channels == net.layer1[0].conv1.out_channels
    assert all(b.conv1.out_channels == 32 for b in small.layer2)
    assert small.layer1[1].conv1.out_channels < 16


def test_per_layer_ratios(net_x):
    net, x = net_x
    plan = prunekit.plan(net, x, ratios={"layer1.0.conv1": 0.5, net.layer3[0].conv1: 0.25})
    small = plan.apply(net)
    assert small.layer1[0].conv1.out_channels == 8
    assert small.layer3[0].conv1.out_channels == 48
    assert small.layer2[0].conv1.out_channels == 32  # not listed: untouched


@pytest.mark.parametrize("global_ranking", [False, True])
def test_macs_target_within_one_percent(net_x, global_ranking):
    net, x = net_x
    small = prunekit.prune(net, x, macs=0.5, global_ranking=global_ranking)
    before = measure.count_macs(net, x).total
    after = measure.count_macs(small, x).total
    assert abs(after / before - 0.5) <= 0.01


def test_params_target_within_one_percent(net_x):
    net, x = net_x
    small = prunekit.prune(net, x, params=0.4, criterion="l2")
    ratio = measure.count_params(small) / measure.count_params(net)
    assert abs(ratio - 0.4) <= 0.01


def test_global_ranking_removes_overall_fraction(net_x):
    net, x = net_x
    plan = prunekit.plan(net, x, ratio=0.3, global_ranking=True)
    total = sum(g.size for g in plan.groups)
    assert plan.num_removed == pytest.approx(0.3 * total, abs=2)
    assert len({len(g.removed) / g.size for g in plan.groups}) > 1  # not uniform


def test_iterative_steps_with_callback(net_x):
    net, x = net_x
    seen = []

    def cb(model, step):
        seen.append((step, model.conv1.out_channels))

    small = prunekit.prune(net, x, ratio=0.5, steps=2, callback=cb)
    assert [s for s, _ in seen] == [1, 2]
    assert seen[0][1] == 12 and seen[1][1] == 8 == small.conv1.out_channels
    assert net.conv1.out_channels == 16
    assert len(small.prunekit_spec.transforms) == 2


def test_iterative_macs_target(net_x):
    net, x = net_x
    small = prunekit.prune(net, x, macs=0.6, steps=3)
    r = measure.count_macs(small, x).total / measure.count_macs(net, x).total
    assert abs(r - 0.6) <= 0.015


def test_plan_options_round_trip_and_errors(net_x):
    from prunekit.errors import ConfigError
    from prunekit.engine import PlanOptions

    cfg = PlanOptions.from_dict({"criterion": "l2", "ratio": 0.25, "ignored_layers": ["fc"], "round_to": 4})
    assert PlanOptions.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="ratoi"):
        PlanOptions.from_dict({"ratoi": 0.5})
    with pytest.raises(ConfigError, match="round_to"):
        PlanOptions.from_dict({"round_to": "eight"})
    net, x = net_x
    plan = prunekit.plan(net, x, cfg)
    assert all(k % 4 == 0 for k in _kept(plan).values()) and plan.info["criterion"] == "l2"
