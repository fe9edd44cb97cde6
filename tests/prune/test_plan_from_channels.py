"""``prunekit.plan_from_channels``: a plan from explicit per-group channel lists."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import prunekit
from prunekit import models
from prunekit.errors import PrunekitError


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()


def test_removes_exactly_the_named_channels_and_matches_masks():
    net, x = _net(), torch.randn(2, 1, 8, 8)
    p = prunekit.plan_from_channels(net, x, {"0": [0, 2], "3": [1]}, info={"why": "test"})
    small = p.apply(net)
    # kept filters are the original rows 1 and 3 of conv 0, and filters 0 and 2 of conv 3
    assert torch.equal(small[0].weight, net[0].weight[[1, 3]])
    assert torch.equal(small[1].running_mean, net[1].running_mean[[1, 3]])
    assert torch.equal(small[3].weight, net[3].weight[[0, 2]][:, [1, 3]])
    assert small[6].in_features == 2 * 16
    # Not torch.equal: the pruned model sums over fewer input channels than the masked one (zeros
    # included), and a different reduction length changes the float summation order, so the two
    # outputs may differ in the last bits. A tight tolerance still catches any wrong channel.
    assert torch.allclose(small(x), p.apply_masks(net)(x), rtol=1e-5, atol=1e-6)
    assert p.info["criterion"] == "explicit" and p.info["why"] == "test"
    dense_macs = prunekit.measure.count_macs(net, x).total
    assert p.info["macs_before"] == dense_macs
    assert p.info["macs_after"] == prunekit.measure.count_macs(small, x).total
    assert p.info["params_after"] == sum(t.numel() for t in small.parameters())


def test_group_ids_and_names_are_equivalent_and_json_round_trips():
    net, x = _net(), torch.randn(1, 1, 8, 8)
    by_name = prunekit.plan_from_channels(net, x, {"0": [3]})
    gid = next(g.id for g in by_name.groups if g.name == "0")
    by_id = prunekit.plan_from_channels(net, x, {gid: [3]})
    assert by_id.to_dict() == by_name.to_dict()
    again = prunekit.PruningPlan.from_json(by_id.to_json())
    assert torch.equal(again.apply(net)(x), by_id.apply(net)(x))


def test_residual_group_is_removed_from_every_coupled_layer():
    net = models.create("resnet20", num_classes=10, in_channels=1, input_size=(12, 12), widths=[4, 8, 8]).eval()
    x = torch.randn(1, 1, 12, 12)
    skeleton = prunekit.plan(net, x, ratio=0.0)
    stream = max(skeleton.groups, key=lambda g: len(g.members))  # the residual stream couples many layers
    p = prunekit.plan_from_channels(net, x, {stream.id: [0]})
    small = p.apply(net)
    assert sum(len(g.removed) for g in p.groups) == 1
    assert small(x).shape == (1, 10)
    assert torch.allclose(small(x), p.apply_masks(net)(x), atol=1e-5)


@pytest.mark.parametrize("removed, match", [
    ({"nope": [0]}, "no prunable group 'nope'"),
    ({"0": [4]}, r"out of range \[0, 4\)"),
    ({"0": [0, 1, 2, 3]}, "cannot remove all 4"),
    ({"0": ["a"]}, "must be a list of integers"),
    ([0, 1], "must be a dict"),
])
def test_bad_input_is_named(removed, match):
    with pytest.raises(PrunekitError, match=match):
        prunekit.plan_from_channels(_net(), torch.randn(1, 1, 8, 8), removed)
