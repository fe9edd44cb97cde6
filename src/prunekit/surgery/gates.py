"""Run-time channel gates: the module swap behind dynamic (input-dependent) channel pruning.

Feature Boosting and Suppression (Gao, Zhao, Dudziak, Mullins & Xu, "Dynamic Channel
Pruning: Feature Boosting and Suppression", ICLR 2019) puts beside each convolution a
small gate that looks at the layer's input (global average pool -> linear -> ReLU),
keeps the ``k`` most salient output channels of *this* input (k-winners-take-all) and
scales them by their saliency; the others are zero, so their filters -- and the next
layer's columns that read them -- need not be computed. Runtime Neural Pruning (Lin, Rao,
Lu & Zhou, NeurIPS 2017) decides the kept channels with a learned (RL) agent instead.

:func:`gate_convs` makes the swap: each gated convolution ``name`` (with the BatchNorm
that follows it, if any, which becomes ``nn.Identity``) becomes a :class:`GatedConv`, and
each layer that reads its channels becomes a :class:`GatedInput`. Both have two paths:

* ``masked`` (default, any batch): the dense convolution, its output multiplied by the gate
  (zeros for the dropped channels): the path used for training;
* ``skip`` (batch 1, eval): only the kept filters with a non-zero saliency are computed (their weights gathered into a
  smaller convolution), and the reader consumes only those input channels: the work really
  drops. Both paths give the same outputs (``tests/surgery/test_gates.py``).

The checkpoint transform ``dynamic_gates`` replays the swap, so a gated model saves and loads
with :mod:`prunekit.checkpoint` like any pruned one.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    >>> gate_convs(net, {"0": {"k": 2, "readers": ["2"]}})
    >>> type(net[0]).__name__, type(net[2]).__name__, net[0].k
    ('GatedConv', 'GatedInput', 2)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from prunekit.errors import PrunekitError

#: kind of the checkpoint transform recording the gates
TRANSFORM_KIND = "dynamic_gates"
MODES = ("masked", "skip")


class Selection:
    """The output channels a :class:`GatedConv` kept on the last input (shared with its readers; skip path)."""

    def __init__(self) -> None:
        self.index = None

    def __deepcopy__(self, memo):
        # a copied model gets its own slot (shared by the copies of its producer and readers through memo)
        new = Selection()
        memo[id(self)] = new
        return new


def topk_gate(saliency, k: int):
    """``(gate, index)``: the saliencies of the ``k`` largest entries per row, zeros elsewhere (k-WTA of FBS).

    ``index`` holds, per row, the kept channels in increasing order. Pure tensor math.

    Example:
        >>> g, i = topk_gate(torch.tensor([[0.25, 0.75, 0.5]]), 2)
        >>> g.tolist(), i.tolist()
        ([[0.0, 0.75, 0.5]], [[1, 2]])
    """
    idx = saliency.topk(k, dim=1).indices.sort(dim=1).values
    mask = torch.zeros_like(saliency).scatter_(1, idx, 1.0)
    return saliency * mask, idx


class GatedConv(nn.Module):
    """A Conv2d (+ BatchNorm) whose output channels an FBS gate keeps (``k`` per input) or suppresses.

    Gate: ``s = relu(W_g * mean_hw(x) + b_g)``; output ``bn(conv(x)) * topk(s)`` per channel.

    Args:
        conv: the convolution (``groups=1``).
        k: channels kept per input.
        bn: the BatchNorm2d that followed ``conv`` (applied before the gate, as FBS does), or None.
        in_slot: the :class:`Selection` of the gated layer whose channels this one reads, or None.
    """

    def __init__(self, conv: nn.Conv2d, k: int, bn=None, in_slot: Selection | None = None) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn
        self.k = int(k)
        self.gate = nn.Linear(conv.in_channels, conv.out_channels)
        # start close to "keep every channel at its trained scale": saliency ~1, small noise breaks ties
        nn.init.normal_(self.gate.weight, std=1e-3)
        nn.init.ones_(self.gate.bias)
        self.slot = Selection()
        self.in_slot = in_slot
        self.mode = "masked"
        self.last_gate = None
        self.last_macs = 0

    def saliency(self, x, in_index=None):
        """``relu(linear(mean_hw(x)))``; ``in_index``: the channels a compact ``x`` holds (skip path)."""
        w = self.gate.weight if in_index is None else self.gate.weight[:, in_index]
        return F.relu(F.linear(x.mean(dim=(2, 3)), w, self.gate.bias))

    def forward(self, x):
        if self.mode == "skip":
            return self._skip(x)
        s = self.saliency(x)
        g, _ = topk_gate(s, self.k)
        self.last_gate = g
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        return y * g[:, :, None, None]

    def _skip(self, x):
        if x.shape[0] != 1:
            raise PrunekitError(f"the skipping path runs one input at a time (batch 1), got batch {x.shape[0]}")
        in_idx = self.in_slot.index if self.in_slot is not None else None
        s = self.saliency(x, in_idx)
        _, idx = topk_gate(s, self.k)
        idx = idx[0]
        # a kept channel whose saliency is 0 is zero too (FBS's ReLU gate): skip it as well; keep one so that
        # the tensors never lose their channel dimension
        live = idx[s[0, idx] > 0]
        idx = live if live.numel() else idx[:1]
        # index_select copies only the kept rows, then the kept columns of those (cheaper than fancy indexing)
        w = self.conv.weight.index_select(0, idx)
        if in_idx is not None:
            w = w.index_select(1, in_idx)
        b = self.conv.bias[idx] if self.conv.bias is not None else None
        c = self.conv
        y = F.conv2d(x, w, b, c.stride, c.padding, c.dilation)
        if self.bn is not None:
            bn = self.bn
            y = F.batch_norm(y, bn.running_mean[idx], bn.running_var[idx],
                             bn.weight[idx] if bn.weight is not None else None,
                             bn.bias[idx] if bn.bias is not None else None, False, 0.0, bn.eps)
        self.slot.index = idx
        # what ran: the gate's linear layer and the smaller convolution (batch 1, groups 1)
        self.last_macs = int(s.numel() * w.shape[1]) + int(y.numel() * w[0].numel())
        return y * s[0, idx][None, :, None, None]

    def extra_repr(self) -> str:
        return f"k={self.k} of {self.conv.out_channels}, mode={self.mode}"


class GatedInput(nn.Module):
    """A Conv2d or Linear that reads a gated layer's channels; on the skip path only the kept ones.

    Args:
        layer: the reader (Conv2d with ``groups=1``, or Linear after a flatten: ``per_channel``
            consecutive features per channel).
        slot: the :class:`Selection` of the gated producer.
        per_channel: input features per channel (1 for a Conv2d; H*W for a Linear after flatten).
    """

    def __init__(self, layer, slot: Selection, per_channel: int = 1) -> None:
        super().__init__()
        self.layer = layer
        self.in_slot = slot
        self.per_channel = int(per_channel)
        self.mode = "masked"
        self.last_macs = 0

    def forward(self, x):
        if self.mode != "skip":
            return self.layer(x)
        idx = self.in_slot.index
        if isinstance(self.layer, nn.Conv2d):
            c = self.layer
            w = c.weight.index_select(1, idx)
            y = F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation)
        else:
            cols = (idx[:, None] * self.per_channel + torch.arange(self.per_channel)).reshape(-1)
            w = self.layer.weight.index_select(1, cols)
            y = F.linear(x, w, self.layer.bias)
        self.last_macs = int(y[:1].numel() * w[0].numel())
        return y


def _check_conv(name, mod):
    if not isinstance(mod, nn.Conv2d) or mod.groups != 1:
        raise PrunekitError(f"dynamic gates: {name!r} must be a Conv2d with groups=1, got {mod!r}")


def gate_convs(model, units: dict) -> None:
    """Put an FBS gate on each convolution of ``units``, in place (the module swap).

    Args:
        model: the module to change.
        units: conv name -> ``{"k": channels kept per input, "readers": [layers reading its channels],
            "bn": name of the BatchNorm2d after it or None, "per_channel": {reader: features per channel}}``.

    Raises:
        PrunekitError: unknown layers, unsupported layer types, ``k`` out of range.
    """
    from prunekit.surgery.apply import replace_module

    def get(name):
        try:
            return model.get_submodule(name)
        except AttributeError:
            raise PrunekitError(f"dynamic gates: the model has no submodule {name!r}") from None

    gated = {}
    for name, u in units.items():
        conv = get(name)
        _check_conv(name, conv)
        k = int(u["k"])
        if not 1 <= k <= conv.out_channels:
            raise PrunekitError(f"dynamic gates: k of {name!r} must be in [1, {conv.out_channels}], got {k}")
        bn = None
        if u.get("bn"):
            bn = get(u["bn"])
            if not isinstance(bn, nn.BatchNorm2d):
                raise PrunekitError(f"dynamic gates: {u['bn']!r} is not a BatchNorm2d")
            replace_module(model, u["bn"], nn.Identity())
        unit = GatedConv(conv, k, bn)
        replace_module(model, name, unit)
        gated[name] = unit
    for name, u in units.items():
        for reader in u.get("readers", []):
            per = int((u.get("per_channel") or {}).get(reader, 1))
            if reader in gated:
                gated[reader].in_slot = gated[name].slot
                continue
            layer = get(reader)
            if not (isinstance(layer, nn.Linear) or (isinstance(layer, nn.Conv2d) and layer.groups == 1)):
                raise PrunekitError(f"dynamic gates: reader {reader!r} must be a Conv2d (groups=1) or Linear")
            replace_module(model, reader, GatedInput(layer, gated[name].slot, per))


def skipped_macs(model) -> int:
    """MACs the gated layers of ``model`` ran on the last skip-path input (their ``last_macs``)."""
    return sum(m.last_macs for m in model.modules() if isinstance(m, (GatedConv, GatedInput)))


def set_mode(model, mode: str) -> None:
    """Switch every gated layer of ``model`` to ``"masked"`` (dense, zeroed channels) or ``"skip"`` (batch 1)."""
    if mode not in MODES:
        raise PrunekitError(f"gate mode must be one of {', '.join(MODES)}, got {mode!r}")
    for m in model.modules():
        if isinstance(m, (GatedConv, GatedInput)):
            m.mode = mode


def gates_transform(units: dict) -> dict:
    """The checkpoint transform recording ``units`` (see :func:`gate_convs`)."""
    return {"kind": TRANSFORM_KIND, "units": {str(k): dict(v) for k, v in units.items()}}


def _checkpoint_transform(model, transform: dict):
    """Replay the gates on a freshly built model (checkpoint loading)."""
    from prunekit.errors import CheckpointError

    units = transform.get("units")
    if not isinstance(units, dict):
        raise CheckpointError("dynamic_gates transform has no 'units' mapping")
    try:
        gate_convs(model, units)
    except (PrunekitError, KeyError, TypeError) as e:
        raise CheckpointError(f"dynamic_gates transform does not fit the model: {e}") from None
    return model


def _register_transform() -> None:
    from prunekit.checkpoint import TRANSFORMS

    if TRANSFORM_KIND not in TRANSFORMS:
        TRANSFORMS.add(TRANSFORM_KIND, _checkpoint_transform)


# prunekit.checkpoint imports this module lazily for a "dynamic_gates" transform.
_register_transform()
