"""The search space: one width code per prunable coupling group of a model.

A *coupling group* (from :func:`prunekit.graph.analyze`) is a set of tensor
slices that must keep the same channels; channels joined by a residual add are
one group, so residual blocks share one code, as MetaPruning (Liu et al., ICCV
2019, Sec. 3.3) prescribes for the shortcut channels of ResNet/MobileNet v2.

An *encoding* is a tuple of kept channel counts, one per group, each drawn from
that group's candidate list (a grid of width ratios, e.g. 0.1 .. 1.0, rounded
to a multiple of ``round_to``). A group keeps its *leading* channels: channel
``c`` of a group survives iff ``c < kept``. Because the kept set only depends on
the count, one set of full-size weights serves every sub-network (AutoSlim's
slimmable weight sharing, Yu & Huang 2019), and the engine's
:class:`~prunekit.engine.PruningPlan` realises the same sub-network physically.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 4))
    >>> space = SearchSpace.build(net, torch.randn(1, 1, 8, 8), ratios=(0.5, 1.0))
    >>> space.candidates
    [(4, 8)]
    >>> space.plan((4,)).apply(net)[0].out_channels
    4
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from prunekit.errors import PrunekitError
from prunekit.validate import check_fraction, check_int

DEFAULT_RATIOS = tuple(round(0.1 * k, 1) for k in range(1, 11))


def candidate_counts(size: int, ratios, round_to: int = 1, min_channels: int = 1) -> tuple[int, ...]:
    """Sorted distinct kept counts of a group of ``size`` channels for width ``ratios``.

    Counts are rounded up to a multiple of ``round_to`` (never above ``size``) and
    never below ``min_channels``; the full width is always a candidate.

    >>> candidate_counts(16, (0.1, 0.5, 1.0), round_to=4)
    (4, 8, 16)
    """
    out = {size}
    for r in ratios:
        k = max(1, int(math.ceil(float(r) * size - 1e-9)))
        if round_to > 1:
            k = int(math.ceil(k / round_to)) * round_to
        out.add(min(size, max(k, min(size, min_channels))))
    return tuple(sorted(out))


@dataclass
class SearchSpace:
    """Prunable groups of a model and their candidate widths.

    Build with :meth:`build`. Attributes:
        groups: the engine's coupling groups that may shrink (size > 1).
        candidates: per group, the sorted candidate kept counts.
        analysis: the engine's :class:`~prunekit.graph.Analysis` (for plans and costs).
        macs_offset: MACs ``count_macs`` sees beyond the engine's cost model (held constant).
    """

    groups: list
    candidates: list
    analysis: object
    param_names: list
    macs_offset: float = 0.0
    _cost: object = field(default=None, repr=False)

    @classmethod
    def build(cls, model, example_inputs, ratios=DEFAULT_RATIOS, round_to: int = 1, min_channels: int = 1,
              ignored_layers=None) -> "SearchSpace":
        """Analyse ``model`` once and make the grid.

        Args:
            ratios: candidate width ratios (fractions of each group's channels kept).
            round_to: kept counts are multiples of this.
            min_channels: never keep fewer channels.
            ignored_layers: module names whose output channels keep their full width.
        """
        import torch

        from prunekit.graph import analyze
        from prunekit.graph.capture import example_tuple
        from prunekit.measure import count_macs
        from prunekit.engine.policy import CostModel

        ratios = tuple(ratios)
        if not ratios:
            raise PrunekitError("search ratios must not be empty")
        for i, r in enumerate(ratios):
            check_fraction(f"search ratios[{i}]", r, allow_zero=False, allow_one=True, error=PrunekitError)
        check_int("round_to", round_to, error=PrunekitError)
        ignored = set(ignored_layers or ())
        an = analyze(model, example_inputs)
        groups = [g for g in an.groups if g.size > 1 and not (set(g.producers) & ignored)]
        if not groups:
            raise PrunekitError(f"{type(model).__name__} has no prunable channel group to search over")
        cands = [candidate_counts(g.size, ratios, round_to, min_channels) for g in groups]
        names = [n for n, _ in model.named_parameters()]
        cost = CostModel(dims=[(m.param, m.dim) for m in an.members],
                         dim_size=np.array([m.size for m in an.members]), tensors=dict(an.param_shapes),
                         macs_terms=list(an.macs_terms), param_names=names)
        space = cls(groups, cands, an, names, 0.0, cost)
        with torch.no_grad():
            full = float(count_macs(model, example_tuple(model, example_inputs)).total)
        space.macs_offset = full - cost.macs(np.zeros(len(cost.dims)))
        return space

    # ------------------------------------------------------------------ encodings
    def __len__(self) -> int:
        return len(self.groups)

    @property
    def full(self) -> tuple:
        """The encoding of the unpruned model."""
        return tuple(c[-1] for c in self.candidates)

    @property
    def smallest(self) -> tuple:
        """The narrowest encoding of the grid."""
        return tuple(c[0] for c in self.candidates)

    def uniform(self, ratio: float) -> tuple:
        """Every group at the candidate closest to ``ratio`` of its width (uniform width scaling)."""
        return tuple(min(c, key=lambda k: (abs(k - ratio * g.size), -k)) for c, g in zip(self.candidates, self.groups))

    def check(self, encoding) -> tuple:
        """``encoding`` as a tuple of ints; raises PrunekitError if it is not on the grid."""
        enc = tuple(int(k) for k in encoding)
        if len(enc) != len(self.groups):
            raise PrunekitError(f"encoding has {len(enc)} entries but the search space has {len(self.groups)} groups")
        for i, (k, c) in enumerate(zip(enc, self.candidates)):
            if k not in c:
                raise PrunekitError(f"encoding entry {i} ({self.group_name(i)}) is {k}, not one of {list(c)}")
        return enc

    def normalized(self, encoding) -> np.ndarray:
        """Kept fraction per group (the PruningNet's input)."""
        return np.array([k / g.size for k, g in zip(encoding, self.groups)], dtype=np.float32)

    def group_name(self, i: int) -> str:
        """A readable name of group ``i``: its first producing layer."""
        p = self.groups[i].producers
        return p[0] if p else f"group{self.groups[i].id}"

    # ------------------------------------------------------------------ costs
    def removed_vector(self, encoding) -> np.ndarray:
        """Indices removed along each shrinkable tensor dim of the cost model."""
        out = np.zeros(len(self._cost.dims))
        for g, k in zip(self.groups, encoding):
            for m in g.members:
                out[self._cost.key_index((m.param, m.dim))] += int(np.count_nonzero(m.channels >= k))
        return out

    def macs(self, encoding) -> float:
        """MACs of the sub-network (as :func:`prunekit.measure.count_macs` counts them)."""
        return self._cost.macs(self.removed_vector(encoding)) + self.macs_offset

    def params(self, encoding) -> float:
        """Parameter count of the sub-network."""
        return self._cost.params(self.removed_vector(encoding))

    # ------------------------------------------------------------------ realisation
    def removed_channels(self, encoding) -> dict:
        """``{group id: [removed channel indices]}``: the trailing channels of every group."""
        return {g.id: list(range(k, g.size)) for g, k in zip(self.groups, encoding)}

    def plan(self, encoding, info: dict | None = None):
        """The engine's :class:`~prunekit.engine.PruningPlan` removing the trailing channels."""
        from prunekit.engine import plan_from_analysis

        enc = self.check(encoding)
        meta = {"criterion": "search", "encoding": list(enc)}
        meta.update(info or {})
        p = plan_from_analysis(self.analysis, self.removed_channels(enc), param_names=self.param_names, info=meta)
        # the space's estimates also count the MACs outside conv/linear layers (macs_offset)
        p.info.update({"macs_after": self.macs(enc), "params_after": self.params(enc)})
        return p

    def masks(self, encoding, tensors: dict) -> dict:
        """``{param name: 0/1 mask}`` zeroing every slice of the removed channels (only masked params listed)."""
        import torch

        out = {}
        for g, k in zip(self.groups, encoding):
            if k >= g.size:
                continue
            for m in g.members:
                if m.param not in tensors:
                    continue
                sel = m.indices[m.channels >= k]
                if sel.size == 0:
                    continue
                t = tensors[m.param]
                mask = out.get(m.param)
                if mask is None:
                    mask = out[m.param] = torch.ones_like(t)
                mask.index_fill_(m.dim, torch.as_tensor(sel, dtype=torch.long), 0.0)
        return out

    def layer_widths(self, encoding) -> list[dict]:
        """Per group: name, original and kept channels (for reports and bar charts)."""
        return [{"group": self.group_name(i), "size": g.size, "kept": int(k)}
                for i, (g, k) in enumerate(zip(self.groups, encoding))]
