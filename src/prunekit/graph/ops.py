"""Op handlers: how each traced op moves, ties or fixes channel labels.

Three tables map fx targets to handlers: :data:`MODULE_HANDLERS` (module type ->
``fn(ctx, node, module, args, kwargs)``), :data:`FUNCTION_HANDLERS` (callable ->
``fn(ctx, node, args, kwargs)``) and :data:`METHOD_HANDLERS` (tensor method name
-> same). They are filled once at import by the ``ops_*`` modules.

An op with no handler, or whose handler does not recognise its arguments, is
*unknown*: every channel at its inputs is fixed and its outputs are rigid, with
one warning naming it. That is what keeps the engine sound on models it has
never seen: the worst case is channels left unpruned, never a wrong model.
"""
from __future__ import annotations

import builtins
import operator

import numpy as np

from prunekit.graph.analysis import Sz
from prunekit.graph.labels import Labels, broadcast_unify, rigid

MODULE_HANDLERS: dict = {}
FUNCTION_HANDLERS: dict = {}
METHOD_HANDLERS: dict = {}
SIZE_AWARE: set = set()  # handlers that deal with size (Sz) arguments themselves


class NotHandled(Exception):
    """Raised by a handler whose op form it does not support: the op is then treated as unknown."""


def handles_modules(*types, sizes: bool = False):
    def deco(fn):
        for t in types:
            MODULE_HANDLERS[t] = fn
        if sizes:
            SIZE_AWARE.add(fn)
        return fn
    return deco


def handles_functions(*fns, sizes: bool = False):
    def deco(fn):
        for f in fns:
            if f is not None:
                FUNCTION_HANDLERS[f] = fn
        if sizes:
            SIZE_AWARE.add(fn)
        return fn
    return deco


def handles_methods(*names, sizes: bool = False):
    def deco(fn):
        for n in names:
            METHOD_HANDLERS[n] = fn
        if sizes:
            SIZE_AWARE.add(fn)
        return fn
    return deco


def module_handler(module):
    """Handler for a module instance: exact torch.nn types, or user subclasses that keep the parent's forward."""
    _load()
    for cls in type(module).__mro__:
        h = MODULE_HANDLERS.get(cls)
        if h is not None:
            if cls is type(module) or type(module).forward is cls.forward:
                return h
            return None
    return None


def is_handled_module(module) -> bool:
    return module_handler(module) is not None


_LOADED = []


def _load():
    if not _LOADED:
        from prunekit.graph import ops_aten, ops_matmul, ops_nn, ops_shape  # noqa: F401  (fill the tables)

        _LOADED.append(True)


def noop(ctx, node, args, kwargs):
    """Runtime checks (``torch._assert``, timm's ``_assert``): no channels involved, nothing returned."""
    return None


def _aten_fallback(target):
    """Aten ops (torch.export graphs) tagged point-wise are element-wise; ``*_assert`` calls are no-ops."""
    import torch

    if getattr(target, "__name__", "") in ("_assert", "_assert_async", "_assert_scalar"):
        return noop
    if isinstance(target, torch._ops.OpOverload) and torch.Tag.pointwise in target.tags:
        return elementwise
    return None


def op_name(ctx, node) -> str:
    """The op of ``node`` as the user wrote it: ``torch.einsum``, ``.foo()``, ``module MultiheadAttention``."""
    if node.op == "call_module":
        mod = ctx.modules.get(node.target)
        return f"module {type(mod).__name__}" if mod is not None else f"module {node.target}"
    if node.op == "call_method":
        return f"tensor method .{node.target}()"
    t = node.target
    return f"function {getattr(t, '__module__', '') or ''}.{getattr(t, '__name__', str(t))}".replace("None.", "")


def _find_handler(ctx, node):
    """``(handler, module)`` for a call node; handler is None when no table has the target."""
    if node.op == "call_module":
        module = ctx.modules[node.target]
        return module_handler(module), module
    if node.op == "call_function":
        try:
            handler = FUNCTION_HANDLERS.get(node.target)
        except TypeError:  # an unhashable callable object as target
            handler = None
        return (handler if handler is not None else _aten_fallback(node.target)), None
    if node.op == "call_method":
        return METHOD_HANDLERS.get(node.target), None
    return None, None


def run_node(ctx, node):
    """Labels of ``node``'s output, recording unions in ``ctx``.

    Never raises for a model construct: an op without a handler, one whose
    handler rejects its arguments (:class:`NotHandled`) or one whose handler
    fails is *frozen* (its channels kept, a :class:`FrozenRegion` recorded), so a
    local problem costs only the channels that touch it.
    """
    _load()
    meta = ctx.meta.get(node)
    if node.op == "placeholder":
        fqn = ctx.param_placeholders.get(node.target)
        if fqn is not None and fqn in ctx.params:
            return _param_labels(ctx, fqn)
        return ctx.rigid_like(meta)
    if node.op == "get_attr":
        return _get_attr(ctx, node, meta)
    if node.op == "output":
        ctx.fix(ctx.val(node.args))
        return None
    ctx.current_node = node
    args = ctx.val(node.args)
    kwargs = ctx.val(dict(node.kwargs))
    handler, module = _find_handler(ctx, node)
    if module is None and not tensors_in([args, kwargs]) and not _holds_tensor(meta):
        # Python values computed from sizes, flags and constants (``x.ndim == 4``,
        # ``C // heads``, ``_assert(...)``): no channels flow through them, only
        # sizes, which python_value() follows or pins
        if handler is None or handler not in SIZE_AWARE:
            return python_value(ctx, node, args, kwargs)
    if handler is not None:
        try:
            out = handler(ctx, node, module, args, kwargs) if module is not None else handler(ctx, node, args, kwargs)
            if handler not in SIZE_AWARE:
                ctx.fix_sizes([args, kwargs])
            return out
        except NotHandled:
            reason = "not understood by the pruning engine in this form"
        except Exception as e:  # noqa: BLE001 - a handler bug must cost channels, not the whole model
            reason = f"its handler failed ({type(e).__name__}: {str(e)[:120]})"
    else:
        reason = "not understood by the pruning engine"
    if node.op == "call_module" and node.target in ctx.opaque:
        ctx.fix([args, kwargs])  # recorded as a frozen region at capture
        return ctx.rigid_like(meta)
    ctx.freeze(op_name(ctx, node), reason + "; the channels at its inputs and outputs are kept", [args, kwargs])
    return ctx.rigid_like(meta)


def _holds_tensor(meta) -> bool:
    """Does a recorded value (see :func:`prunekit.graph.capture.summarize`) contain a tensor?"""
    if isinstance(meta, tuple) and meta and meta[0] == "tensor":
        return True
    if isinstance(meta, (list, tuple)):
        return any(_holds_tensor(m) for m in meta)
    if isinstance(meta, dict):
        return any(_holds_tensor(m) for m in meta.values())
    return False


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
    out = []
    if isinstance(values, Sz):
        out.append(values)
    elif isinstance(values, (list, tuple)):
        for v in values:
            out.extend(_sizes_in(v))
    elif isinstance(values, dict):
        for v in values.values():
            out.extend(_sizes_in(v))
    elif isinstance(values, slice):
        out.extend(_sizes_in([values.start, values.stop, values.step]))
    return out


def _param_labels(ctx, name):
    p = ctx.params[name]
    blocks = [((d,), ctx.param_ids(name, d, "other")) for d in range(p.dim()) if p.shape[d] > 1]
    return Labels(tuple(p.shape), blocks)


def _get_attr(ctx, node, meta):
    if node.target in ctx.params:
        return _param_labels(ctx, node.target)
    return ctx.rigid_like(meta)


# ----------------------------------------------------------------------------- helpers used by handlers


def out_shape(ctx, node):
    return ctx.shape(node)


def tensors_in(values) -> list[Labels]:
    out = []
    if isinstance(values, Labels):
        out.append(values)
    elif isinstance(values, (list, tuple)):
        for v in values:
            out.extend(tensors_in(v))
    elif isinstance(values, dict):
        for v in values.values():
            out.extend(tensors_in(v))
    return out


def need_labels(v) -> Labels:
    if not isinstance(v, Labels):
        raise NotHandled
    return v


def int_of(v, default=None):
    """Plain int from an Sz/int argument (or ``default`` for None)."""
    if v is None:
        return default
    if isinstance(v, Sz):
        return v.value
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    raise NotHandled


def dims_arg(v, ndim):
    """A dim argument (int, list, tuple or None) as a sorted list of non-negative dims."""
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return sorted({int_of(x) % ndim for x in v})
    return [int_of(v) % ndim]


# ----------------------------------------------------------------------------- element-wise


def elementwise(ctx, node, args, kwargs):
    """Any op whose tensor inputs broadcast together into an output of the broadcast shape."""
    labs = tensors_in([args, kwargs])
    shape = out_shape(ctx, node)
    if not labs:
        return rigid(shape)
    for lab in labs:
        if lab.ndim > len(shape) or any(s not in (1, o) for s, o in zip(lab.shape[::-1], shape[::-1])):
            raise NotHandled
    return broadcast_unify(labs, shape, ctx.sink)


def first_only(ctx, node, args, kwargs):
    """Ops acting on their first tensor alone (``x.type_as(y)``, ``x.to(y)``)."""
    lab = need_labels(args[0])
    if tuple(out_shape(ctx, node)) != lab.shape:
        raise NotHandled
    return lab


_UNARY_FUNCS = []
_UNARY_NAMES = [
    "relu", "relu_", "relu6", "gelu", "silu", "mish", "hardswish", "hardsigmoid", "sigmoid", "tanh", "elu", "selu",
    "celu", "leaky_relu", "softplus", "softsign", "hardtanh", "logsigmoid", "tanhshrink", "hardshrink", "softshrink",
    "threshold", "rrelu", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "abs", "neg", "exp", "log", "sqrt", "rsqrt", "square", "reciprocal", "sign", "sin", "cos", "erf", "clamp",
    "clip", "clamp_min", "clamp_max", "pow", "add", "sub", "mul", "div", "true_divide", "floor_divide",
    "maximum", "minimum", "where", "lerp", "addcmul", "addcdiv", "masked_fill", "nan_to_num", "sigmoid_",
    "tanh_", "exp_", "floor", "ceil", "round", "trunc", "frac", "rsub", "fmod", "remainder", "atan2", "hypot",
    "silu_", "hardswish_", "relu6_", "gelu_", "log1p", "expm1", "logit", "isnan", "isinf", "logical_not",
    "bitwise_not", "eq", "ne", "lt", "le", "gt", "ge", "mul_", "add_", "sub_", "div_", "clamp_", "abs_",
]
_UNARY_METHODS = _UNARY_NAMES + [
    "contiguous", "clone", "detach", "float", "half", "double", "bfloat16", "int", "long", "bool", "to", "cpu",
    "cuda", "requires_grad_", "masked_fill_", "fill_", "zero_", "type", "__and__", "__or__",
]


def _register_elementwise():
    import torch
    import torch.nn.functional as F

    fns = [operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.iadd,
           operator.isub, operator.imul, operator.itruediv, operator.neg, operator.pow, operator.mod,
           operator.and_, operator.or_, operator.eq, operator.ne, operator.lt, operator.gt, operator.le, operator.ge,
           operator.invert]
    for name in _UNARY_NAMES:
        for ns in (torch, F, torch.special):
            f = getattr(ns, name, None)
            if f is not None and f not in fns:
                fns.append(f)
    size_ops = {operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.mod,
                operator.neg, operator.pow}
    for f in fns:
        if f in size_ops:
            FUNCTION_HANDLERS[f] = arith_or_elementwise
        else:
            FUNCTION_HANDLERS[f] = elementwise
    for name in _UNARY_METHODS:
        METHOD_HANDLERS[name] = elementwise
    METHOD_HANDLERS["type_as"] = first_only
    METHOD_HANDLERS["to"] = to_method


def to_method(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    if tuple(out_shape(ctx, node)) != lab.shape:
        raise NotHandled
    return lab


def arith_or_elementwise(ctx, node, args, kwargs):
    """``+ - * / //`` on ints measured from tensors (sizes), or element-wise on tensors.

    A size ``c`` measured on a prunable dimension stays meaningful through
    ``c * k``, ``c // k`` and ``c / k`` (it shrinks in proportion, e.g. channels
    per head), so the result keeps ``c``'s source. Any other arithmetic on it
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
    if len(srcs) == 1 and linear and not any(a.src is not None or a.tag is not None for a in szs if a is not srcs[0]):
        if (node.target is operator.truediv or node.target is operator.floordiv) and args[0] is not srcs[0]:
            pass  # k // c is not proportional to c: falls through to freezing it
        else:
            return Sz(value, src=srcs[0].src, derived=True)
    if srcs:
        ctx.freeze(op_name(ctx, node), "a channel count is used in arithmetic that does not follow pruning; "
                                       "that dimension is kept", srcs)
    return Sz(value)


SIZE_AWARE.add(arith_or_elementwise)

_register_elementwise()


# ----------------------------------------------------------------------------- reductions


def reduce_labels(ctx, lab: Labels, dims, keepdim: bool, new_shape, why: str) -> Labels:
    """Labels after reducing over ``dims``; labelled reduced dims are noted as cross-channel."""
    blocks = []
    for bdims, ids in lab.blocks:
        red = [k for k, d in enumerate(bdims) if d in dims]
        if red:
            ctx.note_cross(ids, why)
        if len(red) == len(bdims):
            continue
        if red:
            keep = [k for k in range(len(bdims)) if k not in red]
            arr = np.transpose(ids, keep + red).reshape([ids.shape[k] for k in keep] + [-1])
            if arr.shape[-1] > 1:
                ctx.sink.unify(arr[..., :1], arr)
            ids = arr[..., 0]
            bdims = tuple(bdims[k] for k in keep)
        if keepdim:
            nd = bdims
        else:
            nd = tuple(d - sum(1 for r in dims if r < d) for d in bdims)
        blocks.append((nd, ids))
    return Labels(tuple(new_shape), blocks)


def reduction(ctx, node, args, kwargs):
    """``sum/mean/amax/var/...(x, dim, keepdim)``; full reductions drop every label."""
    lab = need_labels(args[0])
    dim = kwargs.get("dim", args[1] if len(args) > 1 and not isinstance(args[1], (Labels, bool)) else None)
    keepdim = kwargs.get("keepdim", args[2] if len(args) > 2 and isinstance(args[2], bool) else False)
    if isinstance(dim, (str,)) or isinstance(dim, Labels):
        raise NotHandled
    dims = dims_arg(dim, lab.ndim) if dim is not None else list(range(lab.ndim))
    shape_meta = ctx.meta.get(node)
    name = getattr(node.target, "__name__", str(node.target))
    if isinstance(shape_meta, tuple) and shape_meta and shape_meta[0] == "tensor":
        return reduce_labels(ctx, lab, dims, bool(keepdim), shape_meta[1], f"{name} over channels")
    if isinstance(shape_meta, tuple) and len(shape_meta) == 2:  # (values, indices)
        shape = shape_meta[0][1]
        r = reduce_labels(ctx, lab, dims, bool(keepdim), shape, f"{name} over channels")
        return (r, Labels(r.shape, list(r.blocks)))
    raise NotHandled


def along_dim(ctx, node, args, kwargs):
    """``softmax/log_softmax/cumsum(x, dim)``: shape kept, values mix along ``dim``."""
    lab = need_labels(args[0])
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dim is None:
        raise NotHandled
    d = int_of(dim) % lab.ndim
    blk = lab.block_of(d)
    if blk is not None:
        ctx.note_cross(blk[1], f"{getattr(node.target, '__name__', node.target)} over channels")
    if tuple(out_shape(ctx, node)) != lab.shape:
        raise NotHandled
    return lab


def _register_reductions():
    import torch
    import torch.nn.functional as F

    names = ["sum", "mean", "amax", "amin", "max", "min", "std", "var", "norm", "prod", "logsumexp", "argmax",
             "argmin", "any", "all", "nansum", "nanmean", "median"]
    for n in names:
        f = getattr(torch, n, None)
        if f is not None:
            FUNCTION_HANDLERS[f] = reduction_or_binary
        METHOD_HANDLERS[n] = reduction_or_binary
    for n in ("softmax", "log_softmax", "cumsum", "cumprod", "softmin"):
        for ns in (torch, F):
            f = getattr(ns, n, None)
            if f is not None:
                FUNCTION_HANDLERS[f] = along_dim
        METHOD_HANDLERS[n] = along_dim


def reduction_or_binary(ctx, node, args, kwargs):
    """``torch.max(x, dim)`` reduces, ``torch.max(x, y)`` is element-wise."""
    if len(args) > 1 and isinstance(args[1], Labels) or isinstance(kwargs.get("other"), Labels):
        return elementwise(ctx, node, args, kwargs)
    return reduction(ctx, node, args, kwargs)


_register_reductions()


# ----------------------------------------------------------------------------- sizes


def size_of(ctx, lab: Labels, d: int) -> Sz:
    blk = lab.block_of(d)
    if blk is None:
        return Sz(lab.shape[d])
    dims, ids = blk
    axis = dims.index(d)
    rep = np.moveaxis(ids, axis, 0).reshape(ids.shape[axis], -1)[:, 0]
    return Sz(lab.shape[d], src=rep)


def size_method(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if dim is None:
        return tuple(size_of(ctx, lab, d) for d in range(lab.ndim))
    return size_of(ctx, lab, int_of(dim) % lab.ndim)


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


def dim_method(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    return Sz(lab.ndim)


def numel_method(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    ctx.fix(lab)  # the element count would change with any channel: keep them all
    return Sz(int(np.prod(lab.shape, dtype=np.int64)))


FUNCTION_HANDLERS[builtins.getattr] = getattr_fn
METHOD_HANDLERS["size"] = size_method
METHOD_HANDLERS["dim"] = dim_method
METHOD_HANDLERS["numel"] = numel_method
METHOD_HANDLERS["nelement"] = numel_method
SIZE_AWARE.update({size_method, getattr_fn, dim_method, numel_method})
