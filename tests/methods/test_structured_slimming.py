"""Network Slimming (Liu et al., ICCV 2017): the sparsity term, the global threshold, the plan."""
import numpy as np
import pytest
import torch

from prunekit.methods.structured import (SparsityCallback, add_sparsity_grad, channels_below, global_threshold,
                                         slimming_plan)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))


def test_sparsity_gradient_is_exactly_lambda_sign_gamma():
    net = _net()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.5, -0.25, 0.0, 2.0]))
    net(torch.randn(2, 1, 6, 6)).sum().backward()
    before = {n: p.grad.clone() for n, p in net.named_parameters()}

    class T:
        model = net

    SparsityCallback(1e-3).on_after_backward(T())
    for n, p in net.named_parameters():
        if n in ("1.weight", "4.weight"):
            # lambda * sign(gamma) is exact (sign is -1, 0 or 1), so the sum must match bit for bit
            assert torch.equal(p.grad, before[n] + 1e-3 * torch.sign(p.detach()))
        else:
            assert torch.equal(p.grad, before[n])
    assert (net[1].weight.grad - before["1.weight"])[2] == 0.0  # sign(0) = 0


def test_sparsity_callback_runs_in_the_trainer():
    from prunekit.data import load_dataset
    from prunekit.train import TrainConfig, fit

    d = load_dataset("digits")
    net = _net()
    seen = []

    class Spy(SparsityCallback):
        def on_after_backward(self, trainer):
            g = trainer.model[1].weight.grad.clone()
            super().on_after_backward(trainer)
            seen.append(torch.equal(trainer.model[1].weight.grad,
                                    g + self.lam * torch.sign(trainer.model[1].weight.detach())))

    fit(net, d, TrainConfig(epochs=1, batch_size=512, progress=False, eval_every=0, checkpoint_every=0,
                            augment=False), callbacks=[Spy(0.1)])
    assert seen and all(seen)


def test_global_threshold_and_channels_below():
    assert global_threshold([np.array([0.1, -0.4]), np.array([0.2, 0.3])], 50) == pytest.approx(0.25)
    assert channels_below([0.5, 0.01, 0.02], 0.1) == [1, 2]
    assert channels_below([0.01, 0.02, 0.03], 0.1, min_keep=2) == [0]
    with pytest.raises(ValueError):
        global_threshold([], 50)


def test_slimming_plan_removes_channels_below_the_global_percentile():
    net = _net().eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.9, 0.01, 0.8, 0.02]))
        net[4].weight.copy_(torch.tensor([0.03, 0.7, 0.6, 0.5]))
    x = torch.randn(1, 1, 6, 6)
    p = slimming_plan(net, x, percentile=40.0)
    removed = {g.name: g.removed for g in p.groups if g.removed}
    assert removed == {"0": [1, 3], "3": [0]}
    small = p.apply(net)
    assert small[0].out_channels == 2 and small[3].out_channels == 3 and small[8].in_features == 3
    assert p.info["threshold"] == pytest.approx(np.percentile([0.9, 0.01, 0.8, 0.02, 0.03, 0.7, 0.6, 0.5], 40))


@pytest.mark.slow
def test_slimming_on_preactivation_resnet():
    from prunekit import models

    net = models.create("preresnet164", num_classes=10, in_channels=1, input_size=(28, 28), widths=(4, 4, 8))
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=g)
    p = slimming_plan(net.eval(), torch.randn(1, 1, 28, 28), 40.0)
    assert p.num_removed > 0
    assert p.apply(net)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
