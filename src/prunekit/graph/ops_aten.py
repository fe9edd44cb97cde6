"""Aten ops of torch.export graphs, mapped onto the same handlers as their torch.nn.functional forms.

Used only by the torch.export fallback (see :mod:`prunekit.graph.capture`).
Point-wise aten ops need no entry: :func:`prunekit.graph.ops._aten_fallback`
treats every op tagged ``pointwise`` as element-wise.
"""
from __future__ import annotations

from prunekit.graph.labels import Labels
from prunekit.graph.ops import (
    FUNCTION_HANDLERS, SIZE_AWARE, NotHandled, along_dim, elementwise, first_only, int_of, need_labels, reduction,
)
from prunekit.graph.ops_matmul import linear_fn, matmul_fn, sdpa_fn
from prunekit.graph.ops_nn import batch_norm_fn, conv_fn, embedding_fn, group_norm_fn, layer_norm_fn
from prunekit.graph.ops_shape import (
    _getitem_tensor, cat_fn, channelwise, chunk_fn, expand_m, free_reshape, narrow_fn, permute_m, select_fn,
    split_fn, stack_fn, t_m, transpose_m, unbind_fn, view,
)


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


def embedding(ctx, node, args, kwargs):
    """``aten.embedding(weight, indices)``: arguments swapped relative to ``F.embedding``."""
    return embedding_fn(ctx, node, [args[1], args[0]], {})


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


def slice_tensor(ctx, node, args, kwargs):
    """``aten.slice.Tensor(x, dim, start, end, step)`` as ``x[..., start:end:step]``."""
    lab = need_labels(args[0])
    d = int_of(args[1] if len(args) > 1 else kwargs.get("dim"), 0) % lab.ndim
    start = args[2] if len(args) > 2 else kwargs.get("start")
    end = args[3] if len(args) > 3 else kwargs.get("end")
    step = args[4] if len(args) > 4 else kwargs.get("step")
    index = (slice(None),) * d + (slice(start, end, step),)
    return _getitem_tensor(ctx, node, lab, index)


def _register():
    import torch

    a = torch.ops.aten
    table = {
        "conv1d.default": conv_fn, "conv2d.default": conv_fn, "conv3d.default": conv_fn,
        "convolution.default": convolution, "linear.default": linear_fn,
        "batch_norm.default": batch_norm_fn,
        "_native_batch_norm_legit_no_training.default": with_stats(native_bn),
        "layer_norm.default": layer_norm_fn, "native_layer_norm.default": with_stats(layer_norm_fn),
        "group_norm.default": group_norm_fn, "embedding.default": embedding, "prelu.default": prelu,
        "_prelu_kernel.default": prelu,
        "cat.default": cat_fn, "stack.default": stack_fn, "view.default": view, "reshape.default": view,
        "_unsafe_view.default": view, "flatten.using_ints": free_reshape, "unsqueeze.default": free_reshape,
        "squeeze.dim": free_reshape, "squeeze.dims": free_reshape, "squeeze.default": free_reshape,
        "permute.default": permute_m, "transpose.int": transpose_m, "t.default": t_m, "expand.default": expand_m,
        "slice.Tensor": slice_tensor, "select.int": select_fn, "split.Tensor": split_fn,
        "split_with_sizes.default": split_fn, "chunk.default": chunk_fn, "unbind.int": unbind_fn,
        "narrow.default": narrow_fn, "mean.dim": reduction, "sum.dim_IntList": reduction, "amax.default": reduction,
        "softmax.int": along_dim, "_softmax.default": along_dim, "log_softmax.int": along_dim,
        "matmul.default": matmul_fn, "mm.default": matmul_fn, "bmm.default": matmul_fn,
        "scaled_dot_product_attention.default": sdpa_fn, "dropout.default": elementwise,
        "contiguous.default": first_only, "alias.default": first_only, "detach.default": first_only,
        "_to_copy.default": first_only,
    }
    for name in ("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "max_pool1d", "max_pool2d",
                 "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "upsample_nearest2d",
                 "upsample_bilinear2d", "constant_pad_nd", "pad", "max_pool2d_with_indices",
                 "adaptive_max_pool2d"):
        pkt = getattr(a, name, None)
        if pkt is None:
            continue
        for ov in pkt.overloads():
            FUNCTION_HANDLERS[getattr(pkt, ov)] = channelwise
    for key, fn in table.items():
        pkt_name, _, ov = key.partition(".")
        pkt = getattr(a, pkt_name, None)
        op = getattr(pkt, ov, None) if pkt is not None else None
        if op is not None:
            FUNCTION_HANDLERS[op] = fn
    SIZE_AWARE.add(slice_tensor)


_register()
