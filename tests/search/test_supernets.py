"""AutoSlim (sandwich rule, greedy slimming), MetaPruning's PruningNet, BN recalibration, parallel scoring."""
import copy

import pytest
import torch
from torch import nn

from prunekit import models
from prunekit.errors import PrunekitError
from prunekit.search import (EvalData, ParallelScorer, PruningNet, SandwichRule, SearchSpace, greedy_slim,
                             recalibrate_bn)
from prunekit.train import TrainConfig, Trainer


@pytest.fixture(scope="module")
def net_and_space(digits):
    torch.manual_seed(0)
    m = models.create("convnet3", num_classes=10, in_channels=1, input_size=digits.image_size)
    return m, SearchSpace.build(m, digits.train_x[:1], ratios=(0.25, 0.5, 1.0))


def test_recalibrate_bn_is_the_plain_batch_mean():
    bn = nn.BatchNorm2d(3, momentum=0.1)
    net = nn.Sequential(bn).eval()
    b1, b2 = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2) + 1.0
    assert recalibrate_bn(net, [b1, b2]) == 2
    assert torch.allclose(bn.running_mean, (b1.mean((0, 2, 3)) + b2.mean((0, 2, 3))) / 2, atol=1e-6)
    assert bn.momentum == 0.1 and not net.training


def test_greedy_slim_shrinks_to_budget(net_and_space):
    _, space = net_and_space
    budget = space.macs(space.full) * 0.5

    def score_many(encs):  # prefers keeping group 0 wide
        return [{"score": float(e[0] * 10 + sum(e))} for e in encs]

    best = greedy_slim(space, score_many, lambda e: space.macs(e) <= budget, progress=False)
    enc = tuple(best["encoding"])
    assert space.macs(enc) <= budget
    assert enc[0] == space.full[0]


def test_sandwich_rule_trains_all_widths(digits, net_and_space):
    m, space = net_and_space
    net = copy.deepcopy(m)
    w0 = [p.detach().clone() for p in net.parameters()]
    cfg = TrainConfig(epochs=1, batch_size=256, lr=0.05, augment=False, eval_every=0, progress=False)
    cb = SandwichRule(space, num_random=1, seed=0)
    calls = []
    orig = cb.extra_loss
    cb.extra_loss = lambda t, o, y: calls.append(1) or orig(t, o, y)
    Trainer(net, digits.holdout(0.2), cfg, callbacks=[cb]).fit()
    assert len(calls) > 0
    assert any(not torch.equal(a, b) for a, b in zip(w0, net.parameters()))


def test_pruningnet_generates_and_trains_only_meta_and_shared(digits, net_and_space):
    m, space = net_and_space
    pnet = PruningNet(m, space, hidden=8, seed=0)
    pnet.train()
    out = pnet(digits.train_x[:16])
    out.sum().backward()
    gen = {n for n, *_ in pnet._generated}
    for n, p in pnet.net.named_parameters():
        assert (p.grad is None) == (n in gen), n  # generated weights get no gradient; the rest do
    assert all(p.grad is not None for p in pnet.meta.parameters())
    # a generated sub-network, pruned, computes what the PruningNet computes for that encoding
    enc = space.uniform(0.5)
    pnet.eval()
    pnet.encoding = enc
    small = space.plan(enc).apply(pnet.subnet(enc)).eval()
    with torch.no_grad():
        assert torch.allclose(pnet(digits.train_x[:8]), small(digits.train_x[:8]), atol=1e-5)


def test_pruningnet_starts_near_the_checkpoint(net_and_space):
    m, space = net_and_space
    pnet = PruningNet(m, space, hidden=8)
    sub = pnet.subnet(space.full)
    w = dict(m.named_parameters())
    for n, p in sub.named_parameters():
        assert torch.allclose(p, w[n], atol=0.1), n


def test_parallel_scoring_equals_serial(digits, net_and_space):
    m, space = net_and_space
    data = EvalData(digits.train_x[:256], digits.test_x[:100], digits.test_y[:100], calib_batches=2)
    nets = [space.plan(space.uniform(r)).apply(m) for r in (0.25, 1.0)]
    with ParallelScorer(data, workers=1) as s:
        serial = s.map(nets)
    with ParallelScorer(data, workers=2) as s:
        par = s.map(nets)
    assert serial == par


def test_bad_workers_raise():
    with pytest.raises(PrunekitError, match="workers"):
        ParallelScorer(None, workers=0)



def test_greedy_slim_with_several_moves_per_step(net_and_space):
    _, space = net_and_space
    budget = space.macs(space.full) * 0.3
    steps = []

    def score_many(encs):
        steps.append(len(encs))
        return [{"score": float(sum(e))} for e in encs]

    best = greedy_slim(space, score_many, lambda e: space.macs(e) <= budget, progress=False, moves=2)
    assert space.macs(tuple(best["encoding"])) <= budget
    one = []
    greedy_slim(space, lambda encs: one.append(1) or [{"score": float(sum(e))} for e in encs],
                lambda e: space.macs(e) <= budget, progress=False, moves=1)
    assert len(steps) < len(one)
