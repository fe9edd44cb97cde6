"""`prunekit prune CKPT --method ...` goes through the real CLI entry to the structured pipeline."""
import json
import subprocess
import sys

from prunekit import checkpoint, models
from prunekit.data import load_dataset
from prunekit.measure import count_macs


def test_prune_method_through_cli(tmp_path, cli_env):
    import torch

    data = load_dataset("digits")
    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    ckpt = checkpoint.save(tmp_path / "dense.pt", net, meta={"dataset": "digits"})
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "prunekit", "prune", str(ckpt), "--method", "fpgm", "--macs", "0.5",
                          "--data", "digits", "--finetune-epochs", "1", "--out", str(out), "--no-progress", "--json"],
                         capture_output=True, text=True, env=cli_env)
    assert res.returncode == 0, res.stderr
    json.loads(res.stdout.strip().splitlines()[-1])
    assert (out / "pruned.pt").is_file() and (out / "report.json").is_file()
    small = checkpoint.load(out / "pruned.pt").model
    x = torch.zeros(1, 1, 8, 8)
    ratio = count_macs(small, x).total / count_macs(net, x).total
    assert 0.4 < ratio < 0.6
    assert data.test_x.shape[1:] == (1, 8, 8)
