"""scripts/reproduce_structured.py --update: a later run's rows replace the old ones only when comparable."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import reproduce_structured as rs  # noqa: E402

META = {"quick": False, "epochs": 10, "finetune_epochs": 3, "budgets": [0.5], "seed": 0, "threads": 1,
        "minutes": 30.0, "machine": "x86_64", "torch": "2.13.0+cpu", "date": "2026-11-23"}


def row(method, macs, acc):
    return {"method": method, "budget": 0.5, "macs": macs, "params": 0.5, "before_ft": 50.0, "after_ft": acc,
            "latency": None}


def write(path: Path, rows, dense=98.3, **meta):
    path.write_text(json.dumps({"meta": {**META, **meta}, "models": {"vgg": {"dense_top1": dense, "rows": rows}},
                                "fig4": None}))


def test_update_replaces_only_the_rerun_methods(tmp_path):
    out = tmp_path / "structured.md"
    write(out.with_suffix(".json"), [row("l1", 0.54, 97.2), row("lasso", 0.50, 98.4)])
    write(tmp_path / "new.json", [row("l1", 0.50, 97.4)], minutes=11.4, date="2026-12-04")
    rs.update(out, tmp_path / "new.json")
    got = json.loads(out.with_suffix(".json").read_text())
    assert [(r["method"], r["macs"], r["after_ft"]) for r in got["models"]["vgg"]["rows"]] == \
        [("l1", 0.50, 97.4), ("lasso", 0.50, 98.4)]
    assert got["meta"]["updates"] == [{"methods": ["l1"], "date": "2026-12-04", "minutes": 11.4}]
    text = out.read_text()
    assert "Rows of l1 re-run on 2026-12-04" in text and "budget missed" not in text.split("## vgg")[1].split("##")[0]


def test_update_refuses_another_dense_network(tmp_path):
    out = tmp_path / "structured.md"
    write(out.with_suffix(".json"), [row("l1", 0.54, 97.2)])
    write(tmp_path / "new.json", [row("l1", 0.50, 97.4)], dense=97.9)
    with pytest.raises(SystemExit, match="dense network differs"):
        rs.update(out, tmp_path / "new.json")
    write(tmp_path / "new.json", [row("l1", 0.50, 97.4)], epochs=3)
    with pytest.raises(SystemExit, match="epochs=3"):
        rs.update(out, tmp_path / "new.json")
    assert not out.exists()  # nothing written
