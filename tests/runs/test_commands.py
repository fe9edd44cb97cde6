"""The one output rule on real commands (each of these replaced or left files before prunekit.runs)."""
import json

import pytest
import torch

from prunekit.cli import main


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    from prunekit import checkpoint, models

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("ckpt") / "lenet5.pt"
    checkpoint.save(p, models.create("lenet5", in_channels=1, input_size=(28, 28)))
    return p


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """ConvNet-3 on 8x8 digits (search runs in seconds)."""
    from prunekit import checkpoint, models

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("ckpt") / "convnet3.pt"
    checkpoint.save(p, models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8)))
    return p


def test_compress_refuses_to_replace_a_report_beside_the_output(lenet, tmp_path, capsys):
    out = tmp_path / "out.pkz"
    (tmp_path / "out.pkz.report.md").write_text("my notes")
    assert main(["compress", str(lenet), "-o", str(out), "--no-progress"]) == 2
    assert "out.pkz.report.md already exists" in capsys.readouterr().err
    assert (tmp_path / "out.pkz.report.md").read_text() == "my notes" and not out.exists()
    assert main(["compress", str(lenet), "-o", str(out), "--no-progress", "--overwrite", "--json"]) == 0
    rep = json.loads((tmp_path / "out.pkz.report.json").read_text())
    assert rep["outputs"] == ["out.pkz", "out.pkz.report.json", "out.pkz.report.md"]
    assert rep["provenance"]["command"].startswith("prunekit compress ")
    assert rep["provenance"]["source"]["path"] == str(lenet)
    assert "## Provenance" in (tmp_path / "out.pkz.report.md").read_text()


def test_search_refuses_a_users_files_and_writes_report_md(small, tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    (out / "report.json").write_text('{"mine": 1}')
    argv = ["search", str(small), "--method", "autoslim", "--macs", "0.6", "--data", "digits", "--out", str(out),
            "--epochs", "1", "--finetune-epochs", "0", "--ratios", "0.5,1.0", "--no-progress", "--json",
            "--workers", "1"]
    assert main(argv) == 2
    assert "report.json already exists" in capsys.readouterr().err
    assert json.loads((out / "report.json").read_text()) == {"mine": 1}
    assert main(argv + ["--overwrite"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert {"search_log.json", "plan.json", "pruned.pt", "widths.png", "report.md"} <= set(rep["outputs"])
    md = (out / "report.md").read_text()
    assert md.startswith("# prunekit search: autoslim") and "![widths](widths.png)" in md
    assert rep["provenance"]["source"]["path"] == str(small) and rep["provenance"]["dataset"] == "digits"
    # --overwrite keeps what the new search reads: the previous search's super-network reused in place
    assert main(argv + ["--overwrite", "--supernet", str(out / "supernet.pt")]) == 0
    assert (out / "supernet.json").is_file() and (out / "report.md").is_file()


def _recipe(tmp_path, out, steps):
    import yaml

    p = tmp_path / f"r{len(steps)}.yaml"
    p.write_text(yaml.safe_dump({"out": str(out), "data": "digits", "model": {"name": "convnet3"}, "steps": steps}))
    return str(p)


def test_run_overwrite_clears_the_previous_runs_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", _recipe(tmp_path, out, [{"profile": {"latency": False}}, "eval"]), "--no-progress"]) == 0
    assert (out / "profile0.json").is_file()
    (out / "notes.txt").write_text("the user's")
    assert main(["run", _recipe(tmp_path, out, ["eval"]), "--no-progress"]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert main(["run", _recipe(tmp_path, out, ["eval"]), "--no-progress", "--overwrite"]) == 0
    # the first run's profile0.json was its own output: gone; the user's file stays
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "notes.txt", "recipe.json", "report.json",
                                                     "report.md"]
    rep = json.loads((out / "report.json").read_text())
    assert rep["outputs"] == ["model.pt", "recipe.json", "report.json", "report.md"]
    assert rep["provenance"]["source"] == {"name": "zoo:convnet3"} and rep["provenance"]["command"].startswith(
        "prunekit run ")


def test_orphan_temp_files_of_a_killed_run_are_cleaned(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    orphan = out / ".model.pt.k9x2_a1b.tmp"   # what atomic_write leaves when killed mid-write
    orphan.write_bytes(b"\0" * 100)
    assert main(["run", _recipe(tmp_path, out, ["eval"]), "--no-progress"]) == 0
    assert not orphan.exists() and (out / "model.pt").is_file()


def test_demo_writes_report_with_its_stages(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--skip-prune", "--skip-compress", "--no-progress",
                 "--json", "--threads", "1"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["trained"]["file_bytes"] == (out / "lenet5.pt").stat().st_size
    assert {"lenet5.pt", "train/last.pt", "report.md"} <= set(rep["outputs"])
    md = (out / "report.md").read_text()
    assert md.startswith("# prunekit demo: LeNet-5 on mnist5k") and "| trained |" in md and "lenet5.pt" in md
    assert rep["provenance"]["dataset"] == "mnist5k"


def test_prune_and_decompress_write_reports_beside_their_output(lenet, tmp_path):
    out = tmp_path / "pruned.pt"
    assert main(["prune", str(lenet), "--ratio", "0.5", "--out", str(out), "--json"]) == 0
    rep = json.loads((tmp_path / "pruned.pt.report.json").read_text())
    assert rep["outputs"] == ["pruned.pt", "pruned.pt.report.json", "pruned.pt.report.md"]
    assert rep["provenance"]["source"]["path"] == str(lenet) and rep["provenance"]["config"]["ratio"] == 0.5
    assert "## Before / after" in (tmp_path / "pruned.pt.report.md").read_text()
    assert main(["compress", str(out), "-o", str(tmp_path / "m.pkz"), "--no-progress", "--json"]) == 0
    assert main(["decompress", str(tmp_path / "m.pkz"), "-o", str(tmp_path / "back.pt"), "--json"]) == 0
    rep = json.loads((tmp_path / "back.pt.report.json").read_text())
    assert rep["provenance"]["source"]["path"] == str(tmp_path / "m.pkz") and rep["output"] == str(tmp_path / "back.pt")


def test_train_writes_report_and_overwrite_clears_it(tmp_path, capsys):
    out = tmp_path / "t"
    argv = ["train", "--model", "convnet3", "--data", "digits", "--epochs", "1", "--out", str(out), "--no-progress",
            "--json", "--threads", "1"]
    assert main(argv) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["epochs"] == 1 and rep["provenance"]["source"] == {"name": "zoo:convnet3"}
    assert {"last.pt", "history.json", "config.yaml", "report.md"} <= set(rep["outputs"])
    assert "## History" in (out / "report.md").read_text()
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
