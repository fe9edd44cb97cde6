"""Shape-only outputs of common ``torch.nn`` leaves on meta tensors.

The capture's shape pass only needs the shape and dtype of every value, but
running the real forward computes every convolution (on ResNet-50 at 224x224
that was most of the time spent in :func:`prunekit.graph.capture.capture`).
PyTorch's own meta kernels for convolution and batch norm are Python
reference implementations and barely faster than the real ops at batch 1, so
the layers that dominate CNNs get their output shape from the arithmetic here
instead. A layer whose input does not fit it (wrong channel count, dtype,
rank) gets no rule: the capture then falls back to the real forward, which
raises the error a user expects.
"""
from __future__ import annotations


class NoShapeRule(Exception):
    """The meta shape pass cannot continue; the capture runs the real forward instead."""


def _conv_out(module, x):
    """Output shape of a non-transposed ``nn.ConvNd`` on ``x`` (None when it does not fit)."""
    n = len(module.kernel_size)
    if x.dim() != n + 2 or x.shape[1] != module.in_channels or x.dtype != module.weight.dtype:
        return None
    spatial = []
    for i in range(n):
        size, k, s, d = x.shape[2 + i], module.kernel_size[i], module.stride[i], module.dilation[i]
        if module.padding == "same":
            out = size
        else:
            p = 0 if module.padding == "valid" else module.padding[i]
            # padding_mode only changes the padded values, never the amount
            out = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if out <= 0:
            return None
        spatial.append(out)
    return (x.shape[0], module.out_channels, *spatial)


def _same_shape_ok(module, x, ranks):
    if x.dim() not in ranks or not x.dtype.is_floating_point:
        return False
    num = getattr(module, "num_features", None)
    if num is not None and x.shape[1] != num:
        return False
    weight = getattr(module, "weight", None)
    return weight is None or weight.dtype == x.dtype


def _like(x):
    # torch.empty_like on meta runs Python reference code (strides, memory
    # format): ten times slower than the plain factory, and only shapes matter
    import torch

    return torch.empty(x.shape, dtype=x.dtype, device="meta")


def meta_same_shape_binary(target, args, kwargs):
    """Meta output of ``a + b`` (``operator.add``/``iadd``/``mul``) on equal shapes and dtypes, else None.

    A residual connection adds two tensors of one shape; PyTorch's meta kernel
    for it is Python broadcasting code, so this common case skips it.
    """
    import operator

    import torch

    if target not in (operator.add, operator.iadd, operator.mul, torch.add) or kwargs or len(args) != 2:
        return None
    a, b = args
    if (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.device.type == "meta"
            and b.device.type == "meta" and a.shape == b.shape and a.dtype == b.dtype):
        # in-place add returns its left operand, as the real one does
        return a if target is operator.iadd else _like(a)
    return None


def meta_leaf_output(module, args, kwargs):
    """The meta-tensor output of ``module(*args, **kwargs)``, or raise :class:`NoShapeRule`.

    Args:
        module: a leaf module of the traced graph.
        args: its positional inputs (meta tensors where the graph produced tensors).
        kwargs: its keyword inputs (only the empty dict has rules).

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        >>> meta_leaf_output(conv, (torch.empty(1, 3, 32, 32, device="meta"),), {}).shape
        torch.Size([1, 8, 16, 16])
    """
    import torch
    from torch import nn

    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor) or args[0].device.type != "meta":
        raise NoShapeRule(type(module).__name__)
    x = args[0]
    kind = type(module)
    if kind in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        shape = _conv_out(module, x)
        if shape is not None:
            return torch.empty(shape, dtype=x.dtype, device="meta")
    elif kind in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        ranks = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}[kind]
        if _same_shape_ok(module, x, ranks):
            return _like(x)
    elif kind in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU):
        if _same_shape_ok(module, x, range(0, 9)):
            # an in-place activation returns its input, as the real one does
            return x if getattr(module, "inplace", False) else _like(x)
    elif kind in (nn.GELU, nn.Sigmoid, nn.Tanh):
        if _same_shape_ok(module, x, range(0, 9)):
            return _like(x)
    elif kind is nn.Identity or (kind in (nn.Dropout, nn.Dropout2d) and not module.training):
        return x
    elif kind is nn.Linear:
        if x.dim() >= 1 and x.shape[-1] == module.in_features and x.dtype == module.weight.dtype:
            return torch.empty((*x.shape[:-1], module.out_features), dtype=x.dtype, device="meta")
    elif kind is nn.LayerNorm:
        n = len(module.normalized_shape)
        if (x.dim() >= n and tuple(x.shape[x.dim() - n:]) == tuple(module.normalized_shape)
                and _same_shape_ok(module, x, range(n, 9))):
            return _like(x)
    elif kind is nn.GroupNorm:
        if x.dim() >= 2 and x.shape[1] == module.num_channels and _same_shape_ok(module, x, range(2, 9)):
            return _like(x)
    elif kind in (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten):
        # parameter-free: their own meta kernels are cheap enough
        return module(x)
    raise NoShapeRule(type(module).__name__)


def meta_module_call(module, args, kwargs):
    """Run a ``torch.nn`` layer without a shape rule on meta tensors, its weights seen as meta too.

    ``torch.func.functional_call`` swaps in meta copies of the parameters and
    buffers (shape only, no data) for this one call, so layers such as
    ``Embedding``, ``PReLU``, ``ConvTranspose2d``, ``InstanceNorm2d`` or
    ``MultiheadAttention`` keep the shape pass on meta tensors. User modules are
    never run this way (their forward could keep a meta tensor in the model);
    they raise :class:`NoShapeRule`, and so does a layer whose forward fails on meta.

    Example:
        >>> import torch
        >>> emb = torch.nn.Embedding(10, 4)
        >>> meta_module_call(emb, (torch.empty(2, 3, dtype=torch.long, device="meta"),), {}).shape
        torch.Size([2, 3, 4])
    """
    import torch

    if not type(module).__module__.startswith("torch.nn."):
        raise NoShapeRule(type(module).__name__)
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    try:
        return torch.func.functional_call(module, {k: v.to("meta") for k, v in tensors.items()}, args, kwargs)
    except Exception as e:  # noqa: BLE001 - the real forward then runs (and raises what users expect)
        raise NoShapeRule(f"{type(module).__name__} on meta tensors: {type(e).__name__}: {e}") from e
