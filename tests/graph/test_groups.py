"""Exact coupling groups and index mappings on tiny models."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from prunekit.graph import analyze, build_groups
from tests.graph.arch_models import Concat, FlattenLinear, GroupedDepthwise, Shuffle


def _members(g):
    return {(m.param, m.dim): (m.indices.tolist(), m.channels.tolist()) for m in g.members}


def test_conv_bn_conv_group():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3))
    (g,) = build_groups(net, torch.randn(1, 3, 8, 8))
    assert g.size == 4
    assert sorted(_members(g)) == sorted([("0.weight", 0), ("0.bias", 0), ("1.weight", 0), ("1.bias", 0),
                                          ("1.running_mean", 0), ("1.running_var", 0), ("3.weight", 1)])
    assert all(v == ([0, 1, 2, 3], [0, 1, 2, 3]) for v in _members(g).values())


def test_concat_offsets():
    groups = build_groups(Concat(), torch.randn(1, 3, 8, 8))
    by_name = {g.name: g for g in groups}
    assert _members(by_name["a.0"])[("c.0.weight", 1)] == (list(range(6)), list(range(6)))
    assert _members(by_name["b.0"])[("c.0.weight", 1)] == (list(range(6, 16)), list(range(10)))


def test_flatten_to_linear_blocks():
    groups = build_groups(FlattenLinear(), torch.randn(1, 1, 16, 16))
    g = next(g for g in groups if g.name == "c2")
    idx, ch = _members(g)[("fc1.weight", 1)]
    assert idx == list(range(12 * 16)) and ch == np.repeat(np.arange(12), 16).tolist()


def test_grouped_and_depthwise_rules():
    an = analyze(GroupedDepthwise(), torch.randn(1, 3, 8, 8))
    by_name = {g.name: g for g in an.groups}
    # 4 groups of 4 input channels: channel j of every group goes together
    ga = by_name["a.0"]
    assert ga.size == 4
    _, ch = _members(ga)[("a.0.weight", 0)]
    assert ch == [0, 1, 2, 3] * 4
    # depthwise x2: input channel k goes with outputs 2k, 2k+1
    gd = by_name["g.0"]
    _, ch = _members(gd)[("dw.0.weight", 0)]
    _, ch_in = _members(gd)[("g.0.weight", 0)]
    assert ch == np.repeat(ch_in, 2).tolist() or len(ch) == 2 * len(ch_in)


def test_shuffle_permutation():
    groups = build_groups(Shuffle(), torch.randn(1, 3, 8, 8))
    g = next(g for g in groups if g.name == "stem.0")
    # after chunk + cat + shuffle(2), stem channel j and j+8 share a coupled channel
    _, ch_stem = _members(g)[("stem.0.weight", 0)]
    assert ch_stem[:8] == ch_stem[8:]  # chunk(2): channel j of both halves goes together
    idx, ch = _members(g)[("head.weight", 1)]
    # shuffle(2) interleaves the halves: head input 2j and 2j+1 both come from stem channel j
    assert idx == list(range(16)) and ch == np.repeat(ch_stem[:8], 2).tolist()


def test_analysis_is_linear_time_on_deep_chain():
    import time

    net = nn.Sequential(*[nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU()) for _ in range(200)])
    t = time.perf_counter()
    an = analyze(net, torch.randn(1, 8, 2, 2))
    assert len(an.groups) == 199
    assert time.perf_counter() - t < 30  # generous: a regression to quadratic time would blow this
