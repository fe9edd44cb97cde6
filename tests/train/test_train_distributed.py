"""Data-parallel training on 2 CPU processes (gloo) launched by torchrun."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunekit import checkpoint

HERE = Path(__file__).parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def test_two_processes_end_identical_and_rank0_writes(tmp_path, cli_env, monkeypatch):
    p = subprocess.run(TORCHRUN + [str(HERE / "ddp_worker.py"), str(tmp_path)], capture_output=True, text=True,
                       env=cli_env, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    assert r0["steps_per_epoch"] == 12  # 1437 // 2 = 718 samples per rank, batches of 64
    # parameters (all-reduced gradients) and BatchNorm running statistics agree on both ranks
    assert r0["state"].keys() == r1["state"].keys()
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(r0["history"]) == strip(r1["history"])  # metrics all-reduced over the ranks
    assert sorted(q.name for q in (tmp_path / "run").iterdir()) == ["best.pt", "config.yaml", "history.json",
                                                                      "last.pt"]
    monkeypatch.syspath_prepend(str(HERE))  # the checkpoint's factory is ddp_worker:build
    last = checkpoint.load(tmp_path / "run" / "last.pt", trusted_factories=["ddp_worker:build"])
    assert last.meta["world_size"] == 2
    assert all(torch.equal(last.model.state_dict()[k], r0["state"][k]) for k in r0["state"])


def test_cli_train_under_torchrun(tmp_path, cli_env):
    args = ["--model", "lenet300_100", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--lr", "0.2",
            "--no-augment", "--threads", "1", "--out", str(tmp_path / "run"), "--json"]
    p = subprocess.run(TORCHRUN + ["-m", "prunekit.cli", "train", *args], capture_output=True, text=True,
                       env=cli_env, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1  # only rank 0 prints
    r = json.loads(lines[0])
    assert r["world_size"] == 2 and r["final"]["test_top1"] > 50
    assert checkpoint.load(tmp_path / "run" / "last.pt").meta["world_size"] == 2


@pytest.mark.slow  # three torchrun launches, ~15 s; the single-process resume test is always on
def test_distributed_resume_equals_uninterrupted(tmp_path, cli_env):
    def launch(out, *extra):
        return subprocess.run(TORCHRUN + [str(HERE / "ddp_worker.py"), str(out), "3", *extra],
                              capture_output=True, text=True, env=cli_env, timeout=180)

    p = launch(tmp_path / "ref")
    assert p.returncode == 0, p.stderr[-3000:]
    p = launch(tmp_path / "cut", "--interrupt-at", "2")
    assert p.returncode != 0 and not (tmp_path / "cut" / "rank0.pt").exists()
    p = launch(tmp_path / "cut", "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    for rank in (0, 1):
        ref = torch.load(tmp_path / "ref" / f"rank{rank}.pt", weights_only=True)
        res = torch.load(tmp_path / "cut" / f"rank{rank}.pt", weights_only=True)
        assert all(torch.equal(ref["state"][k], res["state"][k]) for k in ref["state"])
        assert len(res["history"]) == 3
