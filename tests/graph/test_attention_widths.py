"""Attention widths that must prune: heads under rotary embeddings, constant sizes of torch.export graphs.

Each model is tiny (embedding 16, 4 heads of 4); at ratio 0.5 the engine must
remove exactly half of the heads, update ``num_heads`` (and the other size
attributes the forward reads), and the pruned model must equal the masked one.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

import prunekit
from tests.graph.helpers import rel_err


def rot_interleaved(x):
    """eva/timm ``rot``: pairs ``(x0, x1) -> (-x1, x0)`` along the last dim, written with step slices."""
    return torch.stack([-x[..., 1::2], x[..., ::2]], -1).reshape(x.shape)


class RopeAttention(nn.Module):
    """timm-eva-style attention: ``qkv.reshape(B, N, 3, self.num_heads, -1)``, a rotary table over head_dim
    computed in ``forward`` (rigid), and ``reshape(B, N, C)`` with ``C`` read from the input."""

    def __init__(self, dim=16, heads=4):
        super().__init__()
        self.num_heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        hd = q.shape[-1]
        freqs = torch.arange(N, dtype=x.dtype)[:, None] * torch.linspace(0.1, 1.0, hd // 2)[None]
        sin = freqs.sin().repeat_interleave(2, -1)
        cos = freqs.cos().repeat_interleave(2, -1)
        q = q * cos + rot_interleaved(q) * sin
        k = k * cos + rot_interleaved(k) * sin
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class ConstAttention(nn.Module):
    """timm ``Attention``: every size is an attribute (``num_heads``, ``head_dim``, ``attn_dim``)."""

    def __init__(self, dim=16, heads=4):
        super().__init__()
        self.num_heads = heads
        self.head_dim = dim // heads
        self.attn_dim = dim
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, self.attn_dim))


class Block(nn.Module):
    """Embedding -> residual attention -> residual MLP -> (optional parameter-free LayerNorm) -> head."""

    def __init__(self, attn, norm=None, dim=16):
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.attn = attn
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        self.norm = norm if norm is not None else nn.Identity()
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.embed(x)
        x = x + self.attn(x)
        x = x + self.fc2(F.relu(self.fc1(x)))
        return self.head(self.norm(x))


class LiteralNorm(nn.Module):
    """A parameter-free layer norm with a literal width: the size cannot follow pruning."""

    def forward(self, x):
        return F.layer_norm(x, (24,))


def _plan(net, x, **kw):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prunekit.plan(net, x, ratio=0.5, ignored_layers=[net.head], **kw)


def _check_exact(net, plan, x):
    small, masked = plan.apply(net), plan.apply_masks(net)
    with torch.no_grad():
        a, b, ref = small(x), masked(x), net(x)
    assert a.shape == ref.shape
    assert rel_err(a, b) < 1e-5
    assert rel_err(ref, b) > 1e-3  # channels were really removed
    return small


def test_rotary_attention_prunes_whole_heads():
    """A rotary table broadcast over head_dim and step slices of head_dim no longer keep the heads:
    head_dim is not a prunable width once heads are whole (each head is one channel of the reshape)."""
    torch.manual_seed(0)
    net = Block(RopeAttention()).eval()
    x = torch.randn(2, 6, 8)
    plan = _plan(net, x)
    small = _check_exact(net, plan, x)
    assert small.attn.num_heads == 2
    assert tuple(small.attn.qkv.weight.shape) == (24, 8)   # 3 x 2 heads x 4, from an 8-wide residual
    assert tuple(small.attn.proj.weight.shape) == (8, 8)
    assert tuple(small.embed.weight.shape) == (8, 8)       # residual tied to the heads (reshape(B, N, C))
    assert tuple(small.head.weight.shape) == (3, 8)
    assert tuple(small.fc1.weight.shape) == (16, 8)


def test_export_constant_sizes_follow_module_attributes():
    """Under torch.export the reshape sizes are constants; those equal to the calling module's int
    attributes follow pruning as those attributes, which the plan updates."""
    torch.manual_seed(0)
    net = Block(ConstAttention(dim=24, heads=4), dim=24).eval()   # 4 heads of 6
    x = torch.randn(2, 6, 8)
    plan = _plan(net, x, tracer="export")
    updates = {(a["module"], a["attr"]): (a["before"], a["after"]) for a in plan.attrs}
    assert updates[("attn", "num_heads")] == (4, 2)
    assert updates[("attn", "attn_dim")] == (24, 12)
    assert updates.get(("attn", "head_dim"), (6, 6)) == (6, 6)  # tied within a head, never shrinks
    small = _check_exact(net, plan, x)
    assert small.attn.num_heads == 2 and small.attn.attn_dim == 12 and small.attn.head_dim == 6
    assert tuple(small.attn.qkv.weight.shape) == (36, 12)  # 3 x 2 heads x 6; the residual pruned on its own
    assert tuple(small.attn.proj.weight.shape) == (12, 12)


def test_export_ambiguous_constant_keeps_heads():
    """4 heads of 4: the constant 4 stands for both num_heads and head_dim, so neither can be told
    apart from the other and the heads are kept (a conservative plan, never a broken one)."""
    torch.manual_seed(0)
    attn = ConstAttention(dim=16, heads=4)
    attn.attn_dim = 16
    net = Block(attn).eval()
    x = torch.randn(2, 6, 8)
    plan = _plan(net, x, tracer="export")
    shapes = plan.new_shapes()
    assert "attn.qkv.weight" not in shapes or shapes["attn.qkv.weight"][0] == 48
    small = plan.apply(net)
    with torch.no_grad():
        assert small(x).shape == (2, 6, 3)


def test_export_parameter_free_layernorm_follows():
    """A LayerNorm without affine parameters, inlined by torch.export: its normalized_shape is updated."""
    torch.manual_seed(0)
    net = Block(ConstAttention(dim=24, heads=4), norm=nn.LayerNorm(24, elementwise_affine=False), dim=24).eval()
    x = torch.randn(2, 6, 8)
    plan = _plan(net, x, tracer="export")
    updates = {(a["module"], a["attr"]): a["after"] for a in plan.attrs}
    assert updates[("norm", "normalized_shape")] == 12
    small = plan.apply(net)
    assert small.norm.normalized_shape == (12,)
    with torch.no_grad():
        assert small(x).shape == (2, 6, 3)


def test_literal_layernorm_width_is_kept():
    """``F.layer_norm(x, (24,))`` without weight: the literal cannot follow, so the residual width stays."""
    torch.manual_seed(0)
    net = Block(ConstAttention(dim=24, heads=4), norm=LiteralNorm(), dim=24).eval()
    x = torch.randn(2, 6, 8)
    plan = _plan(net, x)
    shapes = plan.new_shapes()
    assert "embed.weight" not in shapes  # the residual is kept whole
    assert shapes["fc1.weight"] == [24, 24]  # the MLP's hidden width still prunes
    assert shapes["attn.qkv.weight"] == [36, 24]  # and so do the heads
    small = plan.apply(net)
    with torch.no_grad():
        assert small(x).shape == (2, 6, 3)


class MaskedMLP(nn.Module):
    """An MLP gated by a mask built from token ids and an integer buffer with an op the engine has no
    handler for (``torch.diff``), as HF attention-mask code does."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pos", torch.arange(7)[None])
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x, ids):
        step = torch.diff(ids + self.pos, dim=1)          # int in, int out
        keep = (step != 0).unsqueeze(-1).float()
        return self.fc2(F.relu(self.fc1(x)) * keep)


def test_int_and_bool_ops_freeze_nothing():
    torch.manual_seed(0)
    net = MaskedMLP().eval()
    x, ids = torch.randn(2, 6, 8), torch.randint(0, 3, (2, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = prunekit.plan(net, (x, ids), ratio=0.5, ignored_layers=[net.fc2])
    assert plan.frozen == []
    assert plan.new_shapes()["fc1.weight"] == [8, 8]
    small, masked = plan.apply(net), plan.apply_masks(net)
    with torch.no_grad():
        assert rel_err(small(x, ids), masked(x, ids)) < 1e-5


class GQAAttention(nn.Module):
    """timm-style grouped-query attention: 4 query heads on 2 KV heads, ``repeat_interleave(2, dim=1)``."""

    def __init__(self, dim=16, heads=4, kv_heads=2):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.num_kv_groups = heads, kv_heads, heads // kv_heads
        hd = dim // heads
        self.q_proj = nn.Linear(dim, heads * hd)
        self.k_proj = nn.Linear(dim, kv_heads * hd)
        self.v_proj = nn.Linear(dim, kv_heads * hd)
        self.proj = nn.Linear(heads * hd, dim)

    def forward(self, x):
        B, N, _ = x.shape
        q = self.q_proj(x).reshape(B, N, self.num_heads, -1).transpose(1, 2)
        k = self.k_proj(x).reshape(B, N, self.num_kv_heads, -1).transpose(1, 2)
        v = self.v_proj(x).reshape(B, N, self.num_kv_heads, -1).transpose(1, 2)
        k = k.repeat_interleave(self.num_kv_groups, dim=1)
        v = v.repeat_interleave(self.num_kv_groups, dim=1)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, -1))


def test_repeat_interleave_gqa_keeps_query_groups():
    """Removing KV head j removes query heads 2j and 2j+1: 4/2 heads -> 2/1, num_kv_groups stays 2."""
    torch.manual_seed(0)
    net = Block(GQAAttention()).eval()
    x = torch.randn(2, 6, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = prunekit.plan(net, x, ratios={"attn.q_proj": 0.5})   # only the head group
    (g,) = [g for g in plan.groups if g.removed]
    assert g.size == 2 and len(g.removed) == 1
    small = _check_exact(net, plan, x)
    a = small.attn
    assert (a.num_heads, a.num_kv_heads, a.num_kv_groups) == (2, 1, 2)
    j = g.removed[0]
    keep_q = [h for h in range(4) if h // 2 != j]
    ref = net.attn.q_proj.weight.detach()
    assert torch.equal(a.q_proj.weight.detach(), torch.cat([ref[4 * h:4 * h + 4] for h in keep_q]))
