"""surgery.gates: FBS gates keep exactly the top-k channels per input; the skipping path equals the masked one."""
import pytest
import torch
import torch.nn as nn

from prunekit import checkpoint
from prunekit.errors import PrunekitError
from prunekit.measure import count_macs
from prunekit.methods.dynamic import dynamic_macs, gate_model
from prunekit.surgery.gates import GatedConv, GatedInput, gate_convs, set_mode, topk_gate


def two_conv():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3))


def test_topk_gate_by_hand():
    s = torch.tensor([[0.3, 0.0, 2.0, 1.0], [5.0, 4.0, 0.1, 0.2]])
    g, idx = topk_gate(s, 2)
    assert idx.tolist() == [[2, 3], [0, 1]]
    assert g.tolist() == [[0.0, 0.0, 2.0, 1.0], [5.0, 4.0, 0.0, 0.0]]


def test_gate_keeps_top_k_per_input_computed_by_hand():
    net = two_conv()
    gate_convs(net, {"0": {"k": 2, "readers": ["2"]}})
    unit = net[0]
    with torch.no_grad():
        unit.gate.weight.copy_(torch.tensor([[1.0], [-1.0], [2.0], [0.5]]))
        unit.gate.bias.copy_(torch.tensor([0.0, 0.0, 0.1, 0.2]))
    x = torch.stack([torch.full((1, 5, 5), 1.0), torch.full((1, 5, 5), -1.0)])
    y = unit(x)
    # input mean 1: saliencies relu([1, -1, 2.1, 0.7]) -> keep channels 0 and 2
    # input mean -1: saliencies relu([-1, 1, -1.9, -0.3]) = [0, 1, 0, 0] -> keep 1 and one of the zeros
    s0 = [1.0, 0.0, 2.1, 0.7]
    dense = unit.conv(x)
    assert torch.allclose(y[0, 0], dense[0, 0] * s0[0]) and torch.allclose(y[0, 2], dense[0, 2] * s0[2])
    y = y.detach()
    assert float(y[0, 1].abs().max()) == 0.0 and float(y[0, 3].abs().max()) == 0.0
    kept1 = (unit.last_gate[1] != 0).nonzero().flatten().tolist()
    assert kept1 == [1] and torch.allclose(y[1, 1], dense[1, 1])
    assert (unit.last_gate != 0).sum(dim=1).tolist() == [2, 1]


def bn_net():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 3))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


def test_skipping_equals_masked_with_batchnorm_and_flatten():
    net, units, static = gate_model(bn_net(), torch.zeros(1, 2, 8, 8), 0.5, seed=0)
    assert sorted(units) == ["0", "4"] and units["0"]["bn"] == "1" and units["4"]["readers"] == ["8"]
    assert units["4"]["per_channel"] == {"8": 16} and [units[k]["k"] for k in ("0", "4")] == [3, 4]
    assert isinstance(net[1], nn.Identity) and isinstance(net[8], GatedInput)
    with torch.no_grad():   # random gates: some kept saliencies are 0, so the skipping path drops them too
        for u in (net[0], net[4]):
            u.gate.weight.normal_()
            u.gate.bias.normal_()
    net.eval()
    x = torch.randn(6, 2, 8, 8)
    with torch.no_grad():
        masked = net(x)
        set_mode(net, "skip")
        skipped = torch.cat([net(x[i:i + 1]) for i in range(6)])
    assert torch.allclose(masked, skipped, atol=1e-5, rtol=0)
    with pytest.raises(PrunekitError, match="batch 1"):
        net(x)


def test_macs_per_input_equal_hand_count():
    net = two_conv().eval()
    gate_convs(net, {"0": {"k": 2, "readers": ["2"]}})
    with torch.no_grad():
        net[0].gate.weight.zero_()
        net[0].gate.bias.copy_(torch.tensor([1.0, 2.0, -1.0, -2.0]))
    x = torch.randn(3, 1, 6, 6)
    # gate 1x4 = 4; conv1: 2 of 4 filters, 6x6 outputs x 9 = 648; conv2 reads 2 of 4 inputs: 2 x 4x4 x (2 x 9) = 576
    assert dynamic_macs(net, x) == [4 + 648 + 576] * 3
    with torch.no_grad():   # saliencies [1, 0, 0, 0]: top-2 keeps channels 0, 1; channel 1 is 0, skipped too
        net[0].gate.bias.copy_(torch.tensor([1.0, 0.0, -1.0, -2.0]))
    assert dynamic_macs(net, x) == [4 + 324 + 288] * 3
    set_mode(net, "skip")
    assert int(count_macs(net, x[:1]).total) == 4 + 324 + 288   # the flop counter sees the same work
    set_mode(net, "masked")
    assert int(count_macs(net, x[:1]).total) == 4 + 36 * 4 * 9 + 16 * 2 * 36


def test_gated_checkpoint_round_trip(tmp_path):
    from prunekit import models

    base = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    net, units, _ = gate_model(base, torch.zeros(1, 1, 8, 8), 0.25, seed=0)
    assert {k: v["k"] for k, v in units.items()} == {"conv1": 8, "conv2": 16, "conv3": 16}
    path = checkpoint.save(tmp_path / "gated.pt", net)
    back = checkpoint.load(path).model.eval()
    assert isinstance(back.conv1, GatedConv) and back.conv1.in_slot is None
    assert back.conv2.in_slot is back.conv1.slot and back.linear1.in_slot is back.conv3.slot
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(back(x), net.eval()(x))


def test_gate_errors():
    net = two_conv()
    with pytest.raises(PrunekitError, match=r"k of '0' must be in \[1, 4\]"):
        gate_convs(net, {"0": {"k": 5, "readers": []}})
    with pytest.raises(PrunekitError, match="Conv2d"):
        gate_convs(net, {"1": {"k": 1, "readers": []}})
    with pytest.raises(PrunekitError, match="mode"):
        set_mode(net, "fast")


def test_gated_conv_trains_its_gate():
    net = two_conv()
    gate_convs(net, {"0": {"k": 2, "readers": ["2"]}})
    net(torch.randn(2, 1, 6, 6)).sum().backward()
    assert net[0].gate.weight.grad is not None and float(net[0].gate.weight.grad.abs().sum()) > 0
