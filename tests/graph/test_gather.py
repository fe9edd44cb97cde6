"""Advanced indexing on one dim: a relative-position-bias table looked up by an index buffer (BEiT, Swin, LeViT)."""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

import prunekit
from tests.graph.helpers import rel_err


class RelPosAttention(nn.Module):
    def __init__(self, dim=16, heads=4, tokens=5):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn(2 * tokens - 1, heads))
        pos = torch.arange(tokens)
        self.register_buffer("index", (pos[:, None] - pos[None, :] + tokens - 1), persistent=False)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.table[self.index.view(-1)].view(N, N, -1).permute(2, 0, 1)  # (heads, N, N)
        attn = (q @ k.transpose(-2, -1) + bias.unsqueeze(0)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, -1))


def test_bias_table_heads_prune_with_the_attention_heads():
    torch.manual_seed(0)
    net = nn.Sequential(RelPosAttention()).eval()  # a block inside a model: its int attributes are tracked
    x = torch.randn(2, 5, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing frozen, nothing warned
        plan = prunekit.plan(net, x, ratio=0.5)
    assert plan.frozen == []
    heads = [g for g in plan.groups if any(m.param == "0.table" for m in g.members)]
    (g,) = heads
    assert g.size == 4 and len(g.removed) == 2  # whole heads
    assert {(m.param, m.dim) for m in g.members if m.param == "0.table"} == {("0.table", 1)}
    small = plan.apply(net)
    assert small[0].table.shape == (9, 2) and small[0].num_heads == 2
    with torch.no_grad():
        assert rel_err(small(x), plan.apply_masks(net)(x)) < 1e-5


def test_table_rows_are_never_pruned_by_the_lookup():
    class Lookup(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 6)
            self.register_buffer("idx", torch.tensor([2, 0, 1]))

        def forward(self, x):  # x: (B, 4) -> gather rows of a feature-major tensor
            return self.a(x).t()[self.idx]

    net = Lookup().eval()
    from prunekit.graph import analyze

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        an = analyze(net, torch.randn(3, 4))
    assert an.groups == []  # a's 6 outputs are indexed by value: kept
