"""The analysis's results, and how connected components of channel ids become groups.

:func:`extract_groups` runs once after the walk of :mod:`prunekit.graph.analysis`:
the connected components of the unified ids are the coupled channels, and
channels that touch the same set of parameter dimensions form one
:class:`Group`. It is vectorised NumPy over every (member, channel) pair: a
per-member Python loop was most of the analysis time on large models.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prunekit.graph.frozen import frozen_warnings
from prunekit.graph.labels import FIXED


@dataclass
class _TensorDim:
    """Dimension ``dim`` of the parameter or buffer ``param`` (a qualified name such as ``"0.weight"``)."""

    param: str
    dim: int

    @property
    def module(self) -> str:
        """Qualified name of the module that owns ``param`` (``"layer1.0.conv1"``; ``""`` for the root)."""
        return self.param.rpartition(".")[0]


@dataclass
class Member(_TensorDim):
    """One prunable dimension of one parameter or buffer."""

    size: int
    role: str
    ids: np.ndarray


@dataclass
class GroupMember(_TensorDim):
    """A member's share of a group: ``indices[k]`` of ``param`` along ``dim`` belongs to channel ``channels[k]``."""

    role: str
    indices: np.ndarray
    channels: np.ndarray


@dataclass
class Group:
    """Channels that must be removed together, and every tensor slice they own.

    Attributes:
        id: position in :attr:`Analysis.groups`.
        size: number of channels.
        members: the parameter/buffer slices, each with its index mapping.
        notes: ops that normalise or reduce across these channels (masking and
            removing then differ by design).
    """

    id: int
    size: int
    members: list[GroupMember]
    notes: list[str] = field(default_factory=list)

    @property
    def producers(self) -> list[str]:
        """Modules whose output channels these are (roles ``out``), in graph order."""
        seen = []
        for m in self.members:
            if m.role == "out" and m.module not in seen:
                seen.append(m.module)
        return seen

    @property
    def name(self) -> str:
        """A readable name: the first producer (or first member) module."""
        p = self.producers
        return p[0] if p else self.members[0].module

    def describe(self) -> str:
        parts = [f"{m.param}[{m.dim}]" for m in self.members[:6]]
        more = f" +{len(self.members) - 6}" if len(self.members) > 6 else ""
        return f"group {self.id} ({self.size} ch): " + ", ".join(parts) + more


@dataclass
class Binding:
    """A module int attribute that a reshape reads and that must follow pruning."""

    module: str
    attr: str
    value: int
    comps: np.ndarray  # component of each index along the bound dimension


@dataclass
class Analysis:
    """Result of :func:`analyze`: the groups plus what the planner needs.

    Attributes:
        groups: prunable coupling groups.
        members: every tracked parameter dimension, prunable or not.
        comp_of: for each member (param, dim): component of each index.
        group_of_comp: component -> (group id, channel index).
        bindings: module attributes to update.
        macs_terms: ``(weight param, positions)`` of conv/linear ops, for MACs estimates.
        param_shapes: shape of every parameter and buffer.
        warnings: one message per unsupported op or opaque module.
        opaque: user modules kept whole because fx could not trace them.
        graph_ops: number of graph nodes.
        frozen: every :class:`FrozenRegion`, in graph order.
        tied: ``(TiedSize, group names)``: widths tied in proportion so a size read at run time stays right.
    """

    groups: list[Group]
    members: list[Member]
    comp_of: dict
    group_of_comp: dict
    bindings: list[Binding]
    macs_terms: list
    param_shapes: dict
    warnings: list[str]
    opaque: dict
    graph_ops: int
    output_meta: object = None
    frozen: list = field(default_factory=list)
    tied: list = field(default_factory=list)

def _output_meta(cap):
    for node in cap.gm.graph.nodes:
        if node.op == "output":
            return _resolve_meta(node.args[0], cap.meta)
    return None


def _resolve_meta(arg, meta):
    import torch.fx as fx

    if isinstance(arg, fx.Node):
        return meta.get(arg)
    if isinstance(arg, (list, tuple)):
        return [_resolve_meta(a, meta) for a in arg]
    if isinstance(arg, dict):
        return {k: _resolve_meta(v, meta) for k, v in arg.items()}
    return None


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique without its hashing path, slower on int64 here)."""
    s = np.sort(values)
    return s[np.r_[True, s[1:] != s[:-1]]] if s.size else s


def extract_groups(ctx, cap, n_nodes: int) -> Analysis:
    """The :class:`Analysis` of a finished walk: groups from the components of ``ctx``'s unions.

    Args:
        ctx: the analysis :class:`~prunekit.graph.analysis.Context` after every node ran.
        cap: the :class:`~prunekit.graph.capture.Capture` it walked.
        n_nodes: number of graph nodes (reported as ``graph_ops``).
    """
    comp = ctx.sink.components()
    fixed = comp[FIXED]
    members = ctx.member_order
    comp_of = {(m.param, m.dim): comp[m.ids] for m in members}
    # signature of a component = the set of members it touches (hashed, order-free)
    rng = np.random.default_rng(12345)
    keys = rng.integers(1, 2**62, size=len(members), dtype=np.int64).astype(np.uint64)
    ncomp = int(comp.max()) + 1 if comp.size else 1
    # every member's channels as one array (a np.unique per member was a third of
    # this function on ResNet-50): (member, component) pairs, distinct, in member
    # order then component order
    cms = [np.asarray(comp_of[(m.param, m.dim)], dtype=np.int64) for m in members]
    lens = np.array([c.size for c in cms], dtype=np.int64)
    all_c = np.concatenate(cms) if cms else np.zeros(0, np.int64)
    all_m = np.repeat(np.arange(len(members), dtype=np.int64), lens)
    pair = _distinct(all_m * ncomp + all_c)
    pm, pc = pair // ncomp, pair % ncomp
    keep = pc != fixed
    pm, pc = pm[keep], pc[keep]
    sig = np.zeros(ncomp, dtype=np.uint64)
    np.add.at(sig, pc, keys[pm])
    # order groups and channels by first appearance along the member order
    # (pc is in member order, then component order within a member)
    # (component, position) keys are distinct, so a plain sort finds each
    # component's first position (np.unique's return_index sorts stably: 10x slower)
    n_pc = max(pc.size, 1)
    key = np.sort(pc * n_pc + np.arange(pc.size, dtype=np.int64))
    key_c = key // n_pc
    head = np.r_[True, key_c[1:] != key_c[:-1]] if key.size else np.zeros(0, bool)
    live = key_c[head][np.argsort(key[head] % n_pc)]
    by_sig: dict[int, list[int]] = {}
    for c, sg in zip(live.tolist(), sig[live].tolist()):
        by_sig.setdefault(sg, []).append(c)
    groups = [Group(id=gid, size=len(comps), members=[]) for gid, comps in enumerate(by_sig.values())]
    flat_c = [c for comps in by_sig.values() for c in comps]
    flat_g = [gid for gid, comps in enumerate(by_sig.values()) for _ in comps]
    flat_ch = [ch for comps in by_sig.values() for ch in range(len(comps))]
    group_of_comp = dict(zip(flat_c, zip(flat_g, flat_ch)))
    gmap = np.full(ncomp, -1, dtype=np.int64)
    chmap = np.full(ncomp, -1, dtype=np.int64)
    gmap[flat_c] = flat_g
    chmap[flat_c] = flat_ch
    # each member's channels split by group, in one sort instead of a loop of
    # np.unique/np.nonzero per member: segments ordered by member, then group,
    # channel positions ascending within a segment
    all_g = gmap[all_c]
    all_pos = np.arange(all_c.size, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    sel = np.nonzero(all_g >= 0)[0]
    span = int(lens.max()) + 1 if lens.size else 1
    if len(members) * max(len(groups), 1) * span < 2**62:
        # distinct (member, group, position) keys: a plain sort, 4x faster than lexsort
        key = np.sort((all_m[sel] * len(groups) + all_g[sel]) * span + all_pos[sel])
        order = (np.cumsum(lens) - lens)[key // span // len(groups)] + key % span
    else:
        order = sel[np.lexsort((all_pos[sel], all_g[sel], all_m[sel]))]
    seg_m, seg_g = all_m[order], all_g[order]
    starts = np.flatnonzero(np.r_[True, (seg_m[1:] != seg_m[:-1]) | (seg_g[1:] != seg_g[:-1])]) \
        if order.size else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], order.size].astype(np.int64)
    pos_sorted, ch_sorted = all_pos[order], chmap[all_c[order]]
    for a, b in zip(starts.tolist(), ends.tolist()):
        m = members[int(seg_m[a])]
        groups[int(seg_g[a])].members.append(
            GroupMember(m.param, m.dim, m.role, pos_sorted[a:b], ch_sorted[a:b]))
    # cross-channel notes
    for ids, why in ctx.cross:
        gs = np.unique(gmap[comp[ids]])
        for g in gs[gs >= 0].tolist():
            if why not in groups[g].notes:
                groups[g].notes.append(why)
    tied = []
    for region, ids in ctx.ties:
        gs = np.unique(gmap[comp[ids]])
        names = [groups[g].name for g in gs[gs >= 0].tolist()]
        if names:  # a tie whose channels were all kept in the end explains nothing
            tied.append((region, names))
    bindings = []
    for (module, attr), sites in ctx.binding_sites.items():
        tag, rep, _ = sites[0]
        if tag.misused or not all(free for _, _, free in sites):
            continue  # the attribute keeps its value (its dims were kept whole)
        c = comp[rep]
        if (c != fixed).any():
            bindings.append(Binding(module, attr, tag.value, c))
    for module, attr, value, ids in ctx.count_attrs:
        c = comp[ids]
        if (c != fixed).any():
            bindings.append(Binding(module, attr, value, c))
    shapes = {k: tuple(v.shape) for k, v in ctx.params.items()}
    return Analysis(groups=groups, members=members, comp_of=comp_of, group_of_comp=group_of_comp,
                    bindings=bindings, macs_terms=ctx.macs_terms, param_shapes=shapes,
                    warnings=list(ctx.warnings) + frozen_warnings(ctx.frozen), opaque=dict(cap.opaque), graph_ops=n_nodes,
                    output_meta=_output_meta(cap), frozen=list(ctx.frozen), tied=tied)
