"""Aten ops of torch.export graphs, mapped onto the same handlers as their torch.nn.functional forms.

Used only by the torch.export fallback (see :mod:`prunekit.graph.capture`).
Point-wise aten ops need no entry: :func:`prunekit.graph.ops._aten_fallback`
treats every op tagged ``pointwise`` as element-wise.
"""
from __future__ import annotations

import torch

from prunekit.graph.labels import Labels
from prunekit.graph.ops import (
    NotHandled, along_dim, elementwise, first_only, handles, int_of, need_labels, out_shape, reduction,
)
from prunekit.graph.ops_matmul import linear_fn, matmul_fn, sdpa_fn
from prunekit.graph.ops_functional import batch_norm_fn, conv_fn, embedding_fn, group_norm_fn, layer_norm_fn
from prunekit.graph.ops_shape import (
    cat_fn, channelwise, chunk_fn, expand_m, free_reshape, narrow_fn, permute_m, repeat_interleave_m, select_fn,
    split_fn, stack_fn, t_m, transpose_m, unbind_fn, view,
)
from prunekit.graph.ops_index import getitem_tensor


def aten(*names) -> list:
    """The aten overloads ``"packet.overload"`` (or every overload of ``"packet"``) that exist in this torch."""
    out = []
    for name in names:
        pkt_name, _, ov = name.partition(".")
        pkt = getattr(torch.ops.aten, pkt_name, None)
        if pkt is None:
            continue
        for o in ([ov] if ov else pkt.overloads()):
            op = getattr(pkt, o, None)
            if op is not None:
                out.append(op)
    return out


@handles(*aten("convolution.default"))
def convolution(ctx, node, args, kwargs):
    """``aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)``."""
    if len(args) < 9 or args[6] is True:
        raise NotHandled
    return conv_fn(ctx, node, list(args[:6]) + [args[8]], {})


def with_stats(fn):
    """Ops returning ``(out, saved statistics...)``: the statistics are not channels of the output."""

    def handler(ctx, node, args, kwargs):
        out = fn(ctx, node, args, kwargs)
        meta = ctx.meta.get(node)
        n = len(meta) if isinstance(meta, (tuple, list)) else 1
        return (out,) + tuple(ctx.rigid_like(m) for m in meta[1:n]) if n > 1 else out

    return handler


def native_bn(ctx, node, args, kwargs):
    return batch_norm_fn(ctx, node, args, kwargs)


@handles(*aten("embedding.default"))
def embedding(ctx, node, args, kwargs):
    """``aten.embedding(weight, indices)``: arguments swapped relative to ``F.embedding``."""
    ctx.set_role(node.args[0], 1, "out")
    return embedding_fn(ctx, node, [args[1], args[0]], {})


@handles(*aten("prelu.default", "_prelu_kernel.default"))
def prelu(ctx, node, args, kwargs):
    x, w = need_labels(args[0]), need_labels(args[1])
    if w.shape in ((1,), ()):
        return x
    from prunekit.graph.ops_shape import isolate

    x2, ids = isolate(ctx, x, 1)
    b = w.block_of(0)
    if b is not None:
        if ids is None:
            ctx.sink.fix(b[1])
        else:
            ctx.sink.unify(b[1], ids)
    return Labels(x.shape, x2.blocks)


@handles(*aten("slice.Tensor"), sizes=True)
def slice_tensor(ctx, node, args, kwargs):
    """``aten.slice.Tensor(x, dim, start, end, step)`` as ``x[..., start:end:step]``."""
    lab = need_labels(args[0])
    d = int_of(args[1] if len(args) > 1 else kwargs.get("dim"), 0) % lab.ndim
    start = args[2] if len(args) > 2 else kwargs.get("start")
    end = args[3] if len(args) > 3 else kwargs.get("end")
    step = args[4] if len(args) > 4 else kwargs.get("step")
    index = (slice(None),) * d + (slice(start, end, step),)
    return getitem_tensor(ctx, node, lab, index)


@handles(*aten("index.Tensor"))
def index_tensor(ctx, node, args, kwargs):
    """``aten.index.Tensor(x, [None, idx, ...])``: ``x[:, idx]`` as torch.export writes it (None = a full slice).

    The relative-position-bias lookups of TinyViT, LeViT and SAM, analysed
    like their fx form (:func:`prunekit.graph.ops_index.getitem_tensor`).
    """
    lab = need_labels(args[0])
    indices = args[1] if len(args) > 1 else kwargs["indices"]
    if not isinstance(indices, (list, tuple)):
        raise NotHandled
    if sum(i is not None for i in indices) > 1:
        return index_several(ctx, node, args, kwargs)
    return getitem_tensor(ctx, node, lab, tuple(slice(None) if i is None else i for i in indices))


def index_several(ctx, node, args, kwargs):
    """``aten.index.Tensor(x, [i0, None, i2...])``: advanced indexing with index tensors on some dims.

    The indexed dims cannot lose channels (the index values point into them) and
    the index tensors are positions; every other dim keeps its channels. Torch
    puts the broadcast index shape in place of the indexed dims when they are
    adjacent, in front otherwise (``logits[arange(B), last_token]`` pools GPT-2's
    sequence outputs this way).
    """
    import numpy as np

    from prunekit.graph.ops import tensors_in

    x = need_labels(args[0])
    idx = list(args[1] if len(args) > 1 else kwargs["indices"])
    ks = [k for k, i in enumerate(idx) if i is not None]
    if not ks or not all(isinstance(idx[k], Labels) for k in ks) or len(idx) > x.ndim:
        raise NotHandled
    ctx.fix(tensors_in(idx))
    bshape = tuple(np.broadcast_shapes(*[idx[k].shape for k in ks]))
    rest = [d for d in range(x.ndim) if d not in ks]
    if ks == list(range(ks[0], ks[-1] + 1)):
        new_pos = {d: d if d < ks[0] else d - len(ks) + len(bshape) for d in rest}
    else:
        new_pos = {d: len(bshape) + n for n, d in enumerate(rest)}
    expect = [0] * (len(rest) + len(bshape))
    for d in rest:
        expect[new_pos[d]] = x.shape[d]
    start = ks[0] if ks == list(range(ks[0], ks[-1] + 1)) else 0
    expect[start:start + len(bshape)] = bshape
    shape = tuple(out_shape(ctx, node))
    if tuple(expect) != shape:
        raise NotHandled
    blocks = []
    for dims, ids in x.blocks:
        if any(d in ks for d in dims):
            ctx.sink.fix(ids)
        else:
            blocks.append((tuple(new_pos[d] for d in dims), ids))
    return Labels(shape, blocks)


# Aten ops whose handler is the one of their torch.nn.functional / tensor-method
# form (same arguments): registered here rather than on those handlers so that
# everything torch.export-specific stays in this module.
handles(*aten("conv1d.default", "conv2d.default", "conv3d.default"))(conv_fn)
handles(*aten("linear.default"))(linear_fn)
handles(*aten("batch_norm.default"))(batch_norm_fn)
handles(*aten("_native_batch_norm_legit_no_training.default"))(with_stats(native_bn))
handles(*aten("native_layer_norm.default"))(with_stats(layer_norm_fn))
handles(*aten("layer_norm.default"))(layer_norm_fn)
handles(*aten("group_norm.default"))(group_norm_fn)
handles(*aten("cat.default"))(cat_fn)
handles(*aten("stack.default"))(stack_fn)
handles(*aten("view.default", "reshape.default", "_unsafe_view.default"))(view)
handles(*aten("flatten.using_ints", "unsqueeze.default", "squeeze.dim", "squeeze.dims", "squeeze.default"))(free_reshape)
handles(*aten("permute.default"))(permute_m)
handles(*aten("repeat_interleave.self_int"))(repeat_interleave_m)
handles(*aten("transpose.int"))(transpose_m)
handles(*aten("t.default"))(t_m)
handles(*aten("expand.default"))(expand_m)
handles(*aten("select.int"))(select_fn)
handles(*aten("split.Tensor", "split_with_sizes.default"))(split_fn)
handles(*aten("chunk.default"))(chunk_fn)
handles(*aten("unbind.int"))(unbind_fn)
handles(*aten("narrow.default"))(narrow_fn)
handles(*aten("mean.dim", "sum.dim_IntList", "amax.default"))(reduction)
handles(*aten("softmax.int", "_softmax.default", "log_softmax.int"))(along_dim)
handles(*aten("matmul.default", "mm.default", "bmm.default"))(matmul_fn)
handles(*aten("scaled_dot_product_attention.default"))(sdpa_fn)
handles(*aten("dropout.default"))(elementwise)
handles(*aten("contiguous.default", "alias.default", "detach.default", "detach_.default", "_to_copy.default", "to",
              "type_as.default",
              "clone.default"))(first_only)
handles(*aten("where"))(elementwise)
handles(*aten("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "max_pool1d", "max_pool2d",
              "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "upsample_nearest2d", "upsample_bilinear2d",
              "constant_pad_nd", "pad", "max_pool2d_with_indices", "adaptive_max_pool2d"))(channelwise)
