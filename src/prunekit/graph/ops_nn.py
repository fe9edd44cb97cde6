"""Handlers for torch.nn layers: conv, linear, norms, attention (functional forms: ops_functional.py)."""
from __future__ import annotations

import numpy as np
import torch.nn as nn

from prunekit.graph.labels import Labels, rigid
from prunekit.graph.ops import NotHandled, handles, need_labels, out_shape
from prunekit.graph.ops_shape import channelwise, free_reshape, im2col_labels, isolate, reshape_with_sizes


def _pid(ctx, node, name, dim, role):
    return ctx.param_ids(f"{node.target}.{name}", dim, role)


def _with_channel(lab: Labels, d: int, ids, shape) -> Labels:
    blocks = [(dims, a) for dims, a in lab.blocks if d not in dims]
    if ids is not None:
        blocks.append(((d,), ids))
    return Labels(tuple(shape), blocks)


def _fix_other_blocks(ctx, lab: Labels, d: int, new_shape) -> list:
    """Blocks of ``lab`` not on ``d`` that survive into an output of ``new_shape``; others are fixed."""
    keep = []
    for dims, ids in lab.blocks:
        if d in dims:
            continue
        if all(d2 < len(new_shape) and new_shape[d2] == lab.shape[d2] for d2 in dims):
            keep.append((dims, ids))
        else:
            ctx.sink.fix(ids)
    return keep


# ----------------------------------------------------------------------------- convolution


def conv_core(ctx, x_ids, w_out, w_in, groups: int, c_in: int):
    """Tie input channels to a conv weight, honouring groups.

    * ``groups == 1``: input channel ``i`` is weight column ``i``.
    * depthwise family (one input channel per group): a group is pruned whole, so
      input channel ``k`` goes with output channels ``k*m .. k*m+m-1``.
    * general groups: channel ``j`` of every group goes together (the groups keep
      equal widths and ``groups`` is unchanged); the same holds for outputs.
    """
    s = ctx.sink
    if groups == 1:
        if x_ids is None:
            s.fix(w_in)
        else:
            s.unify(x_ids, w_in)
        return
    a = c_in // groups
    b = w_out.size // groups
    if a == 1:
        s.fix(w_in)
        grid = w_out.reshape(groups, b)
        if x_ids is None:
            s.fix(w_out)
        else:
            s.unify(grid, x_ids.reshape(groups, 1))
        return
    if x_ids is None:
        s.fix(w_in)
    else:
        s.unify(x_ids.reshape(groups, a), w_in.reshape(1, a))
    grid = w_out.reshape(groups, b)
    s.unify(grid[:1], grid)


def _conv_input(ctx, node, module, args):
    """The input side shared by conv and transposed-conv modules: ``(x, out_shape, d, x_ids)``.

    ``d`` is the channel dim of the input (0 for an unbatched input, else 1): it holds the channels,
    isolated into ``x_ids``. Labels on the other (spatial or batch) dims are not expected and are fixed
    because a convolution mixes those positions. Fixing only records an equality with FIXED, so doing it
    before the handler's own unifications does not change the result.
    """
    x = need_labels(args[0])
    shape = out_shape(ctx, node)
    d = x.ndim - len(module.kernel_size) - 1
    if d not in (0, 1):
        raise NotHandled
    x2, x_ids = isolate(ctx, x, d)
    for dims, ids in x2.blocks:
        if d not in dims:
            ctx.sink.fix(ids)
    return x, shape, d, x_ids


@handles(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv_module(ctx, node, module, args, kwargs):
    x, shape, d, x_ids = _conv_input(ctx, node, module, args)
    w_out = _pid(ctx, node, "weight", 0, "out")
    w_in = _pid(ctx, node, "weight", 1, "in")
    conv_core(ctx, x_ids, w_out, w_in, module.groups, module.in_channels)
    if module.bias is not None:
        ctx.sink.unify(_pid(ctx, node, "bias", 0, "bias"), w_out)
    ctx.macs_terms.append((f"{node.target}.weight", int(np.prod(shape, dtype=np.int64)) // shape[d]))
    return Labels(tuple(shape), [((d,), w_out)])


@handles(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose_module(ctx, node, module, args, kwargs):
    x, shape, d, x_ids = _conv_input(ctx, node, module, args)
    w_in = _pid(ctx, node, "weight", 0, "in")
    w_out = _pid(ctx, node, "weight", 1, "out")
    bias = _pid(ctx, node, "bias", 0, "bias") if module.bias is not None else None
    g = module.groups
    positions = int(np.prod(x.shape, dtype=np.int64)) // x.shape[d]
    ctx.macs_terms.append((f"{node.target}.weight", positions))
    if g == 1:
        if x_ids is None:
            ctx.sink.fix(w_in)
        else:
            ctx.sink.unify(x_ids, w_in)
        if bias is not None:
            ctx.sink.unify(bias, w_out)
        return Labels(tuple(shape), [((d,), w_out)])
    if module.in_channels == g and module.out_channels == g:  # depthwise
        ctx.sink.fix(w_out)
        if x_ids is None:
            ctx.sink.fix(w_in)
            if bias is not None:
                ctx.sink.fix(bias)
            return rigid(shape)
        ctx.sink.unify(x_ids, w_in)
        if bias is not None:
            ctx.sink.unify(bias, w_in)
        return Labels(tuple(shape), [((d,), w_in)])
    ctx.sink.fix(w_in)
    ctx.sink.fix(w_out)
    if x_ids is not None:
        ctx.sink.fix(x_ids)
    if bias is not None:
        ctx.sink.fix(bias)
    return rigid(shape)


@handles(nn.Linear, nn.modules.linear.NonDynamicallyQuantizableLinear)
def linear_module(ctx, node, module, args, kwargs):
    x = need_labels(args[0])
    shape = out_shape(ctx, node)
    d = x.ndim - 1
    x2, x_ids = isolate(ctx, x, d)
    w_out = _pid(ctx, node, "weight", 0, "out")
    w_in = _pid(ctx, node, "weight", 1, "in")
    if x_ids is None:
        ctx.sink.fix(w_in)
    else:
        ctx.sink.unify(x_ids, w_in)
    if module.bias is not None:
        ctx.sink.unify(_pid(ctx, node, "bias", 0, "bias"), w_out)
    ctx.macs_terms.append((f"{node.target}.weight", int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1))
    return Labels(tuple(shape), _fix_other_blocks(ctx, x2, d, shape) + [((d,), w_out)])


# ----------------------------------------------------------------------------- normalisation


def _norm_channels(ctx, node, x: Labels, d: int, names_roles, shape, attrs=()):
    x2, x_ids = isolate(ctx, x, d)
    module = ctx.modules.get(node.target) if node.op == "call_module" else None
    for attr in attrs:
        value = getattr(module, attr, None)
        if isinstance(value, tuple):
            value = value[0]
        if isinstance(value, int) and x_ids is not None:
            ctx.count_attr(node.target, attr, value, x_ids)
    for name, role in names_roles:
        ids = _pid(ctx, node, name, 0, role)
        if x_ids is None:
            ctx.sink.fix(ids)
        else:
            ctx.sink.unify(ids, x_ids)
    return Labels(tuple(shape), x2.blocks), x_ids


def _stats_norm(ctx, node, module, x, d):
    """BatchNorm/InstanceNorm: affine params and running statistics follow channel dim ``d``."""
    names = []
    if module.weight is not None:
        names += [("weight", "norm"), ("bias", "bias")]
    if module.running_mean is not None:
        names += [("running_mean", "stat"), ("running_var", "stat")]
    out, _ = _norm_channels(ctx, node, x, d, names, out_shape(ctx, node), attrs=("num_features",))
    return out


@handles(nn.Unfold)
def unfold_module(ctx, node, module, args, kwargs):
    """``nn.Unfold`` (im2col): see :func:`prunekit.graph.ops_shape.im2col_labels`."""
    return im2col_labels(ctx, node, need_labels(args[0]))


@handles(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
def batchnorm_module(ctx, node, module, args, kwargs):
    x = need_labels(args[0])
    return _stats_norm(ctx, node, module, x, 1 if x.ndim >= 2 else 0)


@handles(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
def instancenorm_module(ctx, node, module, args, kwargs):
    x = need_labels(args[0])
    nsp = {"InstanceNorm1d": 1, "InstanceNorm2d": 2, "InstanceNorm3d": 3}.get(type(module).__name__, x.ndim - 2)
    return _stats_norm(ctx, node, module, x, x.ndim - nsp - 1)


@handles(nn.GroupNorm)
def groupnorm_module(ctx, node, module, args, kwargs):
    x = need_labels(args[0])
    names = [("weight", "norm"), ("bias", "bias")] if module.weight is not None else []
    g = module.num_groups
    attrs = ("num_channels", "num_groups") if g == module.num_channels else ("num_channels",)
    out, x_ids = _norm_channels(ctx, node, x, 1, names, out_shape(ctx, node), attrs=attrs)
    if x_ids is not None:
        a = module.num_channels // g
        if a > 1 and g > 1:
            grid = x_ids.reshape(g, a)
            ctx.sink.unify(grid[:1], grid)  # groups keep equal widths
        if a > 1:
            ctx.note_cross(x_ids, "GroupNorm")
    return out


@handles(nn.LayerNorm)
def layernorm_module(ctx, node, module, args, kwargs):
    x = need_labels(args[0])
    shape = out_shape(ctx, node)
    ns = tuple(module.normalized_shape)
    if len(ns) != 1:
        for dims, ids in x.blocks:
            if any(d >= x.ndim - len(ns) for d in dims):
                ctx.sink.fix(ids)
        return Labels(tuple(shape), [(dims, ids) for dims, ids in x.blocks if all(d < x.ndim - len(ns) for d in dims)])
    names = []
    if module.weight is not None:
        names.append(("weight", "norm"))
    if getattr(module, "bias", None) is not None:
        names.append(("bias", "bias"))
    out, x_ids = _norm_channels(ctx, node, x, x.ndim - 1, names, shape, attrs=("normalized_shape",))
    ctx.note_cross(x_ids, "LayerNorm")
    return out


@handles(getattr(nn, "RMSNorm", None))  # torch >= 2.4
def rmsnorm_module(ctx, node, module, args, kwargs):
    x = need_labels(args[0])
    shape = out_shape(ctx, node)
    if len(tuple(module.normalized_shape)) != 1:
        raise NotHandled
    names = [("weight", "norm")] if module.weight is not None else []
    out, x_ids = _norm_channels(ctx, node, x, x.ndim - 1, names, shape, attrs=("normalized_shape",))
    ctx.note_cross(x_ids, "RMSNorm")
    return out


@handles(nn.PReLU)
def prelu_module(ctx, node, module, args, kwargs):
    x = need_labels(args[0])
    if module.num_parameters == 1:
        return x
    out, _ = _norm_channels(ctx, node, x, 1, [("weight", "norm")], out_shape(ctx, node))
    return out


@handles(nn.Embedding)
def embedding_module(ctx, node, module, args, kwargs):
    need_labels(args[0])
    shape = out_shape(ctx, node)
    w = _pid(ctx, node, "weight", 1, "out")
    return Labels(tuple(shape), [((len(shape) - 1,), w)])


@handles(nn.LocalResponseNorm)
def lrn_module(ctx, node, module, args, kwargs):
    x = need_labels(args[0])
    blk = x.block_of(1)
    if blk is not None:
        ctx.note_cross(blk[1], "LocalResponseNorm")
    return x


# Modules that act on each channel alone (activations, dropout, pooling, padding,
# resizing): output channel i is input channel i.
_PASSTHROUGH = [
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
    nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign, nn.Hardtanh, nn.LogSigmoid, nn.Tanhshrink,
    nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.RReLU, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.Upsample,
    nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d,
    nn.ReplicationPad2d, nn.ReplicationPad3d,
]


@handles(*_PASSTHROUGH)
def passthrough_module(ctx, node, module, args, kwargs):
    return channelwise(ctx, node, args, kwargs)


@handles(nn.Softmax, nn.LogSoftmax, nn.Softmin)
def softmax_module(ctx, node, module, args, kwargs):
    x = need_labels(args[0])
    if module.dim is None:
        raise NotHandled
    blk = x.block_of(module.dim % x.ndim)
    if blk is not None:
        ctx.note_cross(blk[1], type(module).__name__)
    return x


@handles(nn.Flatten)
def flatten_module(ctx, node, module, args, kwargs):
    return free_reshape(ctx, node, args[:1], {})


@handles(nn.Unflatten)
def unflatten_module(ctx, node, module, args, kwargs):
    from prunekit.graph.analysis import Sz

    x = need_labels(args[0])
    d = module.dim % x.ndim
    sizes = [Sz(-1)] * d + [Sz(int(s)) for s in module.unflattened_size] + [Sz(-1)] * (x.ndim - d - 1)
    return reshape_with_sizes(ctx, x, out_shape(ctx, node), sizes)


@handles(nn.ChannelShuffle)
def channel_shuffle_module(ctx, node, module, args, kwargs):
    x = need_labels(args[0])
    x2, ids = isolate(ctx, x, 1)
    if ids is None:
        return x
    g = module.groups
    grid = ids.reshape(g, -1)
    ctx.sink.unify(grid[:1], grid)
    return _with_channel(x2, 1, np.ascontiguousarray(grid.T).reshape(-1), out_shape(ctx, node))


@handles(nn.MultiheadAttention)
def mha_module(ctx, node, module, args, kwargs):
    """``nn.MultiheadAttention``: heads are pruned whole, and the embedding width follows them.

    The module requires ``embed_dim == num_heads * head_dim`` for its query input,
    so embedding channel ``h*head_dim + d`` goes with head ``h``: removing a head
    removes those ``head_dim`` embedding channels, the head's q/k/v rows and its
    output-projection columns.
    """
    if not module._qkv_same_embed_dim or module.bias_k is not None or getattr(module, "add_zero_attn", False):
        raise NotHandled
    q, k, v = (need_labels(a) for a in (list(args) + [kwargs.get("query"), kwargs.get("key"), kwargs.get("value")])[:3])
    E, H = module.embed_dim, module.num_heads
    D = E // H
    inp = _pid(ctx, node, "in_proj_weight", 0, "out").reshape(3, H, D)
    win = _pid(ctx, node, "in_proj_weight", 1, "in")
    s = ctx.sink
    s.unify(inp[:1], inp)            # q, k, v rows of a head go together
    s.unify(inp[:, :, :1], inp)      # a head is pruned whole
    s.unify(win.reshape(H, D), inp[0])  # embedding width follows the heads
    if module.in_proj_bias is not None:
        s.unify(_pid(ctx, node, "in_proj_bias", 0, "bias").reshape(3, H, D), inp)
    ow = ctx.param_ids(f"{node.target}.out_proj.weight", 0, "out")
    oi = ctx.param_ids(f"{node.target}.out_proj.weight", 1, "in")
    s.unify(oi.reshape(H, D), inp[0])
    s.unify(ow.reshape(H, D), inp[0])
    if module.out_proj.bias is not None:
        s.unify(ctx.param_ids(f"{node.target}.out_proj.bias", 0, "bias"), ow)
    last = q.ndim - 1
    for t in (q, k, v):
        _, ids = isolate(ctx, t, t.ndim - 1)
        if ids is None:
            s.fix(win)
        else:
            s.unify(ids, win)
    meta = ctx.meta.get(node)
    out_main = Labels(tuple(meta[0][1]), [((last,), ow)])
    weights = ctx.rigid_like(meta[1]) if meta[1] is not None else None
    return (out_main, weights)
