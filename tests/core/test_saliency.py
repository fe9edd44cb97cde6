"""SNIP / GraSP / SynFlow saliencies (prunekit.saliency) against hand computations on tiny networks."""
import math

import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.saliency import grasp_scores, saliency, score_masks, snip_scores, synflow_masks, synflow_scores


def tiny_mlp(seed=0, bias=True):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3, bias=bias), torch.nn.Tanh(), torch.nn.Linear(3, 2, bias=bias))


def batches(seed=1, n=2):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 4, generator=g), torch.randint(0, 2, (5,), generator=g)) for _ in range(n)]


def test_snip_is_abs_grad_times_weight():
    net, data = tiny_mlp(), batches()
    s = snip_scores(net, data)
    # by hand: mean of the per-batch losses, one backward
    ref = tiny_mlp()
    loss = sum(torch.nn.functional.cross_entropy(ref(x), y) for x, y in data) / len(data)
    loss.backward()
    for name, p in ref.named_parameters():
        assert torch.allclose(s[name], (p.grad * p.detach()).abs(), atol=1e-7), name
    assert all(p.grad is None for p in net.parameters())   # the model itself is not touched


def test_synflow_two_layer_linear_closed_form():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.Linear(4, 2, bias=False))
    w1, w2 = net[0].weight.detach().double(), net[1].weight.detach().double()
    s = synflow_scores(net, torch.zeros(7, 3))
    # R = 1^T |W2| |W1| 1, so dR/d|W1|_ij = sum_k |W2|_ki and dR/d|W2|_ki = sum_j |W1|_ij
    exp1 = w1.abs() * w2.abs().sum(0)[:, None]
    exp2 = w2.abs() * w1.abs().sum(1)[None, :]
    assert torch.allclose(s["0.weight"], exp1, rtol=1e-12)
    assert torch.allclose(s["1.weight"], exp2, rtol=1e-12)
    # conservation (Tanaka et al., Theorem 2): each layer's scores sum to R
    r = (w2.abs() @ w1.abs()).sum()
    assert float(s["0.weight"].sum()) == pytest.approx(float(r)) == pytest.approx(float(s["1.weight"].sum()))


def test_grasp_is_weight_times_hessian_gradient():
    net, data = tiny_mlp(3), batches(4, 1)
    x, y = data[0]
    T = 2.0
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in net.parameters()])

    def loss_of(flat):
        params, i = {}, 0
        for n, shp in zip(names, shapes):
            k = math.prod(shp)
            params[n] = flat[i:i + k].reshape(shp)
            i += k
        out = torch.func.functional_call(net, params, (x,))
        return torch.nn.functional.cross_entropy(out / T, y)

    g = torch.autograd.functional.jacobian(loss_of, flat0)
    H = torch.autograd.functional.hessian(loss_of, flat0)
    expected = flat0 * (H @ g)                          # importance = theta * Hg = -S(-theta) of the paper
    s = grasp_scores(net, data, temperature=T)
    got = torch.cat([s[n].flatten() for n in names])
    assert torch.allclose(got, expected, atol=1e-6)
    # the paper removes the LARGEST -theta*Hg, i.e. our lowest: the first entry masked is argmin(theta*Hg)
    m = score_masks(s, 1 / got.numel())
    masked = torch.cat([~m[n].flatten() for n in names])
    assert int(masked.nonzero()) == int(torch.argmin(expected))


def test_score_masks_exact_count_and_existing_never_revived():
    s = {"a": torch.tensor([[3.0, 1.0], [2.0, 5.0]]), "b": torch.tensor([4.0, 0.5, 6.0])}
    m = score_masks(s, 0.4)                                # 7 entries: round(2.8) = 3 removed
    assert sum(int((~v).sum()) for v in m.values()) == 3
    assert m["a"].tolist() == [[True, False], [False, True]] and m["b"].tolist() == [True, False, True]
    existing = {"a": torch.tensor([[True, True], [True, False]]), "b": torch.ones(3, dtype=torch.bool)}
    m2 = score_masks(s, 2 / 7, existing=existing)        # 5.0 was masked: it goes first, then 0.5
    assert m2["a"].tolist() == [[True, True], [True, False]] and m2["b"].tolist() == [True, False, True]
    with pytest.raises(PrunekitError, match="sparsity"):
        score_masks(s, 1.0)


def test_synflow_iterative_masks_hit_the_count_and_one_round_equals_one_shot():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    names = ["0.weight", "2.weight"]
    m = synflow_masks(net, torch.zeros(1, 6), 0.75, rounds=5, names=names)
    assert sum(int((~v).sum()) for v in m.values()) == round(0.75 * (48 + 24))
    one = synflow_masks(net, torch.zeros(1, 6), 0.75, rounds=1, names=names)
    ref = score_masks(synflow_scores(net, torch.zeros(1, 6), names), 0.75)
    assert all(torch.equal(one[n], ref[n]) for n in names)


def test_saliency_dispatch_and_errors():
    net = tiny_mlp()
    assert set(saliency("synflow", net, example_input=torch.zeros(1, 4))) == {n for n, _ in net.named_parameters()}
    with pytest.raises(PrunekitError, match="calibration batches"):
        snip_scores(net, [])
    with pytest.raises(PrunekitError, match="unknown saliency"):
        saliency("nope", net)
    with pytest.raises(PrunekitError, match="no parameter named"):
        snip_scores(net, batches(), names=["missing.weight"])
