"""AutoCompress (Liu et al., AAAI 2020): the annealing rule, purification of dead channels, the search to budget."""
import math
import random

import pytest
import torch

from prunekit.engine import plan_from_channels
from prunekit.errors import ConfigError
from prunekit.graph import analyze
from prunekit.methods.structured import AutoCompressConfig, anneal_accept, autocompress, dead_channels
from prunekit.methods.structured.autocompress import lowest_filters, zero_filters


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 3, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(3 * 5 * 5, 2)).eval()


def test_acceptance_is_exp_minus_delta_over_t_for_a_seeded_draw():
    u = random.Random(7).random()
    T = 0.5
    d_accept, d_reject = -T * math.log(u) * 0.99, -T * math.log(u) * 1.01   # exp(-d/T) just above / below u
    assert anneal_accept(d_accept, T, random.Random(7)) is True
    assert anneal_accept(d_reject, T, random.Random(7)) is False
    for d in (0.01, 0.3, 1.0, 3.0):
        assert anneal_accept(d, T, random.Random(7)) == (u < math.exp(-d / T))
    rng = random.Random(7)
    assert anneal_accept(-1.0, T, rng) is True and rng.random() == u    # a better move draws nothing


def test_purification_removes_exactly_the_dead_channels():
    net = _net()
    x = torch.randn(3, 1, 5, 5)
    with torch.no_grad():
        net[0].weight[1].zero_()
        net[0].bias[1] = 0.0            # channel 1 writes zeros: dead
        net[0].weight[3].zero_()        # channel 3: zero filter but bias 0.5 -> constant, NOT dead
        net[0].bias[3] = 0.5
        net[2].weight[:, 2].zero_()     # channel 2 is never read: dead
        net[2].weight[0].zero_()        # conv2 filter 0 is zero but its bias is not -> alive
    groups = analyze(net, x[:1]).groups
    tensors = dict(net.named_parameters())
    dead = dead_channels(tensors, groups)
    assert dead == {groups[0].id: [1, 2]}
    small = plan_from_channels(net, x[:1], dead).apply(net)
    assert small[0].out_channels == 2 and small[2].in_channels == 2
    torch.testing.assert_close(small(x), net(x))


def test_zero_filters_and_lowest_filters():
    net = _net()
    groups = analyze(net, torch.zeros(1, 1, 5, 5)).groups
    tensors = dict(net.named_parameters())
    out = zero_filters(tensors, groups, {groups[0].id: [0, 2]})
    assert out["0.weight"][[0, 2]].abs().sum() == 0 and out["0.bias"][[0, 2]].abs().sum() == 0
    assert torch.equal(out["0.weight"][[1, 3]], tensors["0.weight"][[1, 3]])
    assert torch.equal(out["2.weight"], tensors["2.weight"])            # the readers are untouched
    assert dead_channels(out, groups) == {groups[0].id: [0, 2]}
    import numpy as np
    assert lowest_filters(np.array([3.0, 1.0, 2.0, 1.0]), 0.5) == [1, 3]
    assert lowest_filters(np.array([3.0, 1.0]), 1.0) == [1]                # never all channels


def test_search_meets_the_budget_and_removes_what_purification_found(digits_slice):
    from prunekit import models
    from prunekit.measure import count_macs

    data = digits_slice(256, 64)
    torch.manual_seed(0)
    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    cfg = AutoCompressConfig(macs=0.4, rounds=2, iterations=4, eval_images=64, admm_epochs=0)
    _, p = autocompress(net, data, cfg, progress=False)
    x = data.train_x[:1]
    kept = count_macs(p.apply(net), x).total / count_macs(net, x).total
    assert kept <= 0.4 + 1e-9 and kept > 0.3
    assert {str(g.id): len(g.removed) for g in p.groups if g.removed} == p.info["purified"]
    assert len(p.info["search"]) == 8 and {r["round"] for r in p.info["search"]} == {0, 1}
    assert [round(r["target"], 6) for r in p.info["search"][::4]] == [0.7, 0.4]


def test_config_errors():
    with pytest.raises(ConfigError):
        AutoCompressConfig(cooling=1.5).check()
    with pytest.raises(Exception, match="MACs target"):
        AutoCompressConfig(macs=None, ratio=0.3).check()


def test_unreachable_target_warns(digits_slice):
    from prunekit import models

    data = digits_slice(64, 16)
    torch.manual_seed(0)
    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    with pytest.warns(UserWarning, match="out of reach"):
        autocompress(net, data, AutoCompressConfig(macs=0.1, max_rate=0.2, rounds=1, iterations=1, eval_images=16),
                     progress=False)


def test_admm_step_prunes_at_least_the_searched_rates_and_zeroes_those_filters(digits_slice):
    from prunekit import models
    from prunekit.methods.admm import keep_count

    data = digits_slice(256, 64)
    torch.manual_seed(0)
    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    cfg = AutoCompressConfig(macs=0.5, rounds=1, iterations=3, eval_images=64, admm_epochs=1)
    trained, p = autocompress(net, data, cfg, progress=False)
    assert len(p.info["admm"]) >= 1  # the ADMM log: one entry per ADMM epoch at least
    assert all(torch.equal(before[k], v) for k, v in net.named_parameters())  # the caller's model is untouched
    assert any(not torch.equal(before[k], v) for k, v in trained.named_parameters())  # ADMM trained the copy
    params = dict(trained.named_parameters())
    rates = {int(k): r for k, r in p.info["rates"].items()}
    for g in p.groups:
        r = rates.get(g.id, 0.0)
        if r <= 0:
            continue
        # ADMM's hard prune removes size - keep_count(size, rate) filters; purification may add dead ones
        assert len(g.removed) >= g.size - keep_count(g.size, r)
        for m in g.members:
            if m.role == "out" and m.param in params and m.param.endswith(".weight"):
                w = params[m.param].detach()
                for ch in g.removed:  # every removed filter is exactly zero in the masked model
                    idx = [int(i) for i, c in zip(m.indices, m.channels) if c == ch]
                    assert torch.count_nonzero(w.index_select(m.dim, torch.tensor(idx))) == 0
