"""End-to-end ``prunekit sparsify`` runs in a subprocess (digits, tiny budgets)."""
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
    train.fit(net, load_dataset("digits"), {"epochs": 2, "lr": 0.05, "augment": False, "progress": False})
    path = tmp_path_factory.mktemp("ck") / "dense.pt"
    checkpoint.save(path, net)
    return path


def sparsify(*args, env):
    return subprocess.run([sys.executable, "-c", DRIVER, "sparsify", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


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
    # a second run into the same folder is refused
    r2 = sparsify(ckpt, "--method", "magnitude", "--data", "digits", "--out", out, env=cli_env)
    assert r2.returncode == 2 and "--overwrite" in r2.stderr


def test_yaml_config_and_errors(ckpt, tmp_path, cli_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sparsity: 0.5\nretrain: {epochs: 1}\ngranularity: filter\nrh0: 1\n")
    r = sparsify(ckpt, "--method", "admm", "--config", bad, "--data", "digits", "--out", tmp_path / "x",
                 env=cli_env)
    assert r.returncode == 2 and "rh0" in r.stderr and "Traceback" not in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text("sparsity: 0.5\ngranularity: filter\nadmm: {epochs: 1}\nretrain: {epochs: 1}\n")
    out = tmp_path / "admm"
    r = sparsify(ckpt, "--method", "admm", "--config", good, "--data", "digits", "--out", out, "--no-progress",
                 "--json", env=cli_env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert "plan.json" in rep["files"] and (out / "model.structural.pt").is_file()
    from prunekit import checkpoint

    small = checkpoint.load(out / "model.structural.pt").model
    assert small.features[0].out_features == 150
    r = sparsify(ckpt, "--method", "lth", "--data", "mnist5k", "--out", tmp_path / "y", env=cli_env)
    assert r.returncode == 2 and "input" in r.stderr  # 8x8 model, 28x28 data


def test_lottery_run(ckpt, tmp_path, cli_env):
    out = tmp_path / "lth"
    r = sparsify(ckpt, "--method", "lth", "--sparsity", "0.5", "--rounds", "1", "--epochs", "1",
                 "--data", "digits", "--out", out, "--no-progress", env=cli_env)
    assert r.returncode == 0, r.stderr
    assert "fresh initialisation" in r.stderr
    md = (out / "report.md").read_text()
    assert "## Lottery Ticket rounds" in md and "50.00%" in md
