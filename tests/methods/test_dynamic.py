"""methods.dynamic: which convolutions get gates (engine groups), run_dynamic, and `prune --method dynamic`."""
import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from prunekit import checkpoint, models
from prunekit.config import from_dict, to_dict
from prunekit.errors import ConfigError
from prunekit.methods.dynamic import DynamicConfig, plan_gates, run_dynamic
from prunekit.surgery.gates import GatedConv, set_mode


class Residual(nn.Module):
    """stem -> (conv a -> conv b) + stem -> conv c: the stem and b are coupled by the sum."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        s = self.stem(x)
        return self.c(torch.relu(self.b(torch.relu(self.a(s))) + s))


def test_residual_coupled_channels_stay_static():
    units, static = plan_gates(Residual(), torch.zeros(1, 1, 6, 6), 0.5)
    assert units == {"a": {"k": 3, "readers": ["b"], "bn": None, "per_channel": {"b": 1}}}
    assert list(static) == ["stem"] and "2 producers (stem, b)" in static["stem"] and "residual" in static["stem"]


def test_lenet_gates():
    net = models.create("lenet5", num_classes=10, in_channels=1, input_size=(28, 28))
    units, static = plan_gates(net, torch.zeros(1, 1, 28, 28), 0.5)
    assert {k: (v["k"], v["readers"], v["per_channel"]) for k, v in units.items()} == {
        "conv1": (3, ["conv2"], {"conv2": 1}), "conv2": (8, ["fc1"], {"fc1": 25})}
    assert sorted(static) == ["fc1", "fc2"]


def test_config_round_trip_and_checks():
    cfg = DynamicConfig(keep=0.25, finetune={"epochs": 3})
    back = from_dict(DynamicConfig, to_dict(cfg))
    assert back == cfg and back.finetune.epochs == 3 and back.finetune.lr == 0.01
    with pytest.raises(ConfigError, match="keep"):
        DynamicConfig(keep=0.0).check()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from prunekit.data import load_dataset

    torch.manual_seed(0)
    data = load_dataset("digits")
    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    out = tmp_path_factory.mktemp("dyn") / "run"
    res = run_dynamic(net, data, {"keep": 0.5, "finetune": {"epochs": 1}, "macs_images": 20}, out, progress=False)
    return net, data, res, out


def test_run_dynamic_report_and_files(digits_run):
    net, data, res, out = digits_run
    r = res.report
    assert sorted(r["gated"]) == ["conv1", "conv2", "conv3"] and r["gated"]["conv2"]["k"] == 32
    assert r["dynamic"]["macs_images"] == 20 and r["dynamic"]["macs_min"] <= r["dynamic"]["macs_max"]
    assert r["dynamic"]["macs"] < 0.5 * r["dense"]["macs"]   # 1/2 of the filters reading 1/2 of the inputs
    assert abs(r["static"]["macs"] - r["dynamic"]["macs"]) / r["dense"]["macs"] < 0.03
    files = sorted(p.name for p in out.iterdir())
    assert files == ["gated.pt", "report.json", "report.md", "static.pt"]
    gated = checkpoint.load(out / "gated.pt").model.eval()
    assert isinstance(gated.conv1, GatedConv)
    x = data.test_x[:3]
    with torch.no_grad():
        masked = gated(x)
        set_mode(gated, "skip")
        skipped = torch.cat([gated(x[i:i + 1]) for i in range(3)])
    assert torch.allclose(masked, skipped, atol=1e-5, rtol=0)
    assert torch.allclose(masked, res.model.eval()(x), atol=1e-6)
    md = (out / "report.md").read_text()
    assert "Feature Boosting and Suppression" in md and "static (l1, same average MACs)" in md


def test_prune_method_dynamic_cli(tmp_path, cli_env):
    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    ckpt = checkpoint.save(tmp_path / "dense.pt", net, meta={"dataset": "digits"})
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "prunekit", "prune", str(ckpt), "--method", "dynamic", "--set",
                          "keep=0.25", "--set", "macs_images=5", "--set", "static=false", "--data", "digits",
                          "--finetune-epochs", "1", "--out", str(out), "--no-progress", "--json"],
                         capture_output=True, text=True, env=cli_env)
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert r["method"] == "dynamic" and "static" not in r and r["dynamic"]["macs_images"] == 5
    assert sorted(p.name for p in out.iterdir()) == ["gated.pt", "report.json", "report.md"]
    gated = checkpoint.load(out / "gated.pt").model
    assert [m.k for m in gated.modules() if isinstance(m, GatedConv)] == [8, 16, 16]
    bad = subprocess.run([sys.executable, "-m", "prunekit", "prune", str(ckpt), "--method", "dynamic", "--macs",
                          "0.5", "--data", "digits", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, env=cli_env)
    assert bad.returncode == 2 and "--set keep=" in bad.stderr


def test_recipe_dynamic_step(tmp_path):
    from prunekit.recipe import Recipe, run_recipe

    r = Recipe.from_dict({"out": str(tmp_path / "run"), "data": "digits", "model": {"name": "convnet3"},
                          "steps": [{"dynamic": {"keep": 0.25, "static": False, "macs_images": 4,
                                                 "finetune": {"epochs": 1, "progress": False}}}, "eval"]})
    state = run_recipe(r, progress=False)
    rec = state.records[0]
    assert rec["step"] == "dynamic" and rec["keep"] == 0.25 and rec["static_top1"] is None
    assert 0.0 < rec["macs_kept"] < 0.25   # a quarter of the filters reading a quarter of the inputs
    assert (tmp_path / "run" / "dynamic" / "gated.pt").is_file()
    back = checkpoint.load(tmp_path / "run" / "model.pt").model
    assert [m.k for m in back.modules() if isinstance(m, GatedConv)] == [8, 16, 16]
