"""sparsity_report, apply_masks and MaskGuard: exact counts, and masks surviving momentum + weight decay."""
import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.sparse import MaskGuard, apply_masks, magnitude_masks, sparsity_report, zero_masked_grads


def test_report_exact():
    net = nn.Sequential(nn.Linear(4, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.0, 1, 0, 2], [0, 0, 0, 3]]))
        net[1].weight.copy_(torch.tensor([[5.0, 0.0]]))
    rep = sparsity_report(net)
    assert [(r.name, r.total, r.nonzero) for r in rep.rows] == [("0.weight", 8, 3), ("1.weight", 2, 1)]
    assert rep.total.total == 10 and rep.total.nonzero == 4 and rep.total.sparsity == pytest.approx(0.6)
    assert rep.compression() == pytest.approx(2.5)
    # masks count: a masked-out non-zero weight does not count; report limited to masked layers
    rep2 = sparsity_report(net, {"0.weight": torch.tensor([[True, False, True, True]] * 2)})
    assert [r.name for r in rep2.rows] == ["0.weight"] and rep2.total.nonzero == 2
    d = rep.to_dict()
    assert d["total"]["nonzero"] == 4 and d["layers"][0]["shape"] == [2, 4]
    md = rep.to_markdown()
    assert "| `0.weight` | 2x4 | 8 | 3 | 62.50% |" in md and "**TOTAL**" in md


def test_apply_masks_zeroes_in_place():
    net = nn.Linear(3, 2)
    w0 = net.weight.detach().clone()
    mask = torch.tensor([[True, False, True], [False, True, True]])
    assert apply_masks(net, {"weight": mask}) is net
    assert torch.equal(net.weight.detach(), w0 * mask)
    with pytest.raises(PrunekitError, match="does not name"):
        apply_masks(net, {"fc.weight": mask})


def _train(net, opt, steps, guard=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        x = torch.randn(8, net[0].in_features, generator=g)
        net(x).pow(2).mean().backward()
        opt.step()
        if guard is not None and guard.optimizer is None:
            guard.reapply()


def _net_and_momentum_history():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))
    return net


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("with_opt_hook", [True, False])
def test_mask_guard_keeps_zeros_with_momentum_and_weight_decay(opt_name, with_opt_hook):
    net = _net_and_momentum_history()
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
            "adam": lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=1e-2),
            "adamw": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=1e-2)}[opt_name]
    opt = make(net.parameters())
    _train(net, opt, 5)  # build up momentum / moment estimates before pruning
    masks = magnitude_masks(net, 0.7)
    with MaskGuard(net, masks, opt if with_opt_hook else None) as guard:
        _train(net, opt, 5, guard)
    for name, m in masks.items():
        w = dict(net.named_parameters())[name].detach()
        assert torch.all(w[~m] == 0), name
        assert torch.count_nonzero(w[m]) == int(m.sum())  # survivors still train
    # hooks are gone after exit: training now revives pruned weights (the test above could fail)
    _train(net, opt, 3)
    assert any(torch.any(dict(net.named_parameters())[n].detach()[~m] != 0) for n, m in masks.items())


def test_zero_masked_grads():
    net = nn.Linear(2, 1, bias=False)
    net(torch.ones(1, 2)).sum().backward()
    zero_masked_grads(net, {"weight": torch.tensor([[True, False]])})
    assert net.weight.grad.tolist() == [[1.0, 0.0]]


def test_guard_requires_attach():
    net = nn.Linear(2, 1)
    guard = MaskGuard(net, {"weight": torch.tensor([[True, False]])})
    with pytest.raises(PrunekitError, match="not attached"):
        guard.reapply()
