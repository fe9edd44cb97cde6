"""End-to-end ``prunekit sparsify`` runs (digits, tiny budgets): one in a subprocess, the rest in-process."""
import json
import subprocess
import sys

import pytest
import torch

# Runs the real ``prunekit.cli.main``; adds the command if the CLI does not list it yet.
DRIVER = ("import sys, prunekit.cli as c; "
          "c.COMMANDS = tuple(c.COMMANDS) + (() if 'sparsify' in c.COMMANDS else ('sparsify',)); "
          "sys.exit(c.main(sys.argv[1:]))")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from prunekit import checkpoint, models, train
    from prunekit.data import load_dataset

    torch.manual_seed(0)
    net = models.create("lenet300_100", in_channels=1, input_size=(8, 8))
    train.fit(net, load_dataset("digits"), {"epochs": 1, "lr": 0.05, "augment": False, "progress": False})
    path = tmp_path_factory.mktemp("ck") / "dense.pt"
    checkpoint.save(path, net)
    return path


def sparsify(*args, env):
    return subprocess.run([sys.executable, "-c", DRIVER, "sparsify", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def cli(*args) -> int:
    """``prunekit sparsify ...`` in this process (same code path as the console script, no start-up cost)."""
    import prunekit.cli as c

    return c.main(["sparsify", *map(str, args)])


def test_magnitude_run_writes_everything(ckpt, tmp_path, cli_env):
    out = tmp_path / "run"
    r = sparsify(ckpt, "--method", "magnitude", "--sparsity", "0.9", "--rounds", "2", "--epochs", "1",
                 "--data", "digits", "--out", out, "--no-progress", "--json", env=cli_env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["final"]["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert {row["name"] for row in rep["sparsity"]["layers"]} == {"features.0.weight", "features.2.weight",
                                                                  "classifier.weight"}
    for f in ("model.pt", "model.sparse.pt", "report.json", "report.md", "accuracy.png"):
        assert (out / f).is_file(), f
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert "| **TOTAL** |" in (out / "report.md").read_text()
    from prunekit.sparse import load_sparse, load_with_masks

    ck, masks = load_with_masks(out / "model.pt")
    assert ck.meta["sparsify"]["method"] == "magnitude" and set(masks) == {
        "features.0.weight", "features.2.weight", "classifier.weight"}
    sp = load_sparse(out / "model.sparse.pt")
    assert all(torch.equal(sp.masks[k], masks[k]) for k in masks)
    assert (out / "model.sparse.pt").stat().st_size < (out / "model.pt").stat().st_size / 3


def test_user_errors_are_one_line(ckpt, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    assert cli(ckpt, "--method", "magnitude", "--data", "digits", "--out", tmp_path / "full") == 2
    assert "--overwrite" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("sparsity: 0.5\nfinetune: {epochs: 1}\ngranularity: filter\nrh0: 1\n")
    assert cli(ckpt, "--method", "admm", "--config", bad, "--data", "digits", "--out", tmp_path / "x") == 2
    assert "rh0" in capsys.readouterr().err
    assert cli(ckpt, "--method", "lth", "--data", "synthetic", "--out", tmp_path / "y") == 2
    assert "input" in capsys.readouterr().err  # 1x8x8 model, 3x32x32 data
    assert cli(ckpt, "--method", "agp", "--rounds", "3", "--data", "digits", "--out", tmp_path / "z") == 2
    assert "--rounds" in capsys.readouterr().err
    assert cli(ckpt, "--method", "magnitude", "--granularity", "filter", "--data", "digits",
               "--out", tmp_path / "g") == 2
    assert "--granularity filter does not apply to method 'magnitude'" in capsys.readouterr().err
    assert cli(ckpt, "--method", "admm", "--granularity", "nm", "--data", "digits", "--out", tmp_path / "h") == 2
    assert "does not apply to method 'admm'" in capsys.readouterr().err
    assert cli(ckpt, "--method", "magnitude", "--granularity", "nm", "--nm", "2:4", "--sparsity", "0.9",
               "--data", "digits", "--out", tmp_path / "i") == 2
    assert "contradicts --nm 2:4" in capsys.readouterr().err


def test_admm_filter_run_writes_structural_model(ckpt, tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("sparsity: 0.5\nadmm: {epochs: 1}\nfinetune: {epochs: 1}\n")
    out = tmp_path / "admm"
    assert cli(ckpt, "--method", "admm", "--config", good, "--granularity", "filter", "--data", "digits",
               "--out", out, "--no-progress", "--json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert "plan.json" in rep["files"] and (out / "model.structural.pt").is_file()
    from prunekit import checkpoint

    small = checkpoint.load(out / "model.structural.pt").model
    assert small.features[0].out_features == 150


def test_lottery_run(ckpt, tmp_path, capsys):
    out = tmp_path / "lth"
    assert cli(ckpt, "--method", "lth", "--sparsity", "0.5", "--rounds", "1", "--epochs", "1",
               "--data", "digits", "--out", out, "--no-progress") == 0
    assert "fresh initialisation" in capsys.readouterr().err
    md = (out / "report.md").read_text()
    assert "## Lottery Ticket rounds" in md and "50.00%" in md
