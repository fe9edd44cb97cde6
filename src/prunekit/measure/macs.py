"""Multiply-accumulate (MAC) counts, total and per layer, from ``torch.utils.flop_counter``.

``FlopCounterMode`` counts the FLOPs of every matrix multiply, convolution and
attention kernel at the aten level (2 FLOPs per multiply-accumulate; bias adds,
activations, pooling, normalisation and element-wise ops count 0). prunekit
reports MACs = FLOPs / 2, the unit pruning papers quote (e.g. "ResNet-56:
125M FLOPs" in He et al. 2017 are MACs).

Attribution: forward hooks keep a stack of the modules being executed; every
counted op is charged to the innermost module running it, so a ``Conv2d`` in
``layer1.0`` is reported once under ``"layer1.0.conv1"`` and never again under
``"layer1.0"`` or ``"layer1"``. Ops a container runs in its own ``forward``
(e.g. a functional ``F.linear``) are charged to that container, and ops of the
root's own ``forward`` to the name ``""``. The per-layer values therefore sum
to the total exactly.

Custom layers (e.g. binarized convolutions, whose multiplies are XNOR +
popcount) can report their own op kinds through :func:`register_op_counter`.

Example:
    >>> import torch, torch.nn as nn
    >>> rep = count_macs(nn.Conv2d(3, 8, 3, padding=1), torch.zeros(1, 3, 8, 8))
    >>> rep.total == 8 * 3 * 9 * 64
    True
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from prunekit.errors import ConfigError
from prunekit.registry import Registry

# fn(module, inputs: tuple, output) -> {"macs": float MACs (optional), "<kind>": count, ...}
OpCounterFn = Callable[[Any, tuple, Any], Mapping[str, int]]


@dataclass(frozen=True)
class OpCounterEntry:
    """A registered op counter: the module class it applies to (and its subclasses) and the function."""

    module_type: type
    fn: OpCounterFn


# Keyed by "module.QualName" of the layer class; filled by the modules that
# define custom layers, at their import (so any model using the layer has it).
OP_COUNTERS: Registry[OpCounterEntry] = Registry("op counter")


def _type_key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_op_counter(module_type: type, fn: OpCounterFn | None = None):
    """Report the ops of ``module_type`` layers (and subclasses) with ``fn`` instead of the flop counter.

    ``fn(module, inputs, output)`` is called after each forward of such a layer
    and returns a mapping of op kind to count for that call:

    * ``"macs"``: the layer's floating-point MACs. If present it *replaces* what
      the flop counter measured inside the layer (including its children); if
      absent the measured MACs are kept.
    * any other key (e.g. ``"binary_ops"``, ``"popcounts"``): an extra op kind,
      reported per layer and in total beside the MACs (see
      :attr:`MacsReport.extra_ops` and :attr:`MacsReport.extra_totals`).

    Usable as a decorator. Registering the same class twice raises ``KeyError``.

    Example (an XNOR convolution whose float conv is only an emulation):
        >>> class XnorConv(nn.Conv2d): ...                      # doctest: +SKIP
        >>> @register_op_counter(XnorConv)                       # doctest: +SKIP
        ... def _count(m, inputs, out):
        ...     k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        ...     return {"macs": 0, "binary_ops": out.numel() * k}
    """
    if not isinstance(module_type, type):
        raise TypeError(f"register_op_counter needs a module class, got {module_type!r}")

    def decorator(f: OpCounterFn) -> OpCounterFn:
        if not callable(f):
            raise TypeError(f"op counter for {module_type.__name__} must be callable, got {f!r}")
        OP_COUNTERS.add(_type_key(module_type), OpCounterEntry(module_type, f))
        return f

    return decorator if fn is None else decorator(fn)


def find_op_counter(module, overrides: Mapping[type, OpCounterFn] | None = None) -> OpCounterFn | None:
    """The counter for ``module``'s class or its nearest registered base class (``overrides`` first), or None."""
    for cls in type(module).__mro__:
        if overrides and cls in overrides:
            return overrides[cls]
        key = _type_key(cls)
        if key in OP_COUNTERS:
            entry = OP_COUNTERS.get(key)
            if entry.module_type is cls:
                return entry.fn
    return None


@dataclass
class MacsReport:
    """MACs of one forward pass on a given input.

    Attributes:
        total: float multiply-accumulates of the whole pass (sum of ``per_layer``).
        per_layer: qualified module name -> MACs charged to it (innermost module;
            see the module docstring), in execution order; layers with no
            counted ops (ReLU, BatchNorm, pooling) are left out.
        layer_types: qualified module name -> class name, for every layer listed
            in ``per_layer`` or ``extra_ops``.
        extra_ops: qualified module name -> {op kind: count} reported by custom
            op counters (:func:`register_op_counter`), e.g. ``{"binary_ops": n}``.
        batch_size: leading dimension of the input the counts were taken on.
    """

    total: int
    per_layer: dict[str, int]
    layer_types: dict[str, str] = field(default_factory=dict)
    extra_ops: dict[str, dict[str, int]] = field(default_factory=dict)
    batch_size: int = 1

    @property
    def flops(self) -> int:
        """FLOPs counted the flop counter's way: 2 per MAC."""
        return 2 * self.total

    @property
    def per_sample(self) -> float:
        """MACs per input sample (``total / batch_size``)."""
        return self.total / self.batch_size

    @property
    def per_type(self) -> dict[str, int]:
        """MACs summed by layer class name, e.g. ``{"Conv2d": ..., "Linear": ...}``, largest first."""
        acc: dict[str, int] = collections.defaultdict(int)
        for name, macs in self.per_layer.items():
            acc[self.layer_types.get(name, "?")] += macs
        return dict(sorted(acc.items(), key=lambda kv: -kv[1]))

    @property
    def extra_totals(self) -> dict[str, int]:
        """Each extra op kind summed over layers, e.g. ``{"binary_ops": ...}``."""
        acc: dict[str, int] = collections.defaultdict(int)
        for counts in self.extra_ops.values():
            for kind, n in counts.items():
                acc[kind] += n
        return dict(acc)

    def to_dict(self) -> dict:
        """JSON-able form; ``per_type``, ``extra_totals`` and ``flops`` are included for readers, ignored on load."""
        return {"total": self.total, "flops": self.flops, "batch_size": self.batch_size,
                "per_layer": dict(self.per_layer), "layer_types": dict(self.layer_types),
                "per_type": self.per_type, "extra_ops": {k: dict(v) for k, v in self.extra_ops.items()},
                "extra_totals": self.extra_totals}

    @classmethod
    def from_dict(cls, d: Mapping) -> "MacsReport":
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError naming the key."""
        known = {"total", "flops", "batch_size", "per_layer", "layer_types", "per_type", "extra_ops", "extra_totals"}
        for key in d:
            if key not in known:
                raise ConfigError(f"MacsReport: unknown key {key!r}")
        try:
            return cls(total=int(d["total"]), per_layer={str(k): int(v) for k, v in d["per_layer"].items()},
                       layer_types={str(k): str(v) for k, v in d.get("layer_types", {}).items()},
                       extra_ops={str(k): {str(a): int(b) for a, b in v.items()}
                                  for k, v in d.get("extra_ops", {}).items()},
                       batch_size=int(d.get("batch_size", 1)))
        except KeyError as e:
            raise ConfigError(f"MacsReport: missing key {e.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"MacsReport: malformed value ({e})") from None


@dataclass
class _Frame:
    """One module on the execution stack while counting."""

    name: str
    start_flops: int
    counter: OpCounterFn | None
    inside_custom: bool  # an enclosing module has its own op counter: do not report this one separately
    child_flops: int = 0


def _check_counts(module, counts) -> dict[str, int]:
    if not isinstance(counts, Mapping):
        raise TypeError(f"op counter for {type(module).__name__} returned {type(counts).__name__}, expected a dict")
    out = {}
    for kind, n in counts.items():
        if not isinstance(kind, str) or isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise TypeError(f"op counter for {type(module).__name__} returned {kind!r}: {n!r}; "
                            "expected str keys and non-negative int counts")
        out[kind] = n
    return out


def count_macs(model, example_input, *, op_counters: Mapping[type, OpCounterFn] | None = None) -> MacsReport:
    """Count the MACs of one forward pass of ``model`` on ``example_input``.

    The model runs once in eval mode under ``torch.no_grad()`` (its train/eval
    flags are restored afterwards). Counts scale with the batch size of
    ``example_input``; :attr:`MacsReport.per_sample` divides it out.

    Args:
        model: an ``nn.Module``.
        example_input: a tensor, a tuple of positional inputs, or a dict of keyword inputs.
        op_counters: per-call ``{layer class: fn}`` taking precedence over
            :func:`register_op_counter` registrations.

    Example:
        >>> import torch, torch.nn as nn
        >>> count_macs(nn.Linear(10, 5), torch.zeros(1, 10)).per_layer
        {'': 50}
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from prunekit.measure._utils import batch_size_of, call_model, eval_mode

    flop_counter = FlopCounterMode(display=False)
    stack: list[_Frame] = []
    per_layer: dict[str, int] = collections.defaultdict(int)
    extra: dict[str, dict[str, int]] = {}
    layer_types: dict[str, str] = {}

    def make_hooks(name: str, module):
        counter = find_op_counter(module, op_counters) or _builtin_counter(module)

        def pre_hook(mod, args):
            inside = bool(stack) and (stack[-1].counter is not None or stack[-1].inside_custom)
            stack.append(_Frame(name, flop_counter.get_total_flops(), counter, inside))

        def post_hook(mod, args, output):
            frame = stack.pop()
            inclusive = flop_counter.get_total_flops() - frame.start_flops
            if stack:
                stack[-1].child_flops += inclusive
            if frame.inside_custom:
                return  # charged to the enclosing custom-counted layer
            kinds: dict[str, int] = {}
            if frame.counter is None:
                macs = (inclusive - frame.child_flops) // 2
            else:
                kinds = _check_counts(mod, frame.counter(mod, args, output))
                macs = kinds.pop("macs", inclusive // 2)
            if macs:
                per_layer[frame.name] += macs
            if any(kinds.values()):
                slot = extra.setdefault(frame.name, {})
                for kind, n in kinds.items():
                    slot[kind] = slot.get(kind, 0) + n
            if macs or any(kinds.values()):
                layer_types[frame.name] = type(mod).__name__

        return pre_hook, post_hook

    handles = []
    try:
        seen: set[int] = set()
        for name, module in model.named_modules():
            if id(module) in seen:
                continue
            seen.add(id(module))
            pre, post = make_hooks(name, module)
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post))
        with eval_mode(model), torch.no_grad(), _ParamsWithoutGrad(model), flop_counter:
            call_model(model, example_input)
    finally:
        for h in handles:
            h.remove()
    per_layer_plain = dict(per_layer)
    return MacsReport(total=sum(per_layer_plain.values()), per_layer=per_layer_plain,
                      layer_types=layer_types, extra_ops=extra, batch_size=batch_size_of(example_input))


def _builtin_counter(module) -> OpCounterFn | None:
    """Counters prunekit needs for torch.nn layers whose eval-mode kernels the flop counter cannot see."""
    import torch

    if isinstance(module, torch.nn.MultiheadAttention):
        return mha_macs
    return None


def mha_macs(module, inputs: tuple, output) -> dict:
    """MACs of one ``nn.MultiheadAttention`` call, computed from its shapes.

    In eval mode under ``no_grad`` the module runs its fused fast path
    (``torch._native_multi_head_attention``), which the flop counter does not
    count: attention would weigh 0 MACs and MACs targets would ignore it. The
    count here is what the flop counter measures on the slow path: the q/k/v
    projections, ``q @ k^T``, ``attn @ v`` and the output projection.
    Returns ``{}`` (keep the measured count) when q/k/v were not passed positionally.
    """
    if len(inputs) < 3:
        return {}
    q, k, v = inputs[:3]
    unbatched = q.dim() == 2
    seq = 0 if unbatched or not module.batch_first else 1
    batch = 1 if unbatched else q.shape[1 - seq]
    lq, ls = q.shape[seq], k.shape[seq]
    e = module.embed_dim
    macs = lq * e * e + ls * module.kdim * e + ls * module.vdim * e  # in-projections
    macs += 2 * lq * ls * e  # scores and the weighted sum, over all heads
    macs += lq * e * e  # out_proj
    return {"macs": int(batch * macs)}


class _ParamsWithoutGrad:
    """Parameters temporarily marked ``requires_grad=False`` while counting.

    The flop counter's module tracker hooks every module input that requires
    grad; a parameter passed straight into a submodule (timm's CaiT and PiT pass
    their class token) has no autograd node under ``no_grad`` and makes it fail
    ("Expected gradient function to be set"). Counting needs no gradients.
    """

    def __init__(self, model):
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)
        return False
