"""binarize(): layer selection, XNOR block re-ordering, spec recording, checkpoint round trip."""
import warnings

import pytest
import torch
from torch import nn

from prunekit import checkpoint, models
from prunekit.binary import BinaryConv2d, BinaryLinear, binarize, binary_layers, plan_reorder
from prunekit.errors import CheckpointError, ConfigError

SMALL_VGG = dict(cfg=[8, "M", 16, "M", 16, 16])


def lenet():
    torch.manual_seed(0)
    return models.create("lenet5", in_channels=1)


def vgg():
    torch.manual_seed(0)
    return models.create("vgg11", in_channels=1, input_size=(28, 28), **SMALL_VGG)


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_keeps_first_and_last_layers_full_precision(mode):
    net = binarize(lenet(), mode)
    assert [n for n, _ in binary_layers(net)] == ["conv2", "fc1", "fc2"]
    assert type(net.conv1) is nn.Conv2d and type(net.fc3) is nn.Linear
    assert all(m.mode == mode for _, m in binary_layers(net))
    every = binarize(lenet(), mode, keep_first_last=False)
    assert [n for n, _ in binary_layers(every)] == ["conv1", "conv2", "fc1", "fc2", "fc3"]


def test_exclude_and_unknown_names():
    net = binarize(lenet(), "bwn", exclude=["fc1"])
    assert [n for n, _ in binary_layers(net)] == ["conv2", "fc2"]
    with pytest.raises(ConfigError, match="fc9"):
        binarize(lenet(), "bwn", exclude=["fc9"])
    with pytest.raises(ConfigError, match="mode"):
        binarize(lenet(), "ternary")


def test_grouped_convolutions_stay_full_precision():
    net = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Conv2d(4, 8, 3, groups=4), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 2, 1))
    out = binarize(net, "bwn")
    assert [n for n, _ in binary_layers(out)] == ["2"]


def test_nothing_to_binarize_is_an_error():
    with pytest.raises(ConfigError, match="no layer left.*first layer"):
        binarize(nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)), "bwn")
    with pytest.raises(ConfigError, match="no Conv2d or Linear"):
        binarize(nn.Sequential(nn.ReLU()), "xnor")


def test_caller_model_is_not_changed_and_weights_carry_over():
    net = lenet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    xnet = binarize(net, "xnor")
    assert all(type(m) in (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, type(net)) for m in net.modules())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert torch.equal(xnet.conv2.weight, net.conv2.weight) and xnet.conv2.weight is not net.conv2.weight
    assert torch.equal(xnet.fc1.bias, net.fc1.bias)


def test_bwn_does_not_reorder():
    net = binarize(vgg(), "bwn")
    assert not any(isinstance(m, nn.Identity) for m in net.modules())
    assert net.features[4].input_norm is None


def test_xnor_reorders_vgg_blocks_to_bn_binactiv_binconv_pool():
    base = vgg()
    net = binarize(base, "xnor")
    f = net.features
    # base: 0 conv,1 bn,2 relu,3 pool, 4 conv,5 bn,6 relu,7 pool, 8 conv,9 bn,10 relu, 11 conv,12 bn,13 relu
    kinds = [type(m).__name__ for m in f]
    assert kinds == ["Conv2d", "Identity", "Identity", "MaxPool2d", "BinaryConv2d", "Identity", "Identity",
                     "MaxPool2d", "BinaryConv2d", "Identity", "Identity", "BinaryConv2d", "BatchNorm2d", "ReLU"]
    # the BN of the previous block now sits after the pool, right before the binarization
    assert torch.equal(f[4].input_norm.weight, base.features[1].weight)
    assert f[4].input_norm.num_features == 8 and f[11].input_norm.num_features == 16
    # binary conv output goes straight into the pool (the seed's BinConv -> Pool)
    assert isinstance(f[7], nn.MaxPool2d) and all(isinstance(m, nn.Identity) for m in f[5:7])


def test_xnor_lenet_drops_relus_feeding_binary_layers_only():
    net = binarize(lenet(), "xnor")
    assert [type(getattr(net, f"relu{i}")).__name__ for i in range(1, 5)] == ["Identity"] * 3 + ["ReLU"]
    # no BN to move in LeNet: each binary layer gets its own
    assert isinstance(net.conv2.input_norm, nn.BatchNorm2d) and isinstance(net.fc1.input_norm, nn.BatchNorm1d)


def test_no_reorder_flag_keeps_structure():
    net = binarize(vgg(), "xnor", reorder=False)
    assert not any(isinstance(m, nn.Identity) for m in net.modules())
    assert isinstance(net.features[4].input_norm, nn.BatchNorm2d)


def test_shared_activation_module_is_not_removed():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.c(self.act(self.b(self.act(self.a(x)))))

    plan = plan_reorder(Shared(), ["b"])
    assert plan.traced and plan.drop_activations == []
    assert isinstance(binarize(Shared(), "xnor").act, nn.ReLU)


def test_untraceable_model_falls_back_with_warning():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                x = -x
            return self.c(torch.relu(self.b(self.a(x))))

    with pytest.warns(UserWarning, match="not re-ordered"):
        net = binarize(Dynamic(), "xnor")
    assert isinstance(net.b, BinaryLinear) and net.b.input_norm is not None
    assert net(torch.randn(3, 4)).shape == (3, 2)


def test_already_binarized_is_refused():
    with pytest.raises(ConfigError, match="already"):
        binarize(binarize(lenet(), "bwn"), "xnor")


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_spec_records_transform_and_checkpoint_reloads(tmp_path, mode):
    net = binarize(vgg(), mode)
    t = net.prunekit_spec.transforms[-1]
    assert t == {"kind": "binarize", "mode": mode, "keep_first_last": True, "reorder": True, "exclude": []}
    net.train()
    net(torch.randn(4, 1, 28, 28))  # move the BN statistics away from their init
    net.eval()
    checkpoint.save(tmp_path / "b.pt", net)
    loaded = checkpoint.load(tmp_path / "b.pt").model
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert [n for n, _ in binary_layers(loaded)] == [n for n, _ in binary_layers(net)]


def test_bad_transform_in_checkpoint_is_reported():
    from prunekit.binary import apply_binarize_transform

    with pytest.raises(CheckpointError, match="colour"):
        apply_binarize_transform(lenet(), {"kind": "binarize", "mode": "bwn", "colour": 1})
    with pytest.raises(CheckpointError, match="mode"):
        apply_binarize_transform(lenet(), {"kind": "binarize", "mode": "nope"})


def test_training_updates_real_weights_through_binary_forward():
    net = binarize(lenet(), "xnor")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    w0 = net.fc1.weight.detach().clone()
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    nn.functional.cross_entropy(net(x), y).backward()
    assert net.fc1.weight.grad is not None and net.fc1.weight.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(net.fc1.weight, w0)  # the latent real weights moved


def test_binary_layer_constructor_errors():
    with pytest.raises(ConfigError, match="groups"):
        BinaryConv2d(4, 4, 3, groups=2, mode="xnor")
    with pytest.raises(ConfigError, match="mode"):
        BinaryLinear(3, 2, mode="ternary")
