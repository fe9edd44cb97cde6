"""Subclasses of handled layers whose forward fx cannot trace: pruned like the parent only when a check says so."""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

import prunekit
from prunekit.graph.inherited import verify
from tests.graph.helpers import rel_err


def _same_pad(x, k: int, s: int):
    # TensorFlow "same" padding from the input size: a Python branch on a size (fx cannot trace it)
    ih = x.shape[-1]
    pad = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    if pad > 0:
        x = F.pad(x, [pad // 2, pad - pad // 2, pad // 2, pad - pad // 2])
    return x


class ConvSame(nn.Conv2d):
    """Like timm's Conv2dSame."""

    def forward(self, x):
        return F.conv2d(_same_pad(x, self.kernel_size[0], self.stride[0]), self.weight, self.bias, self.stride,
                        0, self.dilation, self.groups)


class PoolSame(nn.AvgPool2d):
    """Like timm's AvgPool2dSame."""

    def forward(self, x):
        return F.avg_pool2d(_same_pad(x, self.kernel_size, self.stride), self.kernel_size, self.stride)


class StdConv(nn.Conv2d):
    """Weights standardised over input channels: removing one is not zeroing it, so it must stay frozen."""

    def forward(self, x):
        if x.shape[-1] > 0:  # untraceable, as above
            w = self.weight
            w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class Net(nn.Module):
    def __init__(self, mid=nn.Conv2d):
        super().__init__()
        self.stem = ConvSame(3, 8, 3, stride=2)
        self.dw = ConvSame(8, 8, 3, groups=8)
        self.pool = PoolSame(2, 2)
        self.mid = mid(8, 12, 3, padding=1)
        self.body = nn.Conv2d(12, 64, 3)  # most parameters outside `mid`: fx stays the tracer
        self.head = nn.Conv2d(64, 4, 1)

    def forward(self, x):
        return self.head(torch.relu(self.body(torch.relu(self.mid(self.pool(torch.relu(self.dw(torch.relu(self.stem(x))))))))))


def _plan(net, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prunekit.plan(net, x, ratio=0.5)


def test_same_padding_subclasses_prune_like_their_parent_exactly():
    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(2, 3, 15, 15)
    plan = _plan(net, x)
    assert plan.frozen == []
    # stem/dw/pool share one group of 8, mid has 12: both halved
    assert sorted((g.size, len(g.removed)) for g in plan.groups) == [(8, 4), (12, 6), (64, 32)]
    small = plan.apply(net)
    assert small.stem.out_channels == 4 and small.dw.groups == 4 and isinstance(small.stem, ConvSame)
    with torch.no_grad():
        assert rel_err(small(x), plan.apply_masks(net)(x)) < 1e-5


def test_a_subclass_that_mixes_channels_stays_frozen_and_says_why():
    torch.manual_seed(0)
    net, x = Net(mid=StdConv).eval(), torch.randn(2, 3, 15, 15)
    plan = _plan(net, x)
    frozen = [f for f in plan.frozen if f["module"] == "mid"]
    assert len(frozen) == 1
    assert "subclasses a layer the engine handles" in frozen[0]["reason"] and "differs from zeroing" in frozen[0]["reason"]
    assert [g.size for g in plan.groups] == [64]
    small = plan.apply(net)
    assert small.mid.weight.shape == (12, 8, 3, 3)  # input and output channels of the frozen layer are kept
    with torch.no_grad():
        assert rel_err(small(x), plan.apply_masks(net)(x)) < 1e-5


def test_verify_exact_cases():
    torch.manual_seed(0)
    assert verify(ConvSame(4, 6, 3).eval(), nn.Conv2d, (1, 4, 7, 7)) is None
    assert verify(PoolSame(3, 2), nn.AvgPool2d, (1, 4, 7, 7)) is None
    assert "differs from zeroing" in verify(StdConv(4, 6, 3).eval(), nn.Conv2d, (1, 4, 7, 7))
    grouped = ConvSame(4, 6, 3, groups=2).eval()
    assert "not checked" in verify(grouped, nn.Conv2d, (1, 4, 7, 7))


def resize_table(t, size: int):
    """A position table resized over its spatial dims (NHWC), like timm's resample_abs_pos_embed_nhwc."""
    if t.shape[1] == size:  # a branch on a size: fx cannot trace it, so it is wrapped as one call
        return t
    return F.interpolate(t.permute(0, 3, 1, 2), size=(size, size), mode="bilinear").permute(0, 2, 3, 1)


def reverse_channels(t):
    """Mixes channel positions: removing one is not removing the same one of the output."""
    return t.flip(-1)


torch.fx.wrap("resize_table")
torch.fx.wrap("reverse_channels")


class PosNet(nn.Module):
    def __init__(self, resize: bool):
        super().__init__()
        self.resize = resize
        self.embed = nn.Conv2d(3, 8, 2, stride=2)
        self.pos = nn.Parameter(torch.randn(1, 2, 2, 8))
        self.body = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        y = self.embed(x).permute(0, 2, 3, 1)
        y = y + (resize_table(self.pos, y.shape[1]) if self.resize else reverse_channels(self.pos))
        return self.head(torch.relu(self.body(y)))


def test_a_wrapped_function_that_passes_channels_through_keeps_them_prunable():
    torch.manual_seed(0)
    net, x = PosNet(True).eval(), torch.randn(2, 3, 8, 8)
    plan = _plan(net, x)
    assert plan.frozen == []
    assert sorted(g.size for g in plan.groups) == [8, 16]
    small = plan.apply(net)
    assert small.pos.shape == (1, 2, 2, 4)
    with torch.no_grad():
        assert rel_err(small(x), plan.apply_masks(net)(x)) < 1e-5


def test_a_wrapped_function_that_moves_channels_is_frozen():
    torch.manual_seed(0)
    net, x = PosNet(False).eval(), torch.randn(2, 3, 4, 4)
    plan = _plan(net, x)
    assert any("reverse_channels" in f["op"] for f in plan.frozen)
    assert sorted(g.size for g in plan.groups) == [16]
