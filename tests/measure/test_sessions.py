"""Latency measured over independent timing sessions: the interval over sessions, the verdict, the session loop.

Every number is fixed by hand; the session loop runs on a fake timer and a fake clock (nothing is timed).
"""
from __future__ import annotations

import math

import pytest
import torch.nn as nn

from prunekit.errors import PrunekitError
from prunekit.measure.runtimes import RuntimeSpeed
from prunekit.measure.sessions import (MIN_SESSIONS, median_interval, session_ratio, summarize_sessions,
                                       target_verdict)


def _speed(r, low=None, high=None, rounds=10, before_ms=10.0):
    return RuntimeSpeed("eager", 1, 2, before_ms, r * before_ms, r, r if low is None else low,
                        r if high is None else high, rounds)


def test_median_interval_is_the_order_statistic_interval_with_its_exact_coverage():
    # n = 5: no interval reaches 95%; the widest, (min, max), covers 1 - 2/32 = 0.9375 and is returned
    assert median_interval([0.52, 0.49, 0.50, 0.55, 0.48]) == (0.48, 0.55, 0.9375)
    assert median_interval([0.52, 0.49, 0.50, 0.55, 0.48], confidence=0.9) == (0.48, 0.55, 0.9375)
    # at 60%, the 2nd and 4th of 5 cover 1 - 2 * (1 + 5) / 32 = 0.625
    assert median_interval([0.52, 0.49, 0.50, 0.55, 0.48], confidence=0.6) == (0.49, 0.52, 0.625)
    # n = 10: the 2nd and 9th cover 1 - 2 * (1 + 10) / 1024 = 0.978515625 >= 0.95; the 3rd and 8th only 0.890625
    assert median_interval(range(10)) == (1.0, 8.0, 1 - 22 / 1024)
    assert median_interval([1.0, 2.0]) == (1.0, 2.0, 0.5)
    assert median_interval([3.0]) == (3.0, 3.0, 0.0)  # one value: no interval at all
    with pytest.raises(PrunekitError, match="at least one value"):
        median_interval([])
    with pytest.raises(PrunekitError, match="confidence"):
        median_interval([1.0], confidence=1.0)


def test_summary_is_the_median_of_session_ratios_with_within_session_intervals_kept():
    runs = [_speed(0.50, 0.49, 0.51), _speed(0.56, 0.55, 0.57, before_ms=12.0), _speed(0.48, 0.47, 0.49),
            _speed(0.52, 0.50, 0.54), _speed(0.47, 0.46, 0.48)]
    s = summarize_sessions(runs)
    assert (s.ratio, s.low, s.high, s.coverage, s.sessions, s.rounds) == (0.50, 0.47, 0.56, 0.9375, 5, 50)
    assert s.session_ratios == (0.50, 0.56, 0.48, 0.52, 0.47) and s.session_lows[1] == 0.55
    assert s.half_width == pytest.approx(0.09 / 1.0) and s.spread == pytest.approx(0.09 / 0.50)
    # each session's interval is +-0.01 / r except the 4th (+-0.02 / 0.52); sorted, the middle one is 0.01 / 0.48
    assert s.within_half_width == pytest.approx(0.01 / 0.48)
    assert s.before_ms == 10.0 and s.after_ms == pytest.approx(5.0)  # medians of (5, 6.72, 4.8, 5.2, 4.7)
    d = s.to_dict()
    assert d["session_ratios"] == [0.50, 0.56, 0.48, 0.52, 0.47] and d["spread"] == pytest.approx(0.18)
    assert s.describe() == "0.500 [0.470, 0.560] over 5 sessions (94% interval of the median; within a session +-2.1%)"
    with pytest.raises(PrunekitError, match="at least one session"):
        summarize_sessions([])


def test_verdict_met_not_met_and_not_measurable():
    tight = summarize_sessions([_speed(r) for r in (0.50, 0.51, 0.49, 0.52, 0.50)])   # +-3% over sessions
    v = target_verdict(tight, 0.5, 0.05)
    assert v.status == "met" and v.met is True and "+0.0% from the target 0.5 (within +-5%)" in v.text
    v = target_verdict(tight, 0.45, 0.05)   # 0.50 / 0.45 - 1 = +11.1%
    assert v.status == "not met" and v.met is False and "+11.1% from the target 0.45 (outside +-5%)" in v.text
    # the median is on target, but the sessions spread 0.46..0.55: +-9% over sessions, wider than +-5%
    wide = summarize_sessions([_speed(r) for r in (0.50, 0.55, 0.46, 0.50, 0.50)])
    v = target_verdict(wide, 0.5, 0.05)
    assert v.status == "not measurable" and v.met is None
    assert v.text.startswith("not measurable to +-5% on this machine right now: sessions spread 18% (0.460 to 0.550")
    assert target_verdict(wide, 0.5, 0.10).status == "met"   # within a +-10% tolerance it is measurable
    # exactly at the tolerance's edge counts as met (0.525 / 0.5 - 1 = 0.05)
    edge = summarize_sessions([_speed(0.525)] * 3)
    assert target_verdict(edge, 0.5, 0.05 + 1e-12).status == "met"
    few = summarize_sessions([_speed(0.5), _speed(0.5)])
    assert MIN_SESSIONS == 3 and target_verdict(few, 0.5, 0.05).text.startswith(
        "not measurable to +-5%: only 2 timing sessions (at least 3 are needed)")


class _Clock:
    """A fake clock: each reading advances it by ``step`` seconds."""

    def __init__(self, step):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step
        return self.t


def test_session_loop_uses_fresh_copies_alternates_order_pauses_and_stops_at_the_time_limit():
    before, after = nn.Linear(4, 4), nn.Linear(4, 2)
    seen, pauses = [], []
    ratios = iter([0.50, 0.54, 0.47, 0.51, 0.49, 0.60, 0.60])

    def timer(b, a, x, threads=None, rounds=20, runtime="eager", after_first=False):
        seen.append((b, a, x, threads, rounds, runtime, after_first))
        return _speed(next(ratios), rounds=rounds)

    import torch

    x = torch.zeros(1, 4)
    s = session_ratio(before, after, x, sessions=5, rounds=7, threads=2, pause_s=0.5, timer=timer,
                      clock=_Clock(0.0), sleep=pauses.append)
    assert (s.sessions, s.ratio, s.low, s.high, s.rounds, s.stopped) == (5, 0.50, 0.47, 0.54, 35, "sessions")
    assert [e[6] for e in seen] == [False, True, False, True, False] and pauses == [0.5] * 4
    assert all(e[3:6] == (2, 7, "eager") for e in seen)
    # fresh copies of both models and of the input every session, equal in value
    assert all(e[0] is not before and e[1] is not after and e[2] is not x for e in seen)
    assert torch.equal(seen[0][0].weight, before.weight) and seen[0][0] is not seen[1][0]
    # the time limit: each clock reading advances 20 s (start: 20; before session 4: 40), the limit is 15 s;
    # the clock is first asked before session 4, as MIN_SESSIONS run whatever the limit
    ratios = iter([0.50, 0.54, 0.47, 0.51, 0.49])
    s = session_ratio(before, after, x, sessions=5, timer=timer, clock=_Clock(20.0), sleep=lambda t: None,
                      max_time_s=15.0, fresh=False)
    assert (s.sessions, s.stopped, s.session_ratios) == (3, "time limit", (0.50, 0.54, 0.47))
    assert seen[-1][0] is before  # fresh=False times the models themselves
    for bad in ({"sessions": 0}, {"rounds": 0}, {"pause_s": -1.0}):
        with pytest.raises(PrunekitError, match=next(iter(bad))):
            session_ratio(before, after, x, timer=timer, **bad)


def test_session_ratio_runs_on_real_models():
    import torch

    torch.manual_seed(0)
    s = session_ratio(nn.Linear(16, 16), nn.Linear(16, 4), torch.zeros(1, 16), sessions=3, rounds=5, threads=1,
                      pause_s=0.0)
    assert s.sessions == 3 and s.rounds == 15 and s.low <= s.ratio <= s.high and not math.isnan(s.coverage)
