"""Bad input gives clear ValueErrors naming what is wrong."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import prunekit
from prunekit.errors import PrunekitError, UnsupportedModelError


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        if x.mean() > 0:  # data-dependent branch in the root forward
            return self.conv(x)
        return self.conv(-x)


def _net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))


def test_untraceable_root_names_problem_and_suggests_ignored_layers():
    with pytest.raises(UnsupportedModelError, match="ignored_layers") as e:
        prunekit.plan(Untraceable(), torch.randn(1, 3, 4, 4))
    assert isinstance(e.value, ValueError) and "Untraceable" in str(e.value)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, float("nan"), "half"])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        prunekit.plan(_net(), torch.randn(1, 3, 8, 8), ratio=ratio)


def test_unreachable_target():
    with pytest.raises(ValueError, match="cannot be met"):
        prunekit.plan(_net(), torch.randn(1, 3, 8, 8), macs=0.001)


def test_inputs_that_do_not_fit():
    with pytest.raises(ValueError, match="example inputs"):
        prunekit.plan(_net(), torch.randn(1, 5, 8, 8))


def test_unknown_criterion_and_bad_options():
    with pytest.raises(PrunekitError, match="criterion"):
        prunekit.plan(_net(), torch.randn(1, 3, 8, 8), criterion="nope")
    with pytest.raises(PrunekitError, match="round_to"):
        prunekit.plan(_net(), torch.randn(1, 3, 8, 8), round_to=0)
    with pytest.raises(PrunekitError, match="no module named"):
        prunekit.plan(_net(), torch.randn(1, 3, 8, 8), ignored_layers=["missing"])
    with pytest.raises(PrunekitError, match="at most one"):
        prunekit.plan(_net(), torch.randn(1, 3, 8, 8), macs=0.5, params=0.5)
