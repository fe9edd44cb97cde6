"""Functional forms of the torch.nn layers (``F.conv2d``, ``F.batch_norm``, ``F.layer_norm``...).

Used when a model calls them with its own parameters (a Conv subclass with a
custom ``forward``, weight standardisation, shared weights) and for torch.export
graphs, where every layer is a functional aten call. They follow the module
rules of :mod:`prunekit.graph.ops_nn`, except that attributes such as ``groups``
are arguments here, which the surgery cannot update.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from prunekit.graph.labels import Labels
from prunekit.graph.ops import NotHandled, existing, handles, int_of, need_labels, out_shape
from prunekit.graph.ops_nn import conv_core
from prunekit.graph.ops_shape import isolate


@handles(F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d, sizes=True)
def conv_fn(ctx, node, args, kwargs):
    """``F.conv*d(x, weight, bias, stride, padding, dilation, groups)`` with the weight used directly.

    Unlike a Conv module, whose ``groups`` the surgery updates, a functional
    call's ``groups`` argument is whatever the Python code computes. A depthwise
    conv (one input channel per group) changes its group count when pruned, so
    it is prunable only when ``groups`` is read from the input's channel count
    (``groups=x.shape[1]``); a literal or an attribute keeps its channels.
    """
    from prunekit.graph.analysis import Sz

    x = need_labels(args[0])
    w = need_labels(args[1] if len(args) > 1 else kwargs["weight"])
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    g_arg = args[6] if len(args) > 6 else kwargs.get("groups")
    groups = int_of(g_arg, 1)
    g_follows = isinstance(g_arg, Sz) and g_arg.src is not None and not g_arg.derived
    shape = out_shape(ctx, node)
    nsp = w.ndim - 2
    d = x.ndim - nsp - 1
    w0, w1 = w.block_of(0), w.block_of(1)
    if w1 is not None and w1[0] != (1,) and 0 not in w1[0]:
        # a computed weight whose input block also spans the kernel dims (weight
        # standardisation reshapes back from (1, out, in*k*k)): the kernel
        # positions of one input channel go together, as in any conv
        w, _ = isolate(ctx, w, 1)
        w1 = w.block_of(1)
    if w0 is None or w0[0] != (0,) or (w1 is not None and w1[0] != (1,)):
        raise NotHandled
    for dims, ids in w.blocks:
        if dims not in ((0,), (1,)):
            ctx.sink.fix(ids)
    x2, x_ids = isolate(ctx, x, d)
    if w1 is not None:
        w_in = w1[1]
    else:
        # the weight's input dim carries no channel (it was computed, e.g. a
        # standardised weight whose statistics mix its input channels): it cannot
        # shrink, so neither can the input channels tied to it
        w_in = ctx.sink.new_ids(w.shape[1])
        ctx.sink.fix(w_in)
    conv_core(ctx, x_ids, w0[1], w_in, groups, x.shape[d])
    depthwise = groups > 1 and x.shape[d] // groups == 1
    if depthwise and not g_follows and _conv_module_weight(ctx, w0[1]):
        # the weight of a Conv module called functionally (a subclass forward, or a
        # torch.export graph): the surgery updates that module's ``groups``
        ctx.fix_sizes([args, kwargs])
    elif depthwise and g_follows:
        # groups=x.shape[1]: the size shrinks with the very channels conv_core tied
        ctx.sink.unify(g_arg.src, x_ids if x_ids is not None else g_arg.src)
        ctx.fix_sizes([args[2:6], args[7:], {k: v for k, v in kwargs.items() if k != "groups"}])
    else:
        if depthwise:
            from prunekit.graph.ops import op_name

            ctx.sink.fix(w0[1])
            ctx.freeze(op_name(ctx, node), "a depthwise conv whose groups argument is a constant (not read from "
                                           "the input's channel count); its channels are kept")
        ctx.fix_sizes([args, kwargs])
    if isinstance(bias, Labels):
        b = bias.block_of(0)
        if b is not None:
            ctx.sink.unify(b[1], w0[1])
    w_node = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
    ctx.add_macs(w_node, int(np.prod(shape, dtype=np.int64)) // shape[d])
    ctx.set_role(w_node, 0, "out")
    ctx.set_role(w_node, 1, "in")
    ctx.set_role(node.args[2] if len(node.args) > 2 else node.kwargs.get("bias"), 0, "bias")
    for dims, ids in x2.blocks:
        if d not in dims:
            ctx.sink.fix(ids)
    return Labels(tuple(shape), [((d,), w0[1])])


def _weight_owner(ctx, out_ids) -> str | None:
    """Qualified name of the module whose ``weight`` dim 0 has the ids ``out_ids`` (None: not a weight)."""
    if out_ids.size == 0:
        return None
    first = int(out_ids.reshape(-1)[0])
    for m in ctx.member_order:
        if m.dim == 0 and m.ids.size and int(m.ids.reshape(-1)[0]) == first:
            return m.module if m.param.endswith("weight") else None
    return None


def _module_weight(ctx, out_ids, kinds) -> bool:
    """Do the dim-0 ids ``out_ids`` belong to the ``weight`` of a module of one of ``kinds``?"""
    owner = _weight_owner(ctx, out_ids)
    return owner is not None and isinstance(ctx.modules.get(owner), kinds)


def _conv_module_weight(ctx, out_ids) -> bool:
    """Do the output-channel ids ``out_ids`` belong to the weight of an ``nn.Conv*`` module?"""
    return _module_weight(ctx, out_ids, nn.modules.conv._ConvNd)


_SURGERY_NORMS = tuple(t for t in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) if t is not None)


def _keep_if_constant_shape(ctx, node, ns, weight, x_ids, what: str) -> None:
    """Keep the normalised channels when the pruned model would call the norm with a stale ``normalized_shape``.

    A size measured on the input (``x.shape[-1:]``) or an int attribute is
    handled by the dispatcher (it keeps those channels); a constant follows only
    as the ``normalized_shape`` of an ``nn.LayerNorm``/``nn.RMSNorm`` whose weight
    this is (a subclass with its own ``forward``, e.g. timm's LayerNorm2d): the
    surgery updates that attribute. Any other constant (a literal, a tuple
    attribute of another module) would fail in the pruned model.
    """
    from prunekit.graph.analysis import Sz
    from prunekit.graph.ops import op_name

    s = ns[0]
    if x_ids is None or not isinstance(s, Sz) or s.src is not None or s.tag is not None:
        return
    w = _vec_ids(weight)
    if w is not None and _module_weight(ctx, w, _SURGERY_NORMS):
        return  # torch.export graphs: ctx.modules are the model's own
    stack = node.meta.get("nn_module_stack") or {}
    last = list(stack.values())[-1] if stack else None
    if (w is not None and isinstance(last, tuple) and len(last) == 2 and isinstance(last[1], type)
            and issubclass(last[1], _SURGERY_NORMS) and _weight_owner(ctx, w) == str(last[0])):
        return  # fx: the norm's own forward (ctx.modules hold plain copies of traced-through modules)
    ctx.sink.fix(x_ids)
    ctx.freeze(op_name(ctx, node), f"{what} with a constant normalized_shape that the surgery cannot update (not "
                                   "an nn.LayerNorm's own attribute); the normalised channels are kept")


def _vec_ids(v):
    if isinstance(v, Labels):
        b = v.block_of(0)
        return b[1] if b is not None and b[0] == (0,) else None
    return None


def _tie_vectors(ctx, vecs, x_ids) -> None:
    """Tie the per-channel vectors ``vecs`` of a normalisation (weight, bias, running stats) to its channels.

    Shared by batch/layer/group norm: a vector with a channel label follows the input's channel ids
    ``x_ids``; where the input's channel dim carries no labels (``x_ids`` is None) the vector cannot be
    pruned alone, so it is fixed. Entries that are not labelled tensors (None, floats) are skipped.
    """
    for v in vecs:
        ids = _vec_ids(v)
        if ids is not None:
            if x_ids is None:
                ctx.sink.fix(ids)
            else:
                ctx.sink.unify(ids, x_ids)


@handles(F.batch_norm)
def batch_norm_fn(ctx, node, args, kwargs):
    x = need_labels(args[0])
    x2, x_ids = isolate(ctx, x, 1)
    vecs = list(args[1:5]) + [kwargs.get(k) for k in ("running_mean", "running_var", "weight", "bias")]
    _tie_vectors(ctx, vecs, x_ids)
    training = args[5] if len(args) > 5 else kwargs.get("training", False)
    if training is True:
        # batch statistics are taken over every other dim: channels there are
        # normalised together (weight standardisation reshapes a conv weight to
        # (1, out, in*k*k)), so removing them and zeroing them differ by design
        for dims, ids in x2.blocks:
            if 1 not in dims:
                ctx.note_cross(ids, "batch_norm statistics over channels")
    return Labels(tuple(out_shape(ctx, node)), x2.blocks)


@handles(F.layer_norm)
def layer_norm_fn(ctx, node, args, kwargs):
    """``F.layer_norm(x, normalized_shape, weight, bias)`` over the last dim.

    ``normalized_shape`` must follow the pruned width: it does when the module
    whose ``forward`` makes the call (a LayerNorm subclass, or the LayerNorm a
    torch.export graph inlined) holds it as its ``normalized_shape`` attribute,
    which the plan then updates, or when a labelled ``weight`` is given (the
    surgery resets a norm's shape from its weight). A constant shape with
    neither (a parameter-free norm called with a literal) keeps its channels.
    """
    from prunekit.graph.frozen import node_origin

    x = need_labels(args[0])
    ns = args[1] if len(args) > 1 else kwargs["normalized_shape"]
    if not isinstance(ns, (list, tuple)) or len(ns) != 1:
        raise NotHandled
    x2, x_ids = isolate(ctx, x, x.ndim - 1)
    vecs = list(args[2:4]) + [kwargs.get("weight"), kwargs.get("bias")]
    _tie_vectors(ctx, vecs, x_ids)
    ctx.set_role(node.args[2] if len(node.args) > 2 else node.kwargs.get("weight"), 0, "norm")
    ctx.set_role(node.args[3] if len(node.args) > 3 else node.kwargs.get("bias"), 0, "bias")
    follows = False
    module = node_origin(node)[0] if x_ids is not None else None
    owner = ctx.model_modules.get(module) if module is not None else None
    if x_ids is not None and (all(_vec_ids(v) is None for v in vecs)
                              or (owner is not None and not isinstance(owner, _SURGERY_NORMS))):
        # the module whose forward calls it holds the shape: a parameter-free norm, or one
        # with a weight that is no torch.nn norm (timm's RmsNorm), which the surgery would not reset
        attr = getattr(owner, "normalized_shape", None)  # the user's module: fx copies lack the attribute
        if isinstance(attr, (tuple, list)) and len(attr) == 1 and int(attr[0]) == int_of(ns[0]):
            ctx.count_attr(module, "normalized_shape", int(attr[0]), x_ids)
            follows = True
    ctx.note_cross(x_ids, "layer_norm")
    if not follows:
        _keep_if_constant_shape(ctx, node, ns, args[2] if len(args) > 2 else kwargs.get("weight"), x_ids,
                                "layer_norm")
    return Labels(tuple(out_shape(ctx, node)), x2.blocks)


@handles(F.group_norm)
def group_norm_fn(ctx, node, args, kwargs):
    x = need_labels(args[0])
    g = int_of(args[1] if len(args) > 1 else kwargs["num_groups"])
    x2, x_ids = isolate(ctx, x, 1)
    if x_ids is not None:
        a = x.shape[1] // g
        if a > 1 and g > 1:
            grid = x_ids.reshape(g, a)
            ctx.sink.unify(grid[:1], grid)
        if a > 1:
            ctx.note_cross(x_ids, "group_norm")
    _tie_vectors(ctx, list(args[2:4]) + [kwargs.get("weight"), kwargs.get("bias")], x_ids)
    return Labels(tuple(out_shape(ctx, node)), x2.blocks)


@handles(F.embedding)
def embedding_fn(ctx, node, args, kwargs):
    need_labels(args[0])
    w = need_labels(args[1] if len(args) > 1 else kwargs["weight"])
    shape = out_shape(ctx, node)
    b0, b1 = w.block_of(0), w.block_of(1)
    if b0 is not None:
        ctx.sink.fix(b0[1])
    if node.target is F.embedding:
        ctx.set_role(node.args[1] if len(node.args) > 1 else node.kwargs.get("weight"), 1, "out")
    return Labels(tuple(shape), [((len(shape) - 1,), b1[1])] if b1 is not None else [])


@handles(F.normalize)
def normalize_fn(ctx, node, args, kwargs):
    """``F.normalize(x, p, dim)``: ``x / max(||x||_p, eps)`` along ``dim`` (cosine attention in Swin V2).

    Channels keep their positions. A zeroed channel adds nothing to a p-norm
    (p > 0), so removing channels along ``dim`` equals masking them: no
    cross-channel note, unlike a mean-based norm.
    """
    from prunekit.graph.analysis import Sz

    lab = need_labels(args[0])
    p = kwargs.get("p", args[1] if len(args) > 1 else 2.0)
    if isinstance(p, Sz):
        p = p.value
    if not isinstance(p, (int, float)) or p <= 0 or tuple(out_shape(ctx, node)) != lab.shape:
        raise NotHandled
    return lab


@handles(*existing(["rms_norm"], F))
def rms_norm_fn(ctx, node, args, kwargs):
    """``F.rms_norm(x, normalized_shape, weight, eps)``: as :func:`layer_norm_fn` without a bias (timm's RmsNorm)."""
    kwargs = {k: v for k, v in kwargs.items() if k in ("normalized_shape", "weight")}
    return layer_norm_fn(ctx, node, tuple(args[:3]), kwargs)
