"""Non-tensor values in the graph and graceful degradation: frozen regions named by op, module and line."""
from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn as nn

import prunekit
from prunekit import checkpoint, models
from prunekit.graph import analyze
from prunekit import PruningPlan
from tests.graph.helpers import rel_err



def _quiet_plan(model, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prunekit.plan(model, x, **kw)


class Checks(nn.Module):
    """Python checks on tensor attributes inside forward, as timm writes them."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 6, 1), nn.Conv2d(6, 4, 1)

    def forward(self, x):
        torch._assert(x.ndim == 4, "expected a 4D input")
        y = self.a(x)
        torch._assert(y.dim() == 4, "four dims")
        torch._assert(y.size(0) >= 1, "a batch")
        z = self.b(y)
        n, c = z.shape[0], z.shape[1]
        torch._assert(z.size(1) == c, "same width")  # two measured sizes: stays true when pruned in step
        return self.c(z.reshape(n, c, -1).reshape(z.shape))


def test_python_checks_are_constants_and_everything_stays_prunable():
    net = Checks().eval()
    x = torch.randn(2, 3, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is frozen, so nothing is warned
        plan = prunekit.plan(net, x, ratio=0.5)
    assert plan.frozen == []
    assert sorted((g.size, len(g.removed)) for g in plan.groups) == [(6, 3), (8, 4)]
    small = plan.apply(net)
    with torch.no_grad():
        assert rel_err(small(x), plan.apply_masks(net)(x)) < 1e-5


class Stale(nn.Module):
    """A channel count compared with a literal: pruning would break the check, so that width is kept."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 6, 1), nn.Conv2d(6, 4, 1)

    def forward(self, x):
        y = self.a(x)
        torch._assert(y.shape[1] == 8, "eight channels")
        return self.c(self.b(y))


def test_size_compared_with_literal_keeps_that_dimension_and_says_where():
    plan = _quiet_plan(Stale().eval(), torch.randn(1, 3, 4, 4), ratio=0.5)
    assert [(g.size, len(g.removed)) for g in plan.groups] == [(6, 3)]  # a's 8 channels are kept
    (f,) = plan.frozen
    assert f["op"] == "function _operator.eq" and f["module"] == ""
    assert f["line"].endswith(f"test_frozen.py:{Stale.forward.__code__.co_firstlineno + 2}")
    assert "compared with a value that does not follow pruning" in f["reason"]


class WithEinsum(nn.Module):
    """One block the engine cannot follow (einsum over channels) next to one it can."""

    def __init__(self):
        super().__init__()
        self.mix = Mix()
        self.b, self.c = nn.Conv2d(8, 6, 1), nn.Conv2d(6, 4, 1)

    def forward(self, x):
        return self.c(self.b(self.mix(x)))


class Mix(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.w = nn.Parameter(torch.randn(8, 8))

    def forward(self, x):
        return torch.einsum("bchw,cd->bdhw", self.a(x), self.w)


def test_unknown_op_is_a_frozen_region_and_the_rest_is_pruned():
    net = WithEinsum().eval()
    x = torch.randn(1, 3, 4, 4)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        plan = prunekit.plan(net, x, ratio=0.5)
    assert len(rec) == 1 and "einsum in 'mix'" in str(rec[0].message)
    assert [(g.size, len(g.removed)) for g in plan.groups] == [(6, 3)]
    (f,) = plan.frozen
    assert f["op"].endswith(".einsum") and f["module"] == "mix"
    assert f["line"].endswith(f"test_frozen.py:{Mix.forward.__code__.co_firstlineno + 1}")
    # the plan carries its frozen regions through JSON and shows them
    again = PruningPlan.from_json(plan.to_json())
    assert again.frozen == plan.frozen
    table = plan.table()
    assert "kept whole (1 frozen regions" in table and "einsum in 'mix'" in table
    assert plan.summary()["frozen_regions"] == 1
    with torch.no_grad():
        assert rel_err(plan.apply(net)(x), plan.apply_masks(net)(x)) < 1e-5


def test_plan_without_frozen_key_still_loads():
    d = _quiet_plan(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)), torch.randn(1, 3, 2, 2)).to_dict()
    assert "frozen" not in d
    assert PruningPlan.from_dict(d).frozen == []


def test_repeated_frozen_op_is_one_warning_but_every_place_is_recorded():
    net = nn.Sequential(WithEinsum(), nn.Conv2d(4, 4, 1))
    net[0].mix2 = Mix()  # unused: only traced modules count
    x = torch.randn(1, 3, 4, 4)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.m1, self.m2 = Mix(), Mix()
            self.b = nn.Conv2d(16, 4, 1)
            self.c = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.c(self.b(torch.cat([self.m1(x), self.m2(x)], 1)))

    an = None
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        an = analyze(Twice().eval(), x)
    assert [f.module for f in an.frozen] == ["m1", "m2"]
    assert len(rec) == 1 and "and 1 more places like it" in str(rec[0].message)


def test_explain_lists_frozen_regions_and_writes_nothing(tmp_path, cli_env):
    path = checkpoint.save(tmp_path / "r20.pt", models.create("resnet20", num_classes=10, in_channels=3))
    r = subprocess.run([sys.executable, "-m", "prunekit", "prune", str(path), "--explain"], capture_output=True,
                       text=True, env=cli_env, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "no frozen regions: the engine follows every op of this model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r20.pt"]


def test_internal_error_in_a_handler_costs_only_local_channels(monkeypatch):
    from prunekit.graph import ops

    ops.load_handlers()

    def broken(ctx, node, args, kwargs):
        raise IndexError("boom")

    monkeypatch.setitem(ops.FUNCTION_HANDLERS, torch.flatten, broken)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 6, 1)
            self.fc = nn.Linear(6 * 4, 2)

        def forward(self, x):
            return self.fc(torch.flatten(self.b(self.a(x)), 1))

    plan = _quiet_plan(Net().eval(), torch.randn(1, 3, 2, 2), ratio=0.5)
    assert [(g.size, len(g.removed)) for g in plan.groups] == [(8, 4)]
    (f,) = plan.frozen
    assert f["op"] == "function torch.flatten" and "IndexError: boom" in f["reason"]


class StdConv(nn.Conv2d):
    """Weight-standardised conv (timm's ScaledStdConv2d): the weight is normalised over its input channels."""

    def forward(self, x):
        w = torch.nn.functional.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                                           training=True, momentum=0.0, eps=1e-5).reshape_as(self.weight)
        return torch.nn.functional.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def test_computed_grouped_weight_prunes_whole_group_positions_and_the_pruned_model_runs():
    net = nn.Sequential(nn.Conv2d(3, 8, 1), StdConv(8, 6, 3, padding=1, groups=2), nn.ReLU(), nn.Conv2d(6, 4, 1))
    net.eval()
    x = torch.randn(1, 3, 6, 6)
    plan = _quiet_plan(net, x, ratio=0.5)
    # 0 -> 1: the standardised weight's input dim follows its channels (the kernel positions go with
    # them); 2 groups of 4 inputs: position j of both groups goes together, so the group has 4 channels;
    # 1 -> 3: output channels of the grouped conv, one per group position
    # (before the fix, conv 0's output was pruned and the pruned model failed: "expected 8 channels")
    assert [(g.size, len(g.removed), sorted({m.module for m in g.members})) for g in plan.groups] == \
        [(4, 2, ["0", "1"]), (3, 1, ["1", "3"])]
    small = plan.apply(net)
    with torch.no_grad():
        assert small(x).shape == net(x).shape
    assert small[1].weight.shape == (4, 2, 3, 3)


class BlurAttr(nn.Module):
    """Anti-aliased downsampling as TResNet writes it: a depthwise filter, ``groups`` from an attribute."""

    def __init__(self, c):
        super().__init__()
        self.channels = c
        self.register_buffer("filt", torch.ones(c, 1, 3, 3) / 9)

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.filt, stride=2, padding=1, groups=self.channels)


class BlurShape(BlurAttr):
    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.filt, stride=2, padding=1, groups=x.shape[1])


def test_functional_depthwise_conv_prunes_only_when_groups_follow_the_input():
    x = torch.randn(1, 3, 8, 8)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), BlurShape(8), nn.Conv2d(8, 4, 1)).eval()
    plan = _quiet_plan(net, x, ratio=0.5)
    assert [(g.size, len(g.removed)) for g in plan.groups] == [(8, 4)] and plan.frozen == []
    with torch.no_grad():
        assert plan.apply(net)(x).shape == (1, 4, 4, 4)
    # groups=self.channels would stay 8 after pruning (the pruned TResNet failed to run): kept, and said so
    net = nn.Sequential(nn.Conv2d(3, 8, 1), BlurAttr(8), nn.Conv2d(8, 6, 1), nn.Conv2d(6, 4, 1)).eval()
    plan = _quiet_plan(net, x, ratio=0.5)
    assert [(g.size, len(g.removed)) for g in plan.groups] == [(6, 3)]
    (f,) = plan.frozen
    assert f["module"] == "1" and "groups argument is a constant" in f["reason"]
    with torch.no_grad():
        assert plan.apply(net)(x).shape == (1, 4, 4, 4)


class ShapeBranch(nn.Module):
    """Most of the model, behind a Python branch on a shape (fx cannot trace it, torch.export can)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 8, 3, padding=1)

    def forward(self, x):
        if x.shape[-1] > 2:
            x = self.a(x)
        return self.b(torch.relu(x))


def test_mostly_untraceable_model_is_analysed_with_torch_export():
    net = nn.Sequential(ShapeBranch(), nn.Conv2d(8, 2, 1)).eval()
    x = torch.randn(1, 3, 6, 6)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        plan = prunekit.plan(net, x, ratio=0.5)
    assert any("torch.export" in str(w.message) for w in rec)
    # fx alone would keep the whole block (it holds most parameters); export sees inside it
    assert sorted((g.size, len(g.removed)) for g in plan.groups) == [(8, 4), (32, 16)]
    with torch.no_grad():
        assert rel_err(plan.apply(net)(x), plan.apply_masks(net)(x)) < 1e-5


class Divisible(nn.Module):
    """``C % groups == 0`` checked at run time (timm's group_std): kept widths stay multiples of ``groups``."""

    def __init__(self):
        super().__init__()
        self.groups = 4
        self.a, self.b = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 5, 1)

    def forward(self, x):
        y = self.a(x)
        torch._assert(y.shape[1] % self.groups == 0, "channels divisible by groups")
        return self.b(y)


def test_a_divisibility_check_ties_channels_across_the_groups():
    torch.manual_seed(0)
    net, x = Divisible().eval(), torch.randn(2, 3, 4, 4)
    plan = _quiet_plan(net, x, ratio=0.3)
    assert plan.frozen == []
    (group,) = plan.groups
    # one unit is channel i with i + 4, i + 8, i + 12: the same position in every segment of 4
    assert group.size == 4 and len(group.removed) == 1
    (member,) = [m for m in group.members if m.param == "a.weight"]
    assert member.channels.tolist() == [0, 1, 2, 3] * 4
    small = plan.apply(net)
    with torch.no_grad():
        assert rel_err(small(x), plan.apply_masks(net)(x)) < 1e-5
