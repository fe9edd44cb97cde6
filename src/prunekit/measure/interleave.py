"""The one interleaved timing loop of prunekit.measure.

Every before/after latency prunekit reports (``compare_latency``, ``compare_speed``,
``profile --compare``, the runtimes table, the latency budget's measurements, the
benchmarks) is timed by :func:`interleave`: round ``r`` runs every callable once in
a rotated order (two callables alternate ``a b | b a | a b ...``), so a slow spell of
a shared machine hits all of them alike and cancels in their ratio.

Two details make the per-round times comparable between callables:

* **calls per turn**: a turn runs a callable ``k`` times in a row, ``k`` chosen during
  warm-up so that the slowest callable's turn lasts at least ``min_turn_s`` (one call
  of a small model at batch 1 is shorter than the timer's and the scheduler's noise);
* **warm calls**: each turn starts with ``warm_calls`` untimed calls, so the timed calls
  find the model's own weights in the caches whatever ran before it. Without them
  the times depend on the rotation: with two models a model follows itself in half
  the turns, with three almost never, and a pruned MobileNet v2 small enough to stay
  in cache measured 0.49 of the dense latency in the first setting and 0.53 in the
  second (docs/bench/latency_target.md, run 2 vs run 3).

:func:`stop_rule` builds the ``done`` predicate: a fixed number of rounds, or
"until the interval is tight" (checked every :data:`CHECK_EVERY` rounds) within a
time limit. Pure Python; torch is not imported here.

Example:
    >>> times = interleave([lambda: None, lambda: None], stop_rule(4)[0], warmup=1, min_turn_s=0.0)
    >>> [len(t) for t in times]
    [4, 4]
"""
from __future__ import annotations

import contextlib
import gc
import math
import time
from typing import Callable, Sequence

from prunekit.errors import PrunekitError
from prunekit.validate import check_int, check_number

__all__ = ["CHECK_EVERY", "MIN_ROUNDS", "interleave", "rotation", "stop_rule"]

#: with "until tight", the interval is looked at every this many rounds after the first ``rounds``
CHECK_EVERY = 10
#: fewer rounds than this give no usable interval, whatever its width
MIN_ROUNDS = 5
#: the most calls one turn makes (a callable that takes nanoseconds would otherwise loop for ever)
MAX_CALLS_PER_TURN = 1000


def rotation(n: int, r: int) -> list[int]:
    """The order of ``n`` callables in round ``r``: rotated by ``r`` (for two: ``0 1``, ``1 0``, ...).

    Example:
        >>> [rotation(3, r) for r in range(3)]
        [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
    """
    return list(range(r % n, n)) + list(range(r % n)) if n else []


@contextlib.contextmanager
def gc_paused():
    """Python's garbage collector off for the block (a collection inside a timed call is noise, not latency)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def stop_rule(rounds: int, *, is_tight: Callable | None = None, max_time_s: float = math.inf,
              min_rounds: int = MIN_ROUNDS, check_every: int = CHECK_EVERY, start: float | None = None):
    """``(done, stopped)``: a ``done(times, rounds)`` predicate for :func:`interleave` and how it ended.

    Without ``is_tight``: exactly ``rounds`` rounds (``stopped[0] == "rounds"``). With it:
    at least ``max(rounds, min_rounds)`` rounds, then every ``check_every`` rounds
    ``is_tight(times)`` is asked and ends the timing when true (``"tight"``); after
    ``max_time_s`` seconds (counted from ``start``, a ``time.perf_counter()`` value, or
    else from the first call of ``done``) the timing ends anyway (``"time limit"``) once
    ``min_rounds`` rounds exist.
    """
    check_int("rounds", rounds, error=PrunekitError)
    check_number("max_time_s", max_time_s, minimum=0, finite=False, error=PrunekitError)
    stopped = ["rounds"]
    begun: list[float] = [] if start is None else [start]

    def done(times, r: int) -> bool:
        if not begun:
            begun.append(time.perf_counter())
        if is_tight is None:
            return r >= rounds
        if r < min_rounds:
            return False
        if time.perf_counter() - begun[0] >= max_time_s:
            stopped[0] = "time limit"
            return True
        if r >= rounds and (r - rounds) % check_every == 0 and is_tight(times):
            stopped[0] = "tight"
            return True
        return False

    return done, stopped


def interleave(fns: Sequence[Callable[[], object]], done: Callable[[list, int], bool], *, warmup: int = 2,
               warm_calls: int = 1, min_turn_s: float = 0.005, sync: Callable[[], object] | None = None,
               on_round: Callable[[int], object] | None = None) -> list[list[float]]:
    """Time zero-argument callables interleaved until ``done(times, rounds)``; one list of per-call seconds each.

    Args:
        fns: the callables (e.g. ``lambda: model(x)``), timed in rotated order every round.
        done: asked before every round with the times so far and the number of rounds
            (see :func:`stop_rule`).
        warmup: untimed calls of each callable first (also used to choose the calls per turn).
        warm_calls: untimed calls at the start of every turn (see the module docstring).
        min_turn_s: the slowest callable's timed turn lasts at least this long (0: one call per turn).
        sync: called before reading the clock (e.g. ``torch.cuda.synchronize`` for GPU work).
        on_round: called with the round count after each round (a progress bar).

    Returns:
        ``times[i][r]``: the mean time of one call of ``fns[i]`` in round ``r``, in seconds.
    """
    check_int("warmup", warmup, minimum=0, error=PrunekitError)
    check_int("warm_calls", warm_calls, minimum=0, error=PrunekitError)
    check_number("min_turn_s", min_turn_s, minimum=0, error=PrunekitError)
    fns = list(fns)
    if not fns:
        raise PrunekitError("interleave needs at least one callable")
    sync = sync or (lambda: None)
    per_call = 0.0
    for fn in fns:
        sync()
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn()
        sync()
        if warmup:
            per_call = max(per_call, (time.perf_counter() - t0) / warmup)
    k = 1
    if min_turn_s > 0 and per_call > 0:
        k = max(1, min(MAX_CALLS_PER_TURN, math.ceil(min_turn_s / per_call)))
    times: list[list[float]] = [[] for _ in fns]
    rounds = 0
    with gc_paused():
        while not done(times, rounds):
            for i in rotation(len(fns), rounds):
                for _ in range(warm_calls):
                    fns[i]()
                sync()
                t0 = time.perf_counter()
                for _ in range(k):
                    fns[i]()
                sync()
                times[i].append((time.perf_counter() - t0) / k)
            rounds += 1
            if on_round is not None:
                on_round(rounds)
    return times
