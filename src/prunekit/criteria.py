"""Channel importance criteria: pure functions from a group's weight slices to one score per channel.

A coupling group (see :mod:`prunekit.graph`) owns slices of several tensors: the
filters that *produce* its channels (role ``"out"``), the columns that *consume*
them (``"in"``), norm scales (``"norm"``), biases and running statistics. The
planner gathers them into a :class:`GroupTensors`: for member ``m``,
``weights[m]`` is a ``(G, k_m)`` matrix whose row ``c`` is everything that
member holds for channel ``c`` (all indices mapped to it, flattened).

Every criterion returns a ``(G,)`` tensor; **lower means less important**.
The *reduction* over members is part of each criterion's definition:

========== ================================================================ ======================================
name       per-member score                                                 reduction over members
========== ================================================================ ======================================
l1         L1 norm of the channel's filter (Li et al., ICLR 2017)           mean over producing weights (``out``)
l2         L2 norm of the filter                                            mean over producing weights
fpgm       distance to the other filters, i.e. to the geometric median      sum over producing weights
           (He et al., CVPR 2019)
bn_scale   ``|gamma|`` of the channel's norm layer (Liu et al., Network     mean over norm members; groups with no
           Slimming, ICCV 2017)                                             norm fall back to ``l1``
taylor     ``(sum_s g_s w_s)^2`` over every parameter of the channel        the sum runs over all members
           (Molchanov et al., CVPR 2019, first order, group form)
lamp       ``l2`` squared, then LAMP-normalised within the group:           as ``l2``
           ``s_i / sum_{s_j >= s_i} s_j`` (Lee et al., ICLR 2021)
random     uniform noise from a seeded generator                            -
snip       ``|g w|`` summed over every parameter of the channel (Lee et al.,  the sum runs over all members
           SNIP, ICLR 2019)
grasp      ``w (H g)`` summed likewise (Wang et al., GraSP, ICLR 2020; the     the sum runs over all members
           negative of the paper's score, so lower = prune)
synflow    ``|w dR/dw|`` on the all-ones input, summed likewise (Tanaka et     the sum runs over all members
           al., SynFlow, NeurIPS 2020; data-free)
========== ================================================================ ======================================

``snip``, ``grasp`` and ``synflow`` read per-parameter saliencies that the planner
computes with :mod:`prunekit.saliency` (listed in :data:`SALIENCY_CRITERIA`) and hands
over in ``GroupTensors.grads``.

When a group has no producing weight (e.g. a channel set only read by
consumers), ``l1``/``l2``/``fpgm`` use every weight member instead.

Register your own with ``@CRITERIA.register("name")``.

Example:
    >>> import torch
    >>> g = GroupTensors(weights=[torch.tensor([[1., -1.], [3., 0.]])], grads=[None], roles=["out"], params=["w"])
    >>> CRITERIA.get("l1")(g).tolist()
    [2.0, 3.0]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from prunekit.registry import Registry

CRITERIA: Registry[Callable] = Registry("criterion")

#: criteria that need gradients (the planner then asks for calibration batches)
NEEDS_GRADIENTS = frozenset({"taylor"})

#: criteria whose ``grads`` are per-parameter saliencies of :mod:`prunekit.saliency` (same name)
SALIENCY_CRITERIA = frozenset({"snip", "grasp", "synflow"})


@dataclass
class GroupTensors:
    """The slices of one group, channel-major.

    Attributes:
        weights: per member, a ``(G, k)`` tensor (row = one channel).
        grads: per member, the matching gradient (or None when not computed).
        roles: per member: ``out``, ``in``, ``norm``, ``bias``, ``stat`` or ``other``.
        params: per member, the qualified tensor name.
        seed: seed for stochastic criteria.
    """

    weights: list
    grads: list
    roles: list
    params: list
    seed: int = 0
    extra: dict = field(default_factory=dict)


def _weight_members(g: GroupTensors, roles=("out",)):
    picked = [k for k, r in enumerate(g.roles) if r in roles]
    if not picked:
        picked = [k for k, r in enumerate(g.roles) if r in ("out", "in", "other")]
    if not picked:
        picked = [k for k, r in enumerate(g.roles) if r != "stat"] or list(range(len(g.roles)))
    return picked


def _mean(scores):
    import torch

    return torch.stack(scores).mean(0)


@CRITERIA.register("l1")
def l1(g: GroupTensors):
    """Sum of absolute weights of each channel's filter (Li et al. 2017), mean over producers."""
    return _mean([g.weights[k].abs().sum(1) for k in _weight_members(g)])


@CRITERIA.register("l2")
def l2(g: GroupTensors):
    """Euclidean norm of each channel's filter, mean over producers."""
    import torch

    # one pass without a squared copy of every weight (pow(2) was most of scoring ResNet-50)
    return _mean([torch.linalg.vector_norm(g.weights[k], 2, dim=1) for k in _weight_members(g)])


@CRITERIA.register("fpgm")
def fpgm(g: GroupTensors):
    """Filter Pruning via Geometric Median (He et al. 2019).

    A filter close to all the others (near the geometric median) is replaceable;
    the score is the sum of Euclidean distances to every other filter of the layer.
    """
    import torch

    total = None
    for k in _weight_members(g):
        w = g.weights[k].float()
        d = torch.cdist(w, w).sum(1)
        total = d if total is None else total + d
    return total


@CRITERIA.register("bn_scale")
def bn_scale(g: GroupTensors):
    """``|gamma|`` of the channel's norm layer (Network Slimming, Liu et al. 2017); l1 where there is none."""
    norms = [k for k, (r, p) in enumerate(zip(g.roles, g.params)) if r == "norm"]
    if not norms:
        return l1(g)
    return _mean([g.weights[k].abs().sum(1) for k in norms])


@CRITERIA.register("taylor")
def taylor(g: GroupTensors):
    """First-order Taylor importance ``(sum_s g_s w_s)^2`` over all the channel's parameters (Molchanov 2019)."""
    import torch

    total = None
    for w, gr, role in zip(g.weights, g.grads, g.roles):
        if gr is None or role == "stat":
            continue
        t = (w * gr).sum(1)
        total = t if total is None else total + t
    if total is None:
        raise ValueError("criterion 'taylor' needs gradients: pass calibration batches (data=[(x, y), ...])")
    return total.pow(2).to(torch.float32)


@CRITERIA.register("lamp")
def lamp(g: GroupTensors):
    """LAMP scores (Lee et al. 2021) on squared channel L2 norms, within the group."""
    import torch

    s = _mean([g.weights[k].pow(2).sum(1) for k in _weight_members(g)])
    order = torch.argsort(s)
    sorted_s = s[order]
    tail = torch.flip(torch.cumsum(torch.flip(sorted_s, [0]), 0), [0])
    out = torch.empty_like(s)
    out[order] = sorted_s / tail.clamp_min(1e-12)
    return out


@CRITERIA.register("random")
def random(g: GroupTensors):
    """Uniform random scores (a baseline), reproducible through ``seed``."""
    import torch

    gen = torch.Generator().manual_seed(int(g.seed))
    return torch.rand(g.weights[0].shape[0], generator=gen)


def _saliency_sum(g: GroupTensors, name: str):
    """Per channel, the sum of the per-connection saliency over every parameter of the channel."""
    import torch

    total = None
    for s, role in zip(g.grads, g.roles):
        if s is None or role == "stat":
            continue
        t = s.sum(1)
        total = t if total is None else total + t
    if total is None:
        raise ValueError(f"criterion {name!r} needs saliencies: plan with data=[(x, y), ...] "
                         "(synflow: the example input suffices)")
    return total.to(torch.float32)


@CRITERIA.register("snip")
def snip(g: GroupTensors):
    """SNIP (Lee et al., ICLR 2019) at channel level: the channel's summed ``|g w|``."""
    return _saliency_sum(g, "snip")


@CRITERIA.register("grasp")
def grasp(g: GroupTensors):
    """GraSP (Wang et al., ICLR 2020) at channel level: the channel's summed ``w (H g)`` (lower = prune)."""
    return _saliency_sum(g, "grasp")


@CRITERIA.register("synflow")
def synflow(g: GroupTensors):
    """SynFlow (Tanaka et al., NeurIPS 2020) at channel level: the channel's summed synaptic saliency."""
    return _saliency_sum(g, "synflow")


def get(name: str) -> Callable:
    """The criterion registered as ``name`` (unknown names list the known ones)."""
    return CRITERIA.get(name)
