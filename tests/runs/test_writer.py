"""prunekit.runs: the report renderer, provenance and the output rule, with exact values."""
import hashlib
import json
import math

import pytest

from prunekit.errors import ConfigError, PrunekitError
from prunekit.runs import (Report, RunDir, Section, clean_orphans, md_table, orphan_temp_files, profile_table,
                           provenance, render_markdown, to_json)


def test_md_table_and_profile_table_exact():
    assert md_table(["a", "b"], [["x", 1], ["y", 12345], ["z", None]]) == (
        "| a | b |\n|---|---:|\n| x | 1 |\n| y | 12,345 |\n| z | - |")
    assert profile_table({"params": 200, "MACs": 1000.0}, {"params": 50, "MACs": 250.0}) == (
        "|  | before | after | ratio |\n|---|---:|---:|---:|\n"
        "| params | 200 | 50 | 0.250 |\n| MACs | 1000 | 250 | 0.250 |")


def test_render_markdown_exact():
    r = Report("prunekit x", {"k": 1}, summary=[("top-1", "98.10%"), ("epochs", 3)],
               profile={"before": {"params": 10}, "after": {"params": 5}},
               sections=[Section("Curve", "![c](c.png)")], plots=["c.png", "d.png"])
    prov = {"prunekit": "0.1.0", "torch": "2.0", "command": "prunekit x --y", "call": None, "config": {"a": 1},
            "dataset": "digits", "source": {"path": "m.pt", "sha256": "ab"}, "date": "2026-01-01T00:00:00+00:00"}
    assert render_markdown(r, prov) == (
        "# prunekit x\n\n"
        "|  |  |\n|---|---|\n| top-1 | 98.10% |\n| epochs | 3 |\n\n"
        "## Before / after\n\n|  | before | after | ratio |\n|---|---:|---:|---:|\n| params | 10 | 5 | 0.500 |\n\n"
        "## Curve\n\n![c](c.png)\n\n"
        "## Plots\n\n![d.png](d.png)\n\n"          # c.png is linked by its section already
        "## Provenance\n\n|  |  |\n|---|---|\n| prunekit | 0.1.0 |\n| torch | 2.0 |\n"
        "| command | `prunekit x --y` |\n| dataset | `digits` |\n| source | `m.pt` (sha256 `ab`) |\n"
        "| date | 2026-01-01T00:00:00+00:00 |\n\nConfig:\n\n```json\n{\n \"a\": 1\n}\n```\n")


def test_provenance_hashes_the_source_and_names_versions(tmp_path):
    import torch

    src = tmp_path / "m.pt"
    src.write_bytes(b"weights")
    p = provenance(command="prunekit eval m.pt", config={"a": 1}, dataset="digits", source=src)
    assert p["source"] == {"path": str(src), "sha256": hashlib.sha256(b"weights").hexdigest()}
    assert p["torch"] == torch.__version__ and p["prunekit"] == "0.1.0"
    assert p["command"] == "prunekit eval m.pt" and p["call"] is None and p["dataset"] == "digits"
    assert provenance(source="zoo:lenet5")["source"] == {"name": "zoo:lenet5"}


def test_json_has_no_nan():
    assert json.loads(to_json({"a": math.nan, "b": [math.inf, 1.5]})) == {"a": None, "b": [None, 1.5]}


def test_refuses_existing_outputs_and_names_them(tmp_path):
    (tmp_path / "plan.json").write_text("mine")
    with pytest.raises(PrunekitError, match="already holds a search: plan.json already exists; pass --resume"):
        RunDir.open(tmp_path, ["search_log.json", "plan.json"], what="a search", resumable=True)
    with pytest.raises(ConfigError, match="already holds files; pass --overwrite"):
        RunDir.open(tmp_path, ["x"], require_empty=True, error=ConfigError)
    assert (tmp_path / "plan.json").read_text() == "mine"
    RunDir.open(tmp_path, ["plan.json"], resume=True)  # resuming continues in place: nothing is removed
    assert (tmp_path / "plan.json").read_text() == "mine"


def test_overwrite_clears_the_previous_runs_outputs_only(tmp_path):
    run = RunDir.open(tmp_path, ["a.json"])
    run.write_json("a.json", {})
    run.write_text("sub/stale.txt", "old")          # recorded through the RunDir
    (tmp_path / "side.txt").write_text("written by a step")  # new since open(): found by the folder scan
    data = run.write_report(Report("t", {}))
    assert data["outputs"] == ["a.json", "report.json", "report.md", "side.txt", "sub/stale.txt"]
    (tmp_path / "user.txt").write_text("the user's")
    (tmp_path / "input.pt").write_text("input")
    # a manifest naming a file outside the folder is not trusted to delete it
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("x")
    rep = json.loads((tmp_path / "report.json").read_text())
    rep["outputs"] += [f"../{outside.name}", "input.pt"]
    (tmp_path / "report.json").write_text(json.dumps(rep))
    RunDir.open(tmp_path, ["a.json"], overwrite=True, keep=[tmp_path / "input.pt"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.pt", "user.txt"]
    assert outside.read_text() == "x"


def test_orphan_temp_files_are_cleaned(tmp_path):
    (tmp_path / "sub").mkdir()
    orphans = [tmp_path / ".last.pt.ab12cd34.tmp", tmp_path / "sub" / ".best.pt.zz_99xyz.tmp"]
    for p in orphans:
        p.write_bytes(b"partial")
    (tmp_path / ".hidden.tmp").write_text("not ours")          # not mkstemp's pattern
    assert orphan_temp_files(tmp_path) == sorted(orphans)
    assert orphan_temp_files(tmp_path, names={"last.pt"}, recursive=False) == [orphans[0]]
    RunDir.open(tmp_path, ["out.pkz"], shared=True)             # a shared folder: only its own names
    assert all(p.exists() for p in orphans)
    RunDir.open(tmp_path, ["last.pt"], shared=True)
    assert not orphans[0].exists() and orphans[1].exists()
    (tmp_path / "nested").mkdir()                               # e.g. another run's --out below this one
    nested = tmp_path / "nested" / ".model.pt.abcdefgh.tmp"
    nested.write_bytes(b"being written")
    RunDir.open(tmp_path, ["x"])                                # its own folder: top level, own sub-folders
    assert orphans[1].exists()
    RunDir.open(tmp_path, ["x", "sub/"], resume=True)     # (resume: sub/ exists and is kept)
    assert not orphans[1].exists() and (tmp_path / ".hidden.tmp").exists() and nested.exists()
    assert clean_orphans(tmp_path) == [nested]                 # the function itself recurses when told


def test_complete_fills_in_what_the_caller_left_out(tmp_path):
    from prunekit.runs import complete, source_path

    src = tmp_path / "m.pt"
    src.write_bytes(b"abc")
    p = complete({"command": "prunekit x", "source": str(src), "dataset": None}, call="f", dataset="digits",
                 config={"k": 1})
    assert p["command"] == "prunekit x" and p["call"] == "f" and p["dataset"] == "digits" and p["config"] == {"k": 1}
    assert p["source"] == {"path": str(src), "sha256": hashlib.sha256(b"abc").hexdigest()}
    assert source_path(p) == str(src) and source_path({"source": str(src)}) == str(src) and source_path(None) is None
