"""The one interleaved timing loop: rotation, warm calls, calls per turn, stop rules (exact counts, no timing claims)."""
import pytest

from prunekit.errors import PrunekitError
from prunekit.measure.interleave import interleave, rotation, stop_rule
from prunekit.measure.runtimes import interleaved_times, paired_ratio


def test_rotation_orders():
    assert [rotation(2, r) for r in range(4)] == [[0, 1], [1, 0], [0, 1], [1, 0]]
    assert [rotation(3, r) for r in range(4)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]


def test_calls_follow_rotation_with_one_warm_call_per_turn():
    log = []
    fns = [lambda: log.append("a"), lambda: log.append("b")]
    times = interleave(fns, stop_rule(3)[0], warmup=1, warm_calls=1, min_turn_s=0.0)
    assert [len(t) for t in times] == [3, 3]
    # warm-up a, b; then per turn: one warm call + one timed call, order a b | b a | a b
    assert "".join(log) == "ab" + "aabb" + "bbaa" + "aabb"


def test_min_turn_repeats_fast_calls():
    count = [0, 0]

    def f0():
        count[0] += 1

    def f1():
        count[1] += 1
    interleave([f0, f1], stop_rule(2)[0], warmup=2, warm_calls=0, min_turn_s=0.001)
    # a no-op takes far less than 1 ms: both get the same k > 1 calls per turn
    assert count[0] == count[1] and count[0] > 2 + 2


def test_until_tight_stops_when_tight_and_at_time_limit():
    seen = []
    done, stopped = stop_rule(5, is_tight=lambda t: seen.append(len(t[0])) or len(t[0]) >= 25, check_every=10)
    times = interleave([lambda: None], done, warmup=0, min_turn_s=0.0)
    assert len(times[0]) == 25 and stopped[0] == "tight" and seen == [5, 15, 25]
    done, stopped = stop_rule(5, is_tight=lambda t: False, max_time_s=0.0)
    times = interleave([lambda: None], done, warmup=0, min_turn_s=0.0)
    assert len(times[0]) == 5 and stopped[0] == "time limit"  # the minimum rounds, whatever the limit


def test_bad_arguments_are_errors():
    with pytest.raises(PrunekitError, match="warm_calls"):
        interleave([lambda: None], stop_rule(1)[0], warm_calls=-1)
    with pytest.raises(PrunekitError, match="at least one callable"):
        interleave([], stop_rule(1)[0])
    with pytest.raises(PrunekitError, match="rounds"):
        stop_rule(0)


def test_runtimes_helpers_use_the_loop():
    out = interleaved_times([lambda: None, lambda: None, lambda: None], 4, warmup=1, min_round_s=0.0)
    assert [len(t) for t in out] == [4, 4, 4]


def test_paired_ratio_until_within_times_more_rounds():
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    a, b = nn.Linear(32, 32), nn.Linear(32, 32)
    fixed = paired_ratio(a, b, torch.zeros(1, 32), threads=1, rounds=6)
    assert fixed.rounds == 6
    # an impossible interval: timing goes on past the first 6 rounds until the time limit
    r = paired_ratio(a, b, torch.zeros(1, 32), threads=1, rounds=6, until_within=1e-9, max_time_s=1.0)
    assert r.rounds > 6 and r.low <= r.ratio <= r.high
    with pytest.raises(PrunekitError, match="until_within"):
        paired_ratio(a, b, torch.zeros(1, 32), until_within=0)


def test_paired_ratio_after_first_times_after_first_and_keeps_the_ratio_after_over_before(monkeypatch):
    import torch
    import torch.nn as nn

    calls = []

    def fake(fns, done, **kw):  # the first callable's turns took 1 s, the second's 2 s
        calls.append(len(fns))
        return [[1.0] * 5, [2.0] * 5]

    monkeypatch.setattr("prunekit.measure.interleave.interleave", fake)
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    assert paired_ratio(a, b, torch.zeros(1, 4), threads=1, rounds=5).ratio == 2.0     # before first: 2 / 1
    r = paired_ratio(a, b, torch.zeros(1, 4), threads=1, rounds=5, after_first=True)  # after first: 1 / 2
    assert (r.ratio, r.before_ms, r.after_ms) == (0.5, 2000.0, 1000.0) and calls == [2, 2]
