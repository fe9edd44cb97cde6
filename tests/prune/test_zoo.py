"""Every zoo model: the pruned model equals the masked one, and reloads from its checkpoint."""
from __future__ import annotations

import pytest
import torch

import prunekit
from prunekit import models
from tests.graph.helpers import randomize, rel_err


def _zoo():
    return models.list_models()


@pytest.mark.parametrize("name", _zoo())
def test_zoo_apply_equals_masks(name):
    info = models.model_info(name)
    torch.manual_seed(0)
    net = randomize(models.create(name, num_classes=10, in_channels=3))
    x = torch.randn(1, 3, *info.input_size)
    plan = prunekit.plan(net, x, criterion="l2", ratio=0.5, ignored_layers=None)
    assert plan.num_removed > 0
    small, masked = plan.apply(net), plan.apply_masks(net)
    with torch.no_grad():
        a, b, ref = small(x), masked(x), net(x)
    assert rel_err(a, b) < 1e-4
    assert a.shape == ref.shape
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())
    assert small.prunekit_spec.transforms[-1]["kind"] == "prune_plan"
