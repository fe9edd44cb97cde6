"""SCP (Kang & Han, ICML 2020): the BN+ReLU mask probability in closed form, the relaxed mask, the regulariser,
and the removed channels exactly those whose masks are off."""
import math

import numpy as np
import pytest
import torch

from prunekit.measure import count_macs
from prunekit.methods.structured._common import skeleton
from prunekit.methods.structured.scp import (SCPCallback, group_probabilities, mask_probability, masks_off,
                                             relaxed_mask, scp_groups, scp_plan)


def _phi(z):
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def test_mask_probability_is_the_closed_form():
    gamma = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 0.0, 3.0])
    beta = torch.tensor([0.0, 1.0, -1.0, 2.0, -2.0, 0.0, -0.3])
    want = [_phi(b / abs(g)) if g != 0 else (1.0 if b > 0 else 0.0 if b < 0 else 0.5)
            for g, b in zip(gamma.tolist(), beta.tolist())]
    assert np.allclose(mask_probability(gamma, beta).numpy(), want, atol=1e-7)
    # it is the probability that relu(gamma * x + beta) is non-zero for x ~ N(0, 1): check by sampling
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    frac = float(((2.0 * x - 1.0) > 0).float().mean())
    assert frac == pytest.approx(_phi(-0.5), abs=0.005)


def test_relaxed_mask_formula_and_limits():
    p, u, tau = torch.tensor([0.2, 0.7]), torch.tensor([0.5, 0.9]), 0.5
    want = [1 / (1 + math.exp(-(math.log(pi / (1 - pi)) + math.log(ui / (1 - ui))) / tau))
            for pi, ui in zip(p.tolist(), u.tolist())]
    assert np.allclose(relaxed_mask(p, tau, u).numpy(), want, atol=1e-6)
    # with u = 1/2 the noise vanishes; a tiny temperature gives the hard mask 1[p > 1/2]
    assert relaxed_mask(p, 1e-4, torch.full((2,), 0.5)).tolist() == [0.0, 1.0]


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))


def _set_bn(net, g1, b1, g2, b2):
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor(g1))
        net[1].bias.copy_(torch.tensor(b1))
        net[4].weight.copy_(torch.tensor(g2))
        net[4].bias.copy_(torch.tensor(b2))


def test_removed_channels_are_exactly_the_masks_off():
    net, x = _net(), torch.randn(1, 1, 6, 6)
    _set_bn(net, [1.0, 1.0, 0.5, 2.0], [0.5, -1.0, -0.1, 0.0], [1.0, 1.0, 1.0, 1.0], [-3.0, 1.0, -0.2, 2.0])
    groups = scp_groups(net, skeleton(net, x))
    assert sorted(groups.values()) == ["1", "4"]
    probs = group_probabilities(net, groups)
    by_bn = {groups[g]: p for g, p in probs.items()}
    assert np.allclose(by_bn["1"].detach().numpy(), [_phi(0.5), _phi(-1.0), _phi(-0.2), 0.5], atol=1e-7)
    plan = scp_plan(net, x, groups, threshold=0.5, macs=None)
    removed = {g.name: g.removed for g in plan.groups if g.removed}
    # off: Phi(beta/|gamma|) < 0.5, i.e. beta < 0
    assert removed == {"0": [1, 2], "3": [0, 2]}
    small = plan.apply(net)
    assert small[0].out_channels == 2 and small[3].out_channels == 2 and small[8].in_features == 2
    # every mask off: the most probable channel of the group stays
    assert masks_off({0: torch.tensor([0.1, 0.3, 0.2])}, 0.5) == {0: [0, 2]}


def test_macs_target_raises_the_threshold_until_met():
    net, x = _net(), torch.randn(1, 1, 6, 6)
    _set_bn(net, [1.0] * 4, [0.4, 0.3, 0.2, 0.1], [1.0] * 4, [0.8, 0.7, 0.6, 0.5])
    groups = scp_groups(net, skeleton(net, x))
    plan = scp_plan(net, x, groups, threshold=0.5, macs=0.5, tolerance=0.0)
    kept = count_macs(plan.apply(net), x).total / count_macs(net, x).total
    assert kept <= 0.5
    thr = plan.info["threshold"]
    probs = {g: p.detach() for g, p in group_probabilities(net, groups).items()}
    assert {g.id: g.removed for g in plan.groups if g.removed} == masks_off(probs, thr)
    # the threshold is the smallest that meets the budget: one probability lower misses it
    lower = max(float(v) for p in probs.values() for v in p if float(v) < thr)
    looser = scp_plan(net, x, groups, threshold=lower, macs=None)
    assert count_macs(looser.apply(net), x).total / count_macs(net, x).total > 0.5


def test_callback_masks_bn_outputs_and_adds_the_regulariser():
    net, x = _net(), torch.randn(3, 1, 6, 6)
    groups = scp_groups(net, skeleton(net, x))
    cb = SCPCallback(net, groups, lam=0.25, temperature=0.5, seed=0)
    net.train()
    plain = net[1](net[0](x))
    cb.attach()
    try:
        masked = net[1](net[0](x))
        m = (masked / plain)[0, :, 0, 0]
        assert ((m > 0) & (m < 1)).all()       # a soft mask in (0, 1), one per channel
        assert torch.allclose(masked, plain * m.reshape(1, -1, 1, 1), atol=1e-6)
        net.eval()
        hooked_eval = net[1](net[0](x))
    finally:
        cb.detach()
    assert torch.equal(hooked_eval, net[1](net[0](x)))   # no mask at evaluation
    probs = torch.cat([mask_probability(net[1].weight, net[1].bias), mask_probability(net[4].weight, net[4].bias)])
    reg = cb.extra_loss(None, None, None)
    assert float(reg) == pytest.approx(0.25 * float(probs.mean()), rel=1e-6)
    reg.backward()
    assert net[1].bias.grad is not None and (net[1].bias.grad > 0).all()   # the penalty pushes beta down


def test_a_model_without_batchnorm_is_refused(digits_slice):
    from prunekit import models
    from prunekit.methods.structured.scp import SCPConfig, scp

    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    with pytest.raises(Exception, match="BatchNorm"):
        scp(net, digits_slice(50, 20), SCPConfig(mask_epochs=0))
