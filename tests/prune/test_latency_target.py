"""Latency budgets (``prunekit.plan(model, x, latency=0.5)``): latency model, rounding, refinement, cache, errors.

Every timing is replaced by a deterministic stub (no test depends on this machine's speed).
"""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

import prunekit
from prunekit.cli import main
from prunekit.engine.latency_budget import LatencyModel, meet_latency
from prunekit.engine.options import PlanOptions
from prunekit.engine.policy import GroupCost, select_fraction
from prunekit.errors import ConfigError, PrunekitError
from prunekit.measure.latency_table import LatencyTable
from prunekit.measure.runtimes import RuntimeSpeed


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 48, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(48, 10))


def _entry_ms(sig: str) -> float:
    """A stub layer timing: proportional to the layer's weight elements (input x output channels)."""
    kind, cfg, shape, cout = json.loads(sig)
    cin = shape[1] if kind == "conv" else shape[-1]
    return cin * cout / 1000.0


def _net_ms(model) -> float:
    """A stub network timing: the sum of its layers' :func:`_entry_ms` (so the fitted overhead is 0)."""
    total = 0.0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            total += m.in_channels * m.out_channels / 1000.0
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features / 1000.0
    return total


@pytest.fixture
def stub_timing(monkeypatch):
    """Layer entries from :func:`_entry_ms`, networks from :func:`_net_ms`; measured ratio = true ratio x ``scale``."""
    calls = {"entries": 0, "measure": 0}

    def entry(self, sig):
        calls["entries"] += 1
        return _entry_ms(sig)

    monkeypatch.setattr(LatencyTable, "_measure_signature", entry)
    monkeypatch.setattr(LatencyTable, "_measure_model", lambda self, model, x: _net_ms(model))
    state = SimpleNamespace(calls=calls, scale=1.0, sessions=5, session_noise=(1.0,))

    def paired(before, after, x, threads=None, rounds=20, runtime="eager", until_within=None, max_time_s=60.0,
               after_first=False):
        # session k of a measurement lands at the true ratio x scale x session_noise[k % len(session_noise)]
        k = calls["measure"] % state.sessions
        calls["measure"] += 1
        calls["until_within"] = until_within
        calls.setdefault("after_first", []).append(after_first)
        calls["rounds"] = rounds
        r = state.scale * state.session_noise[k % len(state.session_noise)] * _net_ms(after) / _net_ms(before)
        return RuntimeSpeed("eager", x.shape[0], threads or 1, 1.0, r, r, r * 0.98, r * 1.02, rounds)

    monkeypatch.setattr("prunekit.measure.runtimes.paired_ratio", paired)
    # no pauses between sessions: the module's clock stays real, its sleep does nothing
    monkeypatch.setattr("prunekit.measure.sessions.time", SimpleNamespace(perf_counter=time.perf_counter,
                                                                          sleep=lambda s: None))
    return state


def test_bad_latency_values_are_config_errors():
    for bad in (0, 1.5, -0.2, "half"):
        with pytest.raises(ConfigError, match="latency"):
            PlanOptions(latency=bad)
    with pytest.raises(ConfigError, match="at most one of macs=, params= and latency="):
        PlanOptions(latency=0.5, macs=0.5)
    with pytest.raises(ConfigError, match="latency_batch"):
        PlanOptions(latency=0.5, latency_batch=0)
    with pytest.raises(ConfigError, match="steps must be 1"):
        prunekit.prune(_net(), torch.randn(1, 3, 8, 8), latency=0.5, steps=2)
    assert PlanOptions.from_dict({"latency": 0.7, "latency_batch": 32}).to_dict()["latency_batch"] == 32


def test_cli_latency_with_macs_is_a_one_line_error(tmp_path, capsys):
    from prunekit import checkpoint, models

    ck = checkpoint.save(tmp_path / "l5.pt", models.create("lenet5", num_classes=10, in_channels=1))
    with pytest.raises(SystemExit) as e:
        main(["prune", str(ck), "--latency", "0.5", "--macs", "0.5", "--dry-run"])
    assert e.value.code == 2 and "--macs: not allowed with argument --latency" in capsys.readouterr().err
    assert main(["prune", str(ck), "--latency", "1.5", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "latency" in err and "1.5" in err and "Traceback" not in err
    assert main(["prune", str(ck), "--latency", "0.5", "--set", "latency_sessions=2", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "latency_sessions" in err and "3" in err and "Traceback" not in err


def test_select_fraction_meets_a_cost_function_exactly():
    groups = [GroupCost(10, np.arange(10), [], np.ones(10)), GroupCost(20, np.arange(20), [], np.ones(20))]
    frac = lambda c: 1 - (c[0] + c[1]) / 30  # noqa: E731
    counts, f = select_fraction(groups, frac, 0.5, what="x", global_ranking=False, round_to=1, min_channels=1)
    assert counts.tolist() == [5, 10] and f == 0.5
    counts, _ = select_fraction(groups, frac, 0.5, what="x", global_ranking=False, round_to=4, min_channels=1)
    assert [(s - n) % 4 for s, n in zip((10, 20), counts)] == [0, 0]
    with pytest.raises(PrunekitError, match="x target 0.01 cannot be met"):
        select_fraction(groups, frac, 0.01, what="x", global_ranking=False, round_to=1, min_channels=1)


def test_prediction_is_the_sum_of_its_table_entries(stub_timing, tmp_path):
    net, x = _net(), torch.randn(1, 3, 8, 8)
    p = prunekit.plan(net, x, latency=0.5, round_to=8, latency_cache=str(tmp_path))
    table = LatencyTable.load(p.info["latency_table"])
    from prunekit.engine.latency_budget import WidthSpace
    from prunekit.graph import analyze

    an = analyze(net, x)
    groups = [GroupCost(g.size, np.arange(g.size), []) for g in an.groups]
    space = WidthSpace.build(an, groups, [n for n, _ in net.named_parameters()], 8, 1, 0.9)
    table.constant_ms, table.per_activation_ms = 0.0, 0.0
    lat = LatencyModel(table, space)
    enc = (16, 24)  # conv0 -> 16, conv3 -> 24 channels
    # conv(3->16) + conv(16->24) + linear(24->10), each entry cin*cout/1000
    assert lat.predict_encoding(enc) == pytest.approx((3 * 16 + 16 * 24 + 24 * 10) / 1000)
    assert lat.predict_encoding(enc) == pytest.approx(sum(
        table.entries[table._signature(layer, *table._widths(layer, enc))] for layer in table.layers))


def test_widths_are_multiples_of_round_to_and_default_to_the_fast_width(stub_timing, tmp_path, monkeypatch):
    net, x = _net(), torch.randn(1, 3, 8, 8)
    p = prunekit.plan(net, x, latency=0.5, round_to=8, latency_cache=str(tmp_path))
    kept = {g.name: g.size - len(g.removed) for g in p.groups}
    assert kept["0"] % 8 == 0 and kept["3"] % 8 == 0 and kept != {"0": 32, "3": 48}
    monkeypatch.setattr("prunekit.engine.latency_budget.fast_round_to", lambda: 16)
    p = prunekit.plan(net, x, latency=0.5, latency_cache="off")
    assert p.info["round_to"] == 16
    assert all((g.size - len(g.removed)) % 16 == 0 for g in p.groups)
    assert prunekit.plan(net, x, ratio=0.3).info["round_to"] == 1  # other budgets keep round_to 1


def test_next_goal_corrects_then_interpolates_inside_the_bracket():
    from prunekit.engine.latency_budget import next_goal

    assert next_goal([(0.5, 0.6)], 0.5) == pytest.approx(0.5 * 0.5 / 0.6)
    assert next_goal([(0.5, 0.05)], 0.5) == pytest.approx(0.75)  # damped to x1.5
    # bracketed by (0.4 -> 0.45) and (0.5 -> 0.6): 0.4 + (0.5 - 0.45) * 0.1 / 0.15
    assert next_goal([(0.5, 0.6), (0.4, 0.45)], 0.5) == pytest.approx(0.4 + 0.05 * 0.1 / 0.15)
    # the closest point on each side is used, not the last two
    pts = [(0.6, 0.8), (0.5, 0.6), (0.3, 0.3), (0.4, 0.45)]
    assert next_goal(pts, 0.5) == pytest.approx(0.4 + 0.05 * 0.1 / 0.15)
    # a non-monotonic bracket whose interpolation repeats a tried goal: the midpoint
    tried = 0.454 + (0.5 - 0.444) * 0.004 / (0.525 - 0.444)
    assert next_goal([(0.454, 0.444), (0.458, 0.525)], 0.5) == pytest.approx(tried)
    assert next_goal([(0.454, 0.444), (0.458, 0.525), (tried, 0.7)], 0.5) == pytest.approx(0.456)


def test_refine_loop_is_exact_with_a_stub_timer():
    # the measured ratio is 1.2 x the predicted one: 0.5 -> measured 0.6; the goal is corrected to
    # 0.5 * 0.5 / 0.6 = 0.41667, measured 0.5: met after two measurements
    def measure(plan):
        r = 1.2 * plan
        return SimpleNamespace(ratio=r, low=r, high=r)

    plan, m, entry, history = meet_latency(lambda goal: goal, lambda c: c, lambda c: c, measure, 0.5, 0.05, 3)
    assert [round(h["goal"], 5) for h in history] == [0.5, 0.41667]
    assert m.ratio == pytest.approx(0.5) and entry is history[-1]
    # never met: every refinement is used, and the closest measurement is kept
    plan, m, _, history = meet_latency(lambda goal: goal, lambda c: c, lambda c: c,
                                       lambda p: SimpleNamespace(ratio=max(p, 0.9), low=0.9, high=0.9), 0.5, 0.05, 2)
    assert len(history) == 3 and m.ratio == 0.9
    # one wild measurement moves the goal by at most MAX_CORRECTION
    _, _, _, history = meet_latency(lambda goal: goal, lambda c: c, lambda c: c,
                                    lambda p: SimpleNamespace(ratio=p / 10, low=0, high=1), 0.5, 0.05, 1)
    assert history[1]["goal"] == pytest.approx(0.75)
    # a measurement inside the tolerance but outside stop_within is refined once more (aim at the band's middle)
    edge = lambda p: SimpleNamespace(ratio=1.04 * p, low=1.04 * p, high=1.04 * p)  # noqa: E731
    _, m, _, history = meet_latency(lambda goal: goal, lambda c: c, lambda c: c, edge, 0.5, 0.05, 3)
    assert len(history) == 1 and m.ratio == pytest.approx(0.52)
    _, m, _, history = meet_latency(lambda goal: goal, lambda c: c, lambda c: c, edge, 0.5, 0.05, 3,
                                    stop_within=0.025)
    assert [round(h["goal"], 5) for h in history] == [0.5, 0.48077] and m.ratio == pytest.approx(0.5)


def test_plan_reports_predicted_and_measured_and_refines(stub_timing, tmp_path):
    net, x = _net(), torch.randn(1, 3, 8, 8)
    stub_timing.scale = 1.0
    p = prunekit.plan(net, x, latency=0.55, round_to=8, latency_cache=str(tmp_path), latency_threads=1)
    info = p.info
    assert info["latency_met"] is True and len(info["latency_refinements"]) == 1
    assert info["latency_measured"]["threads"] == 1 and info["latency_batch"] == 1
    assert abs(info["latency_measured"]["ratio"] / 0.55 - 1) <= 0.05
    # one measurement = 5 sessions of exactly latency_rounds rounds, the first-timed model alternating
    assert stub_timing.calls["until_within"] is None and stub_timing.calls["rounds"] == 10
    assert stub_timing.calls["after_first"] == [False, True, False, True, False]
    assert info["latency_measured"]["sessions"] == 5 and info["latency_measured"]["rounds"] == 50
    assert info["latency_verdict"] == "met" and "): met" in p.latency_line()
    assert "latency" in p.summary() and "target 0.55" in p.latency_line() and "[" in p.latency_line()
    stub_timing.scale = 1.3  # the machine runs pruned models slower than the table predicts: refine
    p = prunekit.plan(net, x, latency=0.6, round_to=8, latency_cache=str(tmp_path))
    hist = p.info["latency_refinements"]
    assert len(hist) >= 2 and hist[1]["goal"] < hist[0]["goal"]
    with pytest.warns(prunekit.engine.planner.BudgetWarning, match="latency target 0.6 not met: "):
        stub_timing.scale = 5.0
        prunekit.plan(net, x, latency=0.6, round_to=8, latency_cache=str(tmp_path), latency_refinements=1)
    with pytest.raises(PrunekitError, match="best_effort=False"):
        prunekit.plan(net, x, latency=0.6, round_to=8, latency_cache="off", latency_refinements=0,
                      best_effort=False)


def test_table_cache_round_trip(stub_timing, tmp_path):
    net, x = _net(), torch.randn(1, 3, 8, 8)
    p = prunekit.plan(net, x, latency=0.5, round_to=8, latency_cache=str(tmp_path))
    path = p.info["latency_table"]
    assert path.startswith(str(tmp_path)) and LatencyTable.load(path).threads == p.info["latency_threads"]
    saved = json.loads(open(path).read())
    first = stub_timing.calls["entries"]
    p2 = prunekit.plan(net, x, latency=0.5, round_to=8, latency_cache=str(tmp_path))
    assert p2.info["latency_table"] == path and stub_timing.calls["entries"] == first  # nothing re-timed
    assert json.loads(json.dumps(LatencyTable.from_dict(saved).to_dict())) == saved
    # another batch size is another table
    p3 = prunekit.plan(net, x, latency=0.5, round_to=8, latency_cache=str(tmp_path), latency_batch=4)
    assert p3.info["latency_table"] != path and p3.info["latency_measured"]["batch_size"] == 4


def test_cli_prune_latency_end_to_end(stub_timing, tmp_path, capsys):
    from prunekit import checkpoint

    ck = checkpoint.save(tmp_path / "net.pt", _lenet())
    out = tmp_path / "small.pt"
    assert main(["prune", str(ck), "--latency", "0.6", "--round-to", "2", "--latency-cache", str(tmp_path / "c"),
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "latency 0." in text and "target 0.6" in text
    rep = json.loads((tmp_path / "small.pt.report.json").read_text())
    measured = rep["plan"]["latency"]["measured"]
    assert rep["plan"]["latency"]["target"] == 0.6 and measured["rounds"] == 50 and measured["sessions"] == 5
    assert rep["plan"]["latency"]["verdict"] in ("met", "not met")


def _lenet():
    from prunekit import models

    return models.create("lenet5", num_classes=10, in_channels=1)


def test_latency_plan_leaves_the_model_as_it_was(stub_timing):
    net = _net().train()
    w = net[0].weight.detach().clone()
    prunekit.plan(net, torch.randn(1, 3, 8, 8), latency=0.55, round_to=8, latency_cache="off")
    assert all(m.training for m in net.modules()) and torch.equal(net[0].weight, w)


def test_loop_and_verdict_use_the_median_and_the_interval_over_sessions(stub_timing):
    net, x = _net(), torch.randn(1, 3, 8, 8)
    # sessions 3% apart either way: the interval over sessions (min, max) is +-3%, narrower than +-5%;
    # the median session lands on the true ratio, so the loop stops where the noise-free one did
    stub_timing.session_noise = (1.0, 1.03, 0.97, 1.0, 1.0)
    p = prunekit.plan(net, x, latency=0.55, round_to=8, latency_cache="off")
    m, first = p.info["latency_measured"], p.info["latency_refinements"][0]
    true = m["ratio"]
    assert first["session_ratios"] == pytest.approx([true, 1.03 * true, 0.97 * true, true, true])
    assert first["measured"] == pytest.approx(true) and first["low"] == pytest.approx(0.97 * true)
    assert (m["low"], m["high"], m["coverage"]) == (pytest.approx(0.97 * true), pytest.approx(1.03 * true), 0.9375)
    assert m["half_width"] == pytest.approx(0.03) and m["within_half_width"] == pytest.approx(0.02)
    assert p.info["latency_verdict"] == "met" and p.info["latency_met"] is True
    # sessions 8% apart: +-8% over sessions is wider than +-5%, so neither met nor not met is claimed
    stub_timing.session_noise = (1.0, 1.08, 0.92, 1.0, 1.0)
    with pytest.warns(prunekit.engine.planner.BudgetWarning,
                      match=r"not measurable to \+-5% on this machine right now: sessions spread 16%"):
        p = prunekit.plan(net, x, latency=0.55, round_to=8, latency_cache="off")
    assert p.info["latency_verdict"] == "not measurable" and p.info["latency_met"] is None
    assert p.latency_line().endswith("not measurable to +-5% on this machine right now: sessions spread 16%")
    with pytest.raises(PrunekitError, match="not measurable.*best_effort=False"):
        prunekit.plan(net, x, latency=0.55, round_to=8, latency_cache="off", best_effort=False)


def test_session_options_validate_and_round_trip():
    opts = PlanOptions.from_dict({"latency": 0.5, "latency_sessions": 7, "latency_session_pause_s": 0.0,
                                  "latency_rounds": 12, "latency_max_time_s": 20})
    assert PlanOptions.from_dict(opts.to_dict()) == opts and opts.to_dict()["latency_sessions"] == 7
    assert PlanOptions().latency_sessions == 5 and PlanOptions().latency_rounds == 10
    with pytest.raises(ConfigError, match="latency_sessions"):
        PlanOptions(latency_sessions=2)
    with pytest.raises(ConfigError, match="latency_session_pause_s"):
        PlanOptions(latency_session_pause_s=-1)
