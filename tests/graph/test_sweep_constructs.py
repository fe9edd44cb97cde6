"""Constructs found by the coverage sweep (bench/coverage.py --families), each reduced to a tiny model.

Every test checks an exact property computed here by hand: which channels
group together, and the pruned model's output against the same computation
written directly on the kept slices of the weights.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import prunekit


def _plan(model, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prunekit.plan(model, x, **kw)


def _standardise(w, eps):
    """Weight standardisation (Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight
    Standardization", arXiv 2019): each output filter normalised over its inputs and kernel positions."""
    flat = w.reshape(w.shape[0], -1)
    mean, var = flat.mean(1, keepdim=True), flat.var(1, unbiased=False, keepdim=True)
    return ((flat - mean) / torch.sqrt(var + eps)).reshape_as(w)


class ScaledStdConv(nn.Conv2d):
    """timm's ScaledStdConv2d (NF-Nets, NF-RegNets) and StdConv2d (BiT ResNet-V2): the weight is reshaped to
    (1, out, in*k*k), batch-normalised with batch statistics, reshaped back and convolved."""

    def __init__(self, cin, cout, k):
        super().__init__(cin, cout, k, padding=k // 2)
        self.gain = nn.Parameter(torch.rand(cout, 1, 1, 1) + 0.5)
        self.scale = self.weight[0].numel() ** -0.5

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         weight=(self.gain * self.scale).view(-1), training=True, momentum=0.0,
                         eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def test_weight_standardised_conv_prunes_its_input_channels_and_restandardises_the_kept_ones():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), ScaledStdConv(8, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 1)).eval()
    x = torch.randn(1, 3, 6, 6)
    plan = _plan(net, x, ratio=0.5)
    # before: the in, kh and kw dims of the flattened weight were three channel sets in one reshape chunk,
    # all fixed, so every channel feeding a standardised conv was kept (NF-Nets: MACs ratio 0.77 at 50%)
    assert [(g.size, len(g.removed), sorted({m.module for m in g.members})) for g in plan.groups] == \
        [(8, 4, ["0", "1"]), (6, 3, ["1", "3"])]
    # the standardisation statistics run over the input channels: removing and zeroing differ there
    assert [g.notes for g in plan.groups] == [["batch_norm statistics over channels"], []]
    kept = plan.kept_indices()
    k0, k1 = kept[("0.weight", 0)], kept[("1.weight", 0)]
    assert list(kept[("1.weight", 1)]) == list(k0) and list(kept[("3.weight", 1)]) == list(k1)
    small = plan.apply(net)
    assert small[1].weight.shape == (3, 4, 3, 3) and small[1].out_channels == 3
    with torch.no_grad():
        h = F.conv2d(x, net[0].weight[k0], net[0].bias[k0])
        w1 = net[1].weight[k1][:, k0]
        # the pruned filter is standardised over its kept inputs; gain and the init-time scale are sliced/kept
        w1 = _standardise(w1, 1e-6) * (net[1].gain[k1] * net[1].scale)
        h = F.relu(F.conv2d(h, w1, net[1].bias[k1], padding=1))
        ref = F.conv2d(h, net[3].weight[:, k1], net[3].bias)
        assert torch.allclose(small(x), ref, atol=1e-5, rtol=1e-5)


class RepeatInterleave(nn.Module):
    """GCViT's global query repeated over windows (batch dim), and a channel-dim repeat feeding a conv."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(8, 6, 1), nn.Conv2d(6, 5, 1)

    def forward(self, x):
        y = self.a(x).repeat_interleave(2, dim=1)  # channels 0,0,1,1,2,2,3,3
        z = self.b(y).repeat_interleave(3, dim=0)  # batch of 3 copies
        return self.c(z)


def test_repeat_interleave_repeats_channel_ids_and_passes_the_batch_dim():
    torch.manual_seed(0)
    net = RepeatInterleave().eval()
    x = torch.randn(1, 3, 4, 4)
    plan = _plan(net, x, ratio=0.5)
    assert plan.frozen == []  # before: ".repeat_interleave() not understood", a's and b's channels kept
    assert [(g.size, len(g.removed), sorted({m.module for m in g.members})) for g in plan.groups] == \
        [(4, 2, ["a", "b"]), (6, 3, ["b", "c"])]
    kept = plan.kept_indices()
    ka, kb = kept[("a.weight", 0)], kept[("b.weight", 0)]
    # b's input columns: both copies of every kept channel of a, in order
    assert list(kept[("b.weight", 1)]) == [2 * int(k) + j for k in ka for j in (0, 1)]
    small = plan.apply(net)
    with torch.no_grad():
        y = F.conv2d(x, net.a.weight[ka], net.a.bias[ka]).repeat_interleave(2, dim=1)
        z = F.conv2d(y, net.b.weight[kb][:, kept[("b.weight", 1)]], net.b.bias[kb]).repeat_interleave(3, dim=0)
        ref = F.conv2d(z, net.c.weight[:, kb], net.c.bias)
        assert torch.allclose(small(x), ref, atol=1e-6)
        assert torch.allclose(small(x), plan.apply_masks(net)(x), atol=1e-6)


class Unfold(nn.Module):
    """HaloNet's overlapping windows: ``Tensor.unfold`` on the spatial dims, channels untouched."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        w = self.a(x).unfold(2, 3, 1).unfold(3, 3, 1)  # (n, 8, h-2, w-2, 3, 3)
        return self.b(w.mean(dim=(-1, -2)))


def test_tensor_unfold_on_spatial_dims_passes_channels():
    torch.manual_seed(0)
    net = Unfold().eval()
    x = torch.randn(1, 3, 6, 6)
    plan = _plan(net, x, ratio=0.5)
    assert plan.frozen == []  # before: ".unfold() not understood", a's channels kept
    assert [(g.size, len(g.removed), sorted({m.module for m in g.members})) for g in plan.groups] == \
        [(8, 4, ["a", "b"])]
    k = plan.kept_indices()[("a.weight", 0)]
    small = plan.apply(net)
    with torch.no_grad():
        h = F.conv2d(x, net.a.weight[k], net.a.bias[k]).unfold(2, 3, 1).unfold(3, 3, 1).mean(dim=(-1, -2))
        assert torch.allclose(small(x), F.conv2d(h, net.b.weight[:, k], net.b.bias), atol=1e-6)


class UnfoldChannels(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv1d(6, 5, 1), nn.Conv1d(5, 4, 1)

    def forward(self, x):
        w = self.a(x).mean(dim=(2, 3)).unfold(1, 3, 1)  # windows over the channels: (n, 6, 3)
        return self.c(self.b(w))


def test_tensor_unfold_over_channels_keeps_them():
    plan = _plan(UnfoldChannels().eval(), torch.randn(1, 3, 4, 4), ratio=0.5)
    assert plan.frozen == []
    assert [sorted({m.module for m in g.members}) for g in plan.groups] == [["b", "c"]]  # a's 8 stay whole


class BiasTable(nn.Module):
    """TinyViT / LeViT: a per-head bias table looked up by a buffer of position indices, ``table[:, idx]``."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)
        self.table = nn.Parameter(torch.randn(4, 5))
        self.register_buffer("idx", torch.tensor([[0, 1, 2], [1, 2, 3], [2, 3, 4]]))

    def forward(self, x):
        return self.b(self.a(x) + self.table[:, self.idx].unsqueeze(0))


def test_index_tensor_under_torch_export_prunes_the_table_with_its_channels():
    torch.manual_seed(0)
    net = BiasTable().eval()
    x = torch.randn(1, 3, 3, 3)
    plan = _plan(net, x, ratio=0.5, tracer="export")
    assert plan.frozen == []  # before: "aten.index.Tensor not understood", a's channels kept
    assert [(g.size, len(g.removed)) for g in plan.groups] == [(4, 2)]
    k = plan.kept_indices()[("a.weight", 0)]
    assert list(plan.kept_indices()[("table", 0)]) == list(k)
    small = plan.apply(net)
    with torch.no_grad():
        h = F.conv2d(x, net.a.weight[k], net.a.bias[k]) + net.table[k][:, net.idx].unsqueeze(0)
        assert torch.allclose(small(x), F.conv2d(h, net.b.weight[:, k], net.b.bias), atol=1e-6)


class RepeatNewDims(nn.Module):
    """XCiT's position grid: ``repeat`` with more counts than dims adds leading dims."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.a(x).repeat(2, 1, 1, 1, 1)  # (2, 1, 8, h, w)
        return self.b(y.sum(0))


def test_repeat_adding_leading_dims_passes_channels():
    torch.manual_seed(0)
    net = RepeatNewDims().eval()
    x = torch.randn(1, 3, 4, 4)
    plan = _plan(net, x, ratio=0.5)
    assert plan.frozen == []  # before: ".repeat() not understood in this form", a's channels kept
    assert [(g.size, len(g.removed)) for g in plan.groups] == [(8, 4)]
    k = plan.kept_indices()[("a.weight", 0)]
    with torch.no_grad():
        ref = F.conv2d(2 * F.conv2d(x, net.a.weight[k], net.a.bias[k]), net.b.weight[:, k], net.b.bias)
        assert torch.allclose(plan.apply(net)(x), ref, atol=1e-5)


class Im2col(nn.Module):
    """VOLO's outlook attention: values unfolded (im2col), then split per channel and kernel position."""

    def __init__(self, functional):
        super().__init__()
        self.functional = functional
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv1d(8, 4, 1)
        self.unfold = nn.Unfold(kernel_size=2)

    def forward(self, x):
        y = self.a(x)
        cols = F.unfold(y, kernel_size=2) if self.functional else self.unfold(y)  # (n, 8*4, L)
        n, _, length = cols.shape
        return self.b(cols.reshape(n, -1, 4, length).mean(2))


@pytest.mark.parametrize("functional", [True, False])
def test_im2col_unfold_carries_each_channel_to_its_kernel_rows(functional):
    torch.manual_seed(0)
    net = Im2col(functional).eval()
    x = torch.randn(1, 3, 4, 4)
    plan = _plan(net, x, ratio=0.5)
    assert plan.frozen == []  # before: "module Unfold not understood", a's channels kept
    assert [(g.size, len(g.removed)) for g in plan.groups] == [(8, 4)]
    k = plan.kept_indices()[("a.weight", 0)]
    with torch.no_grad():
        cols = F.unfold(F.conv2d(x, net.a.weight[k], net.a.bias[k]), kernel_size=2)
        ref = F.conv1d(cols.reshape(1, 4, 4, -1).mean(2), net.b.weight[:, k], net.b.bias)
        assert torch.allclose(plan.apply(net)(x), ref, atol=1e-5)


class Normalized(nn.Module):
    """XCiT's cross-covariance attention normalises q and k with ``F.normalize`` (over tokens, and here over
    channels too)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.a, self.b = nn.Conv1d(3, 8, 1), nn.Conv1d(8, 4, 1)

    def forward(self, x):
        return self.b(F.normalize(self.a(x), dim=self.dim))


@pytest.mark.parametrize("dim", [1, -1])
def test_normalize_passes_channels_and_removing_equals_zeroing(dim):
    torch.manual_seed(0)
    net = Normalized(dim).eval()
    x = torch.randn(2, 3, 5)
    plan = _plan(net, x, ratio=0.5)
    assert plan.frozen == []  # before: "F.normalize not understood", a's channels kept
    assert [(g.size, len(g.removed), g.notes) for g in plan.groups] == [(8, 4, [])]
    k = plan.kept_indices()[("a.weight", 0)]
    with torch.no_grad():
        ref = F.conv1d(F.normalize(F.conv1d(x, net.a.weight[k], net.a.bias[k]), dim=dim), net.b.weight[:, k],
                       net.b.bias)
        assert torch.allclose(plan.apply(net)(x), ref, atol=1e-6)
        assert torch.allclose(plan.apply_masks(net)(x), ref, atol=1e-6)  # a zero adds nothing to the norm


class LayerNorm2d(nn.LayerNorm):
    """timm's LayerNorm2d: an nn.LayerNorm subclass calling F.layer_norm on channels-last (the surgery updates
    its normalized_shape)."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class ConstantShapeNorm(nn.Module):
    """A functional layer_norm whose normalized_shape is another module's tuple attribute (a constant)."""

    def __init__(self):
        super().__init__()
        self.a, self.n1, self.b = nn.Conv2d(3, 8, 1), LayerNorm2d(8), nn.Conv2d(8, 6, 1)
        self.w, self.bias, self.shape6 = nn.Parameter(torch.rand(6) + 0.5), nn.Parameter(torch.zeros(6)), (6,)
        self.c = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        y = self.b(self.n1(self.a(x))).permute(0, 2, 3, 1)
        return self.c(F.layer_norm(y, self.shape6, self.w, self.bias).permute(0, 3, 1, 2))


def test_functional_layer_norm_with_a_constant_shape_keeps_its_channels_and_names_the_line():
    torch.manual_seed(0)
    net = ConstantShapeNorm().eval()
    x = torch.randn(1, 3, 4, 4)
    plan = _plan(net, x, ratio=0.5)
    # before: the 6 channels were pruned and the pruned model failed ("weight of shape [3] and
    # normalized_shape = [6]"); the LayerNorm2d subclass's own attribute is updated, so a -> n1 -> b prunes
    assert [(g.size, len(g.removed), sorted({m.module for m in g.members})) for g in plan.groups] == \
        [(8, 4, ["a", "b", "n1"])]
    (f,) = plan.frozen
    assert (f["op"], f["module"]) == ("function torch.nn.functional.layer_norm", "")
    assert f["line"].endswith(f"test_sweep_constructs.py:{ConstantShapeNorm.forward.__code__.co_firstlineno + 2}")
    assert "constant normalized_shape" in f["reason"]
    small = plan.apply(net)
    assert small.n1.normalized_shape == (4,)
    k = plan.kept_indices()[("a.weight", 0)]
    with torch.no_grad():
        h = F.conv2d(x, net.a.weight[k], net.a.bias[k]).permute(0, 2, 3, 1)
        h = F.layer_norm(h, (4,), net.n1.weight[k], net.n1.bias[k], net.n1.eps).permute(0, 3, 1, 2)
        y = F.conv2d(h, net.b.weight[:, k], net.b.bias).permute(0, 2, 3, 1)
        ref = F.conv2d(F.layer_norm(y, (6,), net.w, net.bias).permute(0, 3, 1, 2), net.c.weight, net.c.bias)
        assert torch.allclose(small(x), ref, atol=1e-5)
