"""Criteria: exact scores on tiny tensors, and every registered criterion yields a valid plan."""
from __future__ import annotations

import pytest
import torch

import prunekit
from prunekit.criteria import CRITERIA, GroupTensors
from tests.graph.helpers import randomize, rel_err

W = torch.tensor([[1.0, -2.0], [0.0, 3.0], [4.0, 0.0]])  # 3 channels, producer


def _g(**kw):
    base = dict(weights=[W, torch.tensor([[0.5], [-1.0], [2.0]])], grads=[None, None], roles=["out", "norm"],
                params=["conv.weight", "bn.weight"])
    base.update(kw)
    return GroupTensors(**base)


def test_l1_l2_exact():
    assert CRITERIA.get("l1")(_g()).tolist() == [3.0, 3.0, 4.0]
    assert torch.allclose(CRITERIA.get("l2")(_g()), torch.tensor([5 ** 0.5, 3.0, 4.0]))


def test_bn_scale_uses_gamma():
    assert CRITERIA.get("bn_scale")(_g()).tolist() == [0.5, 1.0, 2.0]
    no_norm = _g(weights=[W], grads=[None], roles=["out"], params=["conv.weight"])
    assert CRITERIA.get("bn_scale")(no_norm).tolist() == [3.0, 3.0, 4.0]  # falls back to l1


def test_fpgm_distance_sum():
    d = torch.cdist(W, W).sum(1)
    assert torch.allclose(CRITERIA.get("fpgm")(_g()), d)


def test_taylor_group_form():
    grads = [torch.ones_like(W), torch.tensor([[2.0], [2.0], [2.0]])]
    s = CRITERIA.get("taylor")(_g(grads=grads))
    # (sum w*g)^2: channel 0: (1-2 + 0.5*2)^2 = 0; channel 1: (3 - 2)^2 = 1; channel 2: (4 + 4)^2 = 64
    assert s.tolist() == [0.0, 1.0, 64.0]


def test_lamp_and_random():
    lamp = CRITERIA.get("lamp")(_g())
    assert lamp.argmax() == 2 and float(lamp.max()) == 1.0
    r1, r2 = CRITERIA.get("random")(_g()), CRITERIA.get("random")(_g())
    assert torch.equal(r1, r2)


@pytest.mark.parametrize("name", CRITERIA.names())
def test_every_criterion_plans_and_stays_exact(name):
    from prunekit import models

    torch.manual_seed(0)
    net = randomize(models.create("resnet20", num_classes=10, in_channels=3))
    x = torch.randn(4, 3, 32, 32)
    data = [(x, torch.tensor([0, 1, 2, 3]))]
    plan = prunekit.plan(net, x, criterion=name, ratio=0.5, data=data)
    assert plan.num_removed > 0 and plan.info["criterion"] == name
    small, masked = plan.apply(net), plan.apply_masks(net)
    with torch.no_grad():
        assert rel_err(small(x), masked(x)) < 1e-4


def test_criterion_changes_choice():
    from prunekit import models

    torch.manual_seed(0)
    net = randomize(models.create("resnet20", num_classes=10, in_channels=3))
    x = torch.randn(1, 3, 32, 32)
    a = prunekit.plan(net, x, criterion="l1", ratio=0.5)
    b = prunekit.plan(net, x, criterion="random", ratio=0.5)
    assert [g.removed for g in a.groups] != [g.removed for g in b.groups]
    with torch.no_grad():
        net.conv1.weight[3].mul_(100.0)  # a strong filter must survive l1
    c = prunekit.plan(net, x, criterion="l1", ratio=0.5)
    g = next(g for g in c.groups if g.name == "conv1")
    assert 3 not in g.removed
