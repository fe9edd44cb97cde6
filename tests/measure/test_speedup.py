"""Paired latency ratios: exact values of the math on synthetic times, and the structure of compare_speed.

No test asserts on a measured time: the API tests check pairing, the interval's
consistency and how the timing stopped, never which model was faster.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from prunekit.errors import ConfigError, PrunekitError
from prunekit.measure import (LatencyResult, SpeedConfig, SpeedupResult, compare_latency, compare_speed,
                              paired_speedup, speedup_from_times)
from prunekit.measure.speedup import bootstrap_median_interval


def test_constant_ratio_gives_a_zero_width_interval():
    before = [0.010, 0.013, 0.011, 0.020, 0.012, 0.010, 0.015, 0.011]
    r = speedup_from_times(before, [t / 4 for t in before], threads=2, batch_size=32)
    assert (r.ratio, r.low, r.high, r.half_width, r.spread) == (0.25, 0.25, 0.25, 0.0, 0.0)
    assert r.measurable and r.reason == "" and r.rounds == 8 and r.stopped == "rounds"
    assert r.speedup == 4.0
    assert r.describe() == "0.25x latency [0.25, 0.25] (95% CI, 8 rounds, batch 32, 2 threads)"
    assert r.short() == "0.25x [0.25, 0.25]"
    assert r.before.median_ms == pytest.approx(11.5) and r.after.median_ms == pytest.approx(11.5 / 4)
    assert r.before.round_ms == pytest.approx(tuple(1000 * t for t in before))


def test_two_valued_ratios_are_not_measurable_and_say_why():
    # half the rounds at 0.5, half at 1.0: a resample's median is 0.5, 0.75 or 1.0; both tails are hit
    before = [1.0] * 10
    after = [0.5, 1.0] * 5
    r = speedup_from_times(before, after, threads=1, batch_size=1)
    assert (r.ratio, r.low, r.high) == (0.75, 0.5, 1.0)
    assert r.half_width == pytest.approx(1 / 3) and r.spread == pytest.approx(2 / 3)
    assert not r.measurable
    assert r.describe() == ("latency not measurable on this machine right now: spread 67% between rounds; the 95% "
                            "interval [0.50, 1.00] is +-33% of the ratio 0.75 (more than +-10%)")
    assert r.short() == "not measurable (+-33%)"
    # a looser tolerance accepts the same times
    assert speedup_from_times(before, after, 1, 1, tolerance=0.4).measurable


def test_ratio_is_the_median_of_per_round_ratios_not_the_ratio_of_medians():
    # a slow spell hits both models in rounds 3-5: per round, after is always half of before
    before = [1.0, 1.0, 1.0, 9.0, 9.0, 9.0]
    after = [0.5, 0.5, 0.5, 4.5, 4.5, 4.5]
    assert speedup_from_times(before, after, 1, 1).ratio == 0.5
    # ratio of medians would be 2.5 / 5.0 = 0.5 here too; shuffle the pairing and it differs
    r = speedup_from_times([1.0, 9.0, 1.0, 9.0, 1.0, 9.0], [4.5, 0.5, 4.5, 0.5, 4.5, 0.5], 1, 1)
    assert r.ratio == pytest.approx((4.5 + 1 / 18) / 2)


def test_bootstrap_is_the_documented_seeded_percentile_method():
    values = np.array([0.61, 0.55, 0.58, 0.70, 0.52, 0.66, 0.59, 0.63, 0.57, 0.60, 0.64])
    rng = np.random.default_rng(7)
    medians = np.median(values[rng.integers(0, values.size, size=(500, values.size))], axis=1)
    expected = tuple(float(x) for x in np.percentile(medians, [5.0, 95.0]))
    assert bootstrap_median_interval(values, confidence=0.9, resamples=500, seed=7) == expected
    # same seed, same interval; the result of speedup_from_times uses the same function
    r = speedup_from_times([1.0] * values.size, values, 1, 1, confidence=0.9, resamples=500, seed=7)
    assert (r.low, r.high) == expected and r.ratio == 0.60


def test_few_rounds_are_never_measurable():
    r = speedup_from_times([1.0] * 4, [0.5] * 4, threads=1, batch_size=1)
    assert not r.measurable and r.reason == "only 4 rounds were timed (at least 5 are needed)"
    assert r.short() == "not measurable"


@pytest.mark.parametrize("before, after, match", [
    ([1.0, 1.0], [1.0], "one time per round"),
    ([], [], "one time per round"),
    ([1.0, 0.0], [1.0, 1.0], "positive and finite"),
    ([1.0, float("nan")], [1.0, 1.0], "positive and finite"),
])
def test_bad_times_are_refused(before, after, match):
    with pytest.raises(PrunekitError, match=match):
        speedup_from_times(before, after, 1, 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"confidence": 1.0}, "confidence"), ({"tolerance": -0.1}, "tolerance"), ({"resamples": 0}, "resamples"),
    ({"stopped": "bored"}, "stopped"),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(PrunekitError, match=match):
        speedup_from_times([1.0] * 5, [1.0] * 5, 1, 1, **kwargs)


def test_speedup_result_round_trips_through_json():
    r = speedup_from_times([1.0, 2.0, 3.0, 4.0, 5.0], [0.6, 1.0, 1.5, 2.2, 2.4], threads=2, batch_size=4)
    d = json.loads(json.dumps(r.to_dict()))
    assert SpeedupResult.from_dict(d) == r
    assert {"ratio", "low", "high", "rounds", "measurable", "reason", "before", "after"} <= set(d)
    with pytest.raises(ConfigError, match="unknown key 'extra'"):
        SpeedupResult.from_dict({**d, "extra": 1})
    with pytest.raises(ConfigError, match="missing key 'low'"):
        SpeedupResult.from_dict({k: v for k, v in d.items() if k != "low"})


def test_latency_results_of_older_reports_load_without_round_times():
    r = LatencyResult.from_times([0.001, 0.002], threads=1, batch_size=1, session="abc")
    old = {k: v for k, v in r.to_dict().items() if k not in ("round_ms", "session")}
    assert LatencyResult.from_dict(old).round_ms == () and LatencyResult.from_dict(r.to_dict()) == r


def test_only_results_of_one_interleaved_call_pair():
    x = torch.zeros(2, 8)
    res = compare_latency({"a": nn.Linear(8, 8), "b": nn.Linear(8, 2)}, x, warmup=1, repeats=6, threads=1)
    assert res["a"].session == res["b"].session != "" and len(res["a"].round_ms) == 6
    sp = paired_speedup(res["a"], res["b"])
    assert sp is not None and sp.rounds == 6 and sp.before is res["a"] and sp.batch_size == 2
    other = compare_latency({"b": nn.Linear(8, 2)}, x, warmup=0, repeats=6, threads=1)["b"]
    assert paired_speedup(res["a"], other) is None  # timed apart: no ratio


class Repeated(nn.Module):
    """The same linear layer applied ``times`` times: a deliberately slower model for times > 1."""

    def __init__(self, times: int):
        super().__init__()
        self.fc, self.times = nn.Linear(64, 64), times

    def forward(self, x):
        for _ in range(self.times):
            x = self.fc(x)
        return x


def test_compare_speed_pairs_rounds_and_brackets_its_ratio():
    r = compare_speed(Repeated(4), Repeated(1), torch.zeros(4, 64), rounds=12, warmup=1, threads=1)
    assert r.rounds == 12 and r.stopped == "rounds" and r.threads == 1 and r.batch_size == 4
    b, a = np.array(r.before.round_ms), np.array(r.after.round_ms)
    assert b.size == a.size == 12 and r.before.session == r.after.session
    assert r.ratio == pytest.approx(float(np.median(a / b)))   # the rounds are paired index by index
    assert r.low <= r.ratio <= r.high
    assert SpeedupResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_until_tight_stops_at_the_time_limit():
    # an interval of +-0.0000001% is never reached on real timings: the time limit ends it
    r = compare_speed(Repeated(2), Repeated(1), torch.zeros(1, 64), rounds=5, warmup=0, threads=1,
                      until_tight=True, tolerance=1e-9, max_time_s=0.3)
    assert r.stopped == "time limit" and r.rounds >= 5 and not r.measurable


def test_until_tight_stops_once_tight():
    # +-1e6 is met at the first look, which comes after the first `rounds` rounds
    r = compare_speed(Repeated(2), Repeated(1), torch.zeros(1, 64), rounds=7, warmup=0, threads=1,
                      until_tight=True, tolerance=1e6, max_time_s=600)
    assert r.stopped == "tight" and r.rounds == 7 and r.measurable


@pytest.mark.parametrize("kwargs, match", [
    ({"rounds": 0}, "rounds"), ({"max_time_s": 0}, "max_time_s"), ({"threads": 0}, "threads"),
    ({"until_tight": "yes"}, "until_tight"), ({"round": 5}, "unknown option 'round'"),
])
def test_compare_speed_refuses_bad_options(kwargs, match):
    with pytest.raises(PrunekitError, match=match):
        compare_speed(nn.Identity(), nn.Identity(), torch.zeros(1), **kwargs)


def test_speed_config_round_trips():
    from prunekit.config import from_dict, to_dict

    cfg = SpeedConfig(rounds=20, until_tight=True, max_time_s=5.0)
    assert from_dict(SpeedConfig, to_dict(cfg)) == cfg
