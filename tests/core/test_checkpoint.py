import textwrap

import pytest
import torch

from prunekit import checkpoint
from prunekit.checkpoint import ModelSpec
from prunekit.errors import CheckpointError

FACTORY_SRC = textwrap.dedent("""
    import torch.nn as nn

    def build(width=4, num_classes=3):
        return nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.Flatten(), nn.Linear(width * 4 * 4, num_classes))
""")

TRUST = ["my_nets:build"]  # the factory below; a file may only name factories the caller trusts


@pytest.fixture
def factory(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(FACTORY_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    return ModelSpec(arch={"factory": "my_nets:build", "kwargs": {"width": 5}}, input_shape=[1, 6, 6])


def test_user_factory_round_trip(tmp_path, factory):
    model = checkpoint.build(factory, trusted_factories=TRUST)
    assert model[0].out_channels == 5
    path = checkpoint.save(tmp_path / "m.pt", model, meta={"data": "digits", "top1": 12.5})
    ck = checkpoint.load(path, trusted_factories=TRUST)
    x = torch.randn(2, 1, 6, 6)
    assert torch.equal(ck.model(x), model.eval()(x))
    assert ck.meta == {"data": "digits", "top1": 12.5}
    assert ck.spec.arch == factory.arch and ck.spec.input_shape == [1, 6, 6]


def test_model_without_spec_needs_explicit_spec(tmp_path):
    with pytest.raises(CheckpointError, match="no prunekit_spec"):
        checkpoint.save(tmp_path / "m.pt", torch.nn.Linear(2, 2))


def test_refuses_overwrite_when_asked(tmp_path, factory):
    p = tmp_path / "m.pt"
    p.write_bytes(b"user data")
    with pytest.raises(Exception, match="already exists"):
        checkpoint.save(p, checkpoint.build(factory, trusted_factories=TRUST), overwrite=False)
    assert p.read_bytes() == b"user data"


@pytest.mark.parametrize("content,msg", [
    (b"", "not a readable prunekit checkpoint"),
    (b"garbage" * 100, "not a readable prunekit checkpoint"),
])
def test_corrupt_files(tmp_path, content, msg):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=msg) as e:
        checkpoint.load(p)
    assert str(p) in str(e.value)


def test_plain_state_dict_is_rejected(tmp_path):
    p = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), p)
    with pytest.raises(CheckpointError, match="not a prunekit checkpoint"):
        checkpoint.load(p)


def test_truncated_checkpoint(tmp_path, factory):
    p = checkpoint.save(tmp_path / "m.pt", checkpoint.build(factory, trusted_factories=TRUST))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="m.pt"):
        checkpoint.load(p, trusted_factories=TRUST)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "nope.pt")


def test_unknown_version(tmp_path, factory):
    p = checkpoint.save(tmp_path / "m.pt", checkpoint.build(factory, trusted_factories=TRUST))
    payload = torch.load(p, weights_only=True)
    payload["version"] = 99
    torch.save(payload, p)
    with pytest.raises(CheckpointError, match="version 99"):
        checkpoint.load(p, trusted_factories=TRUST)


def test_weights_that_do_not_fit(tmp_path, factory):
    p = checkpoint.save(tmp_path / "m.pt", checkpoint.build(factory, trusted_factories=TRUST))
    payload = torch.load(p, weights_only=True)
    payload["spec"]["arch"]["kwargs"]["width"] = 7
    torch.save(payload, p)
    with pytest.raises(CheckpointError, match="do not fit"):
        checkpoint.load(p, trusted_factories=TRUST)


def test_spec_transforms_are_copied_not_shared():
    spec = ModelSpec(arch={"model": "x", "kwargs": {}}, input_shape=[1, 2, 2])
    new = spec.with_transform({"kind": "prune_plan", "groups": [1]})
    assert spec.transforms == [] and new.transforms == [{"kind": "prune_plan", "groups": [1]}]
    with pytest.raises(ValueError):
        spec.with_transform({"no_kind": 1})


def test_unknown_transform_kind(tmp_path, factory):
    spec = factory.with_transform({"kind": "teleport"})
    with pytest.raises(Exception, match="unknown checkpoint transform 'teleport'"):
        checkpoint.build(spec, trusted_factories=TRUST)
