"""measure.runtimes: paired ratios with intervals on eager / compile / onnxruntime (no timing assertions)."""
from __future__ import annotations

import sys

import pytest
import torch.nn as nn

from prunekit.errors import PrunekitError
from prunekit.measure.runtimes import compare_runtimes, paired_times, parse_runtimes, ratio_interval, time_runtimes


def test_ratio_interval_is_the_median_of_paired_ratios():
    assert ratio_interval([2.0, 4.0, 2.0], [1.0, 2.0, 1.0]) == (0.5, 0.5, 0.5)
    r, lo, hi = ratio_interval([1.0] * 5, [0.5, 0.6, 0.7, 0.8, 0.9])
    assert r == 0.7 and 0.5 <= lo <= r <= hi <= 0.9
    with pytest.raises(PrunekitError, match="as many"):
        ratio_interval([1.0], [])


def test_paired_times_interleaves_and_alternates():
    order = []
    before, after = paired_times(lambda: order.append("b"), lambda: order.append("a"), rounds=4, warmup=1,
                                 min_round_s=0.0, warm_calls=0)
    assert len(before) == len(after) == 4
    assert order == ["b", "a", "b", "a", "a", "b", "b", "a", "a", "b"]
    # by default each turn starts with one untimed call (steady-state caches whatever ran before)
    order.clear()
    paired_times(lambda: order.append("b"), lambda: order.append("a"), rounds=2, warmup=1, min_round_s=0.0)
    assert order == ["b", "a", "b", "b", "a", "a", "a", "a", "b", "b"]


def test_parse_runtimes_names_the_bad_one():
    assert parse_runtimes("eager,onnxruntime,eager") == ("eager", "onnxruntime")
    with pytest.raises(PrunekitError, match="tensorrt"):
        parse_runtimes("eager,tensorrt")


def test_compare_runtimes_eager_rows_state_threads_and_batch():
    rows = compare_runtimes(nn.Linear(16, 16), nn.Linear(16, 4), (16,), runtimes="eager", batch_sizes=(1, 3),
                            threads=1, rounds=5)
    assert [(r.runtime, r.batch_size, r.threads, r.rounds) for r in rows] == [("eager", 1, 1, 5), ("eager", 3, 1, 5)]
    assert all(r.low <= r.ratio <= r.high for r in rows) and "eager bs=3, 1 thread" in rows[1].describe()
    one = time_runtimes(nn.Linear(16, 4), (16,), runtimes=("eager",), batch_sizes=(2,), threads=1, rounds=3)
    assert one[0]["batch_size"] == 2 and one[0]["threads"] == 1 and one[0]["median_ms"] > 0


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(PrunekitError, match=r"prunekit\[onnx\]"):
        compare_runtimes(nn.Linear(4, 4), nn.Linear(4, 2), (4,), runtimes=("onnxruntime",), batch_sizes=(1,),
                         threads=1, rounds=3)


def test_onnxruntime_rows():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    rows = compare_runtimes(nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 4), nn.ReLU()),
                            (8,), runtimes=("onnxruntime",), batch_sizes=(2,), threads=1, rounds=3)
    assert rows[0].runtime == "onnxruntime" and rows[0].batch_size == 2 and rows[0].threads == 1


def test_profile_runtimes_flag(tmp_path, capsys):
    import json

    from prunekit import checkpoint, models
    from prunekit.cli import main

    ck = checkpoint.save(tmp_path / "l5.pt", models.create("lenet5", num_classes=10, in_channels=1))
    assert main(["profile", str(ck), "--runtimes", "eager", "--batch-sizes", "1,2", "--threads", "1", "--repeats",
                 "3", "--warmup", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["runtimes"]
    assert [(r["runtime"], r["batch_size"], r["threads"]) for r in rows] == [("eager", 1, 1), ("eager", 2, 1)]
    assert main(["profile", str(ck), "--runtimes", "eager,tpu", "--no-latency"]) == 2
    assert "tpu" in capsys.readouterr().err
