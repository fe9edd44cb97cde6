"""Coupling analysis: from a traced graph to groups of channels that must go together.

Walks the fx graph once in topological order. Every op handler (see
:mod:`prunekit.graph.ops`) receives the labels of its inputs and returns the
labels of its output, recording which ids must be equal (``sink.unify``) or can
never change (``sink.fix``). After the walk, connected components of the ids are
the *coupled channels*; channels that touch the same set of parameter
dimensions form one :class:`~prunekit.graph.groups.Group`
(:func:`prunekit.graph.groups.extract_groups`, which also holds the result types).

The analysis is a single pass over the graph plus one connected-components
computation (:func:`prunekit.graph.labels.connected_components`), so its cost
grows linearly with the number of nodes and channels.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from prunekit.errors import PrunekitError, UnsupportedModelError
from prunekit.graph.capture import AttrTag, TaggedInt
from prunekit.graph.frozen import FrozenRegion, module_line, node_origin
from prunekit.graph.groups import Analysis, Binding, Group, GroupMember, Member, extract_groups
from prunekit.graph.labels import Labels, UnionSink, leaves, rigid
from prunekit.graph.size_constraints import check_size_constraints

# the result types live in graph/groups.py; importing them from here keeps working
__all__ = ["Analysis", "Binding", "Context", "Group", "GroupMember", "Member", "Sz", "analyze"]


@dataclass
class Sz:
    """A Python int seen during tracing, with where it came from.

    Attributes:
        value: the concrete value on the example inputs.
        src: ids of the labelled dimension it measures (``x.size(1)``), or None.
        tag: the module attribute it is (a :class:`TaggedInt`), or None.
        derived: computed from ``src`` by arithmetic (``c // groups``).
    """

    value: int
    src: np.ndarray | None = None
    tag: AttrTag | None = None
    derived: bool = False


class Context:
    """What op handlers see: label environment, id allocation, unions, warnings."""

    def __init__(self, gm, meta, tags, model=None, param_placeholders=None):
        self.gm = gm
        self.meta = meta
        self.tags = tags
        self.param_placeholders = dict(param_placeholders or {})
        self.sink = UnionSink()
        self.members: dict[tuple[str, int], Member] = {}
        self.member_order: list[Member] = []
        self.env: dict = {}
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self.cross: list[tuple[np.ndarray, str]] = []
        self.binding_sites: dict = {}
        self.size_constraints: list = []
        self.ties: list = []  # (TiedSize, ids of the tied dimension) from check_size_constraints
        self.count_attrs: list = []
        self.macs_terms: list = []
        self.frozen: list[FrozenRegion] = []
        self.current_node = None
        self.kind = "fx"  # or "export": how the graph was captured (sizes are constants in export graphs)
        self.opaque: dict = {}  # modules kept as single calls, with why
        self.inherited: dict = {}  # opaque modules handled as their torch.nn parent (graph.inherited)
        self.model = model
        self._model_modules = None
        owner = model if self.param_placeholders else gm  # exported graphs take parameters as inputs
        self.modules = dict(owner.named_modules())
        self.params = dict(owner.named_parameters(remove_duplicate=False))
        self.params.update(dict(owner.named_buffers(remove_duplicate=False)))
        # tied tensors (one Parameter under several names) get one canonical name, so every
        # use of the tensor shares the same ids and the surgery slices it once
        first: dict[int, str] = {}
        self.canon = {}
        for name, t in self.params.items():
            self.canon[name] = first.setdefault(id(t), name)

    @property
    def model_modules(self) -> dict:
        """The user's own modules by name (``modules`` holds the fx graph's plain copies of traced-through ones)."""
        if self._model_modules is None:
            self._model_modules = dict(self.model.named_modules()) if self.model is not None else self.modules
        return self._model_modules

    # -- values
    def val(self, a):
        """Resolve a node argument to labels / Sz / Python value."""
        import torch.fx as fx

        if isinstance(a, fx.Node):
            return self.env.get(a)
        if isinstance(a, (list, tuple)):
            return type(a)(self.val(x) for x in a) if not hasattr(a, "_fields") else tuple(self.val(x) for x in a)
        if isinstance(a, dict):
            return {k: self.val(v) for k, v in a.items()}
        if isinstance(a, TaggedInt):
            return Sz(int(a), tag=a.tag)
        if isinstance(a, bool):
            return a
        if isinstance(a, int):
            return Sz(a)
        if isinstance(a, slice):
            return slice(self.val(a.start), self.val(a.stop), self.val(a.step))
        return a

    def shape(self, node) -> tuple:
        """Recorded shape of a tensor-valued node.

        A handler that asks for the shape of a node whose value is not a tensor
        (an int, a bool, a tuple) met an op form it does not know: that is
        :class:`NotHandled`, so the op is frozen instead of crashing the analysis.
        """
        from prunekit.graph.ops import NotHandled

        m = self.meta.get(node)
        if isinstance(m, tuple) and m and m[0] == "tensor":
            return m[1]
        raise NotHandled

    def rigid_like(self, meta):
        """Rigid labels mirroring a recorded value (tensor, tuple of tensors, int...)."""
        if isinstance(meta, tuple) and meta and meta[0] == "tensor":
            return rigid(meta[1])
        if isinstance(meta, (list, tuple)):
            return type(meta)(self.rigid_like(m) for m in meta)
        if isinstance(meta, bool):
            return meta
        if isinstance(meta, int):
            return Sz(meta)
        return None

    # -- ids
    def param_ids(self, param: str, dim: int, role: str) -> np.ndarray:
        """Ids of ``param`` along ``dim`` (allocated once; the first role seen sticks)."""
        param = self.canon.get(param, param)
        key = (param, dim)
        m = self.members.get(key)
        if m is None:
            size = int(self.params[param].shape[dim])
            m = Member(param, dim, size, role, self.sink.new_ids(size))
            self.members[key] = m
            self.member_order.append(m)
        return m.ids

    def param_name(self, arg) -> str | None:
        """Canonical name of the parameter or buffer a node argument is (``get_attr`` / export input), or None."""
        import torch.fx as fx

        if not isinstance(arg, fx.Node):
            return None
        if arg.op == "get_attr":
            name = str(arg.target)
        elif arg.op == "placeholder":
            name = self.param_placeholders.get(arg.target)
        else:
            return None
        return self.canon.get(name, name) if name in self.params else None

    def set_role(self, arg, dim: int, role: str) -> None:
        """Give dim ``dim`` of the parameter node ``arg`` its role, if it has none yet (``"other"``).

        torch.export passes every parameter in as a graph input, where its ids are
        allocated before any layer uses it; the functional layer handlers name the
        roles here, so ``ignored_layers``, per-layer ``ratios`` and the criteria
        find the producing layers of export graphs as they do for modules.
        """
        name = self.param_name(arg)
        m = self.members.get((name, dim)) if name is not None else None
        if m is not None and m.role == "other":
            m.role = role

    def add_macs(self, weight_arg, positions: int) -> None:
        """Count ``positions x kept weight elements`` MACs for a functional conv/linear whose weight is a parameter.

        Module layers record their term in their handler; functional calls (every
        layer of a torch.export graph, GPT-2's ``Conv1D`` addmm) record it here, so
        MACs targets see them. A computed weight has no term (its cost is unknown).
        """
        name = self.param_name(weight_arg)
        if name is not None:
            self.macs_terms.append((name, int(positions)))

    def fix(self, value) -> None:
        """Fix every id in a labels value; fix the sources of sizes and misuse tags inside it."""
        for v in leaves(value):
            if isinstance(v, Labels):
                self.sink.fix_labels(v)
            elif isinstance(v, Sz):
                if v.src is not None:
                    self.sink.fix(v.src)
                if v.tag is not None:
                    v.tag.misuse("used outside a reshape")

    def fix_sizes(self, value) -> None:
        """Fix only the size arguments inside ``value`` (ints measured from labelled dims)."""
        self.fix([v for v in leaves(value) if isinstance(v, Sz)])

    def freeze(self, op: str, reason: str, value=None, node=None, module: str | None = None,
               line: str | None = None) -> None:
        """Keep every channel in ``value`` and record why, with where it happened (warned once per region).

        ``node`` (default: the node being analysed) gives the module path and the
        source line; ``module``/``line`` override them (opaque modules).
        """
        if value is not None:
            self.fix(value)
        node = node if node is not None else self.current_node
        if node is not None:
            m, ln = node_origin(node)
            module = m if module is None else module
            line = ln if line is None else line
        region = FrozenRegion(op, module or "", line or "", reason)
        if region not in self.frozen:
            self.frozen.append(region)

    def warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warnings.append(message)

    def note_cross(self, ids, why: str) -> None:
        if ids is not None and np.size(ids):
            self.cross.append((np.asarray(ids).reshape(-1), why))

    def add_size_constraint(self, pair) -> None:
        """``(src, rep)``: a size measured on ``src`` shapes the dim whose ids are ``rep``."""
        self.size_constraints.append((pair[0], pair[1], self.current_node))

    def count_attr(self, module: str, attr: str, value: int, ids) -> None:
        """Module attribute equal to the number of kept channels among ``ids`` (``num_features``...)."""
        if ids is not None:
            self.count_attrs.append((module, attr, value, np.asarray(ids)))

    def bind(self, tag: AttrTag, rep: np.ndarray, free: bool) -> None:
        self.binding_sites.setdefault((tag.module, tag.attr), []).append((tag, rep, free))


def analyze(model, example_inputs, *, leaf_names=(), tracer: str = "auto") -> Analysis:
    """Trace ``model`` and compute its coupling groups.

    Args:
        model: an ``nn.Module`` (not modified).
        example_inputs: a tensor, tuple of tensors, or dict of keyword tensors.
        leaf_names: qualified names of modules to keep opaque (never pruned inside).
        tracer: ``"auto"`` (torch.fx, torch.export if fx fails on the root forward), ``"fx"`` or ``"export"``.

    Returns:
        An :class:`Analysis`; emits one ``UserWarning`` per op it does not understand.
    """
    from prunekit.graph import ops
    from prunekit.graph.capture import capture, example_tuple
    from prunekit.graph.inherited import inherit

    inputs = example_tuple(model, example_inputs)
    cap = capture(model, inputs, ops.is_handled_module, leaf_names=leaf_names, tracer=tracer)
    ctx = Context(cap.gm, cap.meta, cap.tags, model=model, param_placeholders=cap.param_placeholders)
    ctx.opaque = cap.opaque
    ctx.kind = cap.kind
    if cap.kind == "export" and tracer != "export":
        ctx.warn("export", f"torch.fx cannot trace the forward of {type(model).__name__}; analysed with "
                           "torch.export instead (sizes are constants there, so fewer channels are prunable, and "
                           "Python branches on shapes are assumed not to depend on pruned widths)")
    nodes = list(cap.gm.graph.nodes)
    # a subclass of a handled layer with an untraceable forward (timm's Conv2dSame)
    # prunes like its parent when a numerical check on a copy says so
    ops.load_handlers()
    ctx.inherited, not_inherited = inherit(ctx, nodes, cap.opaque, ops.MODULE_HANDLERS)
    for name, why in cap.opaque.items():
        if why != "requested" and name not in ctx.inherited:
            extra = f"; it subclasses a layer the engine handles, but {not_inherited[name]}" \
                if name in not_inherited else ""
            ctx.freeze(f"module {type(ctx.modules[name]).__name__}" if name in ctx.modules else "module",
                       f"torch.fx cannot trace it ({why}){extra}; its input and output channels are kept",
                       module=name, line=module_line(ctx.modules.get(name)))
    try:
        for node in nodes:
            ctx.env[node] = ops.run_node(ctx, node)
        _finish_bindings(ctx)
        check_size_constraints(ctx)
        result = extract_groups(ctx, cap, len(nodes))
    except PrunekitError:
        raise
    except Exception as e:  # noqa: BLE001 - the analysis boundary: no internal error reaches a user raw
        # run_node already turns a failing handler into a frozen op; this is the
        # last guard (a bug in the walk itself), so name where it stopped
        node = ctx.current_node
        where = ""
        if node is not None:
            module, line = node_origin(node)
            where = f" at {ops.op_name(ctx, node)} in {module or '<root>'}" + (f" ({line})" if line else "")
        raise UnsupportedModelError(
            f"the pruning engine failed on {type(model).__name__}{where}: {type(e).__name__}: {e}. "
            "Pass that module in ignored_layers=[...] to keep it whole") from e
    if not result.groups and ctx.frozen:
        first = ctx.frozen[0]
        raise UnsupportedModelError(
            f"nothing in {type(model).__name__} can be pruned: {first.describe()}"
            + (f" (and {len(ctx.frozen) - 1} more frozen regions)" if len(ctx.frozen) > 1 else ""))
    for w in result.warnings:
        warnings.warn(w, UserWarning, stacklevel=3)
    return result


def _finish_bindings(ctx: Context) -> None:
    """Tie all sites of one attribute together, or keep them whole when that is impossible."""
    ctx.current_node = None
    for key, sites in ctx.binding_sites.items():
        tag = sites[0][0]
        lengths = {len(rep) for _, rep, _ in sites}
        if tag.misused or len(lengths) > 1 or not all(free for _, _, free in sites):
            for _, rep, free in sites:
                if free:
                    ctx.sink.fix(rep)
            if tag.misused:
                # the attribute would go stale after pruning wherever it is used
                # outside a reshape (arithmetic, a comparison): keep its dimension
                ctx.freeze(f"attribute {key[0] or '<root>'}.{key[1]}",
                           f"sizes a reshape but is also used otherwise ({', '.join(tag.reasons)}); "
                           "that dimension is kept", module=key[0], line="")
            continue
        first = sites[0][1]
        for _, rep, _ in sites[1:]:
            ctx.sink.unify(first, rep)
