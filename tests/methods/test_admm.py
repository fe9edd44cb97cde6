"""ADMM pruning (Zhang et al. 2018): exact projections and schedule, the Z/U updates, both granularities."""

import pytest
import torch

from prunekit import models
from prunekit.errors import ConfigError, PrunekitError
from prunekit.methods import admm as A

T = torch.tensor


@pytest.fixture(scope="module")
def digits(digits_slice):
    return digits_slice(400, 200)


def test_projections_exact():
    w = T([[0.1, -3.0], [2.0, -0.5]])
    assert A.project_topk(w, 2).tolist() == [[0.0, -3.0], [2.0, 0.0]]
    assert A.project_topk(w, 0).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert A.topk_mask(torch.ones(4), 2).tolist() == [True, True, False, False]  # ties: earlier wins
    f = T([[[1.0, 1.0]], [[3.0, 0.0]], [[0.0, 0.5]]])  # filter norms sqrt2, 3, .5
    assert A.slice_norms(f).tolist() == pytest.approx([2 ** 0.5, 3.0, 0.5])
    assert A.topk_slices(f, 2).tolist() == [0, 1]
    assert A.project_slices(f, 1).tolist() == [[[0.0, 0.0]], [[3.0, 0.0]], [[0.0, 0.0]]]
    c = T([[1.0, 0.0, 2.0], [1.0, 0.1, -2.0]])  # input-channel norms sqrt2, .1, sqrt8
    assert A.project_slices(c, 2, dim=1).tolist() == [[1.0, 0.0, 2.0], [1.0, 0.0, -2.0]]
    assert A.support_mask(c, 1, "channel").tolist() == [[False, False, True], [False, False, True]]


def test_rho_schedule_and_keep_count():
    assert [A.rho_schedule(i, 0.01, 2.0, 2, 0.05) for i in range(7)] == [0.01, 0.01, 0.02, 0.02, 0.04, 0.04, 0.05]
    assert A.rho_schedule(10, 0.1) == 0.1
    assert A.keep_count(10, 0.75) == 2 and A.keep_count(3, 0.99) == 1
    with pytest.raises(ConfigError):
        A.rho_schedule(0, 0.0)


def test_admm_callback_updates_exact():
    lin = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(T([[4.0, -1.0, 0.5, 3.0]]))
    cb = A.ADMMCallback({"weight": 2}, rho=0.5)
    trainer = type("T", (), {"model": lin})()
    cb.on_train_begin(trainer)
    assert cb.Z["weight"].tolist() == [[4.0, 0.0, 0.0, 3.0]] and cb.U["weight"].abs().sum() == 0
    lin.weight.grad = torch.zeros_like(lin.weight)
    cb.on_after_backward(trainer)  # grad += rho (W - Z + U)
    assert lin.weight.grad.tolist() == [[0.0, -0.5, 0.25, 0.0]]
    with torch.no_grad():
        lin.weight.copy_(T([[4.0, -1.0, 2.0, 1.0]]))
    metrics = {}
    cb.on_epoch_end(trainer, 0, metrics)  # Z = proj(W + U) keeps 4, 2; U = U + W - Z
    assert cb.Z["weight"].tolist() == [[4.0, 0.0, 2.0, 0.0]]
    assert cb.U["weight"].tolist() == [[0.0, -1.0, 0.0, 1.0]]
    assert metrics["admm_residual"] == pytest.approx((2 / 22) ** 0.5)


def test_admm_scaled_dual_rescaled_when_rho_changes():
    # U is the scaled dual y / rho: the multiplier y = rho * U is what persists when rho doubles, so U halves
    lin = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(T([[4.0, -1.0, 0.5, 3.0]]))
    cb = A.ADMMCallback({"weight": 2}, rho=0.5, rho_factor=2.0)
    trainer = type("T", (), {"model": lin})()
    cb.on_train_begin(trainer)
    with torch.no_grad():
        lin.weight.copy_(T([[4.0, -1.0, 2.0, 1.0]]))
    metrics = {}
    cb.on_epoch_end(trainer, 0, metrics)  # Z keeps 4, 2; unscaled U would be [0, -1, 0, 1]; rho 0.5 -> 1.0
    assert cb.rho == 1.0 and metrics["rho"] == 1.0
    assert cb.U["weight"].tolist() == [[0.0, -0.5, 0.0, 0.5]]
    lin.weight.grad = torch.zeros_like(lin.weight)
    cb.on_after_backward(trainer)  # grad += rho (W - Z + U) = 1.0 * ([0, -1, 0, 1] + [0, -.5, 0, .5])
    assert lin.weight.grad.tolist() == [[0.0, -1.5, 0.0, 1.5]]


def test_config_checks():
    with pytest.raises(ConfigError, match="granularity"):
        A.ADMMConfig(granularity="kernel")
    with pytest.raises(ConfigError, match="rho"):
        A.ADMMConfig(rho=0)
    net = models.create("lenet300_100", in_channels=1, input_size=(8, 8))
    with pytest.raises(ConfigError, match="layer_sparsity"):
        A.layer_keep(net, A.ADMMConfig(layer_sparsity={"nope": 0.5}))
    keep = A.layer_keep(net, A.ADMMConfig(sparsity=0.5, layer_sparsity={"classifier": 0.9}))
    assert keep == {"features.0.weight": 9600, "features.2.weight": 15000, "classifier.weight": 100}
    with pytest.raises(PrunekitError, match="element-wise"):
        A.layer_keep(net, A.ADMMConfig(sparsity=0.5, granularity="filter"))


def test_admm_element_end_to_end(digits):
    torch.manual_seed(0)
    net = models.create("lenet300_100", in_channels=1, input_size=(8, 8))
    cfg = A.ADMMConfig(sparsity=0.8, rho=5e-3, rho_factor=2.0, admm={"epochs": 2},
                       finetune={"epochs": 1, "weight_decay": 1e-2})
    res = A.admm_prune(net, digits, cfg, progress=False)
    assert res.final["sparsity"] == pytest.approx(0.8, abs=1e-4)
    admm_rows = [r for r in res.records if r["stage"] == "admm"]
    assert len(admm_rows) == 2 and [r["rho"] for r in admm_rows] == [0.01, 0.02]
    params = dict(net.named_parameters())
    for n, m in res.masks.items():
        assert int(m.sum()) == res.extra["keep"][n]
        assert torch.all(params[n].detach()[~m] == 0)


def test_admm_filter_feeds_the_structural_engine(digits):
    torch.manual_seed(0)
    net = models.create("lenet300_100", in_channels=1, input_size=(8, 8))
    cfg = A.ADMMConfig(sparsity=0.5, granularity="filter", admm={"epochs": 1}, finetune={"epochs": 1})
    res = A.admm_prune(net, digits, cfg, progress=False)
    removed = res.extra["removed_filters"]
    assert {k: len(v) for k, v in removed.items()} == {"features.0": 150, "features.2": 50}  # logits kept
    from prunekit.engine import PruningPlan

    small = PruningPlan.from_dict(res.extra["plan"]).apply(net)
    assert small.features[0].out_features == 150 and small.features[2].in_features == 150
    x = digits.test_x[:16]
    with torch.no_grad():
        assert torch.allclose(small.eval()(x), net.eval()(x), atol=1e-5)  # masked == physically removed
