"""Module attributes that follow pruned channel counts (planner._attribute_updates), vectorised and plain."""
import dataclasses

import torch
from torch import nn

from prunekit.engine.planner import _attribute_updates
from prunekit.graph import analyze


def _net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3),
                         nn.GroupNorm(2, 6), nn.Conv2d(6, 4, 1)).eval()


def test_counts_follow_the_removed_channels_with_and_without_component_arrays():
    an = analyze(_net(), torch.randn(1, 3, 9, 9))
    by_name = {g.name: g for g in an.groups}
    removed = {by_name["0"].id: [1, 3, 6], by_name["3"].id: [2]}
    fast = _attribute_updates(an, removed)
    plain = _attribute_updates(dataclasses.replace(an, comp_group=None, comp_channel=None), removed)
    assert fast == plain
    after = {(a["module"], a["attr"]): (a["before"], a["after"]) for a in fast}
    assert after[("1", "num_features")] == (8, 5)      # 8 - 3 removed
    # GroupNorm(2, 6) ties channel i of its first group to channel i of its second: the group
    # has 3 channels of 2 indices each, so removing one channel removes two of num_channels
    assert by_name["3"].size == 3
    assert after[("4", "num_channels")] == (6, 4)
    assert _attribute_updates(an, {}) == [dict(a, after=a["before"]) for a in fast]
