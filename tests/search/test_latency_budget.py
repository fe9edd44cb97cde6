"""Latency lookup table maths (overhead fit, re-timing, drift) and budget checks, on exact made-up timings."""
import json

import pytest
import torch

from prunekit import checkpoint, models
from prunekit.cli import main
from prunekit.errors import PrunekitError
from prunekit.search import LatencyTable, SearchConfig
from prunekit.search.api import _budget


def _table(tiny, ms_per_entry=1.0):
    m, x, space = tiny
    lut = LatencyTable.build(m, x, space, repeats=2)
    lut.fill(space)
    lut.entries = {k: ms_per_entry for k in lut.entries}
    return lut


def test_fit_overhead_recovers_constant_and_slope_exactly(tiny):
    _, _, space = tiny
    lut = _table(tiny)
    encs = [space.full, space.smallest]
    sums = [lut.layer_sum(e) for e in encs]
    acts = [lut.activations(e) for e in encs]
    lut.fit_overhead(encs, [s + 0.5 + 0.25 * a / acts[0] for s, a in zip(sums, acts)])
    assert lut.constant_ms == pytest.approx(0.5, abs=1e-9)
    assert lut.per_activation_ms == pytest.approx(0.25 / acts[0], rel=1e-9)
    assert lut.predict(space.full) == pytest.approx(sums[0] + 0.75, abs=1e-9)
    # a negative slope (more activations, less time) is clamped: the constant is then the mean residual
    lut.fit_overhead(encs, [sums[0] + 1.0, sums[1] + 3.0])
    assert (lut.per_activation_ms, lut.constant_ms) == (0.0, pytest.approx(2.0))
    # explicit layer sums are used instead of the entries
    lut.fit_overhead([space.full], [10.0], layer_sums=[4.0])
    assert (lut.constant_ms, lut.per_activation_ms) == (6.0, 0.0)
    with pytest.raises(PrunekitError, match="one measured latency per encoding"):
        lut.fit_overhead(encs, [1.0])


def test_remeasure_re_times_only_the_entries_an_encoding_uses(tiny, monkeypatch):
    _, _, space = tiny
    lut = _table(tiny)
    monkeypatch.setattr(LatencyTable, "_measure_signature", lambda self, sig: 7.0)
    lut.remeasure([space.smallest])
    used = {lut._signature(layer, *lut._widths(layer, space.smallest)) for layer in lut.layers}
    assert {k for k, v in lut.entries.items() if v == 7.0} == used
    assert lut.layer_sum(space.smallest) == 7.0 * len(lut.layers)
    lut.remeasure()
    assert set(lut.entries.values()) == {7.0}


def test_entries_are_timed_from_their_signature(tiny):
    m, x, space = tiny
    lut = LatencyTable.build(m, x, space, repeats=2)
    for sig in lut.entries:  # every kind the model has (conv, linear) builds and runs at its recorded shape
        assert lut._measure_signature(sig) > 0
    kinds = {json.loads(s)[0] for s in lut.entries}
    assert kinds == {"conv", "linear"}


def test_drift_is_the_full_networks_time_now_over_at_calibration(tiny, monkeypatch):
    m, x, space = tiny
    lut = LatencyTable.build(m, x, space, repeats=2)
    assert lut.reference_ms > 0
    again = LatencyTable.from_dict(json.loads(json.dumps(lut.to_dict())))
    assert again.reference_ms == lut.reference_ms
    monkeypatch.setattr(LatencyTable, "_measure_model", lambda self, model, inp: 3.0 * lut.reference_ms)
    assert lut.drift(m, x) == pytest.approx(3.0)
    again.reference_ms = 0.0
    with pytest.raises(PrunekitError, match="no reference timing"):
        again.drift(m, x)


class _FakeTable:
    """predict() = 1 ms per kept channel summed over groups: exact, no timing."""

    def predict(self, enc):
        return float(sum(enc))


def test_budget_band_on_latency_and_macs(tiny):
    _, _, space = tiny
    full = sum(space.full)
    cfg = SearchConfig(method="metapruning", latency_ms=0.8 * full, budget_floor=0.5)
    within, in_band, limits = _budget(space, cfg, _FakeTable())
    assert limits == {"macs_max": None, "params_max": None, "latency_ms_max": 0.8 * full, "budget_floor": 0.5}
    import itertools

    for enc in itertools.product(*space.candidates):
        t = float(sum(enc))
        assert within(enc) == (t <= 0.8 * full)
        assert in_band(enc) == (0.4 * full <= t <= 0.8 * full)
    # AutoSlim ignores the floor
    assert _budget(space, SearchConfig(method="autoslim", macs=0.5), None)[2]["budget_floor"] == 0.0


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    m = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    path = tmp_path_factory.mktemp("ck") / "net.pt"
    checkpoint.save(path, m)
    return path


def test_cli_latency_search_reports_prediction_measurement_and_drift(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("prunekit.measure.latency_table.FASTEST_PAUSE_S", 0.0)
    out = tmp_path / "lat"
    argv = ["search", str(ckpt), "--method", "metapruning", "--latency-ms", "1000", "--budget-floor", "0",
            "--latency-mode", "fastest",
            "--data", "digits", "--out", str(out), "--epochs", "1", "--finetune-epochs", "0", "--iterations", "1",
            "--population", "4", "--ratios", "0.5,1.0", "--no-progress", "--workers", "1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "latency: predicted" in text and "(fastest)" in text and "at the table's speed" in text
    rep = json.loads((out / "report.json").read_text())
    assert rep["latency_mode"] == "fastest" and rep["config"]["latency_mode"] == "fastest"
    assert 0 < rep["latency_ms_predicted"] <= 1000
    assert rep["latency_ms_measured_at_table_speed"] * rep["latency_drift"] == pytest.approx(rep["latency_ms_measured"])
    assert rep["latency_drift"] == pytest.approx(rep["latency_ms_full_measured"] / rep["latency_ms_full_at_table"])
    ratio = rep["latency_ratio"]  # found vs full, interleaved: 10 rounds of 50 paired runs
    assert ratio["rounds"] == 500 and ratio["low"] <= ratio["ratio"] <= ratio["high"] and ratio["threads"] == 1
    assert "latency found / full model (timed interleaved): " in text
    log = json.loads((out / "search_log.json").read_text())
    assert log["records"] and all(0 < r["latency_ms"] <= 1000 for r in log["records"])


def test_fill_in_passes_keeps_each_entrys_fastest_pass(tiny, monkeypatch):
    _, _, space = tiny
    lut = _table(tiny)
    sigs = sorted(lut.entries)
    calls = []

    def fake(self, sig):  # pass 1: 3 ms, pass 2: 1 ms, pass 3: 2 ms for every entry
        calls.append(sig)
        return (3.0, 1.0, 2.0)[(len(calls) - 1) // len(sigs)]

    monkeypatch.setattr(LatencyTable, "_measure_signature", fake)
    assert lut.fill(space, rounds=3) == len(sigs)
    assert set(lut.entries.values()) == {1.0} and len(calls) == 3 * len(sigs)
    # passes, not repeats: each pass walks the whole grid before the next one starts
    assert calls[:len(sigs)] == calls[len(sigs):2 * len(sigs)]
    # rounds=1 only measures what is missing
    calls.clear()
    assert lut.fill(space) == len(sigs) and calls == []


def test_fastest_mode_calibrates_and_measures_on_the_fastest_rounds(tiny, monkeypatch):
    m, x, space = tiny
    monkeypatch.setattr("prunekit.measure.latency_table.FASTEST_PAUSE_S", 0.0)
    times = iter([5.0, 2.0, 4.0] * 100)  # successive timings cycle 5, 2, 4 ms (median mode would give 4)
    monkeypatch.setattr(LatencyTable, "_measure_model", lambda self, net, inp: next(times))
    monkeypatch.setattr(LatencyTable, "_measure_signature", lambda self, sig: 0.0)
    lut = LatencyTable.build(m, x, space, mode="fastest", rounds=2)
    assert lut.mode == "fastest" and lut.reference_ms == 2.0  # the fastest of the calibration rounds
    assert lut.drift(m, x) == 1.0  # 10 more rounds: their fastest is 2 ms again
    assert LatencyTable.from_dict(json.loads(json.dumps(lut.to_dict()))).mode == "fastest"
    with pytest.raises(PrunekitError, match="mode must be one of"):
        LatencyTable.build(m, x, space, mode="fast")
    with pytest.raises(PrunekitError, match="rounds must be an integer >= 1"):
        LatencyTable.build(m, x, space, mode="fastest", rounds=0)


def test_timing_rounds_pause_only_in_fastest_mode(monkeypatch):
    from prunekit.search import latency

    naps = []
    monkeypatch.setattr("time.sleep", naps.append)
    assert len(list(latency.timing_rounds("median"))) == 5 and naps == []
    assert len(list(latency.timing_rounds("fastest"))) == latency.FASTEST_ROUNDS
    assert naps == [latency.FASTEST_PAUSE_S] * (latency.FASTEST_ROUNDS - 1)


def test_cli_search_reuses_a_saved_latency_table_and_checks_it(ckpt, tmp_path, capsys):
    base = ["search", str(ckpt), "--method", "metapruning", "--latency-ms", "1000", "--budget-floor", "0",
            "--data", "digits", "--epochs", "0", "--finetune-epochs", "0", "--iterations", "1",
            "--population", "3", "--ratios", "0.5,1.0", "--no-progress", "--workers", "1", "--json"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    first = json.loads((tmp_path / "a" / "latency_table.json").read_text())
    assert main(base + ["--out", str(tmp_path / "b"), "--latency-table", str(tmp_path / "a" / "latency_table.json")]) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    second = json.loads((tmp_path / "b" / "latency_table.json").read_text())
    # reused, not rebuilt: every timing of the first table is still there, unchanged
    assert second["reference_ms"] == first["reference_ms"] and second["constant_ms"] == first["constant_ms"]
    assert all(second["entries"][k] == v for k, v in first["entries"].items())
    assert rep["latency_ms_predicted"] == LatencyTable.from_dict(second).predict(tuple(rep["encoding"]))
    # a table of another model (a renamed layer) or a missing file is refused, naming the problem
    first["layers"][0]["name"] = "elsewhere"
    (tmp_path / "other.json").write_text(json.dumps(first))
    assert main(base + ["--out", str(tmp_path / "c"), "--latency-table", str(tmp_path / "other.json")]) == 2
    assert "built for another model" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "d"), "--latency-table", str(tmp_path / "none.json")]) == 2
    assert "is not a file" in capsys.readouterr().err
