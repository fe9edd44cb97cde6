"""ProfileReport: contents, JSON round trip, rendering, before/after comparison."""
import json

import pytest
import torch.nn as nn

from prunekit.errors import ConfigError, PrunekitError
from prunekit.measure import ProfileReport, compare, profile, profile_many


def net(width=8):
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def macs(width):
    return width * 9 * 36 + 4 * width * 9 * 36 + 4 * 36 * 3


@pytest.fixture(scope="module")
def pair():
    return profile_many({"before": net(8), "after": net(4)}, (1, 6, 6), batch_sizes=(1, 2), warmup=1, repeats=3,
                        threads=1)


def test_report_contents(pair):
    r = pair["before"]
    assert r.params == (8 * 9 + 8) + 16 + (4 * 8 * 9 + 4) + (144 * 3 + 3)
    assert r.macs.total == macs(8) and r.macs.batch_size == 1
    assert r.layer_params == {"0": 80, "3": 292, "5": 435}
    assert sorted(r.latency) == [1, 2] and r.latency[2].batch_size == 2 and r.latency[1].threads == 1
    assert sorted(r.peak_memory) == [1, 2]
    assert r.state_dict_bytes > 4 * r.params and r.file is None
    assert r.environment["threads"] == 1 and "flop_counter" in r.environment["macs_method"]


def test_json_round_trip_and_atomic_save(pair, tmp_path):
    r = pair["before"]
    assert ProfileReport.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    path = r.save_json(tmp_path / "r.json")
    assert ProfileReport.load_json(path) == r
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind
    with pytest.raises(PrunekitError, match="already exists"):
        r.save_json(path, overwrite=False)


def test_bad_report_files(pair, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PrunekitError, match="bad.json"):
        ProfileReport.load_json(bad)
    bad.write_text(json.dumps({**pair["before"].to_dict(), "colour": "red"}))
    with pytest.raises(ConfigError, match="'colour'"):
        ProfileReport.load_json(bad)
    with pytest.raises(PrunekitError, match="no such report"):
        ProfileReport.load_json(tmp_path / "missing.json")


def test_tables(pair):
    r = pair["before"]
    table = r.to_table(per_layer=True)
    assert f"{macs(8):,}" in table and "latency bs=2 (median)" in table
    layer_lines = [ln for ln in table.splitlines() if ln.startswith(("0 ", "3 ", "5 "))]
    assert len(layer_lines) == 3 and "Conv2d" in layer_lines[0]
    assert "layer" not in r.to_table()  # per-layer table only on request
    md = r.to_markdown(per_layer=True)
    assert "| MACs / sample |" in md and "| 3 | Conv2d |" in md


def test_compare_ratios(pair):
    c = compare(pair["before"], pair["after"])
    row = c.row("MACs / sample")
    assert (row["before"], row["after"]) == (macs(8), macs(4)) and row["ratio"] == pytest.approx(macs(4) / macs(8))
    assert {r["metric"] for r in c.rows} >= {"params", "nonzero params", "latency bs=1 (median)",
                                            "latency bs=2 (median)", "peak memory bs=2", "state_dict size"}
    assert [(r["layer"], r["ratio"]) for r in c.layer_rows] == [("0", 0.5), ("3", 0.5), ("5", 1.0)]
    text = c.to_table(per_layer=True)
    assert "after/before" in text and f"{macs(4) / macs(8):.3f}x" in text and "MACs before" in text
    assert "| params |" in c.to_markdown()
    assert json.loads(json.dumps(c.to_dict()))["rows"][0]["metric"] == "params"
    assert pair["before"].compare(pair["after"]).to_dict() == c.to_dict()
    with pytest.raises(KeyError, match="no metric"):
        c.row("speed")


def test_profile_single_model_options(tmp_path):
    f = tmp_path / "m.bin"
    f.write_bytes(b"0" * 10)
    r = profile(net(2), (1, 6, 6), batch_sizes=(1,), latency=False, memory=False, file=f, name="tiny")
    assert r.name == "tiny" and r.latency == {} and r.peak_memory == {} and r.file_bytes == 10
    assert "file size" in r.to_table()


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_sizes": ()}, "empty"),
    ({"batch_sizes": (1, 0)}, "batch size"),
    ({"input_shape": None}, "input_shape"),
    ({"input_shape": (1, -6)}, "input_shape"),
])
def test_profile_bad_arguments(kwargs, match):
    args = {"input_shape": (1, 6, 6), "latency": False, "memory": False, **kwargs}
    with pytest.raises(PrunekitError, match=match):
        profile(net(2), **args)


def test_compare_latency_rows_carry_the_paired_ratio_and_interval(pair):
    import dataclasses

    from prunekit.measure import LatencyResult, SpeedupResult

    c = compare(pair["before"], pair["after"])
    row = c.row("latency bs=2 (median)")
    sp = SpeedupResult.from_dict(row["speedup"])
    assert row["ratio"] == sp.ratio and sp.rounds == 3 and sp.batch_size == 2 and not sp.measurable
    assert "latency bs=2: latency not measurable on this machine right now: only 3 rounds" in c.to_table()
    # a saved and reloaded pair still pairs (per-round times and session are in the JSON)
    loaded = [ProfileReport.from_dict(json.loads(json.dumps(pair[k].to_dict()))) for k in ("before", "after")]
    assert compare(*loaded).row("latency bs=2 (median)")["speedup"] == row["speedup"]
    # exact figures on synthetic paired times: after takes half the time in every round
    times = [0.004, 0.005, 0.004, 0.006, 0.004, 0.005]
    lat = {1: LatencyResult.from_times(times, threads=1, batch_size=1, session="s1")}
    half = {1: LatencyResult.from_times([t / 2 for t in times], threads=1, batch_size=1, session="s1")}
    c = compare(dataclasses.replace(pair["before"], latency=lat), dataclasses.replace(pair["after"], latency=half))
    assert c.row("latency bs=1 (median)")["ratio"] == 0.5
    text = c.to_table()
    assert "0.50x [0.50, 0.50]  -50.0%" in text
    assert "latency bs=1: 0.50x latency [0.50, 0.50] (95% CI, 6 rounds, batch 1, 1 thread)" in text
    assert "- latency bs=1: 0.50x latency" in c.to_markdown()
    # reports timed apart: medians shown, no ratio
    other = {1: LatencyResult.from_times([t / 2 for t in times], threads=1, batch_size=1, session="s2")}
    apart = compare(dataclasses.replace(pair["before"], latency=lat), dataclasses.replace(pair["after"], latency=other))
    assert apart.row("latency bs=1 (median)")["ratio"] is None and apart.speedups() == {"latency bs=1 (median)": None}
    assert "timed apart" in apart.to_table() and "0.50x" not in apart.to_table()
