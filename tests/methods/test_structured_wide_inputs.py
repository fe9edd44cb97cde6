"""He et al. 2017's channel sampler: the first layer of a residual branch reads only selected stream channels."""
import copy
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from prunekit import checkpoint, models
from prunekit.errors import CheckpointError, PrunekitError
from prunekit.measure import count_macs
from prunekit.methods.structured import ChannelPruningConfig, channel_pruning, reconstruct_prune, thinet
from prunekit.methods.structured._common import prunable_layers, skeleton
from prunekit.methods.structured.reconstruct import ThiNetConfig
from prunekit.methods.structured.wide_inputs import joint_counts, wide_input_layers
from prunekit.surgery.select import ChannelSelect, select_inputs

X8 = torch.zeros(1, 1, 8, 8)


def _r20():
    torch.manual_seed(0)
    return models.create("resnet20", num_classes=10, in_channels=1, input_size=(8, 8), widths=(4, 8, 8)).eval()


def _r50():
    torch.manual_seed(0)
    return models.create("resnet50", num_classes=10, in_channels=1, input_size=(8, 8), width_mult=0.125,
                         small_input=True).eval()


def test_select_inputs_surgery_equals_zeroed_columns():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(5, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 4))
    x = torch.randn(2, 5, 4, 4)
    dense = copy.deepcopy(net)
    with torch.no_grad():
        dense[0].weight[:, [1, 2]] = 0
        dense[3].weight[:, 16:32] = 0
    select_inputs(net, {"0": [0, 3, 4], "3": list(range(16)) + list(range(32, 48))})
    assert net[0].layer.in_channels == 3 and net[0].layer.weight.shape == (3, 3, 3, 3)
    assert net[3].layer.in_features == 32 and isinstance(net[3].select, ChannelSelect) and net[3].select.dim == -1
    torch.testing.assert_close(net(x), dense(x))
    assert "0.select.index" in net.state_dict() and "0.layer.weight" in net.state_dict()
    for bad, msg in (({"0.layer": [1, 1]}, "increasing"), ({"9": [0]}, "no submodule"),
                     ({"1": [0]}, "Conv2d and Linear"), ({"0.layer": [0, 7]}, r"\[0, 3\)"), ({"0": [0]}, "already")):
        with pytest.raises(PrunekitError, match=msg):
            select_inputs(net, bad)


def test_wide_input_layers_are_the_first_layers_of_branches():
    for make, n in ((_r20, 9), (_r50, 16)):
        net = make()
        base = skeleton(net, X8)
        wides = wide_input_layers(net, base, prunable_layers(net, base))
        assert len(wides) == n and all(w.layer.endswith(".conv1") for w in wides)
    net = _r50()
    base = skeleton(net, X8)
    w = {w.layer: w for w in wide_input_layers(net, base, prunable_layers(net, base))}
    assert w["layer1.0.conv1"].size == 8 and w["layer1.1.conv1"].size == 32   # stem width, then 4x planes
    vgg = models.create("vgg11", num_classes=10, in_channels=1, input_size=(8, 8), cfg=[8, "M", 16, 16])
    base = skeleton(vgg, X8)
    assert wide_input_layers(vgg, base, prunable_layers(vgg, base)) == []


def test_joint_counts_meet_the_macs_target_and_ratio():
    net = _r50()
    base = skeleton(net, X8)
    layers = prunable_layers(net, base)
    wides = wide_input_layers(net, base, layers)
    counts, samples = joint_counts(net, X8, layers, wides, ratio=0.5, base=base)
    assert counts == {p.group: p.size // 2 for p in layers}
    assert samples == {w.layer: w.size // 2 for w in wides}
    counts, samples = joint_counts(net, X8, layers, wides, macs=0.4, base=base, tolerance=0.02)
    assert set(samples) == {w.layer for w in wides}
    torch.manual_seed(1)
    res = reconstruct_prune(net, torch.randn(8, 1, 8, 8), counts, "first_k", points_per_image=2, base=base,
                            progress=False, samples=samples)
    small = res.apply(net)
    kept = count_macs(small, X8).total / count_macs(net, X8).total
    assert abs(kept - 0.4) <= 0.02
    assert res.plan.info["macs_after_selection"] == count_macs(small, X8).total
    with pytest.raises(PrunekitError, match="cannot be met"):
        joint_counts(net, X8, layers, wides, macs=0.01, base=base)


def test_pruned_model_with_selection_equals_the_dense_working_copy():
    net = _r20()
    torch.manual_seed(2)
    x = torch.randn(32, 1, 8, 8)
    base = skeleton(net, X8)
    layers = prunable_layers(net, base)
    wides = wide_input_layers(net, base, layers)
    counts = {p.group: p.size // 2 for p in layers}
    samples = {w.layer: 1 + w.size // 4 for w in wides}
    res = reconstruct_prune(net, x, counts, "lasso", points_per_image=4, base=base, progress=False, samples=samples)
    assert set(res.selections) == set(samples)
    assert all(len(res.selections[k]) == wides[0].size - n for k, n in samples.items() if k.startswith("layer1"))
    small = res.apply(net)
    # the dense network with the re-fitted weights written into the kept columns and zeros elsewhere
    dense = copy.deepcopy(net)
    groups = {g.id: g for g in res.plan.groups}
    group_of = {p.consumer: p.group for p in layers}
    with torch.no_grad():
        for name, w in res.weights.items():
            layer = dense.get_submodule(name)
            if name in res.selections:
                cols = res.selections[name]
            else:
                g = groups[group_of[name]]
                cols = sorted(set(range(g.size)) - set(g.removed))
            full = torch.zeros_like(layer.weight)
            full[:, cols] = w
            layer.weight.copy_(full)
    torch.testing.assert_close(small(x), dense(x), rtol=1e-4, atol=1e-4)
    # MACs of a sampled layer: kept outputs x kept inputs x 3x3 x 8x8 positions
    macs = count_macs(small, X8).per_layer
    conv = small.layer1[0].conv1.layer
    assert isinstance(small.layer1[0].conv1.select, ChannelSelect)
    assert macs["layer1.0.conv1.layer"] == conv.out_channels * conv.in_channels * 9 * 64
    assert conv.in_channels == 4 - samples["layer1.0.conv1"] and conv.out_channels == 2
    kinds = {s.layer: s.kind for s in res.layers}
    assert kinds["layer1.0.conv1"] == "inputs" and kinds["layer1.0.conv2"] == "channels"


def test_checkpoint_round_trip_and_thinet(tmp_path):
    net = _r20()
    torch.manual_seed(3)
    data = SimpleNamespace(train_x=torch.randn(40, 1, 8, 8), train_y=torch.randint(0, 10, (40,)))
    cfg = ChannelPruningConfig(macs=0.5, macs_tolerance=0.05, calib_images=24, points_per_image=3,
                               selector="first_k")
    res = channel_pruning(net, data, cfg, progress=False)
    assert res.selections and all(s.residual for s in res.layers if s.kind == "channels")
    small = res.apply(net)
    assert [t["kind"] for t in small.prunekit_spec.transforms] == ["prune_plan", "select_inputs"]
    path = checkpoint.save(tmp_path / "p.pt", small)
    loaded = checkpoint.load(path).model
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(loaded(x), small(x))
    assert isinstance(loaded.layer2[1].conv1.select, ChannelSelect)
    assert count_macs(loaded, X8).total == count_macs(small, X8).total
    raw = torch.load(path, weights_only=True)
    raw["spec"]["transforms"][1]["layers"]["layer1.0.conv1"] = [0, 99]
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="select_inputs"):
        checkpoint.load(tmp_path / "bad.pt")
    # the option off: no selection, the branches alone meet the budget
    res2 = channel_pruning(net, data, ChannelPruningConfig(**{**cfg.__dict__, "sample_wide_inputs": False}),
                           progress=False)
    assert res2.selections == {} and all(s.kind == "channels" for s in res2.layers)
    # ThiNet: no sampling, residual target in its scaling
    res3 = thinet(net, data, ThiNetConfig(macs=0.6, macs_tolerance=0.05, calib_images=24, points_per_image=3),
                  progress=False)
    assert res3.selections == {} and all(s.residual for s in res3.layers)


@pytest.mark.parametrize("arch", ["resnet20", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_prune_cli_lasso_on_resnet(arch, tmp_path, cli_env):
    kw = dict(widths=(8, 8, 16)) if arch == "resnet20" else dict(width_mult=0.125, small_input=True)
    net = models.create(arch, num_classes=10, in_channels=1, input_size=(8, 8), **kw)
    ck = checkpoint.save(tmp_path / "dense.pt", net, meta={"dataset": "digits"})
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "prunekit", "prune", str(ck), "--method", "lasso", "--macs", "0.5",
           "--data", "digits", "--finetune-epochs", "0", "--out", str(out), "--no-progress", "--json",
           "--set", "latency=false", "--set", "calib_images=32", "--set", "points_per_image=4",
           "--set", "macs_tolerance=0.05"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert abs(summary["macs"]["kept"] - 0.5) <= 0.05
    small = checkpoint.load(out / "pruned.pt").model
    ratio = count_macs(small, X8).total / count_macs(net, X8).total
    assert ratio == pytest.approx(summary["macs"]["kept"])
    assert isinstance(small.layer3[1].conv1.select, ChannelSelect)
    report = json.loads((out / "report.json").read_text())
    assert {r["kind"] for r in report["extra"]["layers"]} == {"inputs", "channels"}
    assert "## Input channels read" in (out / "report.md").read_text()


class MLPRes(nn.Module):
    """Residual MLP on vectors: Linear layers read the stream; the branch ends in Linear -> BatchNorm1d -> add."""

    def __init__(self, d=8, h=10):
        super().__init__()
        self.inp = nn.Linear(6, d)
        self.fc1, self.fc2, self.bn = nn.Linear(d, h), nn.Linear(h, d), nn.BatchNorm1d(d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        s = torch.relu(self.inp(x))
        s = s + self.bn(self.fc2(torch.relu(self.fc1(s))))
        return self.head(s)


def test_linear_branches_sample_inputs_and_use_the_residual_target():
    torch.manual_seed(5)
    net = MLPRes()
    with torch.no_grad():
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.weight.uniform_(0.5, 1.5)
    net.eval()
    x = torch.randn(64, 6)
    base = skeleton(net, x[:1])
    layers = prunable_layers(net, base)
    wides = wide_input_layers(net, base, layers)
    assert [p.consumer for p in layers] == ["fc2"] and [w.layer for w in wides] == ["fc1"]
    res = reconstruct_prune(net, x, {layers[0].group: 4}, "lasso", base=base, progress=False, samples={"fc1": 3})
    assert [(s.layer, s.kind, s.residual) for s in res.layers] == [("fc1", "inputs", False), ("fc2", "channels", True)]
    small = res.apply(net)
    assert small.fc1.layer.in_features == 5 and small.fc1.select.dim == -1 and small.fc2.in_features == 6
    dense = copy.deepcopy(net)
    g = next(g for g in res.plan.groups if g.id == layers[0].group)
    with torch.no_grad():
        for name, cols in (("fc1", res.selections["fc1"]), ("fc2", sorted(set(range(10)) - set(g.removed)))):
            full = torch.zeros_like(dense.get_submodule(name).weight)
            full[:, cols] = res.weights[name].reshape(full.shape[0], len(cols))
            dense.get_submodule(name).weight.copy_(full)
    torch.testing.assert_close(small(x), dense(x), rtol=1e-5, atol=1e-5)
