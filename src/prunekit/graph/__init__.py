"""Graph capture and channel coupling for structured pruning.

:func:`build_groups` traces a model with torch.fx and returns its coupling
groups: every set of (parameter, dimension, index mapping) that must lose the
same channels together. See :mod:`prunekit.graph.analysis` for the method and
``docs/pruning.md`` for the supported constructs.

Example:
    >>> import torch, torch.nn as nn
    >>> from prunekit.graph import build_groups
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> groups = build_groups(net, torch.randn(1, 3, 8, 8))
    >>> [(g.size, [m.param for m in g.members]) for g in groups]
    [(8, ['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', '3.weight'])]
"""
from __future__ import annotations

from prunekit.graph.analysis import Analysis, Group, GroupMember, analyze
from prunekit.graph.frozen import FrozenRegion


def build_groups(model, example_inputs, *, leaf_names=(), tracer: str = "auto") -> list[Group]:
    """The coupling groups of ``model`` on ``example_inputs`` (see :func:`analyze`)."""
    return analyze(model, example_inputs, leaf_names=leaf_names, tracer=tracer).groups


__all__ = ["Analysis", "FrozenRegion", "Group", "GroupMember", "analyze", "build_groups"]
