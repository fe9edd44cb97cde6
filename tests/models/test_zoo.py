"""Every registered model: forward shapes, fx traceability, checkpoint round trip (timm-style, over the registry)."""
from __future__ import annotations

import pytest
import torch

from prunekit import checkpoint
from prunekit.errors import ConfigError
from prunekit.models import create, list_models, model_info

ALL = list_models()
BIG = {name for name in ALL if max(model_info(name).input_size) >= 224}

# Options that make the big models cheap to save/load while still exercising the
# kwargs path of the spec (cfg lists with 'M', floats, tuples).
LIGHT_KWARGS = {
    "vgg11": {"cfg": [8, "M", 16, "M", 16, 16, "M", 32, 32, "M", 32, 32]},
    "vgg16": {"cfg": [8, 8, "M", 16, 16, "M", 16, 16, 16, "M", 32, 32, 32, "M", 32, 32, 32]},
    "vgg19": {"cfg": [8, 8, "M", 16, 16, "M", 16, 16, 16, 16, "M", 32, 32, 32, 32, "M", 32, 32, 32, 32]},
    "resnet18": {"width_mult": 0.25},
    "resnet50": {"width_mult": 0.25, "small_input": True},
    "resnet110": {"widths": (4, 8, 8)},
    "preresnet164": {"widths": [4, 4, 8]},
    "mobilenet_v1": {"width_mult": 0.25},
    "mobilenet_v2": {"width_mult": 0.25, "small_input": True},
    "shufflenet_v1": {"width_mult": 0.25, "groups": 2},
    "lenet300_100": {"hidden": [20, 10]},
}


def test_zoo_is_complete():
    expected = {"lenet300_100", "lenet5", "convnet3", "vgg11", "vgg16", "vgg19", "resnet20", "resnet56",
                "resnet110", "preresnet164", "resnet18", "resnet50", "mobilenet_v1", "mobilenet_v2",
                "shufflenet_v1", "squeezenet1_1"}
    assert expected <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_metadata(name):
    info = model_info(name)
    assert info.name == name and info.paper and info.tags
    assert len(info.input_size) == 2 and len(info.min_input_size) == 2
    # every model must run on mnist5k (1x28x28)
    assert max(info.min_input_size) <= 28
    assert all(m <= i for m, i in zip(info.min_input_size, info.input_size))


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", ALL)
def test_forward_at_intended_size(name, in_channels):
    info = model_info(name)
    batch = 1 if name in BIG else 2
    model = create(name, num_classes=7, in_channels=in_channels).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, in_channels, *info.input_size))
    assert out.shape == (batch, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_forward_at_min_size_grayscale(name):
    info = model_info(name)
    model = create(name, num_classes=10, in_channels=1, input_size=info.min_input_size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *info.min_input_size))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL)
def test_fx_traceable_and_equivalent(name):
    info = model_info(name)
    kwargs = LIGHT_KWARGS.get(name, {})
    model = create(name, num_classes=5, in_channels=1, input_size=info.min_input_size, **kwargs).eval()
    traced = torch.fx.symbolic_trace(model)
    ops = {n.op for n in traced.graph.nodes}
    assert "call_module" in ops
    x = torch.randn(2, 1, *info.min_input_size)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))


@pytest.mark.parametrize("name", ALL)
def test_spec_and_checkpoint_round_trip(name, tmp_path):
    info = model_info(name)
    kwargs = LIGHT_KWARGS.get(name, {})
    model = create(name, num_classes=4, in_channels=1, input_size=info.min_input_size, **kwargs).eval()
    spec = model.prunekit_spec
    assert spec.arch["model"] == name
    assert spec.arch["kwargs"]["num_classes"] == 4 and spec.arch["kwargs"]["in_channels"] == 1
    assert spec.input_shape == [1, *info.min_input_size]
    with torch.no_grad():  # make BN statistics non-trivial so the comparison means something
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = checkpoint.save(tmp_path / f"{name}.pt", model, meta={"test": name})
    loaded = checkpoint.load(path)
    assert loaded.meta == {"test": name}
    assert loaded.spec.arch == spec.arch
    x = torch.randn(2, 1, *info.min_input_size)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


@pytest.mark.parametrize("name", ALL)
def test_unknown_option_is_rejected(name):
    with pytest.raises(ConfigError, match=f"{name}: unknown option.*widht_mult"):
        create(name, widht_mult=0.5)


def test_weights_are_initialised_sensibly():
    net = create("resnet20")
    assert torch.equal(net.bn1.weight, torch.ones(16)) and torch.equal(net.bn1.bias, torch.zeros(16))
    # He-normal, fan-out mode: std = sqrt(2 / (out_channels * k * k)) = sqrt(2 / 144)
    std = net.layer1[0].conv1.weight.std().item()
    assert 0.8 * (2 / 144) ** 0.5 < std < 1.2 * (2 / 144) ** 0.5


def test_create_checks_class_and_channel_counts():
    import numpy as np

    net = create("lenet5", num_classes=np.int64(7), in_channels=1)
    recorded = net.prunekit_spec.arch["kwargs"]["num_classes"]
    assert recorded == 7 and type(recorded) is int  # a plain int in the spec (JSON), not a numpy scalar
    with pytest.raises(ConfigError, match=r"^num_classes must be an integer, got True$"):
        create("lenet5", num_classes=True)
    with pytest.raises(ValueError, match=r"^in_channels must be an integer >= 1, got 0$"):  # ConfigError is one
        create("lenet5", in_channels=0)
