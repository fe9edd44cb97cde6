"""Attention whose per-head width is computed at run time: ``reshape(B, N, 3, heads, C // heads)``.

CaiT, DaViT, Swin V2 (CR) and CrossViT read the residual width ``C`` from the
input and size the per-head width as ``C // self.num_heads``. After pruning,
``num_heads`` keeps its value and ``C // num_heads`` must equal the pruned
per-head width: each per-head channel is kept or removed together with
``num_heads`` channels of the residual width. These tests check that tie
exactly on tiny blocks (expected channel mappings and kept widths computed by
hand), that removal equals masking, and that the plan says what was tied.
"""
from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import prunekit
from prunekit.engine import PruningPlan
from prunekit.graph.capture import capture
from prunekit.graph import ops

DIM, HEADS = 12, 3
HD = DIM // HEADS  # 4


class HeadsAttn(nn.Module):
    """CaiT's TalkingHeadAttn without the talking heads; ``out`` picks the output reshape."""

    def __init__(self, out: str = "C", cosine: bool = False):
        super().__init__()
        self.num_heads = HEADS
        self.qkv = nn.Linear(DIM, DIM * 3)
        self.proj = nn.Linear(DIM, DIM)
        self.out, self.cosine = out, cosine

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.cosine:  # Swin V2's scaled cosine attention
            attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        else:
            attn = q @ k.transpose(-2, -1)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2)
        x = x.reshape(B, N, C) if self.out == "C" else x.reshape(B, N, -1)
        return self.proj(x)


class HeadsNet(nn.Module):
    def __init__(self, out: str = "C", cosine: bool = False, depth: int = 2):
        super().__init__()
        self.embed = nn.Linear(5, DIM)
        self.blocks = nn.ModuleList([HeadsAttn(out, cosine) for _ in range(depth)])
        self.head = nn.Linear(DIM, 2)

    def forward(self, x):
        x = self.embed(x)
        for b in self.blocks:
            x = x + b(x)
        return self.head(x)


def _plan(net, x, ignored=("head",)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prunekit.plan(net, x, ratio=0.5, ignored_layers=[n for n in ignored if hasattr(net, n)] or None)


def _member(plan, param, dim):
    for g in plan.groups:
        for m in g.members:
            if m.param == param and m.dim == dim:
                return g, m
    raise AssertionError(f"{param}[{dim}] is in no group")


@pytest.mark.parametrize("out", ["C", "-1"])
def test_per_head_width_is_tied_to_the_residual_width(out):
    torch.manual_seed(0)
    net, x = HeadsNet(out).eval(), torch.randn(2, 4, 5)
    plan = _plan(net, x)
    assert plan.frozen == []
    g, emb = _member(plan, "embed.weight", 0)
    # one channel per index i of the per-head width; residual index j = h * HD + i belongs to i
    assert g.size == HD
    assert np.array_equal(np.asarray(emb.channels)[np.argsort(emb.indices)], np.arange(DIM) % HD)
    _, qkv = _member(plan, "blocks.0.qkv.weight", 0)
    assert np.array_equal(np.asarray(qkv.channels)[np.argsort(qkv.indices)], np.arange(3 * DIM) % HD)
    _, proj_in = _member(plan, "blocks.1.proj.weight", 1)
    assert np.array_equal(np.asarray(proj_in.channels)[np.argsort(proj_in.indices)], np.arange(DIM) % HD)
    # 50%: 2 of the 4 per-head channels go, each with HEADS residual channels
    assert len(g.removed) == HD // 2
    small = plan.apply(net)
    kept = DIM - HEADS * (HD // 2)
    assert small.embed.out_features == kept
    for b in small.blocks:
        assert (b.qkv.in_features, b.qkv.out_features, b.proj.in_features, b.proj.out_features) == \
            (kept, 3 * kept, kept, kept)
        assert b.num_heads == HEADS  # the head count stays; C // num_heads is the pruned per-head width
    masked = plan.apply_masks(net)
    with torch.no_grad():
        a, m, ref = small(x), masked(x), net(x)
    assert float((a - m).abs().max() / m.abs().max()) < 1e-5
    assert float((ref - m).abs().max()) > 1e-3


def test_the_plan_says_what_was_tied_and_keeps_it_through_json():
    net, x = HeadsNet("-1").eval(), torch.randn(2, 4, 5)
    plan = _plan(net, x)
    # one tie per block: the per-head width (4) is sized from the 12-wide input width
    assert [t["module"] for t in plan.tied] == ["blocks.0", "blocks.1"]
    assert all("with 3 channels of the 12-wide one" in t["reason"] for t in plan.tied)
    assert all(t["groups"] == ["embed"] for t in plan.tied)
    assert "tied in proportion (2 places" in plan.table()
    again = PruningPlan.from_json(plan.to_json())
    assert again.tied == plan.tied
    assert again.tied_lines() == plan.tied_lines()


def test_cosine_attention_normalize_is_followed_exactly():
    torch.manual_seed(1)
    net, x = HeadsNet("-1", cosine=True).eval(), torch.randn(2, 4, 5)
    plan = _plan(net, x)
    assert plan.frozen == []
    small, masked = plan.apply(net), plan.apply_masks(net)
    assert small.embed.out_features == DIM // 2
    with torch.no_grad():
        a, m = small(x), masked(x)
    # a zeroed channel adds nothing to an L2 norm: removal equals masking
    assert float((a - m).abs().max() / m.abs().max()) < 1e-5
    assert not any(g.notes for g in plan.groups if g.removed)


class InexactDivision(nn.Module):
    """``C // 5`` with ``C = 12``: the remainder does not shrink in proportion, so both widths are kept."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, DIM)
        self.pre = nn.Linear(5, 6)  # the only width free to prune
        self.b = nn.Linear(6, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        h = self.a(x)
        B, N, C = h.shape
        y = self.b(torch.relu(self.pre(x))).reshape(B, N, 4, C // 5)
        return self.out(y.reshape(B, N, -1)) + h.sum(-1, keepdim=True)


def test_an_inexact_division_is_frozen_with_its_line():
    torch.manual_seed(0)
    net, x = InexactDivision().eval(), torch.randn(2, 4, 5)
    plan = _plan(net, x)
    assert [f["op"] for f in plan.frozen] == ["function _operator.floordiv"]
    line = _line_of("reshape(B, N, 4, C // 5)")
    assert plan.frozen[0]["line"].endswith(f"test_heads.py:{line}")
    assert plan.new_shapes().get("a.weight", [DIM, 5])[0] == DIM  # the width C is read from is kept
    assert plan.new_shapes()["b.weight"] == [8, 3]  # only pre's hidden width is pruned
    with torch.no_grad():
        assert plan.apply(net)(x).shape == net(x).shape


def _line_of(text: str) -> int:
    with open(__file__) as f:
        return next(k for k, line in enumerate(f, 1) if text in line and "_line_of" not in line)


def rescale(x, size: int):
    """Stands for timm's ``crossvit.scale_image``: a Python branch on a traced size."""
    if x.shape[-1] != size:
        x = F.interpolate(x, size=size)
    return x


class BranchingRoot(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 1)
        self.out = nn.Conv1d(8, 3, 1)

    def forward(self, x):
        return self.out(torch.relu(self.conv(rescale(x, 6))))


def test_library_notrace_functions_rescue_a_root_that_branches_on_sizes(monkeypatch):
    """A helper the model's library marks untraceable (timm's ``register_notrace_function``) becomes one call."""
    net, x = BranchingRoot().eval(), torch.randn(1, 2, 6)
    assert capture(net, (x,), ops.is_handled_module).kind == "export"  # without the library's list
    fake = types.ModuleType("timm.layers._fx")
    fake.get_notrace_functions = lambda: [rescale]
    monkeypatch.setitem(sys.modules, "timm.layers._fx", fake)
    cap = capture(net, (x,), ops.is_handled_module)
    assert cap.kind == "fx"
    assert [n.target for n in cap.gm.graph.nodes if n.op == "call_function"][0] is rescale
    plan = _plan(net, x)
    assert plan.apply(net).conv.out_channels == 4


def test_crossvit_stays_on_fx_and_runs_after_pruning():
    """timm's CrossViT: under torch.export its ``C // num_heads`` was baked in and the pruned model broke."""
    from tests.graph.test_timm_slice import HARNESS, TIMM

    if TIMM is None:
        pytest.skip("timm is not installed")
    model, x, heads = HARNESS.build_timm("crossvit_tiny_240")
    row = HARNESS.run_prunekit(model, x, heads)
    assert row["status"] == "pruned", row.get("reason")
    assert row["shape_kept"] and row["finite"] and row["macs_ratio"] <= 0.6, row
