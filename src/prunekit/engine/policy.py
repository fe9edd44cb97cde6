"""How many channels each group loses: uniform, per-layer, global ranking, MACs/params targets.

Everything here is pure numpy on per-group scores and index counts; nothing
touches a model. The planner (:mod:`prunekit.engine.planner`) builds a
:class:`CostModel` from the coupling analysis and calls :func:`select`.

Rules applied to every group, in this order:

1. the group's removal count comes from its ratio (uniform or per-layer) or
   from the global threshold on normalised scores;
2. ``round_to``: the number of *kept* channels is rounded up to a multiple of
   ``round_to`` (hardware-friendly widths), never above the group size;
3. ``min_channels``: at least this many channels are kept (and never fewer than one).

Targets (``macs=0.5`` keeps half the multiply-accumulates, ``params=0.5`` half
the parameters) are met by bisection on the uniform ratio (or on the global
threshold) using an exact count of the convolution/linear work from the kept
widths, within ``tolerance`` (default 1% of the original), then refined group by
group; on a miss, :func:`nudge` moves single groups towards the target. Channels
come in whole numbers, so the nearest reachable fraction can still be further
than ``tolerance``: with ``best_effort`` (the planner's default) :func:`select`
then returns the nearest setting it found and the planner warns; without it, it
raises. A target below what pruning as far as allowed reaches (``max_ratio`` of
every group) is always an error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from prunekit.errors import PrunekitError


@dataclass
class GroupCost:
    """One group for the policy: its size, its channels from least to most important, and what each costs.

    Attributes:
        size: channels.
        order: channel indices sorted by increasing score.
        members: ``(tensor key index, cumulative index count along order)`` per member.
        norm_scores: scores normalised for global ranking (same order as channels).
        ratio: this group's own ratio (per-layer setting), or None for the default.
        allowed: False for groups that must not be pruned (ignored layers).
    """

    size: int
    order: np.ndarray
    members: list
    norm_scores: np.ndarray | None = None
    ratio: float | None = None
    allowed: bool = True


@dataclass
class CostModel:
    """Exact MACs/params of conv/linear layers as a function of the kept widths.

    Attributes:
        dims: list of ``(tensor, dim)`` keys that can shrink.
        dim_size: original size of each key.
        tensors: name -> original shape of every parameter (and of every weight used in MACs).
        macs_terms: ``(weight tensor, positions)``: MACs = positions x kept elements of the weight.
        fixed_macs: MACs of other matrix products, counted as unchanged.
        param_names: tensors counted as parameters.
    """

    dims: list
    dim_size: np.ndarray
    tensors: dict
    macs_terms: list
    fixed_macs: float = 0.0
    param_names: list = field(default_factory=list)

    def __post_init__(self):
        self._key = {k: i for i, k in enumerate(self.dims)}

    def key_index(self, key) -> int:
        return self._key[key]

    def _numel(self, name, removed) -> float:
        shape = self.tensors[name]
        n = 1.0
        for d, s in enumerate(shape):
            k = self._key.get((name, d))
            n *= s - (removed[k] if k is not None else 0)
        return n

    def macs(self, removed: np.ndarray) -> float:
        return float(sum(pos * self._numel(w, removed) for w, pos in self.macs_terms)) + self.fixed_macs

    def params(self, removed: np.ndarray) -> float:
        return float(sum(self._numel(p, removed) for p in self.param_names))


def removed_counts(groups: list[GroupCost], n_remove: np.ndarray, n_dims: int) -> np.ndarray:
    """Indices removed along each shrinkable tensor dim when group ``g`` loses its ``n_remove[g]`` weakest channels."""
    out = np.zeros(n_dims, dtype=np.float64)
    for g, n in zip(groups, n_remove):
        if n <= 0:
            continue
        for key, cum in g.members:
            out[key] += cum[n - 1]
    return out


def _round_keep(size: int, keep: int, round_to: int, min_channels: int) -> int:
    if round_to > 1 and size > round_to:
        keep = min(size, int(math.ceil(keep / round_to)) * round_to)
    return max(keep, min(size, max(1, min_channels)))


def counts_for_ratio(groups, ratio: float, round_to: int, min_channels: int) -> np.ndarray:
    """Removal count per group for a uniform ``ratio`` (per-group ratios take precedence)."""
    out = np.zeros(len(groups), dtype=np.int64)
    for i, g in enumerate(groups):
        if not g.allowed:
            continue
        r = g.ratio if g.ratio is not None else ratio
        keep = g.size - int(math.floor(r * g.size + 1e-9))
        out[i] = g.size - _round_keep(g.size, keep, round_to, min_channels)
    return out


def counts_for_threshold(groups, threshold: float, round_to: int, min_channels: int, max_ratio: float) -> np.ndarray:
    """Removal count per group for a global threshold on normalised scores."""
    out = np.zeros(len(groups), dtype=np.int64)
    for i, g in enumerate(groups):
        if not g.allowed or g.norm_scores is None:
            continue
        n = int(np.searchsorted(np.sort(g.norm_scores), threshold, side="left"))
        n = min(n, int(math.floor(max_ratio * g.size + 1e-9)))
        out[i] = g.size - _round_keep(g.size, g.size - n, round_to, min_channels)
    return out


def select(groups: list[GroupCost], cost: CostModel, *, ratio: float | None, macs: float | None,
           params: float | None, global_ranking: bool, round_to: int, min_channels: int,
           max_ratio: float = 0.9, tolerance: float = 0.01, best_effort: bool = False) -> np.ndarray:
    """Removal count of every group under the chosen policy (see the module docstring).

    Raises:
        PrunekitError: a MACs/params target is below what pruning as far as allowed
            reaches, or (unless ``best_effort``) cannot be met within ``tolerance``.
    """
    n_dims = len(cost.dims)
    if macs is None and params is None:
        if global_ranking:
            thr = _global_threshold_for_fraction(groups, ratio or 0.0)
            return counts_for_threshold(groups, thr, round_to, min_channels, max_ratio)
        return counts_for_ratio(groups, ratio or 0.0, round_to, min_channels)
    target, which = (macs, "macs") if macs is not None else (params, "params")
    zero = np.zeros(n_dims)
    base = cost.macs(zero) if which == "macs" else cost.params(zero)
    if base <= 0:
        raise PrunekitError(f"cannot aim at a {which} target: the model has no countable {which}")

    def kept(rem):
        return (cost.macs(rem) if which == "macs" else cost.params(rem)) / base

    def frac(counts):
        return kept(removed_counts(groups, counts, n_dims))

    counts, f = select_fraction(groups, frac, target, what=which, global_ranking=global_ranking, round_to=round_to,
                                min_channels=min_channels, max_ratio=max_ratio, tolerance=tolerance)
    if abs(f - target) > tolerance:
        # only on a miss, so that every target met before is met by the same channels
        counts, f = nudge(groups, counts, removed_counts(groups, counts, n_dims), kept, target, round_to,
                          min_channels, max_ratio)
    if abs(f - target) > tolerance and not best_effort:
        raise PrunekitError(f"{which} target {target:g} cannot be met within {tolerance:.0%}: the nearest "
                            f"reachable is {f:.3f} (raise tolerance, allow best_effort, or try a smaller round_to or "
                            f"global_ranking=True)")
    return counts


def select_fraction(groups: list[GroupCost], frac, target: float, *, what: str, global_ranking: bool,
                    round_to: int, min_channels: int, max_ratio: float = 0.9, tolerance: float = 0.0):
    """Removal counts whose cost fraction ``frac(counts)`` is nearest ``target``: ``(counts, fraction)``.

    ``frac`` maps removal counts (one per group) to the kept fraction of any cost that
    falls as channels go (MACs, parameters, predicted latency). Bisection on the
    uniform ratio (or the global threshold) for the smallest pruning at or below
    ``target``, then group-by-group steps between the two neighbouring settings (see
    :func:`step_between`). ``what`` names the cost in errors. Pure given ``frac``.

    Raises:
        PrunekitError: pruning as far as allowed keeps more than ``target + tolerance``.

    Example:
        >>> g = [GroupCost(10, np.arange(10), [], np.ones(10))]
        >>> select_fraction(g, lambda c: 1 - c[0] / 10, 0.6, what="macs", global_ranking=False, round_to=1,
        ...                 min_channels=1)[0].tolist()
        [4]
    """
    if global_ranking:
        pool = np.concatenate([g.norm_scores for g in groups if g.allowed and g.norm_scores is not None] or [np.zeros(0)])
        if pool.size == 0:
            raise PrunekitError("nothing in this model can be pruned, so no target can be met")
        cands = np.unique(pool)
        lo, hi = 0, cands.size  # number of candidate thresholds passed

        def at(k):
            thr = cands[k - 1] + 1e-12 if k > 0 else -np.inf
            return counts_for_threshold(groups, thr, round_to, min_channels, max_ratio)
    else:
        lo, hi = 0, 1000

        def at(k):
            return counts_for_ratio(groups, max_ratio * k / 1000.0, round_to, min_channels)

    f_hi = frac(at(hi))
    if f_hi > target + tolerance:
        raise PrunekitError(f"{what} target {target:g} cannot be met: pruning as far as allowed keeps "
                            f"{f_hi:.3f} of the original (max per-group ratio {max_ratio}, round_to {round_to}, "
                            f"min_channels {min_channels})")
    # bisection for the smallest pruning whose fraction is <= target, then keep the closest
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if frac(at(mid)) > target:
            lo = mid
        else:
            hi = mid
    return _refine(groups, at(lo), at(hi), frac, target)


def allowed_counts(g: GroupCost, round_to: int, min_channels: int, max_ratio: float) -> list[int]:
    """Every removal count group ``g`` may take: rounding, ``min_channels`` and ``max_ratio`` respected.

    Example:
        >>> allowed_counts(GroupCost(8, np.arange(8), []), round_to=2, min_channels=1, max_ratio=0.9)
        [0, 2, 4, 6]
    """
    if not g.allowed or g.ratio is not None:
        return [0] if not g.allowed else []
    floor_keep = _round_keep(g.size, 1, 1, min_channels)
    most = min(g.size - floor_keep, int(math.floor(max_ratio * g.size + 1e-9)))
    rounded = round_to > 1 and g.size > round_to
    return [n for n in range(most + 1) if not rounded or (g.size - n) % round_to == 0]


def nudge(groups, counts, removed: np.ndarray, kept, target: float, round_to: int, min_channels: int,
          max_ratio: float, max_moves: int = 64):
    """Greedy single-group moves (one allowed count up or down) while they bring the kept fraction nearer ``target``.

    Uniform ratios and the group-by-group refinement move groups in the order of
    their ratio or scores; on narrow models (LeNet-5's 6 and 16 filters) that can
    leave the nearest setting several percent away, while a few channels more or
    fewer in another (wider) group land much closer. Groups with their own ratio
    keep it. ``removed`` is :func:`removed_counts` of ``counts``; ``kept(removed)``
    is the fraction of the original that remains. Returns ``(counts, fraction)``; pure.
    """
    counts = np.asarray(counts).copy()
    removed = np.asarray(removed, dtype=np.float64).copy()
    f = kept(removed)
    options = [allowed_counts(g, round_to, min_channels, max_ratio) for g in groups]
    movable = [i for i, allowed in enumerate(options) if len(allowed) > 1 and int(counts[i]) in allowed]

    def moved(i, n):
        # only group i changes, so only its members' removed indices do (no full recount)
        old, rem = int(counts[i]), removed.copy()
        for key, cum in groups[i].members:
            rem[key] += (cum[n - 1] if n > 0 else 0) - (cum[old - 1] if old > 0 else 0)
        return rem

    for _ in range(max_moves):
        best = None
        for i in movable:
            k = options[i].index(int(counts[i]))
            for j in (k - 1, k + 1):
                if 0 <= j < len(options[i]):
                    rem = moved(i, options[i][j])
                    ft = kept(rem)
                    if abs(ft - target) < abs((best[2] if best else f) - target) - 1e-12:
                        best = (i, options[i][j], ft, rem)
        if best is None:
            break
        i, n, f, removed = best
        counts[i] = n
    return counts, f


def nudge_fraction(groups, counts, frac, target: float, round_to: int, min_channels: int, max_ratio: float,
                   max_moves: int = 64):
    """:func:`nudge` for any cost: single-group moves while ``frac(counts)`` comes nearer ``target``.

    Returns ``(counts, fraction)``; pure given ``frac``.

    Example:
        >>> g = [GroupCost(8, np.arange(8), []), GroupCost(8, np.arange(8), [])]
        >>> nudge_fraction(g, np.array([0, 0]), lambda c: 1 - (c[0] + 3 * c[1]) / 32, 0.75, 2, 1, 0.9)[0].tolist()
        [2, 2]
    """
    counts = np.asarray(counts).copy()
    f = frac(counts)
    options = [allowed_counts(g, round_to, min_channels, max_ratio) for g in groups]
    movable = [i for i, allowed in enumerate(options) if len(allowed) > 1 and int(counts[i]) in allowed]
    for _ in range(max_moves):
        best = None
        for i in movable:
            k = options[i].index(int(counts[i]))
            for j in (k - 1, k + 1):
                if 0 <= j < len(options[i]):
                    trial = counts.copy()
                    trial[i] = options[i][j]
                    ft = frac(trial)
                    if abs(ft - target) < abs((best[1] if best else f) - target) - 1e-12:
                        best = (trial, ft)
        if best is None:
            break
        counts, f = best
    return counts, f


def _refine(groups, c_lo, c_hi, frac, target):
    """Between two neighbouring settings, step group by group (weakest next channel first) to the closest fit.

    Uniform ratios move every group at once, which can jump over a MACs target by
    several percent on narrow models; single-group steps close that gap.
    """
    best = (c_lo, frac(c_lo))
    f_hi = frac(c_hi)
    if abs(f_hi - target) < abs(best[1] - target):
        best = (c_hi, f_hi)
    diff = [i for i in range(len(groups)) if c_hi[i] > c_lo[i]]

    def next_score(i):
        g = groups[i]
        k = int(c_lo[i])
        if g.norm_scores is None or k >= g.size:
            return 0.0
        return float(g.norm_scores[g.order[k]])

    return step_between(c_lo, c_hi, sorted(diff, key=next_score), frac, target, best)


def step_between(c_lo, c_hi, order, frac, target: float, best):
    """Move entries ``order`` one at a time from ``c_lo`` to ``c_hi``; the ``(counts, frac)`` closest to ``target``.

    Stops once ``frac`` falls to the target (the counts only grow, so the cost only
    falls). ``best`` is the best ``(counts, frac)`` known so far. Pure.

    Example:
        >>> import numpy as np
        >>> step_between(np.array([0, 0]), np.array([1, 1]), [0, 1], lambda c: 1 - 0.3 * c.sum(), 0.65,
        ...              (np.array([0, 0]), 1.0))[0].tolist()
        [1, 0]
    """
    cur = c_lo.copy()
    for i in order:
        cur = cur.copy()
        cur[i] = c_hi[i]
        f = frac(cur)
        if abs(f - target) < abs(best[1] - target):
            best = (cur, f)
        if f <= target:
            break
    return best


def _global_threshold_for_fraction(groups, ratio: float) -> float:
    """Threshold on normalised scores below which ``ratio`` of all prunable channels fall."""
    pool = np.concatenate([g.norm_scores for g in groups if g.allowed and g.norm_scores is not None] or [np.zeros(0)])
    if pool.size == 0 or ratio <= 0:
        return -np.inf
    k = int(math.floor(ratio * pool.size))
    if k <= 0:
        return -np.inf
    return float(np.sort(pool)[k - 1]) + 1e-12


def normalize_scores(scores: np.ndarray, how: str = "mean") -> np.ndarray:
    """Scale a group's scores so different groups compare (``mean``: divide by the mean; ``max``; ``sum``; ``none``)."""
    s = np.asarray(scores, dtype=np.float64)
    if how == "none":
        return s
    denom = {"mean": s.mean(), "max": s.max(), "sum": s.sum()}.get(how)
    if denom is None:
        raise PrunekitError(f"unknown score normalisation {how!r}; use mean, max, sum or none")
    return s / denom if denom > 0 else s
