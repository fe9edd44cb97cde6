"""Wide inputs of residual branches: He et al.'s channel sampler (Channel Pruning, ICCV 2017, Sec. 3.3).

The first layer of a residual branch reads the residual stream, whose channels have
several readers (the shortcut, the next blocks), so the engine cannot remove them.
He et al. still prune that layer's *inputs*: a channel sampler before it picks the
channels it reads (chosen by the same LASSO as every other layer) while the stream
keeps its width. :func:`wide_input_layers` finds these layers; :func:`joint_counts`
turns a MACs target into removal counts for the prunable groups and the sampled
inputs together; the module swap is :func:`prunekit.surgery.select.select_inputs`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from prunekit.errors import PrunekitError
from prunekit.engine.policy import step_between


@dataclass(frozen=True)
class WideInput:
    """A layer whose input channels can be sampled although its input group cannot be pruned.

    Attributes:
        layer: qualified name of the Conv2d(groups=1)/Linear.
        group: the engine's group of its input channels (read by several layers).
        size: input channels of the layer.
    """

    layer: str
    group: int
    size: int


def wide_input_layers(model, base, layers) -> list[WideInput]:
    """The first layers of branches: they read a group with several readers and produce a prunable group.

    A layer qualifies when it is a Conv2d(groups=1) or Linear reading all channels of a
    group (channel ``c`` at input index ``c``) that at least one other layer reads too,
    and its own output channels form a group in ``layers`` (see ``prunable_layers``),
    i.e. it opens a branch whose inside is pruned. In a ResNet these are the first
    convolutions of the blocks (the bottleneck's 1x1 reduce); a projection shortcut or the
    classifier, whose outputs are not prunable, do not qualify.
    """
    import torch

    mods = dict(model.named_modules())
    produces = {m for p in layers for m in p.producers}
    out = []
    for g in base.groups:
        ins = [m for m in g.members if m.role == "in"]
        if len(ins) < 2 or g.size < 2:
            continue
        for m in ins:
            mod = mods.get(m.module)
            ok_conv = isinstance(mod, torch.nn.Conv2d) and mod.groups == 1 and mod.in_channels == g.size
            ok_lin = isinstance(mod, torch.nn.Linear) and mod.in_features == g.size
            identity = m.dim == 1 and np.array_equal(m.indices, np.arange(g.size)) \
                and np.array_equal(m.channels, m.indices)
            if (ok_conv or ok_lin) and identity and m.param == m.module + ".weight" and m.module in produces:
                out.append(WideInput(m.module, g.id, g.size))
    return out


def _n_remove(size: int, ratio: float) -> int:
    """Channels removed from ``size`` at ``ratio`` (the engine's rounding: floor, at least one kept)."""
    keep = size - int(math.floor(ratio * size + 1e-9))
    return size - max(1, keep)


class _Cost:
    """MACs of the conv/linear layers as a function of group removals and sampled inputs (engine analysis)."""

    def __init__(self, model, x, base, layers, wides) -> None:
        from prunekit.graph import analyze

        an = analyze(model, x)
        self.terms = list(an.macs_terms)
        self.shapes = dict(an.param_shapes)
        by_id = {g.id: g for g in base.groups}
        # per item: list of ((tensor, dim), indices removed per channel)
        self.items = []
        for p in layers:
            g = by_id[p.group]
            self.items.append([((m.param, m.dim), len(m.indices) / g.size) for m in g.members])
        for w in wides:
            self.items.append([((w.layer + ".weight", 1), 1.0)])
        self.base = self.macs(np.zeros(len(self.items)))

    def macs(self, counts) -> float:
        rem: dict = {}
        for item, n in zip(self.items, counts):
            for key, per in item:
                rem[key] = rem.get(key, 0.0) + per * float(n)
        total = 0.0
        for w, pos in self.terms:
            numel = 1.0
            for d, s in enumerate(self.shapes[w]):
                numel *= s - rem.get((w, d), 0.0)
            total += pos * numel
        return total


def joint_counts(model, x, layers, wides, *, macs=None, ratio=None, base=None, tolerance: float = 0.03,
                 max_ratio: float = 0.9):
    """``(counts, samples)``: channels to remove per prunable group and input channels to drop per wide layer.

    With ``ratio``: that fraction of every group and every wide input (the engine's
    rounding). With ``macs``: one uniform ratio for all of them, bisected until the
    conv/linear MACs (the engine's cost model) are ``macs`` of the original, then
    single-item steps to the closest fit, as the engine's own policy does.

    Raises:
        PrunekitError: no target given, or the target cannot be met within ``tolerance``.
    """
    from prunekit.methods.structured._common import skeleton

    sizes = [p.size for p in layers] + [w.size for w in wides]

    def at(r):
        return np.array([_n_remove(s, r) for s in sizes], dtype=np.int64)

    def split(c):
        return ({p.group: int(n) for p, n in zip(layers, c) if n > 0},
                {w.layer: int(n) for w, n in zip(wides, c[len(layers):]) if n > 0})

    if macs is None:
        if ratio is None:
            raise PrunekitError("give a MACs target (macs) or a ratio")
        return split(at(ratio))
    base = base if base is not None else skeleton(model, x)
    cost = _Cost(model, x, base, layers, wides)
    if cost.base <= 0:
        raise PrunekitError("cannot aim at a MACs target: the model has no countable MACs")

    def frac(c):
        return cost.macs(c) / cost.base

    lo, hi = 0, 1000
    if frac(at(0)) <= macs:
        return split(at(0))
    f_hi = frac(at(max_ratio))
    if f_hi > macs + tolerance:
        raise PrunekitError(f"MACs target {macs:g} cannot be met: pruning the branches and their inputs by "
                            f"{max_ratio:.0%} keeps {f_hi:.3f} of the original")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if frac(at(max_ratio * mid / 1000)) > macs:
            lo = mid
        else:
            hi = mid
    c_lo, c_hi = at(max_ratio * lo / 1000), at(max_ratio * hi / 1000)
    best = min(((c_lo, frac(c_lo)), (c_hi, frac(c_hi))), key=lambda t: abs(t[1] - macs))
    best = step_between(c_lo, c_hi, np.nonzero(c_hi > c_lo)[0], frac, macs, best)
    if abs(best[1] - macs) > tolerance:
        raise PrunekitError(f"MACs target {macs:g} cannot be met within {tolerance:.0%}: the nearest reachable "
                            f"is {best[1]:.3f}")
    return split(best[0])
