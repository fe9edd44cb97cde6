"""The table logic of scripts/reproduce_methods.py and scripts/repro_lib.py on a fake results dict."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import repro_lib  # noqa: E402
import reproduce_methods as rm  # noqa: E402


def _rows():
    noop = lambda m, s, seed: m  # noqa: E731 - the table never calls prune
    return [repro_lib.Row("a", noop, budget=0.5, tolerance=0.03), repro_lib.Row("b", noop, budget=0.5, tolerance=0.03),
            repro_lib.Row("c", noop, budget=0.5), repro_lib.Row("d", noop, budget=0.5),
            repro_lib.Row("e", noop, budget=0.5)]


def _results():
    run = lambda top1, macs: {"top1": top1, "macs": macs, "params": 100, "nonzero": 90}  # noqa: E731
    return {"dense": {"top1": 90.0, "macs": 1000, "params": 200, "nonzero": 200}, "seeds": [0, 1, 2],
            "runs": {"a|0": run(88.0, 500), "a|1": run(89.0, 520), "a|2": run(87.0, 530),   # 0.53 <= 0.5 + 0.03
                     "b|0": run(80.0, 531), "b|1": run(82.0, 400),                          # 0.531 > 0.53
                     "e|0": run(70.0, 450)},
            "skipped": {"c": "not available"}, "failed": {"d|0": "RuntimeError: boom"}}


def test_summary_mean_std_and_budget_marks():
    res, rows = _results(), _rows()
    a = repro_lib.summary(res, rows[0])
    assert a["n"] == 3 and a["top1_mean"] == pytest.approx(88.0)
    assert a["top1_std"] == pytest.approx(statistics.stdev([88.0, 89.0, 87.0])) == pytest.approx(1.0)
    assert a["macs_max"] == pytest.approx(0.53) and a["met"] is True
    b = repro_lib.summary(res, rows[1])
    assert b["top1_mean"] == pytest.approx(81.0) and b["top1_std"] == pytest.approx(2 ** 0.5)
    assert b["met"] is False
    assert repro_lib.summary(res, rows[2]) is None


def test_markdown_table_cells():
    res, rows = _results(), _rows()
    table = repro_lib.markdown_table(res, rows, {"latency": {"a": "0.61x [0.58, 0.64]"}}).splitlines()
    by = {line.split("|")[1].strip(): line for line in table[2:]}
    assert "| 88.00 +- 1.00% | 3 | 0.517 |" in by["a"] and "0.50 met" in by["a"] and "0.61x [0.58, 0.64]" in by["a"]
    assert "| 81.00 +- 1.41% | 2 |" in by["b"] and "**0.50 missed** (max 0.531)" in by["b"]
    assert "skipped: not available" in by["c"]
    assert "failed: RuntimeError: boom" in by["d"]
    assert "| 70.00% (one seed) | 1 |" in by["e"]  # one seed has no spread to show
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_observations_state_misses_and_pending():
    res = _results()
    rows = _rows()
    obs = "\n".join(rm.observations(res, rows))
    assert "Best final top-1: a (88.00 +- 1.00%" in obs
    assert "missed by: b" in obs
    assert "Pending (fewer than 3 seeds so far): b, d, e" in obs  # c is skipped, so not pending


def test_rows_cover_the_brief():
    info = {"train": {"epochs": 1}, "epochs": 1}
    labels = [r.label for r in rm.rows_for("fashion_mnist_lenet5", info)]
    assert labels == ["l1", "slimming", "lasso", "thinet", "fpgm", "taylor", "random", "uniform width from scratch",
                      "Torch-Pruning l1", "Torch-Pruning group-norm", "Torch-Pruning slimming"]
    assert all(r.budget == rm.BUDGET == 0.5 for r in rm.rows_for("cifar10_resnet20", info))


def test_parts_from_two_machines_name_each_machine_with_its_rows(tmp_path):
    import json

    def part(name, machine, runs):
        (tmp_path / f"methods_b.{name}.json").write_text(json.dumps(
            {"machine": machine, "seeds": [0], "dense": {"top1": 90.0, "macs": 100}, "runs": runs}))

    part("gpu", "x86_64, 16 cores, GPU H200", {"slimming|0": {"top1": 80.0}, "slimming|1": {"top1": 81.0}})
    part("cpu", "x86_64, 2 cores", {"l1|0": {"top1": 82.0}})
    res = rm.load_results(tmp_path, "b")
    assert set(res["runs"]) == {"slimming|0", "slimming|1", "l1|0"} and res["seeds"] == list(rm.SEEDS)
    assert rm._machines(res) == "x86_64, 2 cores (l1); x86_64, 16 cores, GPU H200 (slimming)"
