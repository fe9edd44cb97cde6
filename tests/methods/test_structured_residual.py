"""He et al. 2017 residual handling: the ``Y2 + Y1 - Y1'`` target of a branch's last layer (tiny models)."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from prunekit import models
from prunekit.methods.structured import reconstruct_prune
from prunekit.methods.structured._common import prunable_layers, sample_positions, skeleton
from prunekit.methods.structured.reconstruct import layer_targets
from prunekit.methods.structured.residual import ResidualGraph, residual_offset


class Block(nn.Module):
    """conv-bn-relu-conv-bn, added to the input in one of several spellings, then ReLU."""

    def __init__(self, c, mid, style="add"):
        super().__init__()
        self.conv1 = nn.Conv2d(c, mid, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, c, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(c)
        self.act = nn.ReLU()
        self.style = style

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.style == "torch.add":
            out = torch.add(x, out)
        elif self.style == "iadd":
            out += x
        elif self.style == "method":
            out = out.add(x)
        elif self.style == "relu_first":  # not a residual site: a ReLU sits between the layer and the add
            out = torch.relu(out) + x
        else:
            out = x + out
        return self.act(out)


class TinyRes(nn.Module):
    def __init__(self, styles=("add", "torch.add"), c=6, mid=6):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.blocks = nn.Sequential(*[Block(c, mid, s) for s in styles])
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def tiny(styles=("add", "torch.add"), seed=0):
    torch.manual_seed(seed)
    net = TinyRes(styles)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial eval-mode statistics and affine parameters
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def test_residual_sites_are_found_on_the_graph():
    net = tiny(("add", "torch.add", "iadd", "method", "relu_first"))
    g = ResidualGraph(net, torch.randn(1, 1, 8, 8))
    sites = {f"blocks.{i}.conv2": g.site(f"blocks.{i}.conv2") for i in range(5)}
    for i in range(4):
        s = sites[f"blocks.{i}.conv2"]
        assert s is not None and s.norm == f"blocks.{i}.bn2", i
    assert sites["blocks.4.conv2"] is None            # ReLU between the layer and the add
    assert g.site("blocks.0.conv1") is None and g.site("fc") is None
    # the shortcut of block 1 is block 0's output (its final ReLU)
    assert sites["blocks.1.conv2"].shortcut == "blocks_0_act"
    x = torch.randn(1, 1, 8, 8)
    r20 = models.create("resnet20", num_classes=10, in_channels=1, input_size=(8, 8), widths=(4, 4, 8)).eval()
    g20 = ResidualGraph(r20, x)
    assert all(g20.site(f"layer{s}.{b}.conv2").norm == f"layer{s}.{b}.bn2" for s in (1, 2, 3) for b in range(3))
    r50 = models.create("resnet50", num_classes=10, in_channels=1, input_size=(8, 8), width_mult=0.125,
                        small_input=True).eval()
    g50 = ResidualGraph(r50, x)
    assert g50.site("layer2.0.conv3").shortcut == "layer2_0_downsample_1"   # projection shortcut (its BN)
    assert g50.site("layer2.0.conv2") is None and g50.site("layer2.0.conv1") is None


def test_residual_offset_exact_values():
    y1 = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    y1p = torch.tensor([[0.5, 2.0, 1.0], [1.0, 1.0, 4.0]])
    torch.testing.assert_close(residual_offset(y1, y1p), y1 - y1p)
    scale = torch.tensor([2.0, -0.5, 0.0])
    expect = torch.tensor([[0.25, 0.0, 0.0], [-0.5, 4.0, 0.0]])   # zero scale: no correction possible
    torch.testing.assert_close(residual_offset(y1, y1p, scale), expect)


def test_layer_target_is_y2_plus_shortcut_difference_exactly():
    net = tiny()
    work = copy.deepcopy(net)
    with torch.no_grad():   # the pruned-so-far network: block 0 changed, so block 1's shortcut differs
        work.blocks[0].conv2.weight.mul_(0.5)
    torch.manual_seed(1)
    images = torch.randn(6, 1, 8, 8)
    graph = ResidualGraph(net, images[:1])
    name = "blocks.1.conv2"
    site = graph.site(name)
    X, Y = layer_targets(net, work, name, images, 5, seed=3, site=site, graph=graph)
    layer, bn = net.blocks[1].conv2, net.blocks[1].bn2
    seen = {}
    hooks = [layer.register_forward_hook(lambda m, a, o: seen.__setitem__("y2", o)),
             net.blocks[1].register_forward_pre_hook(lambda m, a: seen.__setitem__("y1", a[0])),
             work.blocks[1].register_forward_pre_hook(lambda m, a: seen.__setitem__("y1p", a[0])),
             work.blocks[1].conv2.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))]
    with torch.no_grad():
        net(images)
        work(images)
    for h in hooks:
        h.remove()
    pos = sample_positions(layer, seen["x"].shape, 5, 3)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    y2 = seen["y2"] - layer.bias.view(1, -1, 1, 1)
    corr = (seen["y1"] - seen["y1p"]) / scale.view(1, -1, 1, 1)
    expect = (y2 + corr).permute(0, 2, 3, 1)[pos.img, pos.rows, pos.cols]
    torch.testing.assert_close(Y, expect.detach(), rtol=1e-5, atol=1e-5)
    assert corr.abs().max() > 1e-2          # the shortcut really differs
    cols = F.unfold(seen["x"], 3, padding=1)            # (B, c*9, 64): the work network's input patches
    expect_x = cols[pos.img, :, pos.rows * 8 + pos.cols].reshape(len(pos.img), 6, 9)
    torch.testing.assert_close(X, expect_x, rtol=1e-6, atol=1e-6)
    _, Y0 = layer_targets(net, work, name, images, 5, seed=3)            # no site: the plain target
    torch.testing.assert_close(Y0, y2.permute(0, 2, 3, 1)[pos.img, pos.rows, pos.cols].detach(),
                               rtol=1e-5, atol=1e-5)


def _pre_act(net, images, block):
    store = []
    h = net.blocks[block].act.register_forward_pre_hook(lambda m, a: store.append(a[0]))
    with torch.no_grad():
        net(images)
    h.remove()
    return store[0]


@pytest.mark.parametrize("selector", ["first_k", "lasso"])
def test_residual_target_reduces_the_block_output_error(selector):
    net = tiny(seed=2)
    torch.manual_seed(3)
    images = torch.randn(24, 1, 8, 8)
    base = skeleton(net, images[:1])
    counts = {p.group: 3 for p in prunable_layers(net, base)}
    ref = _pre_act(net, images, 1)
    err, stats = {}, {}
    for on in (True, False):
        res = reconstruct_prune(net, images, counts, selector, points_per_image=64, base=base, progress=False,
                                residual_target=on)
        out = _pre_act(res.apply(net), images, 1)
        err[on] = float((out - ref).norm() / ref.norm())
        stats[on] = {s.layer: s.residual for s in res.layers}
    assert stats[True] == {"blocks.0.conv2": True, "blocks.1.conv2": True}
    assert not any(stats[False].values())
    # block 0's shortcut is the unpruned stem (Y1 = Y1'), block 1's is block 0's pruned output. With first_k
    # both runs keep the same channels and sample every position, so the corrected least squares minimises the
    # block's pre-activation error exactly and must beat the uncorrected fit; LASSO may choose other channels.
    assert err[True] < (0.97 if selector == "first_k" else 1.0) * err[False], err


class ShapeBranch(nn.Module):
    """A root forward torch.fx cannot trace (a branch on a traced size): the engine falls back to torch.export."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        if x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        return self.body(x)


def test_export_captured_model_gets_the_same_target():
    net = tiny()
    wrapped = ShapeBranch(net).eval()
    work = copy.deepcopy(net)
    with torch.no_grad():
        work.blocks[0].conv2.weight.mul_(0.5)
    work_wrapped = ShapeBranch(work).eval()
    torch.manual_seed(4)
    images = torch.randn(5, 1, 8, 8)
    g_fx = ResidualGraph(net, images[:1])
    g_ex = ResidualGraph(wrapped, images[:1])
    assert (g_fx.kind, g_ex.kind, g_ex.available) == ("fx", "export", True)
    site = g_ex.site("body.blocks.1.conv2")
    assert site is not None and site.norm == "body.blocks.1.bn2"
    assert g_ex.site("body.blocks.1.conv1") is None
    assert g_ex.order()["body.blocks.0.conv2"] < g_ex.order()["body.blocks.1.conv1"]
    X1, Y1 = layer_targets(net, work, "blocks.1.conv2", images, 4, 0, site=g_fx.site("blocks.1.conv2"), graph=g_fx)
    X2, Y2 = layer_targets(wrapped, work_wrapped, "body.blocks.1.conv2", images, 4, 0, site=site, graph=g_ex)
    torch.testing.assert_close(X1, X2)
    torch.testing.assert_close(Y1, Y2, rtol=1e-5, atol=1e-5)


def test_graph_values_read_lifted_constants_and_shared_input():
    class ConstBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            x = x * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)   # fx lifts this onto the graph module
            return x + self.bn(self.conv(x))                                 # the layer's input is the shortcut

    torch.manual_seed(0)
    net = ConstBlock().eval()
    g = ResidualGraph(net, torch.randn(1, 4, 5, 5))
    site = g.site("conv")
    assert site.input == site.shortcut and site.norm == "bn"
    other = ConstBlock().eval()
    other.load_state_dict(net.state_dict())
    x = torch.randn(3, 4, 5, 5)
    inp, y1 = g.values(other, [site.input, site.shortcut], x)     # `other` lacks the lifted constant
    torch.testing.assert_close(inp, x * torch.arange(1.0, 5.0).view(1, 4, 1, 1))
    assert torch.equal(inp, y1)
