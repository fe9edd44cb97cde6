"""A pruned model of the user's own class: safetensors + the plan replayed onto its constructor, checked at save time."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import prunekit
from export_helpers import run_isolated
from prunekit import checkpoint
from prunekit.errors import CheckpointError
from prunekit.spec import ModelSpec
from usernet_for_export import UserNet

HERE = Path(__file__).parent


def _pruned():
    torch.manual_seed(0)
    net = checkpoint.describe(UserNet(width=8, num_classes=5).eval(), [3, 16, 16],
                              kwargs={"width": 8, "num_classes": 5})
    plan = prunekit.plan(net, torch.randn(1, 3, 16, 16), ratio=0.5)
    return plan.apply(net).eval()


def test_pruned_user_model_reloads_onto_its_constructor_from_safetensors(tmp_path):
    small = _pruned()
    assert small.conv1.out_channels == 4 and [t["kind"] for t in small.prunekit_spec.transforms] == ["prune_plan"]
    p = checkpoint.save(tmp_path / "small.safetensors", small, meta={"note": "mine"})
    from safetensors import safe_open

    with safe_open(str(p), "pt") as f:     # an ordinary safetensors file: weights + JSON metadata, no pickle
        assert f.get_tensor("conv1.weight").shape == (4, 3, 3, 3)
        assert json.loads(f.metadata()["spec"])["arch"] == {"factory": "usernet_for_export:UserNet",
                                                            "kwargs": {"width": 8, "num_classes": 5}}
    ckpt = checkpoint.load(p, model_fn=UserNet)
    assert isinstance(ckpt.model, UserNet) and ckpt.meta == {"note": "mine"}
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), small(x))
    # or the file names its factory, which the caller allows
    ckpt2 = checkpoint.load(p, trusted_factories=["usernet_for_export:UserNet"])
    with torch.no_grad():
        assert torch.equal(ckpt2.model(x), small(x))
    with pytest.raises(CheckpointError, match="not trusted"):
        checkpoint.load(p)


def test_pt_checkpoint_of_a_user_model_takes_model_fn_too(tmp_path):
    small = _pruned()
    checkpoint.save(tmp_path / "small.pt", small)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(checkpoint.load(tmp_path / "small.pt", model_fn=UserNet).model(x), small(x))


def test_save_of_a_model_without_spec_refuses_with_the_fix(tmp_path):
    net = UserNet()
    small = prunekit.plan(net, torch.randn(1, 3, 8, 8), ratio=0.5).apply(net)
    with pytest.raises(CheckpointError, match=r"UserNet\) has no prunekit_spec.*checkpoint.describe\(model, "
                                              r"input_shape="):
        checkpoint.save(tmp_path / "a.pt", small)
    assert not (tmp_path / "a.pt").exists()


def test_spec_that_does_not_match_is_refused_at_save_time(tmp_path):
    # the case: a spec without the pruning transform; save used to succeed and load fail with
    # "weights do not fit the stored architecture: Error(s) in loading state_dict for UserNet:" (no detail)
    net = UserNet()
    small = prunekit.plan(net, torch.randn(1, 3, 8, 8), ratio=0.5).apply(net)
    spec = ModelSpec(arch={"factory": "usernet_for_export:UserNet", "kwargs": {}}, input_shape=[3, 8, 8])
    with pytest.raises(CheckpointError, match=r"does not describe this model: tensor 'bn1.bias' is \[4\] in the "
                                              r"model but \[8\] in what the spec \(usernet_for_export:UserNet, "
                                              r"transforms: none\) builds"):
        checkpoint.save(tmp_path / "a.pt", small, spec=spec)
    assert not (tmp_path / "a.pt").exists()
    # a file written without the check (or by an older prunekit) now fails to load naming the tensor
    checkpoint.save(tmp_path / "old.pt", small, spec=spec, check=False)
    with pytest.raises(CheckpointError, match=r"weights do not fit the stored architecture: size mismatch for "
                                              r"\w+\.\w+: copying a param with shape"):
        checkpoint.load(tmp_path / "old.pt", model_fn=UserNet)


def test_describe_checks_the_constructor_arguments():
    with pytest.raises(CheckpointError, match=r"tensor 'bn1.bias' is \[4\] in the model but \[8\]"):
        checkpoint.describe(UserNet(width=4), [3, 8, 8])   # kwargs forgotten: UserNet() has width 8
    with pytest.raises(CheckpointError, match="JSON"):
        checkpoint.describe(UserNet(), [3, 8, 8], kwargs={"width": object()})

    class Local(torch.nn.Linear):
        pass

    with pytest.raises(CheckpointError, match="defined inside a function"):
        checkpoint.describe(Local(2, 2), [2], kwargs={"in_features": 2, "out_features": 2})


def test_model_fn_on_a_zoo_file_and_wrong_kwargs_are_clear(tmp_path):
    from prunekit import models

    checkpoint.save(tmp_path / "z.pt", models.create("lenet5"))
    with pytest.raises(CheckpointError, match="zoo model 'lenet5'; load it without model_fn"):
        checkpoint.load(tmp_path / "z.pt", model_fn=UserNet)
    checkpoint.save(tmp_path / "u.pt", _pruned())
    with pytest.raises(CheckpointError, match="does not accept the stored arguments"):
        checkpoint.load(tmp_path / "u.pt", model_fn=torch.nn.Linear)


def test_cli_exports_a_user_model_that_then_runs_without_its_class(tmp_path, cli_env):
    small = _pruned()
    checkpoint.save(tmp_path / "small.safetensors", small)
    env = dict(cli_env, PYTHONPATH=os.pathsep.join([str(HERE), cli_env.get("PYTHONPATH", "")]))
    out = tmp_path / "small.onnx"
    p = subprocess.run([sys.executable, "-m", "prunekit.cli", "export", str(tmp_path / "small.safetensors"),
                        "--format", "onnx", "--out", str(out), "--trust-factory", "usernet_for_export:UserNet"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    x = torch.randn(1, 3, 16, 16)
    (got,) = run_isolated("onnx", out, (x,), tmp_path, blocked=("prunekit", "usernet_for_export"))
    with torch.no_grad():
        assert float((got - small(x)).abs().max()) < 1e-5
    refused = subprocess.run([sys.executable, "-m", "prunekit.cli", "export", str(tmp_path / "small.safetensors"),
                              "--format", "onnx", "--out", str(tmp_path / "b.onnx")], capture_output=True, text=True,
                             env=env, timeout=600)
    assert refused.returncode == 2 and "--trust-factory usernet_for_export:UserNet" in refused.stderr
