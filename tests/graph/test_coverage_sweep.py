"""The coverage sweep's bookkeeping (bench/coverage_sweep.py, coverage_report.py, coverage.py's main) on fake rows.

No model is built: the store, resume, shards, families, progress and the
categories are checked with hand-written rows and expectations computed here.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"prunekit_bench_{name}", _BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


HARNESS = _load("coverage")  # appends bench/ to sys.path, so the two helpers import by name
SWEEP = sys.modules["coverage_sweep"]
REPORT = sys.modules["coverage_report"]


def _pruned(model, ratio=0.3, **extra):
    return {"model": model, "library": "timm", "build": "ok", "input": [[1, 3, 64, 64]],
            "prunekit": {"status": "pruned", "macs_ratio": ratio, "shape_kept": True, "finite": True,
                         "really_pruned": ratio <= 0.6, "apply_vs_masks": 0.0, "norm_coupled": False,
                         "n_frozen": 0, "seconds": 1.0, **extra}}


# ----------------------------------------------------------------------------- selection


def test_shard_is_interleaved_disjoint_and_covers_the_list():
    names = list("abcdefg")
    assert SWEEP.shard(names, "1/3") == ["a", "d", "g"]
    assert SWEEP.shard(names, "2/3") == ["b", "e"]
    assert SWEEP.shard(names, "3/3") == ["c", "f"]
    assert SWEEP.shard(names, None) == names
    parts = [SWEEP.shard(names, f"{i}/3") for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == names


@pytest.mark.parametrize("spec", ["0/3", "4/3", "x", "1/0", "1-2"])
def test_bad_shard_is_rejected(spec):
    with pytest.raises(ValueError, match="--shard"):
        SWEEP.shard(["a"], spec)


def test_bad_shard_is_a_usage_error_on_the_command_line(tmp_path):
    with pytest.raises(SystemExit) as e:
        HARNESS.main(["--models", "a", "--shard", "3/2", "--json", str(tmp_path / "s.json")])
    assert e.value.code == 2


def test_one_per_family_takes_the_smallest_looking_name_of_each_stem():
    names = ["vit_base_patch16_224", "vit_tiny_patch16_224", "resnet50", "resnet18", "convnext_small",
             "convnext_atto", "convnext_base"]
    # stems: convnext, resnet50, resnet18, vit (the stem is the text before the first '_')
    assert SWEEP.one_per_family(names) == ["convnext_atto", "resnet18", "resnet50", "vit_tiny_patch16_224"]


def test_progress_line_and_eta():
    assert SWEEP.eta_seconds(0, 6, 5.0) is None
    assert SWEEP.eta_seconds(2, 6, 10.0) == 20.0
    ticks = iter([100.0, 110.0, 3700.0])
    prog = SWEEP.Progress(6, clock=lambda: next(ticks))
    assert prog.step("resnet18", "really pruned", "MACs 0.27") == \
        "[1/6] resnet18: really pruned MACs 0.27 | elapsed 0:00:10, ETA 0:00:50"
    # 3600 s for 2 models: 1800 s each, 4 left
    assert prog.step("vit", "build error") == "[2/6] vit: build error | elapsed 1:00:00, ETA 2:00:00"


# ----------------------------------------------------------------------------- the store


def test_store_round_trip_is_atomic_and_reads_legacy_lists(tmp_path):
    path = tmp_path / "sub" / "store.json"
    assert SWEEP.load_store(path) == {"meta": {}, "rows": {}}
    SWEEP.save_store(path, {"meta": {"command": "c"}, "rows": {"a": {"model": "a"}}}, {"totals": {"x": 1}})
    assert json.loads(path.read_text()) == {"meta": {"command": "c"}, "totals": {"x": 1},
                                            "rows": {"a": {"model": "a"}}}
    assert sorted(p.name for p in path.parent.iterdir()) == ["store.json"]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o644
    legacy = tmp_path / "legacy.json"
    legacy.write_text(json.dumps({"ratio": 0.5, "rows": [{"model": "b", "build": "ok"}]}))
    assert SWEEP.load_store(legacy) == {"meta": {}, "rows": {"b": {"model": "b", "build": "ok"}}}


def test_merge_keeps_other_rows_and_an_earlier_tool_half(tmp_path):
    path = tmp_path / "store.json"
    SWEEP.merge_row(path, {"model": "a", "build": "ok", "prunekit": {"status": "pruned"}})
    SWEEP.merge_row(path, {"model": "b", "build": "failed"}, {"command": "cmd"})
    store = SWEEP.merge_row(path, {"model": "a", "build": "ok", "torch_pruning": {"status": "error"}})
    assert store == SWEEP.load_store(path)
    assert store["meta"] == {"command": "cmd"}
    assert store["rows"] == {"a": {"model": "a", "build": "ok", "prunekit": {"status": "pruned"},
                                   "torch_pruning": {"status": "error"}},
                             "b": {"model": "b", "build": "failed"}}


def test_tools_needed_on_resume():
    ok_pk = {"model": "a", "build": "ok", "prunekit": {}}
    assert SWEEP.tools_needed(None, True) == ["prunekit", "torch_pruning"]
    assert SWEEP.tools_needed(None, False) == ["prunekit"]
    assert SWEEP.tools_needed(ok_pk, False) == []
    assert SWEEP.tools_needed(ok_pk, True) == ["torch_pruning"]
    assert SWEEP.tools_needed({**ok_pk, "torch_pruning": {}}, True) == []
    assert SWEEP.tools_needed({"model": "a", "build": "too_large"}, True) == []


def _fake_evaluate(calls):
    def fake(name, tools, timeout, mem_gb, max_params_m=None):
        calls.append((name, tuple(tools)))
        if name == "big":
            return {"model": name, "library": "timm", "build": "too_large", "reason": "900 M parameters"}
        row = _pruned(name, 0.25)
        return {k: v for k, v in row.items() if k != "prunekit" or "prunekit" in tools}
    return fake


def test_resume_runs_only_what_the_store_lacks_and_keeps_finished_rows(tmp_path, monkeypatch):
    store = tmp_path / "s.json"
    SWEEP.save_store(store, {"meta": {}, "rows": {"done": _pruned("done", 0.7)}})
    calls: list = []
    monkeypatch.setattr(HARNESS, "evaluate_isolated", _fake_evaluate(calls))
    out, summary = tmp_path / "cov.md", tmp_path / "sum.md"
    argv = ["--models", "done,new,big", "--no-tp", "--resume", "--json", str(store), "--out", str(out),
            "--summary", str(summary)]
    assert HARNESS.main(argv) == 0
    assert calls == [("new", ("prunekit",)), ("big", ("prunekit",))]
    rows = SWEEP.load_store(store)["rows"]
    assert sorted(rows) == ["big", "done", "new"]
    assert rows["done"]["prunekit"]["macs_ratio"] == 0.7  # the finished row is kept, not re-run
    calls.clear()
    assert HARNESS.main(argv) == 0  # everything stored: nothing runs
    assert calls == []
    text = out.read_text()
    assert "prunekit really prunes 1/2 (50.0%;" in text  # new pruned; done at 0.7 is not really pruned
    assert "| not built within limits: too large | 1 | big |" in text
    assert "| prunekit: MACs ratio > 0.6, no frozen region | 1 | done |" in text


def test_redo_runs_the_stored_rows_of_a_category_again(tmp_path, monkeypatch):
    store = tmp_path / "s.json"
    rows = {"low": _pruned("low", 0.9), "ok": _pruned("ok", 0.2),
            "big": {"model": "big", "library": "timm", "build": "too_large"}}
    SWEEP.save_store(store, {"meta": {}, "rows": rows})
    calls: list = []
    monkeypatch.setattr(HARNESS, "evaluate_isolated", _fake_evaluate(calls))
    HARNESS.main(["--models", "low,ok,big", "--no-tp", "--resume", "--redo", "prunekit:", "--json", str(store),
                  "--no-render"])
    assert calls == [("low", ("prunekit",))]
    assert SWEEP.load_store(store)["rows"]["low"]["prunekit"]["macs_ratio"] == 0.25  # replaced by the new run


def test_without_resume_the_store_starts_empty(tmp_path, monkeypatch):
    store = tmp_path / "s.json"
    SWEEP.save_store(store, {"meta": {}, "rows": {"old": _pruned("old")}})
    calls: list = []
    monkeypatch.setattr(HARNESS, "evaluate_isolated", _fake_evaluate(calls))
    HARNESS.main(["--models", "new", "--no-tp", "--json", str(store), "--no-render"])
    assert sorted(SWEEP.load_store(store)["rows"]) == ["new"]


def test_render_rebuilds_the_pages_from_the_store_alone(tmp_path):
    store = tmp_path / "s.json"
    rows = {"r1": _pruned("r1", 0.25), "r2": _pruned("r2", 0.9),
            "hf_x": {**_pruned("hf_x", 0.5), "library": "transformers"},
            "slow": {"model": "slow", "library": "timm", "build": "skipped", "reason": "did not build: timeout after 9 s"}}
    SWEEP.save_store(store, {"meta": {"command": "python bench/coverage.py --families"}, "rows": rows})
    out, summary = tmp_path / "cov.md", tmp_path / "sum.md"
    assert HARNESS.main(["--render", "--json", str(store), "--out", str(out), "--summary", str(summary)]) == 0
    text = out.read_text()
    assert "Generated by `python bench/coverage.py --families`" in text
    assert ("**timm**: 2 built (1 did not build, 1 of them not within the time/memory/size limits); "
            "prunekit really prunes 1/2 (50.0%;") in text
    assert "**transformers**: 1 built" in text
    assert "| not built within limits: time | 1 | slow |" in text
    first_cells = [ln.split(" | ")[0] for ln in text.splitlines() if ln.startswith("| ")]
    assert [c for c in first_cells if c in ("| r1", "| r2", "| slow", "| hf_x")] == ["| r1", "| r2", "| slow",
                                                                                      "| hf_x"]  # timm first
    assert "| timm | 2 | 1 (1) | 1 (50.0%) |" in summary.read_text()


def test_a_store_filled_in_passes_lists_its_commands_and_partial_torch_pruning(tmp_path):
    store = tmp_path / "s.json"
    tp = {"status": "pruned", "macs_ratio": 0.3, "shape_kept": True, "finite": True, "really_pruned": True}
    rows = {"a": {**_pruned("a", 0.25), "torch_pruning": tp}, "b": _pruned("b", 0.3), "c": _pruned("c", 0.8)}
    passes = ["python bench/coverage.py --all --shard 1/2", "python bench/coverage.py --all --no-tp --redo ''"]
    SWEEP.save_store(store, {"meta": {"command": passes}, "rows": rows})
    out, summary = tmp_path / "cov.md", tmp_path / "sum.md"
    assert HARNESS.main(["--render", "--json", str(store), "--out", str(out), "--summary", str(summary)]) == 0
    text, page = out.read_text(), summary.read_text()
    assert "Generated by `python bench/coverage.py --all --shard 1/2`, then `python bench/coverage.py --all " in text
    assert "in the passes listed" in text and "in the same run" not in text
    assert "Torch-Pruning 1.6.1 really prunes 1/1 it ran on (not yet run on 2)" in text
    assert page.startswith("# Coverage of third-party models: every timm architecture")
    assert "| timm | 3 | 0 (0) | 2 (66.7%) | 0 | 0 | 2/2 | 1 of 1 run | 0 |" in page


# ----------------------------------------------------------------------------- categories


@pytest.mark.parametrize("row, expected", [
    (_pruned("a", 0.3), "really pruned"),
    (_pruned("a", 0.7), "prunekit: MACs ratio > 0.6, no frozen region"),
    (_pruned("a", 0.7, frozen=["function _operator.floordiv in blocks.0.attn (cait.py:167): a channel count"]),
     "prunekit: MACs ratio > 0.6, frozen: function _operator.floordiv"),
    ({**_pruned("a"), "prunekit": {"status": "pruned", "shape_kept": False}}, "prunekit: output shape changed"),
    ({**_pruned("a"), "prunekit": {"status": "pruned", "shape_kept": True, "finite": False}},
     "prunekit: non-finite output"),
    ({**_pruned("a"), "prunekit": {"status": "error", "reason": "KeyError: 'x'"}}, "prunekit: raw KeyError"),
    ({**_pruned("a"), "prunekit": {"status": "error", "reason": "PrunekitError: w holds NaN", "internal": False,
                                   "error_type": "PrunekitError"}}, "prunekit: refused (PrunekitError)"),
    ({**_pruned("a"), "prunekit": {"status": "error", "reason": "op add in m (f.py:3): bad",
                                   "error_type": "UnsupportedModelError"}}, "prunekit: unsupported"),
    ({**_pruned("a"), "prunekit": {"status": "error", "reason": "MemoryError: "}}, "prunekit: memory"),
    ({**_pruned("a"), "prunekit": {"status": "error",
                                   "reason": "running or measuring the models failed: RuntimeError: shape"}},
     "prunekit: pruned model fails"),
    ({**_pruned("a"), "prunekit": {"status": "frozen", "reason": "nothing in M can be pruned"}},
     "prunekit: frozen everything"),
    ({**_pruned("a"), "prunekit": {"status": "timeout", "reason": "timeout after 120 s"}}, "prunekit: timeout"),
    ({"model": "a", "build": "too_large"}, "not built within limits: too large"),
    ({"model": "a", "build": "skipped", "reason": "did not build: timeout after 120 s"},
     "not built within limits: time"),
    ({"model": "a", "build": "failed", "reason": "MemoryError: "}, "not built within limits: memory"),
    ({"model": "a", "build": "skipped", "reason": "did not build: process died (exit -11)"},
     "not built within limits: memory"),
    ({"model": "a", "build": "failed", "reason": "RuntimeError: input size"}, "build error"),
])
def test_category(row, expected):
    assert REPORT.category(row) == expected


def test_categories_count_and_examples_most_frequent_first():
    rows = [_pruned("a"), _pruned("b", 0.9), _pruned("c"), _pruned("d"), _pruned("e")]
    assert REPORT.categories(rows, examples=2) == {
        "really pruned": {"count": 4, "examples": ["a", "c"]},
        "prunekit: MACs ratio > 0.6, no frozen region": {"count": 1, "examples": ["b"]},
    }
