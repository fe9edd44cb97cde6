"""nn.MultiheadAttention MACs are counted in eval mode (its fused fast path is invisible to the flop counter)."""
from __future__ import annotations

import torch
import torch.nn as nn

from prunekit import measure


class _Wrap(nn.Module):
    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, q, k, v):
        return self.attn(q, k, v, need_weights=False)[0]


def test_mha_fast_path_is_counted_exactly():
    b, lq, e = 2, 7, 32
    net = _Wrap(nn.MultiheadAttention(e, 4, batch_first=True)).eval()
    x = torch.randn(b, lq, e)
    rep = measure.count_macs(net, (x, x, x))
    # q/k/v projections + q @ k^T + attn @ v + out_proj, per sample
    expected = b * (3 * lq * e * e + 2 * lq * lq * e + lq * e * e)
    assert rep.total == expected == 63616
    assert rep.per_layer == {"attn": expected} and rep.layer_types["attn"] == "MultiheadAttention"


def test_mha_with_kdim_vdim_matches_the_slow_path_count():
    from torch.utils.flop_counter import FlopCounterMode

    net = _Wrap(nn.MultiheadAttention(32, 4, kdim=16, vdim=24)).eval()  # sequence-first, slow path
    q, k, v = torch.randn(7, 2, 32), torch.randn(5, 2, 16), torch.randn(5, 2, 24)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.attn(q, k, v)  # need_weights=True: explicit bmm ops the flop counter sees
    assert measure.count_macs(net, (q, k, v)).total == counter.get_total_flops() // 2 == 45952


def test_parameter_passed_into_a_submodule_does_not_break_counting():
    class Tok(nn.Module):
        def __init__(self):
            super().__init__()
            self.cls = nn.Parameter(torch.zeros(1, 1, 8))
            self.inner = nn.Linear(8, 8)

        def forward(self, x):
            return self.inner(torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1))

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = Tok()
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.tok(x)) + self.head(self.tok.cls)  # a parameter as a module input

    net = Outer()
    assert measure.count_macs(net, torch.randn(2, 3, 8)).total == 2 * 4 * (8 * 8 + 8 * 2) + 8 * 2
    assert all(p.requires_grad for p in net.parameters())  # restored
