"""Subclasses of handled torch.nn layers whose own ``forward`` torch.fx cannot trace.

Model libraries subclass ``nn.Conv2d``, ``nn.AvgPool2d``... to change what happens
around the layer's core, e.g. timm's ``Conv2dSame`` and ``AvgPool2dSame`` compute
TensorFlow-style "same" padding from the input size at run time, which torch.fx
cannot trace (a Python branch on a size). Such a module is kept as one call in the
graph; before it is frozen, :func:`verify` checks numerically that it treats
channels exactly as its torch.nn parent does, on a copy and an input of the
recorded shape. When it does, the analysis handles the call with the parent's
handler, and pruning it is exactly what pruning the parent would be. When it does
not (a weight standardisation over input channels, a grouped layer), it stays
frozen and the reason says why.
"""
from __future__ import annotations

import copy

#: relative difference allowed between removing channels and zeroing them (float32 sums in another order)
TOLERANCE = 1e-4


def handled_parent(module, handlers: dict) -> type | None:
    """The first class above ``type(module)`` that has a handler in ``handlers`` (class -> handler), if any."""
    for parent in type(module).__mro__[1:]:
        if parent in handlers:
            return parent
    return None


def inherit(ctx, nodes, opaque: dict, handlers: dict) -> tuple[dict, dict]:
    """Which modules fx could not trace prune like their handled parent class.

    Returns ``(handlers, reasons)``: qualified name -> the parent's handler for
    the verified ones, and qualified name -> why not for those with a handled
    parent that failed :func:`verify` (added to their frozen region's reason).
    """
    found, reasons = {}, {}
    for node in nodes:
        name = node.target
        if node.op != "call_module" or name not in opaque or opaque[name] == "requested" or name in found:
            continue
        module = ctx.modules.get(name)
        parent = handled_parent(module, handlers) if module is not None else None
        if parent is None:
            continue
        if len(node.args) != 1 or node.kwargs:
            reasons[name] = f"it is called with more than one input, unlike {parent.__name__}"
            continue
        meta = ctx.meta.get(node.args[0])
        if not (isinstance(meta, tuple) and meta and meta[0] == "tensor"):
            reasons[name] = "its input is not one tensor"
            continue
        why = verify(module, parent, meta[1])
        if why is None:
            found[name] = handlers[parent]
            reasons.pop(name, None)
        else:
            reasons[name] = why
    return found, reasons


def _channel_dim(parent) -> int:
    import torch.nn as nn

    return -1 if issubclass(parent, nn.Linear) else 1


def _slices(module, parent, channels_in: int):
    """``(kept, removed, keep_in, keep_out)`` for dropping one input and one output channel; None if unsupported."""
    import torch.nn as nn

    params = {n for n, p in module.named_parameters(recurse=False)}
    buffers = {n for n, b in module.named_buffers(recurse=False)}
    if issubclass(parent, nn.modules.conv._ConvNd) and not module.transposed or issubclass(parent, nn.Linear):
        w = module.weight
        out_ch, in_per_group = int(w.shape[0]), int(w.shape[1])
        groups = getattr(module, "groups", 1)
        if out_ch < 2 or channels_in < 2:
            return None
        keep_out = list(range(1, out_ch))
        if groups == 1:
            keep_in = list(range(0, channels_in - 1))
            kept = {("weight", 0): keep_out, ("weight", 1): keep_in}
        elif in_per_group == 1 and out_ch == groups == channels_in:  # depthwise: a channel is one group
            keep_in = keep_out
            kept = {("weight", 0): keep_out}
        else:
            return None
        if "bias" in params:
            kept[("bias", 0)] = keep_out
        return kept, keep_in, keep_out
    if not params and not buffers:  # a channel-wise op without tensors (pooling): channels pass through
        keep = list(range(1, channels_in))
        return {}, keep, keep
    if issubclass(parent, nn.modules.batchnorm._NormBase):
        keep = list(range(1, channels_in))
        kept = {(n, 0): keep for n in ("weight", "bias", "running_mean", "running_var") if n in params | buffers}
        return kept, keep, keep
    return None


def verify(module, parent, input_shape: tuple) -> str | None:
    """Does ``module`` prune like ``parent``? None when it does, else the reason it does not.

    Removing an input and an output channel (:func:`prunekit.surgery.apply.slice_model`
    on a copy, run on the input without that channel) must give what zeroing them
    gives (the input channel zeroed, the filter zeroed) within :data:`TOLERANCE`,
    relative, on a random input of ``input_shape``.
    """
    import torch

    from prunekit.surgery.apply import mask_model, slice_model

    d = _channel_dim(parent)
    if len(input_shape) < 2:
        return "its input has no channel dimension"
    spec = _slices(module, parent, int(input_shape[d]))
    if spec is None:
        return f"its {parent.__name__} form (grouped, transposed or too narrow) is not checked"
    kept, keep_in, keep_out = spec
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*input_shape, generator=gen)
    small, masked = copy.deepcopy(module).eval(), copy.deepcopy(module).eval()
    removed = {}
    for (name, dim), keep in kept.items():
        size = getattr(module, name).shape[dim]
        removed[(name, dim)] = sorted(set(range(size)) - set(keep))
    try:
        slice_model(small, kept)
        mask_model(masked, {k: v for k, v in removed.items() if k[0] in ("weight", "bias")})
        x_masked = x.clone()
        x_masked.index_fill_(d, torch.tensor(sorted(set(range(x.shape[d])) - set(keep_in))), 0.0)
        with torch.no_grad():
            ref = masked(x_masked).index_select(d, torch.tensor(keep_out))
            out = small(x.index_select(d, torch.tensor(keep_in)))
    except Exception as e:  # noqa: BLE001 - a module that cannot run narrower does not prune like its parent
        return f"it does not run with a channel removed ({type(e).__name__}: {str(e)[:80]})"
    if not isinstance(out, torch.Tensor) or out.shape != ref.shape:
        return f"removing a channel does not remove exactly that channel of its output like {parent.__name__}"
    diff = _rel_diff(out, ref)
    if not diff <= TOLERANCE:
        return (f"removing a channel differs from zeroing it by {diff:.1e} (relative), unlike {parent.__name__} "
                "(the forward mixes channels, e.g. normalises weights over them)")
    return None


def channelwise_call(ctx, node, args, kwargs):
    """Labels for a call the engine has no handler for, when a check shows it passes a channel dim through.

    A library function kept as one call (timm's ``resample_abs_pos_embed_nhwc``,
    which resizes a position table over its spatial dims) is run on a random
    input of the recorded shape and again with channels removed along ``d``; if
    the second result equals the first with those channels removed (within
    :data:`TOLERANCE`, relative), dim ``d`` passes through channel by channel and
    keeps its channels. Only calls with one tensor argument are checked (the
    other arguments take their values on the example inputs). Returns None when
    the check does not apply or fails (the caller freezes the call).
    """
    import torch
    import torch.fx as fx

    from prunekit.graph.labels import Labels, leaves

    if node.op != "call_function" or not args or not isinstance(args[0], Labels):
        return None
    if any(isinstance(v, Labels) for v in leaves([list(args[1:]), kwargs])):
        return None
    x, meta = args[0], ctx.meta.get(node)
    if not (isinstance(meta, tuple) and meta and meta[0] == "tensor") or len(meta[1]) != x.ndim:
        return None
    out_shape = tuple(meta[1])
    dims = [d for dims, _ in x.blocks if len(dims) == 1 for d in dims if x.shape[d] == out_shape[d] and x.shape[d] > 2]
    if not dims:
        return None
    d = dims[-1]
    const_args = tuple(_concrete(ctx, a) for a in node.args[1:])
    const_kwargs = {k: _concrete(ctx, v) for k, v in node.kwargs.items()}
    if any(isinstance(v, fx.Node) for v in leaves([list(const_args), const_kwargs])):
        return None
    gen = torch.Generator().manual_seed(0)
    xr = torch.randn(*x.shape, generator=gen)
    keep = torch.tensor([i for i in range(x.shape[d]) if i not in (0, x.shape[d] // 2)])
    try:
        with torch.no_grad():
            full = node.target(xr, *const_args, **const_kwargs)
            part = node.target(xr.index_select(d, keep), *const_args, **const_kwargs)
    except Exception:  # noqa: BLE001 - a call that cannot run narrower does not pass channels through
        return None
    if not (isinstance(full, torch.Tensor) and isinstance(part, torch.Tensor)) or tuple(full.shape) != out_shape:
        return None
    ref = full.index_select(d, keep)
    if ref.shape != part.shape:
        return None
    if not _rel_diff(part, ref) <= TOLERANCE:
        return None
    for bdims, ids in x.blocks:
        if bdims != (d,):
            ctx.sink.fix(ids)
    return Labels(out_shape, [((d,), ids) for bdims, ids in x.blocks if bdims == (d,)])


def _rel_diff(out, ref) -> float:
    """Largest absolute difference relative to ``ref``'s largest magnitude (NaN stays NaN: never within tolerance)."""
    return float((out - ref).abs().max()) / (float(ref.abs().max()) or 1.0)


def _concrete(ctx, a):
    """A node argument with every size node replaced by its value on the example inputs."""
    import torch.fx as fx

    if isinstance(a, fx.Node):
        v = ctx.meta.get(a)
        return v if isinstance(v, (int, float, bool, tuple, list)) and not (isinstance(v, tuple) and v
                                                                            and v[0] == "tensor") else a
    if isinstance(a, (list, tuple)):
        return type(a)(_concrete(ctx, x) for x in a)
    if isinstance(a, dict):
        return {k: _concrete(ctx, v) for k, v in a.items()}
    return a
