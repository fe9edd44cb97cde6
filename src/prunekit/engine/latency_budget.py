"""Prune to a measured-latency target: ``prunekit.plan(model, x, latency=0.5)``.

MACs are a poor proxy for CPU latency: a layer left at 37 channels can run slower
than one at 48, and depthwise, pooling and element-wise work does not shrink with
MACs at all. A latency budget is therefore met on measurements of this machine:

1. **Latency model.** The per-layer lookup table of MetaPruning (Liu et al., ICCV
   2019, Sec. 3.4; :class:`prunekit.measure.latency_table.LatencyTable`, the same
   table the search uses) times every conv/linear layer alone at the (input,
   output) widths a candidate plan gives it, at ``latency_batch`` and
   ``latency_threads``, on eager torch. A layer's entry depends on its own group
   (output channels) and on the group feeding it (input channels), so a group's
   consumers are part of its cost. The predicted latency of a set of widths is the
   sum of its layers' entries plus ``c0 + c1 * activations`` fitted on the full,
   half-width and narrowest networks (BatchNorm, activations, adds, pooling).
   Entries are measured lazily and the table is cached as JSON (see
   :func:`cache_path`), so the next plan of the same model on the same machine,
   torch, thread count and input shape reuses every timing.
2. **Widths.** The planner's MACs machinery (:func:`prunekit.engine.policy.select_fraction`)
   chooses removal counts on the predicted fraction ``predict(widths) /
   predict(dense)``, channels ranked by the criterion as always. Kept counts are
   multiples of ``round_to``, by default :func:`fast_round_to`: oneDNN, torch's
   CPU convolution library, lays channels out in blocks of 16 floats on AVX-512
   and 8 on AVX2, so a width off the block pays for the whole block and runs in
   slower remainder loops.
3. **Measure and refine.** The pruned model is timed against the dense one in
   ``latency_sessions`` (default 5) short independent sessions
   (:func:`prunekit.measure.sessions.session_ratio`: fresh copies of both models, own
   warm-up, ``latency_rounds`` interleaved rounds each, the first-timed model alternating,
   a pause between sessions). The measured ratio is the **median over sessions**, its
   interval the distribution-free interval over sessions (min and max of 5 sessions,
   93.75%); each session's own bootstrap interval is kept. One long session was not
   enough: its interval over rounds was +-1-2.5% while the same model moved by up to 8%
   between two sessions, so the loop chased noise. When the median is not within half of
   ``latency_tolerance`` of the target (relative: 0.5 +- 0.0125 at 0.05; aiming at the
   middle of the band, so that timing the result again stays inside it), the widths are
   chosen again for a corrected predicted goal (:func:`next_goal`: ``target / measured``
   until the target is bracketed, then interpolation), at most ``latency_refinements``
   times; the plan closest to the target is kept. The verdict
   (:func:`prunekit.measure.sessions.target_verdict`) is "met" when the median is within
   ``latency_tolerance``, "not met" otherwise, and "not measurable" when the interval over
   sessions is wider than the tolerance (then neither is claimed). ``info`` records the
   target, the predicted and the measured ratio with both intervals, the verdict, every
   refinement, the batch size, threads and the table's file.

No peer offers this for CNN channel pruning: Torch-Pruning and kirigami budget
MACs or parameters only.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from prunekit.engine.policy import allowed_counts, counts_for_ratio, nudge_fraction, select_fraction
from prunekit.errors import PrunekitError

__all__ = ["LatencyModel", "WidthSpace", "build_latency_model", "cache_path", "default_cache_dir",
           "fast_round_to", "meet_latency", "next_goal", "plan_for_latency"]

#: bump when the cached table's meaning changes (its key then differs)
CACHE_FORMAT = 2
#: the table's timing effort: entries are re-timed lazily, and the refinement corrects what they miss
TABLE_REPEATS, TABLE_INNER = 5, 3
#: predicted widths further than this (relative) from the goal get single-group moves (policy.nudge_fraction)
NUDGE_ABOVE = 0.01
#: a refinement moves the predicted goal by at most this factor (either way)
MAX_CORRECTION = 1.5
#: the loop stops early only within this share of the tolerance: a plan measured at the tolerance's edge
#: (0.525 for 0.5 +- 5%) lands outside it as often as inside when it is timed again (seen on MobileNet v2:
#: 0.525 in the loop, 0.528 in a second interleaved timing), so the loop aims at the middle of the band
AIM_WITHIN = 0.5


def fast_round_to() -> int:
    """The channel multiple this CPU's convolution kernels run fastest at: 16 with AVX-512, else 8.

    oneDNN stores activations in channel blocks of the vector width (``nChw16c`` with
    AVX-512's 16 floats, ``nChw8c`` with AVX2's 8); a width that is not a multiple
    computes the padded block anyway.
    """
    import torch

    cap = str(torch.backends.cpu.get_cpu_capability()).upper()
    return 16 if cap.startswith("AVX512") else 8


def default_cache_dir() -> Path:
    """``$PRUNEKIT_CACHE_DIR/latency``, else ``~/.cache/prunekit/latency``."""
    root = os.environ.get("PRUNEKIT_CACHE_DIR", "").strip()
    return (Path(root) if root else Path.home() / ".cache" / "prunekit") / "latency"


def cache_path(cache_dir, layers, threads: int, backend: str = "torch") -> Path:
    """The table file of these layers (model structure and input shape) on this machine, torch and thread count.

    The key hashes the machine (architecture, CPU name, core count, vector extension),
    the torch version, the thread count, the backend and every timed layer's kind,
    configuration, input shape (batch included) and widths.
    """
    import torch

    key = {"format": CACHE_FORMAT, "machine": platform.machine(), "cpu": _cpu_name(), "cores": os.cpu_count(),
           "capability": str(torch.backends.cpu.get_cpu_capability()), "torch": torch.__version__,
           "threads": int(threads), "backend": backend, "layers": [_jsonable(vars(x)) for x in layers]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"table-{digest}.json"


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=list))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@dataclass
class WidthSpace:
    """The planner's prunable groups and the kept widths each may take, as the latency table reads them.

    Attributes:
        groups: the analysis groups that may shrink (``members`` name their tensors).
        positions: each group's index in the planner's group list.
        candidates: per group, the sorted kept counts its rounding allows.
        analysis, param_names: to realise an encoding as a plan (calibration).
    """

    groups: list
    positions: list
    candidates: list
    analysis: object
    param_names: list

    @classmethod
    def build(cls, analysis, groups_cost, param_names, round_to: int, min_channels: int, max_ratio: float):
        """The space of the planner's groups (``GroupCost`` list, in ``analysis.groups`` order)."""
        groups, positions, cands = [], [], []
        for i, (g, gc) in enumerate(zip(analysis.groups, groups_cost)):
            if not gc.allowed:
                continue
            if gc.ratio is not None:
                kept = [int(g.size - counts_for_ratio([gc], 0.0, round_to, min_channels)[0])]
            else:
                kept = [g.size - n for n in allowed_counts(gc, round_to, min_channels, max_ratio)]
            groups.append(g)
            positions.append(i)
            cands.append(tuple(sorted(set(kept) | {g.size})))
        return cls(groups, positions, cands, analysis, list(param_names))

    @property
    def full(self) -> tuple:
        """Every group at its full width."""
        return tuple(g.size for g in self.groups)

    @property
    def smallest(self) -> tuple:
        """Every group at its narrowest allowed width."""
        return tuple(c[0] for c in self.candidates)

    def uniform(self, ratio: float) -> tuple:
        """Every group at the allowed width closest to ``ratio`` of its size."""
        return tuple(min(c, key=lambda k: (abs(k - ratio * g.size), -k)) for c, g in zip(self.candidates, self.groups))

    def encoding(self, counts) -> tuple:
        """Kept width per space group of the planner's removal ``counts`` (one per planner group)."""
        return tuple(int(g.size - counts[p]) for g, p in zip(self.groups, self.positions))

    def plan(self, encoding):
        """A plan keeping each group's leading ``encoding`` channels (which ones does not change latency)."""
        from prunekit.engine.planner import plan_from_analysis

        removed = {g.id: list(range(int(k), g.size)) for g, k in zip(self.groups, encoding) if k < g.size}
        return plan_from_analysis(self.analysis, removed, param_names=self.param_names, info={"criterion": "width"})


@dataclass
class LatencyModel:
    """Predicted latency of the planner's removal counts: a :class:`LatencyTable` read through a :class:`WidthSpace`.

    ``predict_ms(counts)`` is the sum of the table entries of the encoding's layers
    plus the fitted overhead ``constant_ms + per_activation_ms * activations``, the
    constant clamped at 0 (on a loaded machine three noisy calibration networks can fit
    a negative one, which would make the narrowest network look slower than the
    dense); ``fraction(counts)`` divides it by the dense model's prediction.
    """

    table: object
    space: WidthSpace

    def predict_encoding(self, encoding) -> float:
        """Predicted latency (ms) of a kept width per space group."""
        t = self.table
        return float(t.layer_sum(encoding) + max(0.0, t.constant_ms) + t.per_activation_ms * t.activations(encoding))

    def predict_ms(self, counts) -> float:
        """Predicted latency (ms) of the model with ``counts`` channels removed per planner group."""
        return self.predict_encoding(self.space.encoding(counts))

    def fraction(self, counts) -> float:
        """Predicted latency of ``counts`` as a fraction of the dense model's."""
        full = self.predict_encoding(self.space.full)
        return self.predict_ms(counts) / full if full > 0 else 1.0


def build_latency_model(model, example, space: WidthSpace, threads: int, cache_dir=None):
    """The latency model of ``model`` at ``example``'s shape (batch included): ``(LatencyModel, cache file or None)``.

    A cached table for the same layers, machine, torch and threads is loaded and
    reused; otherwise one is built (layers recorded, overhead calibrated) and, with a
    ``cache_dir``, saved there after use (:func:`save_cache`).
    """
    from prunekit.measure.latency_table import LatencyTable, record_layers

    path = None
    if cache_dir is not None:
        path = cache_path(cache_dir, record_layers(model, example, space), threads)
        if path.is_file():
            try:
                table = LatencyTable.load(path)
                table.check_matches(model, example, space, where=f"cached latency table {path}")
                return LatencyModel(table, space), path
            except PrunekitError:
                pass  # damaged or stale: rebuilt and replaced below
    table = LatencyTable.build(model, example, space, repeats=TABLE_REPEATS, inner=TABLE_INNER, threads=threads,
                              run_statistic="min")
    return LatencyModel(table, space), path


def next_goal(points, target: float) -> float:
    """The predicted-latency goal to plan for next, from the ``(goal, measured)`` pairs so far. Pure.

    Once one measurement fell below ``target`` and another above it, the next goal is
    interpolated linearly between the closest of each (the measured latency is not a smooth
    function of the widths: on ResNet-50 two plans predicted at 0.454 and 0.458 measured 0.444
    and 0.525, so a multiplicative correction from the last point alone went back and forth);
    an interpolated goal already tried is replaced by the bracket's midpoint. Before a bracket
    exists, the last goal is corrected by ``target / measured``, damped to at most
    :data:`MAX_CORRECTION` either way so one noisy measurement cannot swing the plan to the dense
    model or the narrowest.

    Example:
        >>> round(next_goal([(0.5, 0.6)], 0.5), 5)
        0.41667
        >>> round(next_goal([(0.5, 0.6), (0.4, 0.45)], 0.5), 5)  # bracketed: interpolate between the two
        0.43333
    """
    goal, measured = points[-1]
    below = [p for p in points if p[1] < target]
    above = [p for p in points if p[1] > target]
    if below and above:
        g_lo, m_lo = max(below, key=lambda p: p[1])
        g_hi, m_hi = min(above, key=lambda p: p[1])
        g = g_lo + (target - m_lo) * (g_hi - g_lo) / (m_hi - m_lo)
        if any(abs(g - p[0]) < 1e-6 for p in points):
            g = (g_lo + g_hi) / 2
        return min(1.0, max(1e-6, g))
    if measured <= 0:
        return goal
    return min(1.0, goal * min(MAX_CORRECTION, max(1 / MAX_CORRECTION, target / measured)))


def meet_latency(select_counts: Callable, fraction: Callable, build: Callable, measure: Callable, target: float,
                 tolerance: float, refinements: int, stop_within: float | None = None):
    """The measure-and-refine loop: ``(plan, measurement, its history entry, history)`` of the plan closest to ``target``.

    Args:
        select_counts: ``goal -> counts``, the widths whose predicted fraction is nearest ``goal``.
        fraction: ``counts -> predicted fraction``.
        build: ``counts -> PruningPlan``.
        measure: ``plan -> SessionSpeed`` (anything with ``ratio``, ``low``, ``high``; the loop
            decides on ``ratio``, in :func:`plan_for_latency` the median over timing sessions).
        target: the latency fraction to reach.
        tolerance: relative: met when ``|measured / target - 1| <= tolerance``.
        refinements: re-plans after the first measurement, at most.
        stop_within: relative distance to the target that ends the loop early (default
            ``tolerance``; :func:`plan_for_latency` passes ``AIM_WITHIN * tolerance``).

    Each history entry is ``{"goal", "predicted", "measured", "low", "high"}``, plus the
    ``session_ratios`` of a session-level measurement. A goal
    the widths cannot reach after a correction ends the loop (the best so far stays).
    Pure given its callables.
    """
    stop = tolerance if stop_within is None else stop_within
    goal, history, best = target, [], None
    for it in range(refinements + 1):
        try:
            counts = select_counts(goal)
        except PrunekitError:
            if it == 0:
                raise
            break
        plan = build(counts)
        m = measure(plan)
        history.append({"goal": float(goal), "predicted": float(fraction(counts)), "measured": float(m.ratio),
                        "low": float(m.low), "high": float(m.high)})
        if getattr(m, "session_ratios", None) is not None:
            history[-1]["session_ratios"] = [float(r) for r in m.session_ratios]
        if best is None or abs(m.ratio - target) < abs(best[1].ratio - target):
            best = (plan, m, history[-1])
        if abs(m.ratio / target - 1.0) <= stop:
            break
        new_goal = next_goal([(h["goal"], h["measured"]) for h in history], target)
        if abs(new_goal - goal) < 1e-9:
            break
        goal = new_goal
    plan, m, entry = best
    return plan, m, entry, history


def plan_for_latency(model, example_inputs, analysis, groups_cost, param_names, build: Callable, opts,
                     round_to: int, measure: Callable | None = None):
    """The plan of a ``latency=`` budget (see the module docstring); called by :func:`prunekit.plan`.

    ``build(counts)`` assembles a plan from removal counts; ``measure(dense, pruned, x,
    threads=, rounds=, runtime=, after_first=)`` times one session of a plan's result (default
    :func:`prunekit.measure.runtimes.paired_ratio`), ``latency_sessions`` times per measurement
    (:func:`prunekit.measure.sessions.session_ratio`).
    """
    import torch

    threads = opts.latency_threads or torch.get_num_threads()
    x = _batched(example_inputs, opts.latency_batch)
    space = WidthSpace.build(analysis, groups_cost, param_names, round_to, opts.min_channels, opts.max_ratio)
    if not space.groups:
        raise PrunekitError("nothing in this model can be pruned, so no latency target can be met")
    cache = None if opts.latency_cache == "off" else Path(opts.latency_cache or default_cache_dir())
    flags = {m: m.training for m in model.modules()}  # timing runs in eval mode; the caller's model is left as it was
    try:
        return _plan_for_latency(model, x, space, threads, cache, groups_cost, build, opts, round_to, measure)
    finally:
        for m, t in flags.items():
            m.training = t


def _plan_for_latency(model, x, space, threads, cache, groups_cost, build, opts, round_to, measure):
    from prunekit.measure.sessions import session_ratio, target_verdict

    model.eval()
    lat, path = build_latency_model(model, x, space, threads, cache)

    def select_counts(goal):
        counts, f = select_fraction(groups_cost, lat.fraction, goal, what="predicted latency",
                                    global_ranking=opts.global_ranking, round_to=round_to,
                                    min_channels=opts.min_channels, max_ratio=opts.max_ratio)
        if abs(f - goal) > NUDGE_ABOVE * goal:  # the uniform ratio's steps overshot: single-group moves
            counts, f = nudge_fraction(groups_cost, counts, lat.fraction, goal, round_to, opts.min_channels,
                                       opts.max_ratio)
        return counts

    def measure_plan(p):
        # several short independent sessions, not one long one: the ratio moves between sessions by more
        # than one session's bootstrap interval (docs/bench/latency_target.md, runs 4-6), so the loop and
        # the verdict decide on the median over sessions and state the interval over sessions
        return session_ratio(model, p.apply(model), x, sessions=opts.latency_sessions, rounds=opts.latency_rounds,
                             threads=threads, pause_s=opts.latency_session_pause_s,
                             max_time_s=opts.latency_max_time_s, timer=measure)

    try:
        plan, m, entry, history = meet_latency(select_counts, lat.fraction, build, measure_plan, opts.latency,
                                               opts.latency_tolerance, opts.latency_refinements,
                                               stop_within=AIM_WITHIN * opts.latency_tolerance)
    finally:
        if path is not None:
            lat.table.save(_mkdir(path))
    verdict = target_verdict(m, opts.latency, opts.latency_tolerance)
    plan.info.update({"latency": opts.latency, "latency_tolerance": opts.latency_tolerance,
                      "latency_batch": opts.latency_batch, "latency_threads": threads,
                      "latency_predicted": entry["predicted"], "latency_measured": m.to_dict(),
                      "latency_refinements": history, "latency_met": verdict.met,
                      "latency_verdict": verdict.status, "latency_verdict_text": verdict.text,
                      "latency_table": str(path) if path is not None else None, "round_to": round_to})
    if verdict.status != "met":
        why = "" if verdict.status == "not measurable" else "; a shared machine's noise, or widths that cannot go lower"
        msg = f"latency target {opts.latency:g} {verdict.text} (the closest of {len(history)} measurement(s){why})"
        if not opts.best_effort:
            raise PrunekitError(msg + "; best_effort=False")
        from prunekit.engine.planner import BudgetWarning

        plan.info["warnings"] = list(plan.info.get("warnings", [])) + [msg]
        warnings.warn(msg, BudgetWarning, stacklevel=5)
    return plan


def _mkdir(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _batched(example_inputs, batch: int):
    """``example_inputs`` (one tensor) with its first sample repeated ``batch`` times."""
    import torch

    if not isinstance(example_inputs, torch.Tensor):
        raise PrunekitError("a latency budget needs one example tensor as input (got "
                            f"{type(example_inputs).__name__}); several inputs are not supported yet")
    if example_inputs.dim() == 0:
        raise PrunekitError("a latency budget needs a batched example tensor, got a scalar")
    first = example_inputs[:1]
    return first.repeat(batch, *([1] * (first.dim() - 1))).contiguous()

