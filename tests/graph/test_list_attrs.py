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


class BiasTable(nn.Module):
    """timm's RelPosMlp: a per-head bias from an MLP, shaped by a tuple attribute, read through a method."""

    def __init__(self, heads: int, tokens: int):
        super().__init__()
        self.num_heads = heads
        self.bias_shape = (tokens, tokens, heads)
        self.mlp = nn.Linear(2, heads)
        self.register_buffer("coords", torch.randn(tokens * tokens, 2), persistent=False)

    def get_bias(self):
        return self.mlp(self.coords).view(-1, self.num_heads).view(self.bias_shape).permute(2, 0, 1)


class RelPosAttention(nn.Module):
    def __init__(self, dim=12, heads=3, tokens=4):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.rel_pos = BiasTable(heads, tokens)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1) + self.rel_pos.get_bias()).softmax(-1)  # a method, not forward
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, -1))


class RmsNorm(nn.Module):
    """timm's RmsNorm: not a torch.nn norm, holds ``normalized_shape`` and calls ``F.rms_norm``."""

    def __init__(self, c):
        super().__init__()
        self.normalized_shape = (c,)
        self.weight = nn.Parameter(torch.rand(c) + 0.5)

    def forward(self, x):
        return torch.nn.functional.rms_norm(x, self.normalized_shape, self.weight, 1e-6)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.attn, self.norm, self.out = nn.Linear(5, 12), RelPosAttention(), RmsNorm(12), nn.Linear(12, 5)

    def forward(self, x):
        return self.out(self.norm(self.attn(self.inp(x))))


def test_a_tuple_attribute_read_in_a_method_follows_the_heads_and_rms_norm_prunes():
    torch.manual_seed(0)
    net, x = Block().eval(), torch.randn(2, 4, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = prunekit.plan(net, x, ratio=0.34)
    assert plan.frozen == []
    small = plan.apply(net)
    heads = small.attn.num_heads
    assert heads == 2 and small.attn.rel_pos.bias_shape == (4, 4, 2) and small.attn.rel_pos.num_heads == 2
    assert small.attn.rel_pos.mlp.out_features == 2 and small.norm.normalized_shape[0] == small.norm.weight.numel()
    assert net.attn.rel_pos.bias_shape == (4, 4, 3)  # the original keeps its tuple
    with torch.no_grad():
        # the heads alone (the norm after them normalises over the pruned width, so the block is compared there)
        ref = plan.apply_masks(net).attn.proj.weight.abs().sum(0) != 0  # input channels the masks kept
        assert int(ref.sum()) == small.attn.proj.in_features
        assert small(x).shape == net(x).shape and torch.isfinite(small(x)).all()
