"""Exactness of pruning on every construct and breadth model: removing == masking."""
from __future__ import annotations

import warnings

import pytest
import torch

import prunekit
from prunekit.errors import UnsupportedModelError
from tests.graph.arch_models import CONSTRUCTS
from tests.graph.breadth_models import BREADTH
from tests.graph.helpers import flat_outputs, make_inputs, randomize, rel_err

ALL = {**CONSTRUCTS, **BREADTH}
# models where some channels are expected to stay (no prunable group at all is a bug elsewhere)
NOTHING_PRUNABLE = set()


def _build(name):
    fn, shapes, exact = ALL[name]
    torch.manual_seed(0)
    return randomize(fn()), make_inputs(shapes), exact


def _plan(name, ratio, **options):
    """The construct ``name``, its inputs, whether masking equals removal, and its plan at ``ratio``."""
    net, x, exact = _build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frozen-region warnings are expected on some constructs
        plan = prunekit.plan(net, x, ratio=ratio, **options)
    return net, x, exact, plan


@pytest.mark.parametrize("name", sorted(ALL))
def test_apply_equals_masks(name):
    net, x, exact, plan = _plan(name, 0.5)
    assert plan.num_removed > 0, "nothing was pruned"
    small, masked = plan.apply(net), plan.apply_masks(net)
    n_before = sum(p.numel() for p in net.parameters())
    n_after = sum(p.numel() for p in small.parameters())
    assert n_after < n_before
    assert type(small) is type(net)
    with torch.no_grad():
        a, b, ref = small(*x), masked(*x), net(*x)
    assert all(torch.isfinite(t).all() for t in flat_outputs(a))
    assert [t.shape for t in flat_outputs(a)] == [t.shape for t in flat_outputs(ref)]
    if exact:
        assert rel_err(a, b) < 1e-4
        assert rel_err(ref, b) > 1e-3  # the pruning did change something
    else:  # the plan says why masking and removing differ here
        assert any(g.notes for g in plan.groups if g.removed)
    # every tensor the plan shrinks has exactly the planned shape
    shapes = plan.new_shapes()
    tensors = dict(small.named_parameters())
    tensors.update(dict(small.named_buffers()))
    for pname, shape in shapes.items():
        assert list(tensors[pname].shape) == shape, pname


@pytest.mark.parametrize("name", sorted(ALL))
def test_ratio_zero_is_bit_identical(name):
    net, x, _, plan = _plan(name, 0.0)
    assert plan.num_removed == 0
    small = plan.apply(net)
    with torch.no_grad():
        for a, b in zip(flat_outputs(small(*x)), flat_outputs(net(*x))):
            assert torch.equal(a, b)


def test_caller_model_unchanged():
    net, x, _ = _build("concat")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plan = prunekit.plan(net, x, ratio=0.5)
    plan.apply(net)
    plan.apply_masks(net)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    small = plan.apply(net, inplace=True)
    assert small is net and net.c[0].in_channels < 16


def test_vit_heads_pruned_whole_and_attribute_updated():
    net, x, _ = _build("vit_no_norm")
    plan = prunekit.plan(net, x, ratio=0.5)
    heads = {(a["module"], a["attr"]): a for a in plan.attrs}
    assert heads[("blocks.0.attn", "num_heads")]["before"] == 4
    assert heads[("blocks.0.attn", "num_heads")]["after"] == 2
    small = plan.apply(net)
    attn = small.blocks[0].attn
    assert attn.num_heads == 2 and attn.head_dim == 8
    assert attn.qkv.out_features == 3 * 2 * 8
    assert attn.proj.in_features == 16


def test_width_read_from_input_ties_embedding_to_heads():
    # timm's reshape(B, N, C) after attention, C read from the block's input width:
    # the embedding and the heads must lose the same number of channels
    net, x, _ = _build("vit_stale_c_no_norm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = prunekit.plan(net, x, ratio=0.5)
    small = plan.apply(net)
    attn = small.blocks[0].attn
    assert attn.num_heads == 2 and attn.qkv.in_features == attn.num_heads * attn.head_dim == 16
    with torch.no_grad():
        assert rel_err(small(*x), plan.apply_masks(net)(*x)) < 1e-4


def test_untraceable_submodule_is_kept_whole_with_one_warning():
    net, x, _ = _build("data_dependent")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        plan = prunekit.plan(net, x, ratio=0.5)
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1 and "'gate'" in msgs[0]
    touched = {m.module for g in plan.groups for m in g.members}
    assert "gate.conv" not in touched
    assert "a.0" not in touched  # feeds the opaque module: kept


def test_unknown_op_fixes_channels_and_warns():
    class Rolled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = torch.nn.Conv2d(3, 8, 1), torch.nn.Conv2d(8, 8, 1), torch.nn.Conv2d(8, 4, 1)
            self.d, self.e = torch.nn.Conv2d(4, 6, 1), torch.nn.Conv2d(6, 4, 1)  # prunable after the unknown op

        def forward(self, x):
            return self.e(self.d(self.c(torch.logcumsumexp(self.a(x), 1) + self.b(self.a(x)))))

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        plan = prunekit.plan(Rolled(), torch.randn(1, 3, 4, 4), ratio=0.5)
    assert len(rec) == 1 and "logcumsumexp" in str(rec[0].message)
    # the channels around the unknown op are kept, the rest is pruned
    assert {m.module for g in plan.groups for m in g.members} == {"c", "d", "e"}  # a, b: kept
    assert plan.num_removed == 2 + 3


def test_unknown_op_everywhere_is_one_clear_error():
    class Rolled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = torch.nn.Conv2d(3, 8, 1), torch.nn.Conv2d(8, 8, 1), torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.c(torch.logcumsumexp(self.a(x), 1) + self.b(self.a(x)))

    with pytest.raises(UnsupportedModelError) as e:
        prunekit.plan(Rolled(), torch.randn(1, 3, 4, 4), ratio=0.5)
    msg = str(e.value)
    assert "nothing in Rolled can be pruned" in msg and "torch.logcumsumexp" in msg
    assert "test_constructs.py:" in msg  # the source line of the op


def test_roll_over_channels_keeps_them_and_over_space_does_not():
    class Rolled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 1), torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.b(torch.roll(self.a(x), self.shifts, dims=self.dims))

    net = Rolled()
    net.shifts, net.dims = 1, 1
    assert prunekit.plan(net, torch.randn(1, 3, 4, 4), ratio=0.5).num_removed == 0
    net.shifts, net.dims = (1, 1), (2, 3)
    assert prunekit.plan(net, torch.randn(1, 3, 4, 4), ratio=0.5).num_removed == 4


EXPORT_CASES = ["concat", "grouped_depthwise", "se_gate", "flatten_linear", "multi_io",
                "densenet", "efficientnet", "inception", "resnext", "vit_no_norm"]


@pytest.mark.parametrize("name", EXPORT_CASES)
def test_torch_export_path_is_exact(name):
    net, x, exact, plan = _plan(name, 0.5, tracer="export")
    assert plan.num_removed > 0
    small, masked = plan.apply(net), plan.apply_masks(net)
    with torch.no_grad():
        assert rel_err(small(*x), masked(*x)) < 1e-4


def test_root_branch_on_shape_falls_back_to_export():
    class ShapeBranch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = ALL["concat"][0]()

        def forward(self, x):
            if x.shape[1] == 1:  # fx cannot trace a branch on a traced size
                x = x.expand(-1, 3, -1, -1)
            return self.body(x)

    torch.manual_seed(0)
    net = randomize(ShapeBranch())
    x = make_inputs([(3, 8, 8)])
    with pytest.warns(UserWarning, match="torch.export"):
        plan = prunekit.plan(net, x, ratio=0.5)
    assert plan.num_removed > 0
    with torch.no_grad():
        assert rel_err(plan.apply(net)(*x), plan.apply_masks(net)(*x)) < 1e-4


def test_tied_weights_are_sliced_once():
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(6, 8)
            self.b = torch.nn.Linear(6, 8)
            self.b.weight = self.a.weight  # one Parameter, two names
            self.c = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.c(torch.relu(self.a(x)) * torch.sigmoid(self.b(x)))

    torch.manual_seed(0)
    net = Tied().eval()
    x = torch.randn(4, 6)
    plan = prunekit.plan(net, x, ratio=0.5)
    small = plan.apply(net)
    assert small.a.weight is small.b.weight and small.a.weight.shape == (4, 6)
    with torch.no_grad():
        assert rel_err(small(x), plan.apply_masks(net)(x)) < 1e-4
