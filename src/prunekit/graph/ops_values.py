"""Python values in the graph: sizes, shape arithmetic, comparisons, ``_assert`` calls.

torch.fx records ``x.size(1)``, ``x.shape``, ``x.ndim``, ``c // heads`` and
``x.ndim == 4`` as graph nodes whose values are ints, bools or tuples, not
tensors. The analysis carries them as :class:`~prunekit.graph.analysis.Sz`
values: the concrete value on the example inputs plus, for a size measured on a
prunable dimension, the ids of that dimension (``src``). A size that keeps its
meaning after pruning (it sizes a reshape, it is compared with another size of
the same channels) lets the dimension be pruned; a size that would go stale (it
is compared with a literal, used in a float expression) keeps the dimension
whole, recorded as a :class:`~prunekit.graph.analysis.FrozenRegion`.
"""
from __future__ import annotations

import builtins
import operator

import numpy as np

from prunekit.graph.analysis import Sz
from prunekit.graph.labels import Labels, leaves
from prunekit.graph.ops import NotHandled, elementwise, handles, int_of, need_labels, op_name, out_shape, tensors_in

# Python operators that are also size arithmetic when both sides are ints (c // heads).
_ARITHMETIC = [operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.mod,
               operator.neg, operator.pow]

@handles(*_ARITHMETIC, sizes=True)
def arith_or_elementwise(ctx, node, args, kwargs):
    """``+ - * / //`` on ints measured from tensors (sizes), or element-wise on tensors.

    A size ``c`` measured on a prunable dimension stays meaningful through
    ``c * k``, ``c // k`` and ``c / k`` (it shrinks in proportion, e.g. channels
    per head), so the result keeps ``c``'s source. ``k`` may be a literal or a
    module attribute (``C // self.num_heads``); the attribute then keeps its value
    (the head count stays, the per-head width follows ``C``), and the reshape the
    result sizes ties each kept index to ``k`` indices of ``c``
    (:func:`prunekit.graph.analysis.check_size_constraints`). Any other arithmetic on it
    (``k // c``, ``c + 1``, two measured sizes together) gives a number that
    would go stale after pruning: that dimension is kept and the reason recorded.
    """
    if tensors_in([args, kwargs]):
        return elementwise(ctx, node, args, kwargs)
    value = ctx.meta.get(node)
    szs = [a for a in args if isinstance(a, Sz)]
    srcs = [a for a in szs if a.src is not None]
    for a in szs:
        if a.tag is not None:
            a.tag.misuse(f"arithmetic ({getattr(node.target, '__name__', node.target)})")
    if not isinstance(value, int) or isinstance(value, bool):
        if srcs:  # a float or a container from a channel count (``c ** -0.5``)
            ctx.freeze(op_name(ctx, node), "a channel count is used in arithmetic that does not follow "
                                           "pruning; that dimension is kept", srcs)
        return ctx.rigid_like(value)
    linear = node.target in (operator.floordiv, operator.mul, operator.truediv)
    # the other operand may be a module attribute (``C // self.num_heads``): it is marked misused
    # above, so it keeps its value in the pruned model and divides like a literal
    if len(srcs) == 1 and linear and not any(a.src is not None for a in szs if a is not srcs[0]):
        if (node.target is operator.truediv or node.target is operator.floordiv) and args[0] is not srcs[0]:
            pass  # k // c is not proportional to c: falls through to freezing it
        elif node.target is operator.floordiv and value * _int(args[1]) != srcs[0].value:
            pass  # 12 // 5: the remainder would not shrink in proportion
        else:
            return Sz(value, src=srcs[0].src, derived=True)
    if node.target is operator.mod and len(srcs) == 1 and args[0] is srcs[0] and value == 0 \
            and not (isinstance(args[1], Sz) and args[1].src is not None):
        # ``C % groups == 0`` (a group norm's check): it keeps holding when the channels
        # are removed in step across the ``groups`` equal segments, so tie index i to
        # i + C/groups, i + 2C/groups... (the tie ``reshape(B, groups, C // groups)`` makes)
        k = _int(args[1])
        src = np.asarray(srcs[0].src)
        if k > 0 and len(src) % k == 0:
            if k > 1:
                ctx.add_size_constraint((src, src[: len(src) // k]))
            return Sz(value)
    if srcs:
        ctx.freeze(op_name(ctx, node), "a channel count is used in arithmetic that does not follow pruning; "
                                       "that dimension is kept", srcs)
    return Sz(value)


def _int(v) -> int:
    return int(v.value) if isinstance(v, Sz) else int(v)


_COMPARISONS = {operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge}
_COMPARISON_METHODS = {"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"}


def python_value(ctx, node, args, kwargs):
    """A node whose inputs and output are plain Python values (ints, bools, tuples, None, strings).

    The result is carried as the constant recorded on the example inputs. What
    matters is whether a *size measured from a prunable dimension* feeds it:

    * ``a == b`` on two such sizes: they must stay equal, so both dimensions
      lose the same number of channels (a size constraint, like a reshape's).
    * any other use (compared with a literal, ``int()``, ``math.sqrt``, a
      ``range``...): the value would go stale after pruning, so that dimension
      is kept, and the plan names the node and line.
    * sizes of unlabelled dimensions (batch, spatial, ``x.ndim``) never matter.
    """
    value = ctx.rigid_like(ctx.meta.get(node))
    is_cmp = node.target in _COMPARISONS or (node.op == "call_method" and node.target in _COMPARISON_METHODS)
    sized = [a for a in _sizes_in([args, kwargs]) if a.src is not None]
    if not sized:
        for a in _sizes_in([args, kwargs]):
            if a.tag is not None:
                a.tag.misuse(f"Python value ({op_name(ctx, node)})")
        return value
    if is_cmp and node.target in (operator.eq, operator.ne, "__eq__", "__ne__") and len(args) == 2 \
            and all(isinstance(a, Sz) and a.src is not None for a in args):
        # an equality check between two measured sizes (``x.size(1) == y.size(1)``):
        # it keeps holding if both shrink in step
        ctx.add_size_constraint((args[0].src, args[1].src))
        return value
    what = "compared with a value that does not follow pruning" if is_cmp else "used in a Python expression"
    ctx.freeze(op_name(ctx, node), f"a channel count is {what}; that dimension is kept", sized)
    return value


def _sizes_in(values) -> list:
    """Every :class:`Sz` inside nested lists/tuples/dicts/slices."""
    return [v for v in leaves(values) if isinstance(v, Sz)]


# ----------------------------------------------------------------------------- sizes


def size_of(ctx, lab: Labels, d: int) -> Sz:
    blk = lab.block_of(d)
    if blk is None:
        return Sz(lab.shape[d])
    dims, ids = blk
    axis = dims.index(d)
    rep = np.moveaxis(ids, axis, 0).reshape(ids.shape[axis], -1)[:, 0]
    return Sz(lab.shape[d], src=rep)


@handles("size", sizes=True)
def size_method(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dim is None:
        return tuple(size_of(ctx, lab, d) for d in range(lab.ndim))
    return size_of(ctx, lab, int_of(dim) % lab.ndim)


@handles(builtins.getattr, sizes=True)
def getattr_fn(ctx, node, args, kwargs):
    obj, name = args[0], args[1]
    if isinstance(obj, Labels):
        if name == "shape":
            return tuple(size_of(ctx, obj, d) for d in range(obj.ndim))
        if name in ("ndim",):
            return Sz(obj.ndim)
        if name in ("dtype", "device", "is_cuda", "requires_grad", "layout"):
            return None
        if name in ("T", "mT"):
            from prunekit.graph.labels import permute

            perm = list(range(obj.ndim))[::-1] if name == "T" else list(range(obj.ndim - 2)) + [obj.ndim - 1, obj.ndim - 2]
            return permute(obj, perm, out_shape(ctx, node))
    raise NotHandled


@handles("dim", "ndimension", sizes=True)
def dim_method(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    return Sz(lab.ndim)


@handles("numel", "nelement", sizes=True)
def numel_method(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    ctx.fix(lab)  # the element count would change with any channel: keep them all
    return Sz(int(np.prod(lab.shape, dtype=np.int64)))


# Tensors made from sizes and constants (position ids, masks, buffers built in
# forward): no channel flows in, so the result is rigid; a size argument measured
# on a prunable dimension would be stale after pruning, so that dimension is kept.
_FACTORIES = ["arange", "zeros", "ones", "full", "empty", "rand", "randn", "randint", "eye", "linspace", "tensor",
              "scalar_tensor"]
_ATEN_FACTORIES = ["arange.default", "arange.start", "arange.start_step", "zeros.default", "ones.default",
                   "full.default", "empty.memory_format", "scalar_tensor.default", "eye.default",
                   "lift_fresh_copy.default"]


def _aten_ops(names) -> list:
    import torch

    out = []
    for name in names:
        pkt, _, ov = name.partition(".")
        op = getattr(getattr(torch.ops.aten, pkt, None), ov, None)
        if op is not None:
            out.append(op)
    return out


def _torch_fns(names) -> list:
    import torch

    return [getattr(torch, n) for n in names if getattr(torch, n, None) is not None]


@handles(*_torch_fns(_FACTORIES), *_aten_ops(_ATEN_FACTORIES), "new_zeros", "new_ones", "new_full", "new_empty",
         "new_tensor", sizes=True)
def factory(ctx, node, args, kwargs):
    """``torch.zeros(B, C)``, ``torch.arange(n)``, ``x.new_zeros(...)``: a rigid tensor built from sizes."""
    sized = [a for a in _sizes_in([args[1:] if node.op == "call_method" else args, kwargs]) if a.src is not None]
    if sized:
        ctx.freeze(op_name(ctx, node), "a tensor is built with a channel count that would go stale after "
                                       "pruning; that dimension is kept", sized)
    return ctx.rigid_like(ctx.meta.get(node))


_LIKE = ["zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like"]


@handles(*_torch_fns(_LIKE), *_aten_ops([f"{n}.default" for n in _LIKE]))
def like(ctx, node, args, kwargs):
    """``torch.zeros_like(x)``: x's shape, so x's channel labels (a removed channel is removed from both)."""
    lab = need_labels(args[0])
    if tuple(out_shape(ctx, node)) != lab.shape:
        raise NotHandled
    return lab
