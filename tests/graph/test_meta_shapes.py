"""The capture's shape pass on meta tensors: exact shapes, and the real forward when meta cannot run."""
import operator

import pytest
import torch
from torch import nn

from prunekit.graph import ops
from prunekit.graph.capture import capture
from prunekit.graph.shapes import NoShapeRule, meta_leaf_output, meta_same_shape_binary


def _meta(*shape):
    return torch.empty(shape, device="meta")


@pytest.mark.parametrize("conv, shape, expected", [
    (nn.Conv2d(3, 8, 3, stride=2, padding=1), (2, 3, 33, 32), (2, 8, 17, 16)),
    (nn.Conv2d(4, 6, (3, 5), dilation=(2, 1), padding="valid", groups=2), (1, 4, 20, 20), (1, 6, 16, 16)),
    (nn.Conv2d(3, 5, 4, padding="same", dilation=2), (1, 3, 9, 7), (1, 5, 9, 7)),
    (nn.Conv1d(2, 3, 5, stride=3, padding=2, padding_mode="reflect"), (4, 2, 11), (4, 3, 4)),
    (nn.Conv3d(1, 2, 3), (1, 1, 5, 6, 7), (1, 2, 3, 4, 5)),
])
def test_conv_rule_matches_the_real_conv(conv, shape, expected):
    real = conv(torch.randn(shape)).shape
    assert tuple(real) == expected
    assert tuple(meta_leaf_output(conv, (_meta(*shape),), {}).shape) == expected


def test_no_rule_for_misfits():
    with pytest.raises(NoShapeRule):
        meta_leaf_output(nn.Conv2d(3, 8, 3), (_meta(1, 4, 8, 8),), {})  # wrong channel count
    with pytest.raises(NoShapeRule):
        meta_leaf_output(nn.BatchNorm2d(8), (_meta(1, 7, 4, 4),), {})
    with pytest.raises(NoShapeRule):
        meta_leaf_output(nn.LSTM(3, 4), (_meta(2, 1, 3),), {})  # no rule at all
    with pytest.raises(NoShapeRule):
        meta_leaf_output(nn.Conv2d(3, 8, 3), (torch.randn(1, 3, 8, 8),), {})  # a real tensor
    assert tuple(meta_leaf_output(nn.Linear(5, 2), (_meta(3, 4, 5),), {}).shape) == (3, 4, 2)


def test_binary_rule_only_for_equal_shapes():
    a = _meta(2, 3)
    assert tuple(meta_same_shape_binary(operator.add, (a, _meta(2, 3)), {}).shape) == (2, 3)
    assert meta_same_shape_binary(operator.iadd, (a, _meta(2, 3)), {}) is a
    assert meta_same_shape_binary(operator.add, (a, _meta(1, 3)), {}) is None  # broadcasting: torch's kernel
    assert meta_same_shape_binary(operator.sub, (a, _meta(2, 3)), {}) is None


class _DataDependent(nn.Module):
    """A size read from the data: the meta pass cannot run it, the real forward must."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x).flatten()
        return y[y > -1e9]  # all of it, but only the data says so


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + x).flatten(1)


def _real_meta(model, x):
    """Shapes of every node from a plain recording of the real forward."""
    cap = capture(model, (x,), ops.is_handled_module)
    return {n.name: v for n, v in cap.meta.items()}


def test_meta_pass_records_exact_shapes_and_sizes():
    torch.manual_seed(0)
    model = _Residual().eval()
    meta = _real_meta(model, torch.randn(2, 4, 5, 6))
    assert meta["conv"] == ("tensor", (2, 4, 5, 6), torch.float32)
    assert meta["add"] == ("tensor", (2, 4, 5, 6), torch.float32)
    assert meta["flatten"] == ("tensor", (2, 120), torch.float32)


def test_data_dependent_value_falls_back_to_the_real_forward():
    torch.manual_seed(0)
    model = _DataDependent().eval()
    meta = _real_meta(model, torch.randn(1, 3, 4, 4))
    assert meta["getitem"] == ("tensor", (64,), torch.float32)  # the mask ran on real data


def test_meta_pass_leaves_parameters_and_buffers_real():
    model = _Residual().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    capture(model, (torch.randn(1, 4, 3, 3),), ops.is_handled_module)
    for k, v in model.state_dict().items():
        assert v.device.type == "cpu" and torch.equal(v, before[k]), k
