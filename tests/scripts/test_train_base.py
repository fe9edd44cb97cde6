"""scripts/train_base.py: a committed partial snapshot seeds a fresh run folder for --resume."""
from __future__ import annotations

import json
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import train_base  # noqa: E402


def _publish(out: Path, name: str, partial: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.pt").write_bytes(b"checkpoint-bytes")
    (out / f"{name}.history.json").write_text('[{"epoch": 1}]')
    (out / f"{name}.json").write_text(json.dumps({"name": name, "partial": partial}))


def test_partial_snapshot_is_copied_into_a_missing_run_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(train_base, "OUT", tmp_path / "base")
    _publish(tmp_path / "base", "net", partial=True)
    run_dir = tmp_path / "runs" / "net"
    assert train_base.restore_partial("net", run_dir) is True
    assert (run_dir / "last.pt").read_bytes() == b"checkpoint-bytes"
    assert json.loads((run_dir / "history.json").read_text()) == [{"epoch": 1}]


def test_finished_base_or_existing_run_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(train_base, "OUT", tmp_path / "base")
    _publish(tmp_path / "base", "done", partial=False)
    assert train_base.restore_partial("done", tmp_path / "runs" / "done") is False
    assert not (tmp_path / "runs" / "done").exists()
    _publish(tmp_path / "base", "net", partial=True)
    run_dir = tmp_path / "runs" / "net"
    run_dir.mkdir(parents=True)
    (run_dir / "last.pt").write_bytes(b"newer")
    assert train_base.restore_partial("net", run_dir) is False
    assert (run_dir / "last.pt").read_bytes() == b"newer"
    assert train_base.restore_partial("missing", tmp_path / "runs" / "missing") is False
