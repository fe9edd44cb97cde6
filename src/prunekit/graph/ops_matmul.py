"""Handlers for matrix products: ``@``/matmul/bmm, ``F.linear`` with shared weights, attention."""
from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F

from prunekit.graph.labels import Labels, broadcast_unify, permute, squeeze_block_dims
from prunekit.graph.ops import NotHandled, handles, need_labels, out_shape


def matmul_labels(ctx, a: Labels, b: Labels, shape) -> Labels:
    """``a @ b``: tie contraction and batch channels, carry row/column channels to the output."""
    if a.ndim < 2 or b.ndim < 2:
        raise NotHandled
    nb = len(shape) - 2

    def roles(x, last2):
        off = nb - (x.ndim - 2)
        r = {d: ("b", d + off) for d in range(x.ndim - 2)}
        r[x.ndim - 2], r[x.ndim - 1] = last2
        return r

    # name every dim by its role in the product: "b" batch (matched right-aligned,
    # broadcast), "n" rows of a, "m" columns of b, "k" the contracted dim. Roles
    # decide what a channel becomes: a "k" channel must be removed from both
    # operands at once, an "n"/"m" channel simply carries to the output.
    ra, rb = roles(a, ("n", "k")), roles(b, ("k", "m"))
    size_a = {ra[d]: a.shape[d] for d in range(a.ndim)}
    size_b = {rb[d]: b.shape[d] for d in range(b.ndim)}

    def split(x, r):
        shared, private = [], []
        for dims, ids in x.blocks:
            rr = tuple(r[d] for d in dims)
            (private if all(q in ("n", "m") for q in rr) else shared).append((rr, ids))
        if len(shared) > 1:
            # two channel sets both touching the batch/contracted dims cannot be
            # matched against the other operand one to one: keep them
            for _, ids in shared:
                ctx.sink.fix(ids)
            shared = []
        return (shared[0] if shared else None), private

    A, pa = split(a, ra)
    B, pb = split(b, rb)

    def check_partner(X, other_sizes, other_roles):
        if X is None:
            return None
        for q in X[0]:
            if q in ("n", "m") or q in other_roles:
                continue
            if q == "k" or other_sizes.get(q, 1) > 1:
                ctx.sink.fix(X[1])  # meets a rigid dimension of the other operand
                return None
        return X

    A = check_partner(A, size_b, B[0] if B else ())
    B = check_partner(B, size_a, A[0] if A else ())

    def proj(X, keep):
        rr, ids = X
        keep_axes = [k for k, q in enumerate(rr) if q in keep]
        other = [k for k in range(len(rr)) if k not in keep_axes]
        arr = np.transpose(ids, keep_axes + other).reshape([ids.shape[k] for k in keep_axes] + [-1])
        if arr.shape[-1] > 1:
            ctx.sink.unify(arr[..., :1], arr)
        return tuple(rr[k] for k in keep_axes), arr[..., 0]

    # a channel on a contracted or batch dim of both operands: the same index
    # goes from both (attention heads in q @ k^T, hidden units in x @ W)
    if A is not None and B is not None:
        sh = [q for q in A[0] if q in B[0] and q not in ("n", "m")]
        if sh:
            ra_, pa_ = proj(A, sh)
            rb_, pb_ = proj(B, sh)
            order = [rb_.index(q) for q in ra_]
            ctx.sink.unify(pa_, np.transpose(pb_, order))

    def out_block(X):
        if X is None:
            return None
        keep = [q for q in X[0] if q != "k"]
        if not keep:
            return None  # a contracted channel dim just disappears (a sum over fewer channels)
        return proj(X, keep) if "k" in X[0] else X

    oa, ob = out_block(A), out_block(B)

    def to_dims(rr):
        return tuple(q[1] if isinstance(q, tuple) else (nb if q == "n" else nb + 1) for q in rr)

    blocks = []
    chosen = []
    if oa is not None and ob is not None:
        sa, sb = set(oa[0]), set(ob[0])
        if not (sa & sb):
            chosen = [oa, ob]
        elif sa <= sb:
            chosen = [ob]
        elif sb <= sa:
            chosen = [oa]
        else:
            ctx.sink.fix(oa[1])
            ctx.sink.fix(ob[1])
    else:
        chosen = [x for x in (oa, ob) if x is not None]
    for rr, ids in chosen + pa + pb:
        dims = to_dims(rr)
        order = np.argsort(dims)
        blocks.append((tuple(sorted(dims)), np.transpose(ids, order)))
    return squeeze_block_dims(Labels(tuple(shape), blocks), ctx.sink)


@handles(torch.matmul, torch.bmm, torch.mm, operator.matmul, "matmul", "bmm", "mm", "__matmul__")
def matmul_fn(ctx, node, args, kwargs):
    a, b = need_labels(args[0]), need_labels(args[1])
    return matmul_labels(ctx, a, b, out_shape(ctx, node))


@handles(F.linear)
def linear_fn(ctx, node, args, kwargs):
    """``F.linear(x, weight, bias)`` with the weight used directly (shared or functional weights)."""
    x = need_labels(args[0])
    w = need_labels(args[1] if len(args) > 1 else kwargs["weight"])
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    if x.ndim < 2 or w.ndim != 2:
        raise NotHandled
    wt = permute(w, [1, 0], (w.shape[1], w.shape[0]))
    shape = out_shape(ctx, node)
    out = matmul_labels(ctx, x, wt, shape)
    w_node = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
    ctx.add_macs(w_node, int(np.prod(shape[:-1], dtype=np.int64)))
    ctx.set_role(w_node, 0, "out")
    ctx.set_role(w_node, 1, "in")
    ctx.set_role(node.args[2] if len(node.args) > 2 else node.kwargs.get("bias"), 0, "bias")
    if isinstance(bias, Labels):
        out = broadcast_unify([out, bias], out.shape, ctx.sink)
    return out


@handles(F.scaled_dot_product_attention)
def sdpa_fn(ctx, node, args, kwargs):
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=...)``: heads of q, k, v stay together."""
    q, k, v = (need_labels(x) for x in args[:3])
    mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
    kt = permute(k, list(range(k.ndim - 2)) + [k.ndim - 1, k.ndim - 2], k.shape[:-2] + (k.shape[-1], k.shape[-2]))
    sshape = tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2])) + (q.shape[-2], k.shape[-2])
    s = matmul_labels(ctx, q, kt, sshape)
    if isinstance(mask, Labels):
        s = broadcast_unify([s, mask], sshape, ctx.sink)
    return matmul_labels(ctx, s, v, out_shape(ctx, node))


@handles(torch.addmm, "addmm", *[getattr(torch.ops.aten.addmm, "default", None)])
def addmm_fn(ctx, node, args, kwargs):
    """``addmm(bias, a, b)`` = ``bias + a @ b``: GPT-2's ``Conv1D`` (a linear layer with a transposed weight)."""
    bias, a, b = args[0], need_labels(args[1]), need_labels(args[2])
    out = matmul_labels(ctx, a, b, out_shape(ctx, node))
    ctx.add_macs(node.args[2], a.shape[0])  # rows x the [in, out] weight
    ctx.set_role(node.args[2], 1, "out")  # Conv1D stores its weight transposed: [in, out]
    ctx.set_role(node.args[2], 0, "in")
    ctx.set_role(node.args[0], 0, "bias")
    if isinstance(bias, Labels):
        out = broadcast_unify([out, bias], out.shape, ctx.sink)
    return out


def is_transposed_linear(mod) -> bool:
    """Is ``mod`` an HF ``Conv1D``-style layer: ``nx``/``nf`` ints and a 2-D ``[nx, nf]`` weight?

    Recognised by its attributes rather than its class, so prunekit does not
    import transformers. The surgery (:mod:`prunekit.surgery`) keeps ``nx``/``nf`` equal to the weight's
    shape; the analysis therefore lets sizes equal to them follow pruning.
    """
    w = getattr(mod, "weight", None)
    nx, nf = getattr(mod, "nx", None), getattr(mod, "nf", None)
    return (type(nx) is int and type(nf) is int and w is not None and getattr(w, "ndim", 0) == 2
            and tuple(w.shape) == (nx, nf))
