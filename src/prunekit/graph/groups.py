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
        comp_group, comp_channel: component -> group id and channel index as arrays
            (-1 for components in no group); ``group_of_comp`` as arrays.
        shape_pass: how the capture recorded shapes: ``"meta"``, ``"fake (why not meta)"``,
            ``"real (why not meta, fake)"`` or ``"export"`` (see :mod:`prunekit.graph.shape_pass`).
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
    shape_pass: str = "meta"
    comp_group: np.ndarray | None = None
    comp_channel: np.ndarray | None = None


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


def _stable_order(keys: np.ndarray, bound: int) -> np.ndarray:
    """Stable argsort of non-negative integer ``keys`` below ``bound``.

    NumPy's stable sort is a radix sort for 16-bit keys and a merge sort
    otherwise (about 4x slower on ResNet-50's 160k channel ids, and a plain
    quicksort of int64 is no faster on this machine), so keys that fit in 16 or
    32 bits are sorted by one or two radix passes.
    """
    if bound <= 1 << 16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    if bound <= 1 << 32:
        low = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
        return low[np.argsort((keys[low] >> 16).astype(np.uint16), kind="stable")]
    return np.argsort(keys, kind="stable")


def _runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Start of every run of equal values in a sorted array."""
    if not sorted_keys.size:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def extract_groups(ctx, cap, n_nodes: int) -> Analysis:
    """The :class:`Analysis` of a finished walk: groups from the components of ``ctx``'s unions.

    Args:
        ctx: the analysis :class:`~prunekit.graph.analysis.Context` after every node ran.
        cap: the :class:`~prunekit.graph.capture.Capture` it walked.
        n_nodes: number of graph nodes (reported as ``graph_ops``).
    """
    comp = ctx.sink.components()
    fixed = int(comp[FIXED])
    members = ctx.member_order
    n_mem = len(members)
    ncomp = int(comp.max()) + 1 if comp.size else 1
    # every member's components as one array, member after member
    lens = np.fromiter((m.ids.size for m in members), dtype=np.int64, count=n_mem)
    offsets = np.cumsum(lens) - lens
    all_c = comp[np.concatenate([m.ids.reshape(-1) for m in members])] if n_mem else np.zeros(0, np.int64)
    comp_of = {(m.param, m.dim): all_c[o:o + n] for m, o, n in zip(members, offsets.tolist(), lens.tolist())}
    # members with the same components at the same positions (a BatchNorm's weight, bias and
    # statistics; a conv's bias) behave alike below, so the work runs once per class of them
    cls_of = np.empty(n_mem, dtype=np.int64)
    reps: list[int] = []
    seen: dict = {}
    for i, c in enumerate(comp_of.values()):
        cls_of[i] = seen.setdefault(c.tobytes(), len(reps))
        if cls_of[i] == len(reps):
            reps.append(i)
    n_cls = len(reps)
    r_lens = lens[reps]
    r_offsets = np.cumsum(r_lens) - r_lens
    r_c = np.concatenate([all_c[o:o + n] for o, n in zip(offsets[reps].tolist(), r_lens.tolist())]) if n_cls \
        else np.zeros(0, np.int64)
    r_m = np.repeat(np.arange(n_cls, dtype=np.int64), r_lens)
    # elements by component, each component's in class order (a stable sort keeps it): the
    # distinct (component, class) pairs are where either changes
    live_el = np.flatnonzero(r_c != fixed)
    c_el, m_el = r_c[live_el], r_m[live_el]
    order = _stable_order(c_el, ncomp)
    cs, ms = c_el[order], m_el[order]
    del live_el, c_el, m_el, order
    new_pair = np.r_[True, (cs[1:] != cs[:-1]) | (ms[1:] != ms[:-1])] if cs.size else np.zeros(0, bool)
    pc, pm = cs[new_pair], ms[new_pair]
    del cs, ms, new_pair
    starts = _runs(pc)
    comps = pc[starts]
    # signature of a component = the set of members it touches: a sum of random 62-bit keys
    # (uint64 wraps around, so the sum is exact modulo 2**64 and independent of order), a
    # class contributing the sum of its members' keys
    rng = np.random.default_rng(12345)
    keys = rng.integers(1, 2**62, size=n_mem, dtype=np.int64).astype(np.uint64)
    class_keys = np.zeros(n_cls, dtype=np.uint64)
    np.add.at(class_keys, cls_of, keys)
    sig = np.add.reduceat(class_keys[pm], starts) if starts.size else np.zeros(0, np.uint64)
    # groups and channels in order of first appearance along the member order: by the first
    # member touching a component (a class's first member comes first among the classes, in
    # member order), then by component number (comps ascends, the sort is stable)
    by_first = _stable_order(pm[starts], max(n_cls, 1))
    live, sig = comps[by_first], sig[by_first]
    uniq_first = np.unique(sig, return_index=True, return_inverse=True)[1:] if sig.size else (
        np.zeros(0, np.int64), np.zeros(0, np.int64))
    first, inverse = uniq_first
    rank = np.empty(first.size, np.int64)
    rank[np.argsort(first)] = np.arange(first.size, dtype=np.int64)
    g_live = rank[inverse.reshape(-1)]
    n_groups = int(first.size)
    sizes = np.bincount(g_live, minlength=n_groups)
    ch_live = np.empty(live.size, np.int64)
    ch_live[_stable_order(g_live, max(n_groups, 1))] = (np.arange(live.size, dtype=np.int64)
                                                         - np.repeat(np.cumsum(sizes) - sizes, sizes))
    groups = [Group(id=gid, size=int(n), members=[]) for gid, n in enumerate(sizes.tolist())]
    group_of_comp = dict(zip(live.tolist(), zip(g_live.tolist(), ch_live.tolist())))
    gmap = np.full(ncomp, -1, dtype=np.int64)
    chmap = np.full(ncomp, -1, dtype=np.int64)
    gmap[live] = g_live
    chmap[live] = ch_live
    # each class's channels split by group: segments ordered by class, then group, positions
    # ascending within a segment (the elements are in (class, position) order and the sort is
    # stable); every member of the class gets the class's segments, members in member order
    r_g = gmap[r_c]
    sel = np.flatnonzero(r_g >= 0)
    seg_key = r_m[sel] * max(n_groups, 1) + r_g[sel]
    seg_order = _stable_order(seg_key, max(n_cls * n_groups, 1))
    order = sel[seg_order]
    seg_key = seg_key[seg_order]
    bounds = _runs(seg_key)
    ends = np.r_[bounds[1:], order.size].astype(np.int64)
    pos_sorted = order - np.repeat(r_offsets, r_lens)[order]
    ch_sorted = chmap[r_c[order]]
    segments: list[list] = [[] for _ in range(n_cls)]
    for a, b, k in zip(bounds.tolist(), ends.tolist(), seg_key[bounds].tolist()):
        segments[k // n_groups].append((k % n_groups, a, b))
    for m, c in zip(members, cls_of.tolist()):
        for g, a, b in segments[c]:
            groups[g].members.append(GroupMember(m.param, m.dim, m.role, pos_sorted[a:b], ch_sorted[a:b]))
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
                    output_meta=_output_meta(cap), frozen=list(ctx.frozen), tied=tied,
                    shape_pass=cap.shape_pass, comp_group=gmap, comp_channel=chmap)
