"""MACs: exact values by hand, per-layer attribution, custom op counters, and the zoo."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from prunekit.errors import ConfigError
from prunekit.measure import MacsReport, count_macs, register_op_counter


@pytest.mark.parametrize("module,shape,expected", [
    (nn.Conv2d(3, 8, 3, padding=1), (1, 3, 8, 8), 8 * 3 * 9 * 64),
    (nn.Conv2d(3, 8, 3), (1, 3, 8, 8), 8 * 3 * 9 * 36),                 # no padding: 6x6 outputs
    (nn.Conv2d(3, 8, 3, stride=2, padding=1), (1, 3, 8, 8), 8 * 3 * 9 * 16),
    (nn.Conv2d(8, 16, 3, padding=1, groups=4), (1, 8, 8, 8), 16 * 2 * 9 * 64),   # grouped: C_in/groups
    (nn.Conv2d(8, 8, 3, padding=1, groups=8), (1, 8, 8, 8), 8 * 1 * 9 * 64),     # depthwise
    (nn.Conv2d(8, 4, 1), (1, 8, 5, 5), 4 * 8 * 25),                               # pointwise
    (nn.Conv1d(2, 3, 3), (1, 2, 10), 3 * 2 * 3 * 8),
    (nn.Linear(10, 5), (1, 10), 50),
    (nn.Linear(10, 5, bias=False), (1, 10), 50),
    (nn.Linear(10, 5), (1, 7, 10), 7 * 50),                                       # 3-d input
    (nn.ReLU(), (1, 10), 0),
    (nn.BatchNorm2d(3), (1, 3, 4, 4), 0),
])
def test_exact_macs(module, shape, expected):
    rep = count_macs(module, torch.randn(shape))
    assert rep.total == expected
    assert rep.flops == 2 * expected
    assert rep.per_layer == ({"": expected} if expected else {})


def test_macs_scale_with_batch_and_per_sample_divides():
    rep = count_macs(nn.Conv2d(3, 8, 3, padding=1), torch.randn(4, 3, 8, 8))
    assert rep.total == 4 * 8 * 3 * 9 * 64 and rep.batch_size == 4
    assert rep.per_sample == 8 * 3 * 9 * 64


class Block(nn.Module):
    """Residual block: two convs and an add (the add costs no MACs)."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.bn1(self.conv1(x)))))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.layer = nn.Sequential(Block(4), Block(4))
        self.fc = nn.Linear(4, 3)
        self.extra = nn.Parameter(torch.randn(3, 3))  # used functionally in the root's forward

    def forward(self, x):
        x = self.layer(self.stem(x))
        x = self.fc(x.mean((2, 3)))
        return x @ self.extra


def test_residual_model_per_layer_exact_and_sums_to_total():
    rep = count_macs(TinyResNet(), torch.randn(1, 1, 6, 6))
    hw = 36
    expected = {
        "stem": 4 * 1 * 9 * hw,
        "layer.0.conv1": 4 * 4 * 9 * hw, "layer.0.conv2": 4 * 1 * 9 * hw,
        "layer.1.conv1": 4 * 4 * 9 * hw, "layer.1.conv2": 4 * 1 * 9 * hw,
        "fc": 12,
        "": 9,  # the root's own matmul
    }
    assert rep.per_layer == expected
    assert rep.total == sum(expected.values()) == sum(rep.per_layer.values())
    assert rep.layer_types["layer.0.conv2"] == "Conv2d" and rep.layer_types[""] == "TinyResNet"
    assert rep.per_type == {"Conv2d": sum(v for k, v in expected.items() if "conv" in k or k == "stem"),
                            "Linear": 12, "TinyResNet": 9}


def test_shared_module_called_twice_counts_twice():
    lin = nn.Linear(4, 4)
    net = nn.Sequential(lin, nn.ReLU(), lin)
    assert count_macs(net, torch.randn(1, 4)).per_layer == {"0": 32}


def test_model_modes_are_restored():
    net = TinyResNet().train()
    net.layer[0].bn1.eval()
    count_macs(net, torch.randn(2, 1, 6, 6))
    assert net.training and not net.layer[0].bn1.training and net.layer[1].bn1.training
    assert not net.layer[0].bn1.running_mean.any()  # ran in eval mode: BN statistics untouched


def test_tuple_and_dict_inputs():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(5, 2)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    x, y = torch.randn(1, 3), torch.randn(1, 5)
    assert count_macs(Two(), (x, y)).total == 6 + 10
    assert count_macs(Two(), {"x": x, "y": y}).total == 6 + 10


class FakeBinaryConv(nn.Conv2d):
    """Stands in for a binarized conv: runs a float conv, but its real cost is XNOR + popcount."""


def binary_counter(module, inputs, output):
    k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    return {"macs": 0, "binary_ops": output.numel() * k}


class RegisteredBinaryConv(nn.Conv2d):
    """Registered once at import through the global registry."""


register_op_counter(RegisteredBinaryConv, binary_counter)


@pytest.mark.parametrize("use_registry", [False, True])
def test_custom_op_counter_replaces_macs_and_reports_other_ops(use_registry):
    cls = RegisteredBinaryConv if use_registry else FakeBinaryConv
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), cls(4, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 16, 2))
    overrides = None if use_registry else {FakeBinaryConv: binary_counter}
    rep = count_macs(net, torch.randn(1, 1, 4, 4), op_counters=overrides)
    assert rep.per_layer == {"0": 4 * 9 * 16, "3": 8 * 16 * 2}
    assert rep.extra_ops == {"1": {"binary_ops": 8 * 16 * 4 * 9}}
    assert rep.extra_totals == {"binary_ops": 8 * 16 * 4 * 9}
    assert rep.layer_types["1"] == cls.__name__


def test_custom_counter_without_macs_key_keeps_measured_macs_and_hides_children():
    inner = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    net = nn.Sequential(inner, nn.Linear(2, 1))
    rep = count_macs(net, torch.randn(1, 4), op_counters={nn.Sequential: lambda m, i, o: {"popcounts": 7}})
    # The root is a Sequential too, so it is the custom-counted layer: everything folds into it.
    assert rep.per_layer == {"": 16 + 8 + 2} and rep.extra_ops == {"": {"popcounts": 7}}


def test_duplicate_registration_and_bad_counter_output_raise():
    with pytest.raises(KeyError, match="already registered"):
        register_op_counter(RegisteredBinaryConv, binary_counter)
    with pytest.raises(TypeError, match="Linear"):
        count_macs(nn.Linear(2, 2), torch.randn(1, 2), op_counters={nn.Linear: lambda m, i, o: {"macs": -1}})


def test_macs_report_round_trip_and_unknown_key():
    rep = count_macs(TinyResNet(), torch.randn(1, 1, 6, 6))
    assert MacsReport.from_dict(rep.to_dict()) == rep
    with pytest.raises(ConfigError, match="'bogus'"):
        MacsReport.from_dict({**rep.to_dict(), "bogus": 1})


def _zoo_cases():
    from prunekit import models

    return models.list_models()


@pytest.mark.parametrize("name", _zoo_cases())
def test_zoo_per_layer_matches_flop_counter_total(name):
    """No double counting on every zoo model: per-layer MACs sum to the flop counter's own total / 2."""
    from prunekit import models

    info = models.model_info(name)
    net = models.create(name, num_classes=10, in_channels=3, input_size=info.min_input_size)
    x = torch.randn(1, 3, *info.min_input_size)
    rep = count_macs(net, x)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net.eval()(x)
    assert rep.total == fc.get_total_flops() // 2 == sum(rep.per_layer.values()) > 0
    modules = dict(net.named_modules())
    assert all(not list(modules[n].children()) for n in rep.per_layer), "MACs charged to a container"
