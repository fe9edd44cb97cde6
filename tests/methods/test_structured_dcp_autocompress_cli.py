"""`prunekit prune CKPT --method dcp|autocompress` end to end on digits: run files and the MACs budget."""
import json
import subprocess
import sys

import pytest

from prunekit import checkpoint, models
from prunekit.measure import count_macs


@pytest.mark.parametrize("method,options", [
    ("dcp", ["--set", "aux_finetune={epochs: 1, batch_size: 128}", "--set", "calib_images=128"]),
    ("autocompress", ["--set", "iterations=3", "--set", "eval_images=128"]),
])
def test_method_through_cli(tmp_path, cli_env, method, options):
    import torch

    torch.manual_seed(0)
    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    ckpt = checkpoint.save(tmp_path / "dense.pt", net, meta={"dataset": "digits"})
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "prunekit", "prune", str(ckpt), "--method", method, "--macs", "0.5",
                          "--data", "digits", "--finetune-epochs", "1", "--out", str(out), "--no-progress", "--json",
                          "--set", "latency=false", *options], capture_output=True, text=True, env=cli_env)
    assert res.returncode == 0, res.stderr
    json.loads(res.stdout.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == method and (out / "plan.json").is_file()
    small = checkpoint.load(out / "pruned.pt").model
    x = torch.zeros(1, 1, 8, 8)
    ratio = count_macs(small, x).total / count_macs(net, x).total
    assert 0.35 < ratio <= 0.53
    if method == "dcp":
        assert report["extra"]["stages"]
    else:
        assert sum(report["extra"]["purified"].values()) > 0
