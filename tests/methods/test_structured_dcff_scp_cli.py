"""`prunekit prune CKPT --method dcff|scp` end to end through the real CLI entry, on a tiny slice of digits."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from prunekit import checkpoint, models
from prunekit.measure import count_macs


@pytest.fixture
def tiny_data(tmp_path, digits_slice):
    d = digits_slice(200, 60)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=d.train_x.numpy(), y_train=d.train_y.numpy(), x_test=d.test_x.numpy(),
             y_test=d.test_y.numpy())
    return f"tensors:{path}"


@pytest.mark.parametrize("method,arch,kwargs,sets", [
    ("dcff", "convnet3", {"cfg": [8, 8, 8]}, ["fusion_epochs=1", "t_end=100"]),
    ("scp", "vgg11", {"cfg": [8, "M", 8, "M", 8, "M"]}, ["mask_epochs=1", "sparsity=1.0"]),
])
def test_prune_method_dcff_scp_through_cli(tmp_path, cli_env, tiny_data, method, arch, kwargs, sets):
    torch.manual_seed(0)
    net = models.create(arch, num_classes=10, in_channels=1, input_size=(8, 8), **kwargs)
    ckpt = checkpoint.save(tmp_path / "dense.pt", net, meta={"dataset": tiny_data})
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "prunekit", "prune", str(ckpt), "--method", method, "--macs", "0.5",
           "--data", tiny_data, "--finetune-epochs", "1", "--out", str(out), "--no-progress", "--json"]
    for s in sets:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, env=cli_env)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary
    for f in ("pruned.pt", "plan.json", "report.json", "report.md"):
        assert (out / f).is_file(), f
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == method
    small = checkpoint.load(out / "pruned.pt").model
    x = torch.zeros(1, 1, 8, 8)
    ratio = count_macs(small, x).total / count_macs(net, x).total
    assert ratio <= 0.5 + 0.03
    assert small(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    if method == "dcff":
        assert report["extra"]["temperatures"] == [1.0]   # one fusion epoch starts at T_s
