"""Split sizes held in a module's list attribute (timm MixedConv2d): each piece prunes on its own."""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

import prunekit
from tests.graph.helpers import rel_err


class Mixed(nn.Module):
    """Like timm's MixedConv2d: unequal splits from ``self.splits``, one depthwise conv per piece."""

    def __init__(self, splits=(6, 4)):
        super().__init__()
        self.splits = list(splits)
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 2 * i + 3, padding=i + 1, groups=c) for i, c in enumerate(splits))

    def forward(self, x):
        pieces = torch.split(x, self.splits, 1)
        return torch.cat([conv(pieces[i]) for i, conv in enumerate(self.convs)], 1)  # fx cannot iterate pieces


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.mix, self.b, self.c = nn.Conv2d(3, 10, 1), Mixed(), nn.Conv2d(10, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.mix(torch.relu(self.a(x)))))))


def test_list_split_pieces_prune_independently_and_the_list_follows():
    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(2, 3, 6, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = prunekit.plan(net, x, ratio=0.5)
    assert plan.frozen == []
    assert sorted((g.size, len(g.removed)) for g in plan.groups) == [(4, 2), (6, 3), (8, 4)]
    small = plan.apply(net)
    assert small.mix.splits == [3, 2] and net.mix.splits == [6, 4]  # the original model keeps its list
    assert small.a.out_channels == 5 and small.mix.convs[1].groups == 2
    with torch.no_grad():
        assert rel_err(small(x), plan.apply_masks(net)(x)) < 1e-5


class Misused(Mixed):
    """The list is also summed: its elements would go stale, so the split keeps its channels."""

    def forward(self, x):
        torch._assert(x.shape[1] == sum(self.splits), "widths add up")
        return super().forward(x)


def test_a_list_also_used_in_arithmetic_keeps_its_channels():
    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(2, 3, 6, 6)
    net.mix = Misused()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = prunekit.plan(net, x, ratio=0.5)
    assert [g.size for g in plan.groups] == [8]
    assert plan.frozen
    small = plan.apply(net)
    assert small.mix.splits == [6, 4]
    with torch.no_grad():
        assert rel_err(small(x), plan.apply_masks(net)(x)) < 1e-5
