"""DCFF (Lin et al., TPAMI 2023): the distribution, the KL importance and the fused filter against the paper's
formulas computed by hand, and the compact network equal to the fused network."""
import math

import numpy as np
import pytest
import torch

from prunekit.methods.structured._common import skeleton
from prunekit.methods.structured.dcff import (DCFFConfig, bake, effective_params, fuse_filters,
                                              fused_network, fusion_groups, keep_top, kl_importance,
                                              similarity_distribution, temperature, update_groups)

# three 2-D filters at distances D01 = 3, D02 = 4, D12 = 5
W = [[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]
D = [[0.0, 3.0, 4.0], [3.0, 0.0, 5.0], [4.0, 5.0, 0.0]]


def _p_by_hand(t):
    rows = []
    for k in range(3):
        e = [math.exp(-t * D[k][j]) for j in range(3)]
        rows.append([v / sum(e) for v in e])
    return rows


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_distribution_kl_and_fusion_equal_the_formulas(t):
    w = torch.tensor(W)
    p = _p_by_hand(t)
    assert np.allclose(similarity_distribution(w, t).numpy(), p, atol=1e-12)
    # I_k = 1/c sum_g sum_j p_k^j log(p_k^j / p_g^j)
    imp = [sum(sum(p[k][j] * math.log(p[k][j] / p[g][j]) for j in range(3)) for g in range(3)) / 3
           for k in range(3)]
    assert np.allclose(kl_importance(w, t).numpy(), imp, atol=1e-12)
    # F_k = sum_j p_k^j W_j
    fused = [[sum(p[k][j] * W[j][i] for j in range(3)) for i in range(2)] for k in range(3)]
    got = fuse_filters(w.double(), similarity_distribution(w, t))
    assert np.allclose(got.numpy(), fused, atol=1e-12)


def test_importance_keeps_the_most_distinct_filters():
    # filter 2 is farthest from the others, filter 0 the closest to both: keep 2 then 1
    imp = kl_importance(torch.tensor(W), 0.5).numpy()
    assert imp[2] > imp[1] > imp[0]
    assert keep_top(imp, 2) == [1, 2]
    with pytest.raises(Exception, match="n_keep"):
        keep_top(imp, 0)


def test_temperature_follows_the_annealing_formula():
    E, ts, te = 4, 1.0, 1e4
    e = 1
    g = (1 - math.exp(-e)) / (1 + math.exp(-e)) * (1 + math.exp(-E)) / (1 - math.exp(-E))
    assert temperature(e, E, ts, te) == pytest.approx(ts + (te - ts) * g, rel=1e-12)
    assert temperature(0, E, ts, te) == ts and temperature(E, E, ts, te) == te
    # a large temperature makes the distribution one-hot: the fused filter is the filter itself
    assert np.allclose(fuse_filters(torch.tensor(W).double(), similarity_distribution(torch.tensor(W), 1e4)).numpy(),
                       W, atol=1e-12)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                               torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(2, 4))


def _groups(net, x):
    base = skeleton(net, x)
    gid = next(g.id for g in base.groups if g.name == "0")
    return gid, fusion_groups(net, base, {gid: 1})


def test_fused_layer_is_the_formula_and_removed_channels_are_zero():
    net, x = _net(), torch.randn(2, 1, 5, 5)
    gid, groups = _groups(net, x)
    fg = groups[0]
    assert (fg.group, fg.size, fg.keep) == (gid, 3, 2)
    assert sorted(fg.fused) == [("0.bias", 0), ("0.weight", 0)] and sorted(fg.masked) == [("1.bias", 0), ("1.weight", 0)]
    t = 2.0
    params = dict(net.named_parameters())
    update_groups(params, groups, t)
    w = net[0].weight.detach().double().reshape(3, -1)
    d = [[float((w[k] - w[j]).norm()) for j in range(3)] for k in range(3)]
    p = [[math.exp(-t * d[k][j]) / sum(math.exp(-t * d[k][g]) for g in range(3)) for j in range(3)] for k in range(3)]
    imp = [sum(sum(p[k][j] * math.log(p[k][j] / p[g][j]) for j in range(3)) for g in range(3)) / 3 for k in range(3)]
    kept = sorted(np.argsort(imp)[::-1][:2].tolist())
    assert fg.kept == kept
    eff = effective_params(params, groups)
    removed = ({0, 1, 2} - set(kept)).pop()
    for k in kept:
        want = sum(p[k][j] * w[j] for j in range(3))
        assert torch.allclose(eff["0.weight"][k].double().reshape(-1), want, atol=1e-6)
        want_b = sum(p[k][j] * float(net[0].bias.detach()[j]) for j in range(3))
        assert float(eff["0.bias"].detach()[k]) == pytest.approx(want_b, abs=1e-6)
    assert float(eff["0.weight"][removed].abs().sum()) == 0.0 and float(eff["0.bias"].detach()[removed]) == 0.0
    assert float(eff["1.weight"].detach()[removed]) == 0.0 and float(eff["1.bias"].detach()[removed]) == 0.0
    assert torch.equal(eff["1.weight"][kept], net[1].weight[kept])


def test_compact_network_equals_the_fused_network():
    net, x = _net(), torch.randn(4, 1, 5, 5)
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    _, groups = _groups(net, x)
    dense, plan = bake(net, groups, x, t_end=3.0)   # a moderate temperature: the fusion really mixes filters
    small = plan.apply(dense)
    assert small[0].out_channels == 2 and small[3].in_channels == 2
    fused = fused_network(net, groups).eval()
    with torch.no_grad():
        assert torch.allclose(small.eval()(x), fused(x), atol=1e-5)
        assert torch.allclose(dense.eval()(x), fused(x), atol=1e-5)
        # the compact network's filters are the fused kept filters
        kept = groups[0].kept
        want = effective_params(dict(net.named_parameters()), groups)["0.weight"][kept]
        assert torch.allclose(small[0].weight, want.float(), atol=1e-6)
    # and the fused network is differentiable in every original filter, removed ones included
    fused.train()(x).sum().backward()
    assert all(float(net[0].weight.grad[j].abs().sum()) > 0 for j in range(3))


def test_config_rejects_a_decreasing_temperature():
    from prunekit.errors import ConfigError

    with pytest.raises(ConfigError, match="t_end"):
        DCFFConfig(t_start=10.0, t_end=1.0).check()



def test_step_annealing_follows_the_schedule_at_fractional_epochs():
    from prunekit.methods.structured.dcff import DCFFCallback

    net, x = _net(), torch.randn(1, 1, 5, 5)
    _, groups = _groups(net, x)
    cb = DCFFCallback(net, groups, epochs=2, t_start=1.0, t_end=100.0, per_step=True)
    cb.on_epoch_begin(None, 0)
    kept = list(groups[0].kept)
    w = net[0].weight.detach().reshape(3, -1)
    assert torch.allclose(groups[0].dist, similarity_distribution(w, 1.0))

    class Trainer:
        steps_per_epoch = 4

    cb.on_step_end(Trainer(), 2)   # half of the first epoch
    t = temperature(0.5, 2, 1.0, 100.0)
    assert 1.0 < t < 100.0 and cb.t_last == t
    assert torch.allclose(groups[0].dist, similarity_distribution(w, t))
    assert groups[0].kept == kept   # the kept set changes only at an epoch's start
    # anneal="epoch" leaves the distribution alone between epochs
    cb2 = DCFFCallback(net, groups, epochs=2, t_start=1.0, t_end=100.0, per_step=False)
    cb2.on_epoch_begin(None, 0)
    cb2.on_step_end(Trainer(), 2)
    assert torch.allclose(groups[0].dist, similarity_distribution(w, 1.0))
