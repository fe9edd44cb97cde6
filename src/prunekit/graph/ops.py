"""Op handlers: how each traced op moves, ties or fixes channel labels.

Every handler is registered with one decorator, :func:`handles`, placed on its
definition and naming the ops it covers: tensor-method names as strings
(``"view"``), ``nn.Module`` subclasses (``nn.Conv2d``), any other callable
(``torch.cat``, ``operator.add``, an aten overload). Module handlers are called
``fn(ctx, node, module, args, kwargs)``, the others ``fn(ctx, node, args,
kwargs)``; ``args``/``kwargs`` hold :class:`~prunekit.graph.labels.Labels` for
tensors, :class:`~prunekit.graph.analysis.Sz` for ints, and plain values.

An op with no handler, or whose handler does not recognise its arguments
(:class:`NotHandled`), is *frozen*: every channel at its inputs is kept and its
outputs are rigid, recorded as a :class:`~prunekit.graph.analysis.FrozenRegion`.
That is what keeps the engine sound on models it has never seen: the worst case
is channels left unpruned, never a wrong model.
"""
from __future__ import annotations

import functools
import operator

import numpy as np
import torch
import torch.nn.functional as F

from prunekit.graph.analysis import Sz
from prunekit.graph.labels import Labels, broadcast_unify, leaves, rigid

# The three tables are private to the graph package and filled only by handles();
# run_node() looks a node up in the one its kind (call_module / call_function /
# call_method) selects.
MODULE_HANDLERS: dict = {}
FUNCTION_HANDLERS: dict = {}
METHOD_HANDLERS: dict = {}
# Handlers that read size (Sz) arguments themselves. For every other handler the
# sizes among its arguments are fixed after it runs: an op we do not model
# exactly must not see a channel count that later shrinks.
SIZE_AWARE: set = set()


class NotHandled(Exception):
    """Raised by a handler whose op form it does not support: the op is then frozen."""


def handles(*targets, sizes: bool = False):
    """Register the decorated function as the handler of ``targets``.

    Args:
        targets: tensor-method names (str), ``nn.Module`` subclasses, or callables;
            ``None`` entries are skipped (ops missing from this torch version).
        sizes: the handler reads :class:`Sz` size arguments itself (a property of
            the handler, so any registration of it may set it).

    Raises:
        ValueError: a target already has a handler (one op, one meaning).

    Example:
        >>> @handles(torch.roll, "roll")            # doctest: +SKIP
        ... def roll(ctx, node, args, kwargs): ...
    """
    def deco(fn):
        for t in targets:
            if t is None:
                continue
            if isinstance(t, str):
                table = METHOD_HANDLERS
            elif isinstance(t, type) and issubclass(t, torch.nn.Module):
                table = MODULE_HANDLERS
            else:
                table = FUNCTION_HANDLERS
            if t in table and table[t] is not fn:
                raise ValueError(f"{t!r} already has the handler {table[t].__name__}; cannot add {fn.__name__}")
            table[t] = fn
        if sizes:
            SIZE_AWARE.add(fn)
        return fn

    return deco


def existing(names, *namespaces) -> list:
    """The callables ``ns.name`` that exist, for every name and namespace, without repeats.

    ``torch.relu`` and ``torch.nn.functional.relu`` can be one object or two
    depending on the torch version; registering both spellings once each keeps
    :func:`handles` strict about duplicates.
    """
    out = []
    for name in names:
        for ns in namespaces:
            f = getattr(ns, name, None)
            if f is not None and not any(f is g for g in out):
                out.append(f)
    return out


def module_handler(module):
    """Handler for a module instance: exact torch.nn types, or user subclasses that keep the parent's forward."""
    load_handlers()
    for cls in type(module).__mro__:
        h = MODULE_HANDLERS.get(cls)
        if h is not None:
            if cls is type(module) or type(module).forward is cls.forward:
                return h
            return None
    return None


def is_handled_module(module) -> bool:
    return module_handler(module) is not None


@functools.lru_cache(maxsize=1)
def load_handlers() -> None:
    """Import every ``ops_*`` module once, so that their ``@handles`` registrations fill the tables."""
    from prunekit.graph import (  # noqa: F401  (importing them fills the tables)
        ops_aten, ops_functional, ops_index, ops_matmul, ops_nn, ops_shape, ops_values,
    )


def noop(ctx, node, args, kwargs):
    """Runtime checks (``torch._assert``, timm's ``_assert``): no channels involved, nothing returned."""
    return None


def _aten_fallback(target):
    """Aten ops (torch.export graphs) tagged point-wise are element-wise; ``*_assert`` calls are no-ops.

    A rule rather than table entries: there are hundreds of point-wise aten
    overloads and their tag says exactly what the handler needs to know.
    """
    name = getattr(target, "__name__", "")
    if name.startswith("_assert") or name.startswith("aten._assert") or name.startswith("sym_constrain"):
        return noop  # runtime checks (shapes, dtypes) export inserts: no channels involved
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
        handler = module_handler(module)
        if handler is None:
            handler = ctx.inherited.get(node.target)
        return handler, module
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
    load_handlers()
    meta = ctx.meta.get(node)
    if node.op == "placeholder":
        fqn = ctx.param_placeholders.get(node.target)
        if fqn is not None and fqn in ctx.params and node.users:  # an unused buffer is no channel
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
            from prunekit.graph.ops_values import python_value

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
        from prunekit.graph.inherited import channelwise_call

        out = channelwise_call(ctx, node, args, kwargs)  # a library function that passes channels through
        if out is not None:
            return out
    if node.op == "call_module" and node.target in ctx.opaque and node.target not in ctx.inherited:
        ctx.fix([args, kwargs])  # recorded as a frozen region at capture
        return ctx.rigid_like(meta)
    if _index_data_only(args, kwargs, meta):
        # masks, positions, token ids (HF attention-mask building: cumsum, diff,
        # index on int/bool tensors): no channel is at its inputs or outputs, so
        # nothing is kept and there is no frozen region to report
        return ctx.rigid_like(meta)
    ctx.freeze(op_name(ctx, node), reason + "; the channels at its inputs and outputs are kept", [args, kwargs])
    return ctx.rigid_like(meta)


def _index_data_only(args, kwargs, meta) -> bool:
    """Do an op's inputs carry no channel labels and are all its outputs integer or bool tensors?"""
    if any(lab.blocks for lab in tensors_in([args, kwargs])):
        return False
    if isinstance(meta, tuple) and meta and meta[0] == "tensor":
        metas = [meta]
    elif isinstance(meta, (list, tuple)):
        metas = [m for m in meta if isinstance(m, tuple) and m and m[0] == "tensor"]
        if len(metas) != len(meta):
            return False
    else:
        return False
    return bool(metas) and all(not (m[2].is_floating_point or m[2].is_complex) for m in metas)


def _holds_tensor(meta) -> bool:
    """Does a recorded value (see :func:`prunekit.graph.capture.summarize`) contain a tensor?"""
    if isinstance(meta, tuple) and meta and meta[0] == "tensor":
        return True
    if isinstance(meta, (list, tuple)):
        return any(_holds_tensor(m) for m in meta)
    if isinstance(meta, dict):
        return any(_holds_tensor(m) for m in meta.values())
    return False


def _param_labels(ctx, name):
    p = ctx.params[name]
    if not (p.is_floating_point() or p.is_complex()):
        # integer/bool buffers (position ids, token-type ids, index tables) hold
        # positions, never channels: rigid, so ops on them freeze nothing
        return rigid(tuple(p.shape))
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
    """Every labelled tensor inside nested lists/tuples/dicts (not inside slices)."""
    return [v for v in leaves(values, slices=False) if isinstance(v, Labels)]


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


# Element-wise ops by name, looked up in torch, torch.nn.functional and torch.special
# (whichever spellings exist in this torch version). Comparisons are element-wise
# on tensors; on Python ints they never reach a handler (see run_node).
_ELEMENTWISE_NAMES = [
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
# Tensor methods that keep the shape and act per element (dtype/device casts included).
_ELEMENTWISE_METHODS = _ELEMENTWISE_NAMES + [
    "contiguous", "clone", "detach", "float", "half", "double", "bfloat16", "int", "long", "bool", "cpu",
    "cuda", "requires_grad_", "masked_fill_", "fill_", "zero_", "type", "__and__", "__or__",
]
_OTHER_OPERATORS = [operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.and_, operator.or_,
                    operator.eq, operator.ne, operator.lt, operator.gt, operator.le, operator.ge, operator.invert]


@handles(*_OTHER_OPERATORS, *existing(_ELEMENTWISE_NAMES, torch, F, torch.special), *_ELEMENTWISE_METHODS)
def elementwise(ctx, node, args, kwargs):
    """Any op whose tensor inputs broadcast together into an output of the broadcast shape.

    Channel ``i`` of every input that has the channel dimension is tied to
    channel ``i`` of the output; a size-1 (broadcast) dimension carries nothing.
    """
    labs = tensors_in([args, kwargs])
    shape = out_shape(ctx, node)
    if not labs:
        return rigid(shape)
    for lab in labs:
        if lab.ndim > len(shape) or any(s not in (1, o) for s, o in zip(lab.shape[::-1], shape[::-1])):
            raise NotHandled
    return broadcast_unify(labs, shape, ctx.sink)


@handles("type_as", "to")
def first_only(ctx, node, args, kwargs):
    """Ops acting on their first tensor alone (``x.type_as(y)``, ``x.to(y)``): the other argument is a dtype source."""
    lab = need_labels(args[0])
    if tuple(out_shape(ctx, node)) != lab.shape:
        raise NotHandled
    return lab


# ----------------------------------------------------------------------------- reductions


# Reductions over a dim (``dim=None``: over everything) and ops that mix values
# along one dim without changing the shape (softmax): channels along that dim
# are noted as cross-channel (masking and removal then differ by design).
_REDUCTIONS = ["sum", "mean", "amax", "amin", "max", "min", "std", "var", "norm", "prod", "logsumexp", "argmax",
               "argmin", "any", "all", "nansum", "nanmean", "median"]
_ALONG_DIM = ["softmax", "log_softmax", "cumsum", "cumprod", "softmin"]


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


@handles(*existing(_ALONG_DIM, torch, F), *_ALONG_DIM)
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


@handles(*existing(_REDUCTIONS, torch), *_REDUCTIONS)
def reduction_or_binary(ctx, node, args, kwargs):
    """``torch.max(x, dim)`` reduces, ``torch.max(x, y)`` is element-wise (one name, two ops)."""
    if len(args) > 1 and isinstance(args[1], Labels) or isinstance(kwargs.get("other"), Labels):
        return elementwise(ctx, node, args, kwargs)
    return reduction(ctx, node, args, kwargs)
