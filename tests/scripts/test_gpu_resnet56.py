"""scripts/gpu_resnet56.py: argument parsing, --dry-run, and (slow) the whole pipeline with --tiny on a CPU."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import gpu_resnet56 as g  # noqa: E402


def test_parse_defaults_and_tiny():
    a = g.parse([])
    assert (a.model, a.device, a.seeds, a.base_epochs, a.finetune_epochs) == ("resnet56", "cuda", (0,), 40, 15)
    t = g.parse(["--tiny", "--seeds", "0,1"])
    assert (t.model, t.device, t.seeds, t.base_epochs, t.finetune_epochs, t.sparsity_epochs) == \
        ("resnet20", "cpu", (0, 1), 1, 1, 1)
    with pytest.raises(SystemExit):
        g.parse(["--batch-size", "0"])


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, capsys):
    assert g.main(["--dry-run", "--out-dir", str(tmp_path / "o"), "--page", str(tmp_path / "p.md")]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["macs_budget"] == pytest.approx(1 / 2.11, abs=1e-4)
    assert plan["torch_pruning"] == ["l1", "group_norm", "slimming"] and plan["prunekit"][:2] == ["l1", "slimming"]
    assert not (tmp_path / "o").exists() and not (tmp_path / "p.md").exists()


@pytest.mark.slow
def test_tiny_pipeline_writes_the_page(tmp_path):
    page = tmp_path / "page.md"
    assert g.main(["--tiny", "--data", "digits", "--out-dir", str(tmp_path / "o"), "--page", str(page)]) == 0
    res = json.loads(page.with_suffix(".json").read_text())
    labels = {k.rsplit("|", 1)[0] for k in res["runs"]}
    assert labels == {"l1", "slimming", "fpgm", "Torch-Pruning l1", "Torch-Pruning group-norm",
                      "Torch-Pruning slimming"}, (labels, res["failed"])
    text = page.read_text()
    assert "TINY SMOKE RUN" in text and "93.77" in text and "theirs" in text.lower()


def test_parts_merge_into_one_results_dict(tmp_path):
    """Rows run side by side (--part) land in results.PART.json; the page merges their runs."""
    (tmp_path / "results.a.json").write_text(json.dumps({"runs": {"l1|0": {"top1": 90.0}}, "skipped": {},
                                                         "failed": {"fpgm|0": "boom"}, "machine": "m"}))
    (tmp_path / "results.b.json").write_text(json.dumps({"runs": {"fpgm|0": {"top1": 91.0}}, "skipped": {},
                                                         "failed": {}}))
    merged = g.merged_results(tmp_path)
    assert merged["runs"] == {"l1|0": {"top1": 90.0}, "fpgm|0": {"top1": 91.0}} and merged["machine"] == "m"
    with pytest.raises(SystemExit, match="no results"):
        g.merged_results(tmp_path / "empty")


def test_parse_parts_and_rows():
    a = g.parse(["--rows", "l1,fpgm", "--part", "p1", "--base-only"])
    assert (a.rows, a.part, a.base_only, a.l1_eval_samples) == ("l1,fpgm", "p1", True, 200)
