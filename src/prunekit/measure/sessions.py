"""A latency ratio measured in several independent timing sessions, with an interval over sessions.

One interleaved timing (:func:`prunekit.measure.runtimes.paired_ratio`) gives the median
per-round ratio with a bootstrap interval over its rounds. That interval only sees the
noise *within* the session: on a shared 2-core VM the same pruned ResNet-50 measured
0.603 [0.591, 0.609] in one session and 0.651 [0.636, 0.663] in the next
(docs/bench/latency_target.md, run 6), an 8% move between sessions against intervals of
+-1-2.5%. What moves between sessions (CPU frequency, where the weights landed in memory
and caches, other processes) is constant within one, so resampling its rounds cannot
see it. A verdict "within 5% of the target" from one session is then decided by which
session it came from.

:func:`session_ratio` therefore times the pair in ``sessions`` short, independent
sessions: each on fresh copies of both models (new allocations, so a lucky or unlucky
memory layout is not shared by all sessions), with its own warm-up, the first-timed
model alternating between sessions, and a pause between them. The result
(:class:`SessionSpeed`) is

* ``ratio``: the **median of the session ratios**;
* ``low``/``high``: the distribution-free interval of that median from the order
  statistics of the session ratios (:func:`median_interval`; W. J. Conover, *Practical
  Nonparametric Statistics*, 3rd ed., Wiley, 1999, Sec. 3.2): with 5 sessions it is
  their minimum and maximum, which cover the true median with probability
  ``1 - 2 / 2**5 = 0.9375`` whatever the distribution; the coverage is reported;
* each session's own ratio and bootstrap interval (``session_ratios``,
  ``session_lows``, ``session_highs``), so the within-session interval stays visible.

:func:`target_verdict` decides a latency target on it: ``"not measurable"`` when the
interval over sessions is wider than the tolerance (its half-width relative to the
median above ``tolerance``) or fewer than :data:`MIN_SESSIONS` sessions ran, else
``"met"`` when the median is within ``tolerance`` of the target, else ``"not met"``.
Pure statistics; torch is imported only to copy models.

Example:
    >>> median_interval([0.52, 0.49, 0.50, 0.55, 0.48])
    (0.48, 0.55, 0.9375)
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from prunekit.errors import PrunekitError
from prunekit.validate import check_int, check_number

__all__ = ["MIN_SESSIONS", "SessionSpeed", "TargetVerdict", "VERDICTS", "median_interval", "session_ratio",
           "summarize_sessions", "target_verdict"]

#: fewer sessions than this give no usable interval over sessions (3 sessions: min/max cover the median 75%)
MIN_SESSIONS = 3
#: the outcomes of :func:`target_verdict`
VERDICTS = ("met", "not met", "not measurable")


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free interval of the median of ``values``: ``(low, high, coverage)``. Pure.

    With the values sorted, ``[x_(j), x_(n+1-j)]`` covers the population median with
    probability ``1 - 2 * P(Binomial(n, 1/2) <= j - 1)`` for any continuous distribution
    (Conover 1999, Sec. 3.2). The narrowest such interval whose coverage is at least
    ``confidence`` is returned; when even the widest (``j = 1``: minimum and maximum)
    falls short, that one, with its smaller coverage (5 values: 0.9375; 3 values: 0.75).

    Example:
        >>> median_interval([3.0, 1.0, 2.0])
        (1.0, 3.0, 0.75)
        >>> median_interval(range(1, 10))      # 9 values: the 2nd and 8th, coverage 1 - 2 * 10 / 512
        (2.0, 8.0, 0.9609375)
    """
    v = sorted(float(x) for x in values)
    n = len(v)
    if n == 0:
        raise PrunekitError("median_interval needs at least one value")
    check_number("confidence", confidence, minimum=0.0, maximum=1.0, low_open=True, high_open=True,
                 error=PrunekitError)

    def coverage(j: int) -> float:
        return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(j)) / 2.0 ** n

    j = 1
    while j + 1 <= (n + 1) // 2 and coverage(j + 1) >= confidence:
        j += 1
    return v[j - 1], v[n - j], coverage(j)


@dataclass(frozen=True)
class SessionSpeed:
    """A latency ratio ``after / before`` measured in several independent timing sessions.

    Attributes:
        runtime, batch_size, threads: how every session ran.
        ratio: median of the session ratios (each the median per-round ratio of one session).
        low, high: distribution-free interval of that median over sessions (:func:`median_interval`).
        coverage: that interval's probability (0.9375 for 5 sessions).
        sessions: sessions timed.
        session_ratios, session_lows, session_highs: each session's ratio and its bootstrap
            interval over that session's rounds (the within-session interval).
        rounds: interleaved rounds timed, all sessions together.
        before_ms, after_ms: median over sessions of each model's median time per call.
        stopped: ``"sessions"`` (all asked for ran) or ``"time limit"``.
    """

    runtime: str
    batch_size: int
    threads: int
    ratio: float
    low: float
    high: float
    coverage: float
    sessions: int
    session_ratios: tuple
    session_lows: tuple
    session_highs: tuple
    rounds: int
    before_ms: float
    after_ms: float
    stopped: str = "sessions"

    @property
    def half_width(self) -> float:
        """The interval over sessions' half-width relative to the ratio, ``(high - low) / (2 * ratio)``."""
        return (self.high - self.low) / (2.0 * self.ratio) if self.ratio > 0 else math.inf

    @property
    def spread(self) -> float:
        """``(max - min) / ratio`` of the session ratios: how far apart the sessions landed."""
        return (max(self.session_ratios) - min(self.session_ratios)) / self.ratio if self.ratio > 0 else math.inf

    @property
    def within_half_width(self) -> float:
        """The median over sessions of each session's own interval half-width, relative to its ratio."""
        return float(statistics.median((h - lo) / (2.0 * r) if r > 0 else math.inf
                                       for r, lo, h in zip(self.session_ratios, self.session_lows,
                                                           self.session_highs)))

    def to_dict(self) -> dict:
        """JSON-able form, with ``half_width``, ``spread`` and ``within_half_width`` added."""
        d = asdict(self)
        for k in ("session_ratios", "session_lows", "session_highs"):
            d[k] = [float(x) for x in d[k]]
        d.update(half_width=self.half_width, spread=self.spread, within_half_width=self.within_half_width)
        return d

    def describe(self) -> str:
        """E.g. ``0.498 [0.487, 0.512] over 5 sessions (94% interval of the median; within a session +-1.8%)``."""
        return (f"{self.ratio:.3f} [{self.low:.3f}, {self.high:.3f}] over {self.sessions} session"
                f"{'s' if self.sessions != 1 else ''} ({100 * self.coverage:.0f}% interval of the median; within a "
                f"session +-{100 * self.within_half_width:.1f}%)")


def summarize_sessions(speeds: Sequence, confidence: float = 0.95, stopped: str = "sessions") -> SessionSpeed:
    """The :class:`SessionSpeed` of per-session results (each with ``ratio``, ``low``, ``high``, ``rounds``,
    ``before_ms``, ``after_ms``, ``runtime``, ``batch_size``, ``threads``, e.g. a
    :class:`~prunekit.measure.runtimes.RuntimeSpeed`). Pure.

    Example:
        >>> from types import SimpleNamespace as S
        >>> runs = [S(ratio=r, low=r - 0.01, high=r + 0.01, rounds=10, before_ms=2.0, after_ms=2 * r,
        ...           runtime="eager", batch_size=1, threads=2) for r in (0.50, 0.47, 0.53)]
        >>> s = summarize_sessions(runs)
        >>> s.ratio, s.low, s.high, s.coverage, s.rounds
        (0.5, 0.47, 0.53, 0.75, 30)
    """
    speeds = list(speeds)
    if not speeds:
        raise PrunekitError("summarize_sessions needs at least one session")
    if stopped not in ("sessions", "time limit"):
        raise PrunekitError(f"stopped must be 'sessions' or 'time limit', got {stopped!r}")
    ratios = [float(s.ratio) for s in speeds]
    low, high, cover = median_interval(ratios, confidence)
    first = speeds[0]
    return SessionSpeed(runtime=first.runtime, batch_size=int(first.batch_size), threads=int(first.threads),
                        ratio=float(statistics.median(ratios)), low=low, high=high, coverage=cover,
                        sessions=len(speeds), session_ratios=tuple(ratios),
                        session_lows=tuple(float(s.low) for s in speeds),
                        session_highs=tuple(float(s.high) for s in speeds),
                        rounds=int(sum(int(s.rounds) for s in speeds)),
                        before_ms=float(statistics.median(float(s.before_ms) for s in speeds)),
                        after_ms=float(statistics.median(float(s.after_ms) for s in speeds)), stopped=stopped)


@dataclass(frozen=True)
class TargetVerdict:
    """Whether a measured latency ratio meets a target: ``status`` (one of :data:`VERDICTS`) and a sentence."""

    status: str
    text: str

    @property
    def met(self) -> bool | None:
        """True (met), False (not met) or None (not measurable: neither can be claimed)."""
        return None if self.status == "not measurable" else self.status == "met"


def target_verdict(measured: SessionSpeed, target: float, tolerance: float) -> TargetVerdict:
    """Decide a latency target on a session-level measurement. Pure.

    ``"not measurable"`` when fewer than :data:`MIN_SESSIONS` sessions ran or the interval over
    sessions is wider than the tolerance (``half_width > tolerance``: the machine moves the ratio
    between sessions by more than the band the target allows); else ``"met"`` when the median over
    sessions is within ``tolerance`` (relative) of ``target``, else ``"not met"``.

    Example:
        >>> from types import SimpleNamespace as S
        >>> runs = [S(ratio=r, low=r, high=r, rounds=10, before_ms=1.0, after_ms=r, runtime="eager",
        ...           batch_size=1, threads=2) for r in (0.50, 0.49, 0.51)]
        >>> target_verdict(summarize_sessions(runs), 0.5, 0.05).status
        'met'
    """
    tol = check_number("tolerance", tolerance, minimum=0.0, low_open=True, error=PrunekitError)
    m = measured
    where = (f"{m.ratio:.3f} [{m.low:.3f}, {m.high:.3f}] (median of {m.sessions} timing session"
             f"{'s' if m.sessions != 1 else ''}, {100 * m.coverage:.0f}% interval over sessions)")
    if m.sessions < MIN_SESSIONS:
        return TargetVerdict("not measurable", f"not measurable to +-{100 * tol:g}%: only {m.sessions} timing "
                             f"session{'s' if m.sessions != 1 else ''} (at least {MIN_SESSIONS} are needed); {where}")
    if m.half_width > tol:
        return TargetVerdict("not measurable", f"not measurable to +-{100 * tol:g}% on this machine right now: "
                             f"sessions spread {100 * m.spread:.0f}% ({min(m.session_ratios):.3f} to "
                             f"{max(m.session_ratios):.3f}; the interval over sessions is "
                             f"+-{100 * m.half_width:.1f}%); {where}")
    off = m.ratio / target - 1.0
    if abs(off) <= tol:
        return TargetVerdict("met", f"met: {where}, {100 * off:+.1f}% from the target {target:g} "
                             f"(within +-{100 * tol:g}%)")
    return TargetVerdict("not met", f"not met: {where}, {100 * off:+.1f}% from the target {target:g} "
                         f"(outside +-{100 * tol:g}%)")


def _fresh(model):
    """A deep copy of ``model`` (new allocations), or the model itself when it cannot be copied.

    A copy per session lets the weights land somewhere else in memory each time, so a
    layout that happens to suit (or hurt) the caches is one session's luck, not every one's.
    """
    try:
        return copy.deepcopy(model)
    except (TypeError, RuntimeError, copy.Error):  # e.g. a module holding a non-copyable handle
        return model


def session_ratio(before, after, example_input, *, sessions: int = 5, rounds: int = 10, threads: int | None = None,
                  runtime: str = "eager", pause_s: float = 0.25, max_time_s: float = math.inf,
                  fresh: bool = True, confidence: float = 0.95, timer: Callable | None = None,
                  clock: Callable[[], float] | None = None,
                  sleep: Callable[[float], object] | None = None) -> SessionSpeed:
    """``after``'s latency relative to ``before``'s, in ``sessions`` independent interleaved timing sessions.

    Session ``k`` times fresh copies of both models (``fresh``) on a copy of
    ``example_input`` for exactly ``rounds`` interleaved rounds with ``timer`` (default
    :func:`prunekit.measure.runtimes.paired_ratio`, its own warm-up included), ``after``
    timed first in odd sessions, after a pause of ``pause_s`` seconds. Once ``max_time_s``
    has passed (counted by ``clock`` from the start) no further session starts, but at least
    :data:`MIN_SESSIONS` run (``stopped == "time limit"``).

    ``timer(before, after, x, threads=, rounds=, runtime=, after_first=)`` returns one session's
    result (a :class:`~prunekit.measure.runtimes.RuntimeSpeed`); ``clock`` and ``sleep`` (default
    ``time.perf_counter`` and ``time.sleep``) are injectable so the session and stop logic is
    tested without timing anything.
    """
    check_int("sessions", sessions, minimum=1, error=PrunekitError)
    check_int("rounds", rounds, minimum=1, error=PrunekitError)
    check_number("pause_s", pause_s, minimum=0.0, error=PrunekitError)
    check_number("max_time_s", max_time_s, minimum=0.0, finite=False, error=PrunekitError)
    if timer is None:
        from prunekit.measure import runtimes

        timer = runtimes.paired_ratio  # looked up now, so a replaced paired_ratio is the one used
    clock, sleep = clock or time.perf_counter, sleep or time.sleep
    start = clock()
    speeds, stopped = [], "sessions"
    for k in range(sessions):
        if k >= MIN_SESSIONS and clock() - start >= max_time_s:
            stopped = "time limit"
            break
        if k and pause_s:
            sleep(pause_s)
        b, a = (_fresh(before), _fresh(after)) if fresh else (before, after)
        x = example_input.clone() if fresh and hasattr(example_input, "clone") else example_input
        speeds.append(timer(b, a, x, threads=threads, rounds=rounds, runtime=runtime, after_first=bool(k % 2)))
        del b, a, x  # the copies' memory is freed (reference counting) before the next session allocates its own
    return summarize_sessions(speeds, confidence, stopped)
