"""Frozen regions: where the engine keeps channels, named by op, module and source line.

The analysis never fails for a local problem: an op it cannot follow, an
untraceable submodule or a Python value that pins a channel count costs only
the channels that touch it. Each such place is a :class:`FrozenRegion`; the
plan carries them (``PruningPlan.frozen``), ``plan.table()`` and
``prunekit prune --explain`` list them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrozenRegion:
    """A place whose channels the analysis keeps, and why.

    Recorded for every op the engine cannot follow (no handler, an argument form
    its handler does not support, an untraceable submodule) and for every Python
    value that pins a channel count (a size compared with a constant, an
    attribute used outside a reshape...). Only the channels that touch the region
    are kept; the rest of the model is still pruned.

    Attributes:
        op: the op as written in the model (``torch.einsum``, ``.foo()``, ``module Foo``).
        module: qualified name of the module whose ``forward`` holds it (``""``: the root).
        line: ``path/file.py:LINE`` of the source line, ``""`` when unknown.
        reason: why its channels are kept.
    """

    op: str
    module: str
    line: str
    reason: str

    def describe(self) -> str:
        """One line: ``op in module (file:line): reason``."""
        where = f" ({self.line})" if self.line else ""
        module = repr(self.module) if self.module else "<root>"
        return f"{self.op} in {module}{where}: {self.reason}"

    def to_dict(self) -> dict:
        return {"op": self.op, "module": self.module, "line": self.line, "reason": self.reason}


@dataclass(frozen=True)
class TiedSize:
    """A place where a width read at run time sizes another dimension, so the two were tied in proportion.

    ``B, N, C = x.shape; qkv.reshape(B, N, 3, heads, C // heads)`` stays right
    after pruning only if the per-head width loses one channel for every
    ``heads`` channels of ``C``: the analysis ties them (see
    :mod:`prunekit.graph.size_constraints`) instead of keeping both whole, and
    records it here so the plan can say so.

    Attributes: as :class:`FrozenRegion`; ``reason`` says what was tied to what.
    """

    op: str
    module: str
    line: str
    reason: str

    def describe(self) -> str:
        """One line: ``op in module (file:line): reason``."""
        return FrozenRegion.describe(self)  # type: ignore[arg-type] - same fields

    def to_dict(self) -> dict:
        return {"op": self.op, "module": self.module, "line": self.line, "reason": self.reason}


def frozen_warnings(frozen) -> list[str]:
    """One message per kind of frozen region (same op and reason), naming the first place and the count.

    A model repeats its blocks: twelve ``einsum`` calls are one problem, not
    twelve warnings; :attr:`Analysis.frozen` keeps every place.
    """
    kinds: dict = {}
    for r in frozen:
        kinds.setdefault((r.op, r.reason), []).append(r)
    out = []
    for regions in kinds.values():
        more = f" (and {len(regions) - 1} more places like it)" if len(regions) > 1 else ""
        out.append(regions[0].describe() + more)
    return out


def node_origin(node) -> tuple[str, str]:
    """``(module path, "file.py:LINE")`` of a traced node; either is ``""`` when unknown.

    The module is the innermost one whose ``forward`` created the node (fx and
    torch.export both record the module stack); the line is the one recorded at
    capture (see :mod:`prunekit.graph.capture`) or, for torch.export graphs, the
    last frame of the recorded stack trace outside torch.
    """
    if node.op == "call_module":
        module = str(node.target)
    else:
        stack = node.meta.get("nn_module_stack") or {}
        module = ""
        if stack:
            last = list(stack.values())[-1]
            module = str(last[0]) if isinstance(last, tuple) else str(last)
            if module.startswith("L['self']"):  # torch.export spelling of the root
                module = module[len("L['self']"):].lstrip(".")
    line = node.meta.get("prunekit_line", "")
    if not line and node.meta.get("stack_trace"):
        from prunekit.graph.capture import last_user_frame

        line = last_user_frame(node.meta["stack_trace"])
    return module, line


def module_line(module) -> str:
    """``file.py:LINE`` of a module's ``forward`` definition (for opaque modules), or ``""``."""
    import inspect

    from prunekit.graph.capture import short_path

    if module is None:
        return ""
    try:
        fwd = type(module).forward
        return f"{short_path(inspect.getsourcefile(fwd))}:{inspect.getsourcelines(fwd)[1]}"
    except (TypeError, OSError):  # built-ins and classes defined without source
        return ""

