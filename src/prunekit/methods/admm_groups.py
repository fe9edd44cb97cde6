"""Filter- and channel-wise ADMM over the engine's coupling groups (Zhang et al., ECCV 2018, Sec. 4).

Structured ADMM constrains each layer to at most ``k`` non-zero filters (or input
channels). In a network with coupled layers (residual additions, concatenations,
depthwise convolutions) the filters of different layers cannot be removed
independently: a channel of the residual stream is written by several layers and
goes only if all of them drop it. So the projection here is over the structural
engine's coupling groups (:func:`prunekit.graph.analyze`): a group's channel ``c``
is scored by the summed squared norm of every penalised slice that belongs to it
(``filter``: the producing layers' output slices; ``channel``: the reading layers'
input slices), the ``k`` best channels of the group survive in *every* member, and
the hard prune is an engine plan (:func:`prunekit.engine.plan_from_analysis`), so the
result is always physically removable.

Pure tensor math (:func:`group_scores`, :func:`group_keep`, :func:`project_groups`,
:func:`group_masks`); :func:`channel_groups` reads the analysis.

Example:
    >>> import torch
    >>> g = ChannelGroup(0, "a", 3, 2, (("w", 0, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])),), ())
    >>> w = torch.tensor([[1.0, 0.0], [0.0, 0.1], [2.0, 2.0]])
    >>> group_keep({"w": w}, g)
    [0, 2]
    >>> project_groups({"w": w}, [g])["w"].tolist()
    [[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]]
"""
from __future__ import annotations

from dataclasses import dataclass

from prunekit.errors import ConfigError, PrunekitError

#: which members of a group ADMM penalises and scores, per granularity
PENALISED_ROLE = {"filter": "out", "channel": "in"}


@dataclass(frozen=True)
class ChannelGroup:
    """One coupling group as ADMM sees it.

    Attributes:
        gid: the engine's group id.
        name: the group's name (its first producing layer).
        size: channels in the group.
        keep: channels to keep (``k`` of the constraint set).
        penalised: ``(param, dim, indices, channels)`` of the slices the ADMM term
            pulls to zero and the projection scores (index ``indices[j]`` of ``param``
            along ``dim`` belongs to channel ``channels[j]``).
        members: the same for every parameter of the group (masks of the hard prune).
    """

    gid: int
    name: str
    size: int
    keep: int
    penalised: tuple
    members: tuple


def group_scores(tensors: dict, group: ChannelGroup):
    """Squared L2 norm of each channel of ``group``, summed over its penalised slices (float64)."""
    import torch

    scores = torch.zeros(group.size, dtype=torch.float64)
    for param, dim, idx, ch in group.penalised:
        rows = tensors[param].detach().movedim(dim, 0).index_select(0, idx.to(tensors[param].device))
        sq = rows.reshape(len(idx), -1).double().pow(2).sum(dim=1).cpu()
        scores.index_add_(0, ch, sq)
    return scores


def group_keep(tensors: dict, group: ChannelGroup) -> list[int]:
    """Sorted channels of the ``group.keep`` largest :func:`group_scores` (ties: the earlier channel wins)."""
    import torch

    order = torch.sort(group_scores(tensors, group), descending=True, stable=True).indices
    return sorted(int(c) for c in order[: group.keep])


def _zero_slices(t, dim: int, idx, ch, removed) -> None:
    """In place: zero the slices of ``t`` along ``dim`` whose channel is in ``removed`` (a bool tensor)."""
    drop = idx[removed[ch]]
    if len(drop):
        t.movedim(dim, 0).index_fill_(0, drop.to(t.device), 0)


def project_groups(tensors: dict, groups) -> dict:
    """The Z step: every penalised tensor with the slices of each group's non-kept channels zeroed.

    Returns ``{param: Z}`` for the penalised params of ``groups`` (new tensors).
    """
    import torch

    out = {}
    for g in groups:
        for param, *_ in g.penalised:
            if param not in out:
                out[param] = tensors[param].detach().clone()
    for g in groups:
        removed = torch.ones(g.size, dtype=torch.bool)
        removed[group_keep(tensors, g)] = False
        for param, dim, idx, ch in g.penalised:
            _zero_slices(out[param], dim, idx, ch, removed)
    return out


def group_masks(shapes: dict, groups, kept: dict) -> dict:
    """``{param: bool mask}`` removing every slice of the channels not in ``kept[gid]``, in all members.

    ``shapes``: the shape of each parameter. Masking all members (weights, biases,
    BatchNorm scales and shifts, readers' input slices) makes the masked dense model
    compute what the physically pruned one does.
    """
    import torch

    masks: dict = {}
    for g in groups:
        removed = torch.ones(g.size, dtype=torch.bool)
        removed[list(kept[g.gid])] = False
        for param, dim, idx, ch in g.members:
            m = masks.setdefault(param, torch.ones(shapes[param], dtype=torch.bool))
            _zero_slices(m, dim, idx, ch, removed)
    return masks


def channel_groups(model, analysis, granularity: str, sparsity: float, layer_sparsity: dict | None = None,
                   layers=None) -> list[ChannelGroup]:
    """The prunable groups of ``analysis`` as :class:`ChannelGroup` objects with their ``keep`` counts.

    Args:
        granularity: ``"filter"`` or ``"channel"`` (which slices are penalised and scored).
        sparsity: fraction of each group's channels removed.
        layer_sparsity: ``{layer name: sparsity}`` for the groups that layer produces
            (a group produced by several listed layers takes the first listed).
        layers: prune only the groups produced by these layers (None: every group).

    Raises:
        ConfigError: a name in ``layer_sparsity``/``layers`` that produces no prunable group.
        PrunekitError: no group to prune.
    """
    import torch

    from prunekit.methods.admm import keep_count

    if granularity not in PENALISED_ROLE:
        raise ConfigError(f"granularity must be 'filter' or 'channel' here, got {granularity!r}")
    role = PENALISED_ROLE[granularity]
    params = dict(model.named_parameters())
    producers = {g.id: [m.module for m in g.members if m.role == "out"] for g in analysis.groups}
    known = {p for ps in producers.values() for p in ps}
    for what, names in (("layer_sparsity", list(layer_sparsity or {})), ("layers", list(layers or []))):
        for n in names:
            base = n[: -len(".weight")] if n.endswith(".weight") else n
            if base not in known:
                raise ConfigError(f"{what}: {n!r} produces no prunable channel group (layers: "
                                  f"{', '.join(sorted(known)[:10])}...)")
    wanted = {n[: -len(".weight")] if n.endswith(".weight") else n for n in (layers or [])}
    overrides = {(k[: -len(".weight")] if k.endswith(".weight") else k): v for k, v in (layer_sparsity or {}).items()}
    out = []
    for g in analysis.groups:
        if g.size < 2 or (wanted and not set(producers[g.id]) & wanted):
            continue
        pen, mem = [], []
        for m in g.members:
            if m.param not in params:
                continue  # buffers (running statistics) are not trained
            entry = (m.param, m.dim, torch.as_tensor(m.indices, dtype=torch.long),
                     torch.as_tensor(m.channels, dtype=torch.long))
            mem.append(entry)
            if m.role == role and params[m.param].dim() >= 2:
                pen.append(entry)
        if not pen:
            continue
        s = next((overrides[p] for p in producers[g.id] if p in overrides), sparsity)
        name = producers[g.id][0] if producers[g.id] else g.members[0].module
        out.append(ChannelGroup(g.id, name, g.size, keep_count(g.size, s), tuple(pen), tuple(mem)))
    if not out:
        raise PrunekitError(f"{granularity}-wise ADMM: the model has no prunable channel group")
    return out
