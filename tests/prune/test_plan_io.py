"""Plans as data: JSON round trip, re-application, checkpoints in a new process, ONNX export."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import prunekit
from prunekit import checkpoint, models
from prunekit.errors import ConfigError, PrunekitError
from prunekit.engine import PruningPlan
from tests.graph.helpers import randomize


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    net = randomize(models.create("resnet20", num_classes=10, in_channels=3))
    x = torch.randn(2, 3, 32, 32)
    plan = prunekit.plan(net, x, criterion="l1", ratio=0.5, ignored_layers=[net.fc], keep_scores=True)
    return net, x, plan


def test_json_round_trip(resnet, tmp_path):
    net, x, plan = resnet
    text = plan.to_json()
    again = PruningPlan.from_json(text)
    assert again.to_dict() == plan.to_dict()
    path = plan.save(tmp_path / "plan.json")
    assert PruningPlan.load(path).to_dict() == plan.to_dict()
    d = json.loads(text)
    assert d["groups"][0]["members"][0]["param"].endswith("weight")
    assert len(d["groups"][0]["scores"]) == d["groups"][0]["size"]


def test_plan_applies_to_fresh_copy(resnet):
    net, x, plan = resnet
    fresh = models.create("resnet20", num_classes=10, in_channels=3)
    fresh.load_state_dict(net.state_dict())
    a = PruningPlan.from_json(plan.to_json()).apply(fresh.eval())
    b = plan.apply(net)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x))
    assert a.conv1.out_channels == b.conv1.out_channels < 16


def test_table_and_str(resnet):
    _, _, plan = resnet
    text = str(plan)
    assert "PruningPlan" in text and "conv1" in text
    rows = plan.layer_rows()
    conv = next(r for r in rows if r["layer"] == "conv1" and r["kind"] == "out")
    assert conv["before"] == 16 and conv["after"] == 8 and len(conv["removed"]) == 8
    assert "removed" in plan.table(show_indices=True)


def test_plan_refuses_other_architecture(resnet):
    _, _, plan = resnet
    with pytest.raises(PrunekitError, match="shape|does not have"):
        plan.apply(models.create("resnet20", num_classes=10, in_channels=1))


def test_bad_plan_json_is_config_error():
    with pytest.raises(ConfigError):
        PruningPlan.from_json("{}")
    with pytest.raises(ConfigError, match="JSON"):
        PruningPlan.from_json("not json")


def test_checkpoint_reload_in_new_process(resnet, tmp_path):
    net, x, plan = resnet
    small = plan.apply(net)
    path = checkpoint.save(tmp_path / "pruned.pt", small)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(small(x), tmp_path / "y.pt")
    code = (
        "import torch, sys\n"
        "from prunekit import checkpoint\n"
        f"ck = checkpoint.load({str(path)!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)\n"
        f"y = torch.load({str(tmp_path / 'y.pt')!r}, weights_only=True)\n"
        "with torch.no_grad():\n"
        "    out = ck.model(x)\n"
        "assert torch.allclose(out, y, atol=1e-6), (out - y).abs().max()\n"
        "print('ok', ck.model.conv1.out_channels)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", str(small.conv1.out_channels)]


def test_onnx_export_matches(resnet, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net, x, plan = resnet
    small = plan.apply(net).eval()
    f = tmp_path / "pruned.onnx"
    torch.onnx.export(small, (x,), str(f), input_names=["x"], output_names=["y"], dynamo=False)
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(y), small(x), atol=1e-4)


def test_transformer_checkpoint_round_trip(tmp_path):
    from tests.graph.breadth_models import ViT

    torch.manual_seed(0)
    net = ViT().eval()
    net.prunekit_spec = checkpoint.ModelSpec(arch={"factory": "tests.graph.breadth_models:ViT", "kwargs": {}},
                                             input_shape=[3, 16, 16])
    x = torch.randn(2, 3, 16, 16)
    small = prunekit.prune(net, x, ratio=0.5)
    path = checkpoint.save(tmp_path / "vit.pt", small)
    back = checkpoint.load(path, trusted_factories=[ViT]).model
    assert back.blocks[0].attn.num_heads == small.blocks[0].attn.num_heads == 2
    with torch.no_grad():
        assert torch.allclose(back(x), small(x), atol=1e-6)
