"""Convert a model to BWN or XNOR-Net: swap Conv2d/Linear layers, re-order XNOR blocks.

:func:`binarize` returns a converted copy (the caller's model is never changed):

1. It picks the ``nn.Conv2d`` (``groups=1``) and ``nn.Linear`` layers in registration
   order, keeping the first and the last one in full precision by default (as
   XNOR-Net does) and leaving out any named in ``exclude``. Grouped/depthwise
   convolutions stay full precision (a 3x3 depthwise filter has only 9 weights to
   binarize).
2. Each picked layer becomes a :class:`~prunekit.binary.layers.BinaryConv2d` /
   :class:`~prunekit.binary.layers.BinaryLinear` with the same weights.
3. XNOR mode only (``reorder=True``): the model is traced with ``torch.fx`` and, for
   each binary layer, the chain of single-use modules feeding it (pooling, activation,
   BatchNorm, dropout, flatten) is rearranged into seed 004's block order
   ``BN -> BinActiv -> BinConv -> Pool``:

   * activation modules in that chain are replaced by ``nn.Identity``: ``sign`` is the
     block's non-linearity, and ``sign(ReLU(x))`` would be ``+1`` everywhere;
   * the BatchNorm nearest to the layer (same channel count, no flatten in between) is
     moved into the layer's ``input_norm``, i.e. after the pooling and right before the
     binarization: "pooling directly after the convolution" and "BN before BinActiv
     for a zero-mean input" (seed 004). Without such a BatchNorm a new one is created.

   Functional activations (``F.relu`` in a ``forward``) and modules used more than
   once cannot be removed this way and are left alone (the layer's own BatchNorm
   still re-centres its input); untraceable models are converted without re-ordering,
   with a warning.

The conversion is recorded in ``model.prunekit_spec`` as
``{"kind": "binarize", "mode": ..., "keep_first_last": ..., "reorder": ..., "exclude": [...]}``
and replayed by :func:`prunekit.checkpoint.load`, so binarized checkpoints reload.

Example:
    >>> from prunekit import models
    >>> from prunekit.binary import binarize, binary_layers
    >>> net = models.create("lenet5", in_channels=1)
    >>> xnet = binarize(net, mode="xnor")
    >>> [name for name, _ in binary_layers(xnet)]
    ['conv2', 'fc1', 'fc2']
    >>> type(xnet.relu1).__name__          # sign replaces the ReLU feeding conv2
    'Identity'
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

from torch import nn

from prunekit.binary.layers import BINARY_LAYERS, BinaryConv2d, BinaryLinear, check_mode
from prunekit.errors import CheckpointError, ConfigError
from prunekit.surgery import replace_module
from prunekit.validate import check_bool

TRANSFORM_KIND = "binarize"

_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
          nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                nn.Hardtanh, nn.Hardswish, nn.Mish, nn.Softplus, nn.Sigmoid, nn.Tanh)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_PASS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_FLATTEN_METHODS = {"flatten", "view", "reshape"}


@dataclass(frozen=True)
class BinarizeOptions:
    """The recorded parameters of a conversion (the ``binarize`` transform of a model spec).

    Attributes:
        mode: ``"bwn"`` or ``"xnor"``.
        keep_first_last: leave the first and last Conv2d/Linear in full precision.
        reorder: XNOR only: re-order blocks to ``BN -> BinActiv -> BinConv -> Pool``.
        exclude: qualified names of layers to leave in full precision.
    """

    mode: str = "bwn"
    keep_first_last: bool = True
    reorder: bool = True
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        check_mode(self.mode)
        for key in ("keep_first_last", "reorder"):
            check_bool(f"binarize option {key!r}", getattr(self, key))
        if isinstance(self.exclude, str) or not all(isinstance(e, str) for e in self.exclude):
            raise ConfigError(f"binarize option 'exclude' must be a list of layer names, got {self.exclude!r}")
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def to_transform(self) -> dict:
        """The JSON-able transform dict stored in the model spec."""
        return {"kind": TRANSFORM_KIND, "mode": self.mode, "keep_first_last": self.keep_first_last,
                "reorder": self.reorder, "exclude": list(self.exclude)}

    @classmethod
    def from_transform(cls, t: dict) -> "BinarizeOptions":
        """Inverse of :meth:`to_transform`; unknown keys raise CheckpointError naming the key."""
        known = {"kind", "mode", "keep_first_last", "reorder", "exclude"}
        unknown = sorted(set(t) - known)
        if unknown:
            raise CheckpointError(f"binarize transform: unknown key(s) {', '.join(unknown)}")
        try:
            return cls(mode=t.get("mode", "bwn"), keep_first_last=t.get("keep_first_last", True),
                       reorder=t.get("reorder", True), exclude=tuple(t.get("exclude", ())))
        except ConfigError as e:
            raise CheckpointError(f"binarize transform: {e}") from None


@dataclass
class ReorderPlan:
    """What the XNOR re-ordering will do (see the module docstring).

    Attributes:
        move_norm: binary layer name -> name of the BatchNorm moved into its ``input_norm``.
        drop_activations: names of activation modules replaced by ``nn.Identity``.
        traced: False when ``torch.fx`` could not trace the model (nothing re-ordered).
        note: why not, when ``traced`` is False.
    """

    move_norm: dict[str, str] = field(default_factory=dict)
    drop_activations: list[str] = field(default_factory=list)
    traced: bool = True
    note: str = ""


def binarizable_layers(model: nn.Module) -> list[str]:
    """Qualified names of every ``nn.Conv2d`` and ``nn.Linear`` (exact types), registration order."""
    return [name for name, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]


def binary_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every binary layer of ``model``."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BINARY_LAYERS)]


def select_layers(model: nn.Module, opts: BinarizeOptions) -> tuple[list[str], dict[str, str]]:
    """Layers ``opts`` binarizes, and ``{name: reason}`` for those it keeps in full precision."""
    names = binarizable_layers(model)
    unknown = [e for e in opts.exclude if e not in names]
    if unknown:
        raise ConfigError(f"binarize: exclude names unknown layer(s) {', '.join(unknown)}; "
                          f"Conv2d/Linear layers: {', '.join(names) or '(none)'}")
    modules = dict(model.named_modules())
    kept: dict[str, str] = {}
    if opts.keep_first_last and names:
        kept[names[0]] = "first layer"
        kept[names[-1]] = "last layer"
    for e in opts.exclude:
        kept.setdefault(e, "excluded")
    for name in names:
        m = modules[name]
        if isinstance(m, nn.Conv2d) and name not in kept:
            if m.groups != 1:
                kept[name] = f"grouped convolution (groups={m.groups})"
            elif m.padding_mode != "zeros" or isinstance(m.padding, str):
                kept[name] = "padding other than explicit zeros"
    return [n for n in names if n not in kept], kept


def plan_reorder(model: nn.Module, layers: list[str]) -> ReorderPlan:
    """Trace ``model`` and find, for each of ``layers``, the BatchNorm to move and activations to drop."""
    import torch.fx

    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types on untraceable Python
        return ReorderPlan(traced=False, note=f"torch.fx could not trace the model ({type(e).__name__}: "
                                              f"{str(e).splitlines()[0][:120] if str(e) else ''})")
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    plan = ReorderPlan()
    wanted = set(layers)
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target not in wanted or not node.args:
            continue
        layer = modules[node.target]
        want_norm = nn.BatchNorm2d if isinstance(layer, nn.Conv2d) else nn.BatchNorm1d
        channels = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
        crossed_flatten = False
        cur = node.args[0]
        while isinstance(cur, torch.fx.Node) and len(cur.users) == 1 and cur.args:
            if cur.op == "call_module":
                mod = modules.get(cur.target)
                if isinstance(mod, _NORMS):
                    if (node.target not in plan.move_norm and not crossed_flatten and type(mod) is want_norm
                            and mod.num_features == channels and calls[cur.target] == 1):
                        plan.move_norm[node.target] = cur.target
                elif isinstance(mod, _ACTIVATIONS):
                    if calls[cur.target] == 1 and cur.target not in plan.drop_activations:
                        plan.drop_activations.append(cur.target)
                elif isinstance(mod, nn.Flatten):
                    crossed_flatten = True
                elif not isinstance(mod, _POOLS + _PASS):
                    break
            elif cur.op == "call_method" and cur.target in _FLATTEN_METHODS:
                crossed_flatten = True
            elif cur.op == "call_function" and getattr(cur.target, "__name__", "") in (
                    "flatten", "reshape", "relu", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "dropout"):
                crossed_flatten = crossed_flatten or cur.target.__name__ in ("flatten", "reshape")
            else:
                break
            cur = cur.args[0]
    return plan


def convert_(model: nn.Module, opts: BinarizeOptions) -> nn.Module:
    """Binarize ``model`` in place (the checkpoint transform); prefer :func:`binarize`."""
    if binary_layers(model):
        raise ConfigError("binarize: the model already has binary layers (it was binarized before)")
    layers, kept = select_layers(model, opts)
    if not layers:
        why = "; ".join(f"{n}: {r}" for n, r in kept.items()) or "the model has no Conv2d or Linear layer"
        raise ConfigError(f"binarize: no layer left to binarize ({why})")
    plan = ReorderPlan()
    if opts.mode == "xnor" and opts.reorder:
        plan = plan_reorder(model, layers)
        if not plan.traced:
            warnings.warn(f"binarize: blocks not re-ordered: {plan.note}", stacklevel=3)
    modules = dict(model.named_modules())
    for name in layers:
        old = modules[name]
        own_norm = name not in plan.move_norm
        if isinstance(old, nn.Conv2d):
            new = BinaryConv2d.from_float(old, opts.mode, input_norm=own_norm)
        else:
            new = BinaryLinear.from_float(old, opts.mode, input_norm=own_norm)
        if not own_norm:
            new.input_norm = modules[plan.move_norm[name]]
            replace_module(model, plan.move_norm[name], nn.Identity())
        replace_module(model, name, new)
    for name in plan.drop_activations:
        replace_module(model, name, nn.Identity())
    return model


def binarize(model: nn.Module, mode: str = "bwn", keep_first_last: bool = True, *, reorder: bool = True,
             exclude=()) -> nn.Module:
    """A BWN or XNOR-Net copy of ``model`` (Rastegari et al., ECCV 2016); ``model`` is unchanged.

    Args:
        model: any ``nn.Module``; models from :func:`prunekit.models.create` or
            :func:`prunekit.checkpoint.load` get the conversion recorded in their spec.
        mode: ``"bwn"`` (binary weights) or ``"xnor"`` (binary weights and inputs).
        keep_first_last: keep the first and last Conv2d/Linear in full precision.
        reorder: XNOR only: re-order blocks to ``BN -> BinActiv -> BinConv -> Pool``.
        exclude: names of further layers to keep in full precision.

    Example:
        >>> from prunekit import models
        >>> net = binarize(models.create("vgg11", in_channels=1, cfg=[8, "M", 16, 16]), "xnor")
        >>> net.prunekit_spec.transforms[-1]["mode"]
        'xnor'
    """
    from prunekit.checkpoint import get_spec

    opts = BinarizeOptions(mode=mode, keep_first_last=keep_first_last, reorder=reorder, exclude=tuple(exclude))
    spec = get_spec(model)
    new = convert_(copy.deepcopy(model), opts)
    if spec is not None:
        new.prunekit_spec = spec.with_transform(opts.to_transform())
    return new


def apply_binarize_transform(model: nn.Module, transform: dict) -> nn.Module:
    """The ``"binarize"`` entry of :data:`prunekit.checkpoint.TRANSFORMS` (converts in place)."""
    return convert_(model, BinarizeOptions.from_transform(transform))

