"""surgery.replace_module: the one helper that swaps submodules."""
import pytest
import torch.nn as nn

from prunekit.errors import PrunekitError
from prunekit.surgery import replace_module


def test_replace_nested_returns_old():
    net = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 1)))
    old_relu = net[1][0]
    new = nn.Tanh()
    assert replace_module(net, "1.0", new) is old_relu
    assert net[1][0] is new and net.get_submodule("1.0") is new
    assert [n for n, _ in net.named_modules()] == ["", "0", "1", "1.0", "1.1"]


def test_replace_top_level():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    replace_module(net, "1", nn.Identity())
    assert type(net[1]) is nn.Identity


@pytest.mark.parametrize("name, match", [("", "itself"), ("2", "'2'"), ("0.x", "'0.x'")])
def test_replace_errors(name, match):
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    with pytest.raises(PrunekitError, match=match):
        replace_module(net, name, nn.Identity())
    assert type(net[1]) is nn.ReLU
