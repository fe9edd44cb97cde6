"""Pruning plans: which channels of which coupling group go, as plain data.

A :class:`PruningPlan` is independent of any model object: it names tensors by
their qualified names (``"layer1.0.conv1.weight"``), so it can be printed,
saved as JSON, inspected, and applied to a freshly built copy of the same
architecture. :meth:`PruningPlan.apply` removes the channels physically (through
:mod:`prunekit.surgery`); :meth:`PruningPlan.apply_masks` zeroes them in a dense
copy instead.

Checkpoints of pruned models store the plan as the transform
``{"kind": "prune_plan", "plan": {...}}`` in their :class:`~prunekit.spec.ModelSpec`;
loading rebuilds the dense model, replays the plan's shapes (:func:`replay_transform`),
then loads the pruned weights (no example inputs needed).

Example:
    >>> import torch, prunekit
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    >>> plan = prunekit.plan(net, torch.randn(1, 3, 8, 8), ratio=0.5)
    >>> small = plan.apply(net)
    >>> small[0].out_channels, small[2].in_channels
    (4, 4)
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prunekit.errors import ConfigError, PrunekitError
from prunekit.graph import GroupMember

PLAN_FORMAT = "prunekit.pruning_plan"
PLAN_VERSION = 1


@dataclass
class PlanMember(GroupMember):
    """Indices ``indices[k]`` of tensor ``param`` along ``dim`` belong to channel ``channels[k]`` of the group.

    The same fields as the analysis's :class:`~prunekit.graph.GroupMember` (it is one), plus the JSON form
    a saved plan needs.
    """

    def to_dict(self) -> dict:
        d = {"param": self.param, "dim": int(self.dim), "role": self.role}
        d.update(_encode_mapping(self.indices, self.channels))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PlanMember":
        _check_keys(d, {"param", "dim", "role"}, {"offset", "n", "repeat", "tile", "indices", "channels"}, "plan member")
        idx, ch = _decode_mapping(d)
        return cls(str(d["param"]), int(d["dim"]), str(d["role"]), idx, ch)


@dataclass
class PlanGroup:
    """One coupling group with the channels chosen for removal.

    Attributes:
        id: group number.
        size: channels in the group before pruning.
        members: tensor slices with their index mapping.
        removed: sorted channel indices (0..size-1) to remove.
        scores: optional importance score of every channel.
        notes: ops that normalise across these channels (masking differs from removal there).
    """

    id: int
    size: int
    members: list[PlanMember]
    removed: list[int] = field(default_factory=list)
    scores: list[float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        for m in self.members:
            if m.role == "out":
                return m.module
        return self.members[0].module if self.members else f"group{self.id}"

    @property
    def kept(self) -> int:
        return self.size - len(self.removed)

    def to_dict(self) -> dict:
        d = {"id": int(self.id), "name": self.name, "size": int(self.size), "removed": [int(x) for x in self.removed],
             "members": [m.to_dict() for m in self.members]}
        if self.scores is not None:
            d["scores"] = [float(s) for s in self.scores]
        if self.notes:
            d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PlanGroup":
        _check_keys(d, {"id", "size", "members"}, {"name", "removed", "scores", "notes"}, "plan group")
        g = cls(int(d["id"]), int(d["size"]), [PlanMember.from_dict(m) for m in d["members"]],
                [int(x) for x in d.get("removed", [])], d.get("scores"), list(d.get("notes", [])))
        if any(r < 0 or r >= g.size for r in g.removed) or len(set(g.removed)) != len(g.removed):
            raise ConfigError(f"plan group {g.id}: 'removed' must hold distinct channels in [0, {g.size})")
        if len(g.removed) >= g.size and g.size > 0:
            raise ConfigError(f"plan group {g.id} removes all {g.size} channels")
        return g


@dataclass
class PruningPlan:
    """A complete pruning decision, independent of any model object.

    Attributes:
        groups: every prunable group, with the channels it loses.
        attrs: module attributes that follow the pruning (``num_heads``,
            ``normalized_shape`` of parameter-free norms...), each
            ``{"module", "attr", "before", "after"}``.
        tensor_shapes: original shape of every tensor the plan touches (checked on apply).
        info: how the plan was made (criterion, ratio, targets, estimates).
        frozen: places whose channels the engine keeps, each ``{"op", "module",
            "line", "reason"}`` (see :class:`prunekit.graph.analysis.FrozenRegion`).
        tied: places where a width read at run time sizes another dimension
            (``C // num_heads``), so the engine tied the two widths in proportion;
            each ``{"op", "module", "line", "reason", "groups"}`` with the names of
            the groups that carry the tie (see :class:`prunekit.graph.frozen.TiedSize`).
    """

    groups: list[PlanGroup]
    attrs: list[dict] = field(default_factory=list)
    tensor_shapes: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    frozen: list[dict] = field(default_factory=list)
    tied: list[dict] = field(default_factory=list)

    # ------------------------------------------------------------------ derived views
    def removed_indices(self) -> dict:
        """``(tensor, dim) -> sorted removed indices`` over all groups."""
        return {key: np.flatnonzero(mask) for key, mask in self._removed_masks().items()}

    def _removed_masks(self) -> dict:
        # boolean masks instead of np.isin/union1d/setdiff1d per member (each a
        # sort): on ResNet-50 those were a tenth of plan + apply
        out: dict = {}
        for g in self.groups:
            if not g.removed:
                continue
            rem = np.asarray(g.removed, dtype=np.int64)
            rem = rem[rem >= 0]  # as np.isin did, a negative channel matches nothing
            if not rem.size:
                continue
            # one channel mask per group (members of a loaded plan may name channels past its size)
            top = max((int(m.channels.max()) for m in g.members if np.size(m.channels)), default=-1)
            is_rem = np.zeros(max(int(g.size), top + 1, int(rem.max()) + 1), dtype=bool)
            is_rem[rem] = True
            for m in g.members:
                chans = np.asarray(m.channels, dtype=np.int64)
                if not chans.size:
                    continue
                sel = np.asarray(m.indices, dtype=np.int64)[is_rem[chans] & (chans >= 0)]
                if sel.size:
                    key = (m.param, m.dim)
                    size = max(int(sel.max()) + 1, self._dim_size(key))
                    mask = out.get(key)
                    if mask is None or mask.size < size:
                        grown = np.zeros(size, dtype=bool)
                        if mask is not None:
                            grown[:mask.size] = mask
                        out[key] = mask = grown
                    mask[sel] = True
        return out

    def _dim_size(self, key) -> int:
        shape = self.tensor_shapes.get(key[0])
        return int(shape[key[1]]) if shape is not None and key[1] < len(shape) else 0

    def kept_indices(self) -> dict:
        """``(tensor, dim) -> kept indices`` for every tensor dimension that shrinks."""
        kept = {}
        for (param, dim), mask in self._removed_masks().items():
            size = int(self.tensor_shapes[param][dim])
            kept[(param, dim)] = np.flatnonzero(~mask[:size])
        return kept

    def new_shapes(self) -> dict:
        """Shape of every touched tensor after pruning."""
        shapes = {k: list(v) for k, v in self.tensor_shapes.items()}
        for (param, dim), idx in self.kept_indices().items():
            shapes[param][dim] = int(len(idx))
        return shapes

    @property
    def num_removed(self) -> int:
        return sum(len(g.removed) for g in self.groups)

    # ------------------------------------------------------------------ application
    def check_model(self, model) -> None:
        """Raise PrunekitError if ``model``'s tensors do not have the shapes this plan was made for."""
        tensors = dict(model.named_parameters(remove_duplicate=False))
        tensors.update(dict(model.named_buffers(remove_duplicate=False)))
        for name, shape in self.tensor_shapes.items():
            t = tensors.get(name)
            if t is None:
                raise PrunekitError(f"this plan needs tensor {name!r}, which the model does not have "
                                    "(a plan only applies to the architecture it was made for)")
            if list(t.shape) != list(shape):
                raise PrunekitError(f"tensor {name!r} has shape {list(t.shape)} but the plan was made for "
                                    f"{list(shape)}; was the model already pruned?")

    def apply(self, model, inplace: bool = False):
        """Remove the planned channels physically; returns the pruned model.

        The result has the same module classes with smaller tensors and updated
        size attributes. Unless ``inplace`` is True, ``model`` is left untouched.
        If the model carries a ``prunekit_spec``, the plan is appended to it so
        :func:`prunekit.checkpoint.save` records it (kind ``"prune_plan"``).
        """
        from prunekit.spec import get_spec

        self.check_model(model)
        out = model if inplace else copy.deepcopy(model)
        self._slice(out)
        spec = get_spec(model)
        if spec is not None:
            out.prunekit_spec = spec.with_transform(self.to_transform())
        return out

    def _slice(self, model) -> None:
        from prunekit.surgery import set_attributes, slice_model

        slice_model(model, self.kept_indices())
        set_attributes(model, [a for a in self.attrs if a["after"] != a["before"]])

    def apply_masks(self, model, inplace: bool = False):
        """Zero every parameter slice of the planned channels (producers and consumers) in a dense copy."""
        from prunekit.surgery import mask_model

        self.check_model(model)
        out = model if inplace else copy.deepcopy(model)
        mask_model(out, self.removed_indices())
        return out

    def to_transform(self) -> dict:
        """The checkpoint transform recording this plan."""
        return {"kind": "prune_plan", "plan": self.to_dict()}

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        d = {"format": PLAN_FORMAT, "version": PLAN_VERSION, "info": _jsonable(self.info),
             "tensor_shapes": {k: [int(s) for s in v] for k, v in self.tensor_shapes.items()},
             "attrs": [dict(a) for a in self.attrs], "groups": [g.to_dict() for g in self.groups]}
        if self.frozen:  # optional key: plans without frozen regions read as before
            d["frozen"] = [dict(f) for f in self.frozen]
        if self.tied:  # optional key, as "frozen"
            d["tied"] = [dict(t, groups=list(t.get("groups", []))) for t in self.tied]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PruningPlan":
        if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT:
            raise ConfigError(f"not a prunekit pruning plan (expected format {PLAN_FORMAT!r})")
        if d.get("version") != PLAN_VERSION:
            raise ConfigError(f"pruning plan version {d.get('version')!r} is not supported")
        _check_keys(d, {"groups", "tensor_shapes"}, {"format", "version", "info", "attrs", "frozen", "tied"},
                    "pruning plan")
        attrs = []
        for a in d.get("attrs", []):
            _check_keys(a, {"module", "attr", "before", "after"}, set(), "plan attribute")
            attrs.append(dict(a))
        frozen = []
        for f in d.get("frozen", []):
            _check_keys(f, {"op", "module", "line", "reason"}, set(), "plan frozen region")
            frozen.append({k: str(f[k]) for k in ("op", "module", "line", "reason")})
        tied = []
        for t in d.get("tied", []):
            _check_keys(t, {"op", "module", "line", "reason"}, {"groups"}, "plan tied size")
            tied.append(dict({k: str(t[k]) for k in ("op", "module", "line", "reason")},
                             groups=[str(g) for g in t.get("groups", [])]))
        return cls(groups=[PlanGroup.from_dict(g) for g in d["groups"]], attrs=attrs,
                   tensor_shapes={k: [int(s) for s in v] for k, v in d["tensor_shapes"].items()},
                   info=dict(d.get("info", {})), frozen=frozen, tied=tied)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "PruningPlan":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ConfigError(f"pruning plan is not valid JSON: {e}") from None

    def save(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write the plan as JSON atomically."""
        from prunekit.utils.io import atomic_write, check_overwrite

        p = check_overwrite(path, overwrite)
        with atomic_write(p, "w") as f:
            f.write(self.to_json(indent=1))
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PruningPlan":
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such plan file")
        try:
            return cls.from_json(p.read_text())
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None

    # ------------------------------------------------------------------ display
    def layer_rows(self) -> list[dict]:
        """Per (layer, tensor dim): channels before and after, and the removed indices."""
        rows = []
        rem = self.removed_indices()
        seen = set()
        for g in self.groups:
            for m in g.members:
                if m.role not in ("out", "in") or (m.param, m.dim) in seen:
                    continue
                seen.add((m.param, m.dim))
                size = int(self.tensor_shapes[m.param][m.dim])
                r = rem.get((m.param, m.dim), np.zeros(0, np.int64))
                rows.append({"layer": m.module, "tensor": m.param.rpartition(".")[2], "dim": m.dim,
                             "kind": "out" if m.role == "out" else "in", "before": size,
                             "after": size - int(r.size), "removed": [int(x) for x in r]})
        rows.sort(key=lambda r: (r["layer"], r["kind"] != "out"))
        return rows

    def table(self, max_rows: int | None = None, show_indices: bool = False) -> str:
        """A text table: one row per pruned or prunable layer dimension."""
        rows = [r for r in self.layer_rows()]
        head = ["layer", "dim", "before", "after", "kept %"] + (["removed"] if show_indices else [])
        body = []
        for r in rows[:max_rows] if max_rows else rows:
            line = [r["layer"], f"{r['kind']}", str(r["before"]), str(r["after"]),
                    f"{100.0 * r['after'] / max(r['before'], 1):.0f}"]
            if show_indices:
                idx = r["removed"]
                line.append(",".join(map(str, idx[:12])) + (" ..." if len(idx) > 12 else ""))
            body.append(line)
        widths = [max(len(h), *(len(b[k]) for b in body)) if body else len(h) for k, h in enumerate(head)]
        fmt = lambda cells: "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
        lines = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
        if max_rows and len(rows) > max_rows:
            lines.append(f"... {len(rows) - max_rows} more rows")
        if self.frozen:
            lines += ["", f"kept whole ({len(self.frozen)} frozen regions; channels touching them are not pruned):"]
            lines += ["  " + line for line in self.frozen_lines()]
        if self.tied:
            lines += ["", f"tied in proportion ({len(self.tied)} places where a width read at run time sizes "
                          "another dimension):"]
            lines += ["  " + line for line in self.tied_lines()]
        return "\n".join(lines)

    def frozen_lines(self) -> list[str]:
        """One line per frozen region: ``op in 'module' (file:line): reason`` (what ``prunekit prune --explain`` prints)."""
        return [_region_line(f) for f in self.frozen]

    def tied_lines(self) -> list[str]:
        """One line per tied size, as :meth:`frozen_lines` plus ``[groups: ...]`` (also in ``--explain``)."""
        return [_region_line(t) + (f" [groups: {', '.join(t['groups'])}]" if t.get("groups") else "")
                for t in self.tied]

    def summary(self) -> dict:
        total = sum(g.size for g in self.groups)
        removed = self.num_removed
        d = {"groups": len(self.groups), "channels": total, "removed": removed,
             "pruned_groups": sum(1 for g in self.groups if g.removed)}
        if self.frozen:
            d["frozen_regions"] = len(self.frozen)
        for k in ("criterion", "macs_before", "macs_after", "params_before", "params_after"):
            if k in self.info:
                d[k] = self.info[k]
        if self.info.get("latency") is not None and "latency_measured" in self.info:
            d["latency"] = {k: self.info.get(f"latency_{k}") for k in ("batch", "threads", "predicted", "measured",
                                                                      "met", "verdict")}
            d["latency"]["target"] = self.info["latency"]
        return d

    def latency_line(self) -> str:
        """A latency budget's outcome in one line ("" for other plans).

        E.g. ``latency 0.49 [0.47, 0.51] of the dense model measured (median of 5 timing sessions, 94% interval
        over sessions; within a session +-1.8%; target 0.5, predicted 0.50; bs=1, 2 threads, 10 interleaved
        rounds per session; 2 measurement(s)): met``, the verdict being "met", "not met" or "not measurable
        to +-5% on this machine right now: sessions spread 12%".
        """
        m = self.info.get("latency_measured")
        if self.info.get("latency") is None or not m:
            return ""
        threads = f"bs={m['batch_size']}, {m['threads']} thread{'s' if m['threads'] != 1 else ''}"
        target = (f"target {self.info['latency']:g}, predicted {self.info.get('latency_predicted', float('nan')):.2f}"
                  f"; {threads}")
        n = len(self.info.get("latency_refinements", []))
        if "sessions" not in m:  # a plan made before timing sessions (one interleaved timing)
            return (f"latency {m['ratio']:.2f} [{m['low']:.2f}, {m['high']:.2f}] of the dense model measured "
                    f"({target}, {m['rounds']} interleaved rounds, 95% CI; {n} measurement(s))")
        k = m["sessions"]
        verdict = self.info.get("latency_verdict") or ""
        if verdict == "not measurable":
            verdict = (f"not measurable to +-{100 * self.info.get('latency_tolerance', 0.05):g}% on this machine "
                       f"right now: sessions spread {100 * m['spread']:.0f}%")
        return (f"latency {m['ratio']:.2f} [{m['low']:.2f}, {m['high']:.2f}] of the dense model measured (median of "
                f"{k} timing session{'s' if k != 1 else ''}, {100 * m['coverage']:.0f}% interval over sessions; "
                f"within a session +-{100 * m['within_half_width']:.1f}%; {target}, {m['rounds'] // max(1, k)} "
                f"interleaved rounds per session; {n} measurement(s))" + (f": {verdict}" if verdict else ""))

    def __str__(self) -> str:
        s = self.summary()
        head = (f"PruningPlan: {s['pruned_groups']}/{s['groups']} groups pruned, "
                f"{s['removed']}/{s['channels']} channels removed")
        if "macs_before" in s and s.get("macs_before"):
            head += f"; MACs {s['macs_after'] / s['macs_before']:.1%} of original (estimate)"
        if "params_before" in s and s.get("params_before"):
            head += f"; params {s['params_after'] / s['params_before']:.1%}"
        if self.latency_line():
            head += "\n" + self.latency_line()
        return head + "\n" + self.table()

    __repr__ = lambda self: f"<PruningPlan {len(self.groups)} groups, {self.num_removed} channels removed>"  # noqa: E731


# ----------------------------------------------------------------------------- helpers


def _region_line(r: dict) -> str:
    where = f" ({r['line']})" if r.get("line") else ""
    return f"{r['op']} in {repr(r['module']) if r.get('module') else '<root>'}{where}: {r['reason']}"


def _encode_mapping(indices: np.ndarray, channels: np.ndarray) -> dict:
    idx = np.asarray(indices, dtype=np.int64)
    ch = np.asarray(channels, dtype=np.int64)
    n = idx.size
    if n and (idx == np.arange(idx[0], idx[0] + n)).all():
        off = int(idx[0])
        g = int(ch.max()) + 1 if n else 0
        if (ch == np.arange(n)).all():
            return {"offset": off, "n": n}
        if g and n % g == 0:
            r = n // g
            if (ch == np.repeat(np.arange(g), r)).all():
                return {"offset": off, "n": n, "repeat": r}
            if (ch == np.tile(np.arange(g), r)).all():
                return {"offset": off, "n": n, "tile": r}
    return {"indices": idx.tolist(), "channels": ch.tolist()}


def _decode_mapping(d: dict):
    if "indices" in d:
        idx = np.asarray(d["indices"], dtype=np.int64)
        ch = np.asarray(d.get("channels", []), dtype=np.int64)
        if idx.shape != ch.shape:
            raise ConfigError(f"plan member {d.get('param')!r}: 'indices' and 'channels' differ in length")
        return idx, ch
    try:
        off, n = int(d["offset"]), int(d["n"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"plan member {d.get('param')!r} needs 'offset' and 'n' or 'indices'") from None
    idx = np.arange(off, off + n, dtype=np.int64)
    if "repeat" in d:
        r = int(d["repeat"])
        ch = np.repeat(np.arange(n // r), r)
    elif "tile" in d:
        t = int(d["tile"])
        ch = np.tile(np.arange(n // t), t)
    else:
        ch = np.arange(n, dtype=np.int64)
    return idx, ch


def _check_keys(d, required: set, optional: set, what: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{what} must be a JSON object, got {type(d).__name__}")
    missing = required - set(d)
    if missing:
        raise ConfigError(f"{what} is missing key(s) {sorted(missing)}")
    unknown = set(d) - required - optional
    if unknown:
        raise ConfigError(f"{what} has unknown key(s) {sorted(unknown)}")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def replay_transform(model, transform: dict):
    """Replay a stored plan's shapes on a freshly built dense model (the checkpoint transform ``prune_plan``).

    :mod:`prunekit.checkpoint` looks this function up by name when a checkpoint holds a
    ``{"kind": "prune_plan", "plan": {...}}`` transform; no example inputs are needed.
    """
    if "plan" not in transform:
        raise ConfigError("prune_plan transform has no 'plan'")
    plan = PruningPlan.from_dict(transform["plan"])
    plan.check_model(model)
    plan._slice(model)
    return model
