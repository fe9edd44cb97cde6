"""Every before/after latency a report writes is the paired interleaved ratio with its interval.

Structure only: no test asserts which model was faster.
"""
import json

import pytest

from prunekit.measure import SpeedupResult, speedup_from_times

RATIO_KEYS = {"ratio", "low", "high", "rounds", "measurable", "reason"}


def _synthetic(ratio_after=0.5, rounds=8):
    before = [0.010 + 0.001 * (i % 3) for i in range(rounds)]
    return speedup_from_times(before, [t * ratio_after for t in before], threads=2, batch_size=32)


def test_structured_report_sentence_is_exact_and_never_a_bare_speedup():
    from prunekit.methods.structured.pipeline import build_report
    from prunekit.runs import render_markdown

    r = {"method": "l1", "paper": "Li et al. 2017", "dense": {"top1": 90.0}, "pruned": {"top1": 50.0},
         "after_finetune": {"top1": 89.0}, "macs": {"before": 100.0, "after": 50.0, "kept": 0.5},
         "params": {"before": 10.0, "after": 5.0, "kept": 0.5}, "prune_seconds": 1.0, "finetune_epochs": 1,
         "from_scratch": False, "latency": _synthetic().to_dict()}
    md = render_markdown(build_report(r))
    assert ("Latency of the pruned network against the dense one, timed interleaved (medians: dense 11.00 ms, "
            "pruned 5.50 ms): 0.50x latency [0.50, 0.50] (95% CI, 8 rounds, batch 32, 2 threads).") in md
    noisy = speedup_from_times([1.0] * 10, [0.5, 1.0] * 5, threads=1, batch_size=32)
    md = render_markdown(build_report({**r, "latency": noisy.to_dict()}))
    assert "latency not measurable on this machine right now: spread 67% between rounds" in md
    assert "speedup x" not in md


@pytest.fixture(scope="module")
def digits():
    from prunekit.data import load_dataset

    return load_dataset("digits")


def test_structured_run_writes_the_interval_into_report_json(digits, tmp_path):
    import torch

    from prunekit import models
    from prunekit.methods.structured import run_structured

    torch.manual_seed(0)
    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    cfg = {"macs": 0.5, "macs_tolerance": 0.1, "finetune": {"epochs": 0}, "calib_images": 32, "latency": True}
    res = run_structured(net, digits, "l1", cfg, tmp_path / "run", progress=False)
    lat = json.loads((tmp_path / "run" / "report.json").read_text())["latency"]
    assert RATIO_KEYS <= set(lat) and lat["rounds"] == 30 and lat["batch_size"] == 32
    assert lat["low"] <= lat["ratio"] <= lat["high"] and lat == res.report["latency"]
    sp = SpeedupResult.from_dict(lat)
    assert sp.describe() in (tmp_path / "run" / "report.md").read_text()


def test_recipe_profile_steps_after_the_first_compare_against_it(tmp_path):
    from prunekit.recipe import Recipe, run_recipe

    r = Recipe.from_dict({"out": str(tmp_path / "run"), "data": "digits", "model": {"name": "convnet3"},
                          "steps": [{"profile": {"batch_sizes": [2], "latency": False}},
                                    {"prune": {"macs": 0.5, "tolerance": 0.1}},
                                    {"profile": {"batch_sizes": [2]}}]})
    state = run_recipe(r, progress=False)
    first, last = state.records[0], state.records[2]
    assert "latency_vs_profile0" not in first
    summary = last["latency_vs_profile0"]["2"]
    assert RATIO_KEYS <= set(summary) and summary["rounds"] == 50 and summary["batch_size"] == 2
    assert summary["low"] <= summary["ratio"] <= summary["high"]
    assert last["latency_bs2_vs_profile0"].startswith(("latency not measurable", f"{summary['ratio']:.2f}x latency ["))
    md = (tmp_path / "run" / "report.md").read_text()
    assert f"latency_bs2_vs_profile0={last['latency_bs2_vs_profile0']}" in md
    saved = json.loads((tmp_path / "run" / "report.json").read_text())["records"][2]["latency_vs_profile0"]
    assert saved == json.loads(json.dumps(last["latency_vs_profile0"]))


def test_demo_prints_and_writes_interleaved_ratios(tmp_path, capsys):
    from prunekit.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--finetune-epochs", "0", "--skip-compress",
                 "--no-progress", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "latency after/before: median of per-round ratios of interleaved runs" in text
    rep = json.loads((out / "report.json").read_text())
    vs = rep["pruned"]["latency_vs_trained"]
    assert sorted(vs) == ["1", "32"]
    for bs, sp in vs.items():
        assert RATIO_KEYS <= set(sp) and sp["batch_size"] == int(bs) and sp["threads"] == 1
        assert sp["low"] <= sp["ratio"] <= sp["high"]
        assert f"latency bs={bs}: {SpeedupResult.from_dict(sp).describe()}" in text
    assert "latency bs=32: " in (out / "report.md").read_text()


def test_prune_time_writes_the_paired_ratio(tmp_path, capsys):
    from prunekit import checkpoint, models
    from prunekit.cli import main

    src = checkpoint.save(tmp_path / "lenet5.pt", models.create("lenet5", num_classes=10, in_channels=1))
    out = tmp_path / "pruned.pt"
    assert main(["prune", str(src), "--ratio", "0.5", "--out", str(out), "--time"]) == 0
    text = capsys.readouterr().out
    rep = json.loads((tmp_path / "pruned.pt.report.json").read_text())
    sp = SpeedupResult.from_dict(rep["latency"]["1"])
    assert sp.rounds == 50 and sp.batch_size == 1 and sp.low <= sp.ratio <= sp.high
    assert f"latency bs=1: {sp.describe()}" in text and sp.short() in text
    md = (tmp_path / "pruned.pt.report.md").read_text()
    assert f"## Latency (timed interleaved)\n\n- batch 1: {sp.describe()}" in md
