"""``prunekit prune`` end to end in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prunekit import checkpoint, models


def _cli(args, env):
    """Run ``prunekit ARGS`` in a new process (registering the command if the CLI does not list it yet)."""
    from prunekit.cli import COMMANDS

    if "prune" in COMMANDS:
        cmd = [sys.executable, "-m", "prunekit", *args]
    else:
        code = ("import sys, prunekit.cli as c; c.COMMANDS = c.COMMANDS + ('prune',); "
                "sys.exit(c.main(sys.argv[1:]))")
        cmd = [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return checkpoint.save(d / "r20.pt", models.create("resnet20", num_classes=10, in_channels=3)), d


def test_prune_macs_target_writes_reloadable_checkpoint(ckpt, cli_env):
    path, d = ckpt
    out = d / "pruned.pt"
    r = _cli(["prune", str(path), "--criterion", "l1", "--macs", "0.5", "--out", str(out),
              "--save-plan", str(d / "plan.json")], cli_env)
    assert r.returncode == 0, r.stderr
    assert "MACs / sample" in r.stdout and "layer1.0.conv1" in r.stdout
    small = checkpoint.load(out).model
    from prunekit import measure

    import torch

    dense = checkpoint.load(path).model
    x = torch.randn(1, 3, 32, 32)
    ratio = measure.count_macs(small, x).total / measure.count_macs(dense, x).total
    assert abs(ratio - 0.5) <= 0.01
    # the saved plan re-applies to the dense checkpoint
    out2 = d / "again.pt"
    r = _cli(["prune", str(path), "--plan", str(d / "plan.json"), "--out", str(out2), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["after"]["macs"]["total"] == measure.count_macs(small, x).total


def test_dry_run_prints_plan_and_writes_nothing(ckpt, cli_env):
    path, d = ckpt
    r = _cli(["prune", str(path), "--ratio", "0.25", "--dry-run"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "PruningPlan" in r.stdout and "conv1" in r.stdout
    assert not (d / "dry.pt").exists()


def test_bad_arguments_are_one_line_errors(ckpt, cli_env):
    path, d = ckpt
    r = _cli(["prune", str(path), "--ratio", "1.5", "--out", str(d / "x.pt")], cli_env)
    assert r.returncode == 2 and "ratio" in r.stderr and "Traceback" not in r.stderr
    r = _cli(["prune", str(path), "--ratio", "0.5"], cli_env)
    assert r.returncode == 2 and "--out" in r.stderr
