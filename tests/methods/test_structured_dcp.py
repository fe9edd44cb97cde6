"""DCP (Zhuang et al., NeurIPS 2018): scores = hand-computed gradient norms, the summed loss, greedy selection."""
import copy

import pytest
import torch
import torch.nn.functional as F

from prunekit.config import from_dict, to_dict
from prunekit.errors import ConfigError
from prunekit.methods.structured import DCPConfig, channel_scores, dcp, dcp_loss, dcp_scores
from prunekit.methods.structured._common import skeleton
from prunekit.methods.structured.dcp import AuxHead, auto_stages, dcp_layers, greedy_select, stage_of


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.r1 = torch.nn.ReLU()
        self.c2 = torch.nn.Conv2d(4, 3, 3, padding=1)
        self.r2 = torch.nn.ReLU()
        self.fc = torch.nn.Linear(3 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(self.r2(self.c2(self.r1(self.c1(x)))).flatten(1))


def _tiny():
    torch.manual_seed(0)
    return Tiny().eval()


def test_dcp_layers_include_the_flattened_linear():
    net = _tiny()
    layers = dcp_layers(net, skeleton(net, torch.zeros(1, 1, 6, 6)))
    assert [(p.consumer, p.size, p.k) for p in layers] == [("c2", 4, 9), ("fc", 3, 36)]


def test_scores_equal_gradient_norms_computed_by_hand():
    net = _tiny()
    layer = dcp_layers(net, skeleton(net, torch.zeros(1, 1, 6, 6)))[0]
    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(20, 4, 9, generator=g), torch.randn(20, 3, generator=g)
    W = torch.randn(3, 4, 9, generator=g)
    images, labels = torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 5, (8,), generator=g)
    torch.manual_seed(2)
    head = AuxHead.build(3, 5)
    before = net.c2.weight.detach().clone()
    got = dcp_scores(net, layer, W, X, Y, images, labels, "c2", head, 0.7)

    w = W.clone().requires_grad_(True)
    z = F.conv2d(torch.relu(net.c1(images)), w.reshape(3, 4, 3, 3), net.c2.bias, padding=1)
    aux = F.cross_entropy(head.fc(z.mean(dim=(2, 3))), labels)
    rec = ((Y - X.reshape(20, 36) @ w.reshape(3, 36).T) ** 2).sum() / 40
    grad, = torch.autograd.grad(rec + 0.7 * aux, w)
    want = torch.stack([grad[:, c].norm() for c in range(4)]).double()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert torch.equal(net.c2.weight, before) and not any(p.grad is not None for p in net.parameters())


def test_final_stage_uses_the_models_own_loss():
    net = _tiny()
    layer = dcp_layers(net, skeleton(net, torch.zeros(1, 1, 6, 6)))[1]
    g = torch.Generator().manual_seed(3)
    images, labels = torch.randn(6, 1, 6, 6, generator=g), torch.randint(0, 5, (6,), generator=g)
    X, Y = torch.randn(6, 3, 36, generator=g), torch.randn(6, 5, generator=g)
    W = torch.randn(5, 3, 36, generator=g)
    got = dcp_scores(net, layer, W, X, Y, images, labels, None, None, 2.0)
    w = W.clone().requires_grad_(True)
    feat = torch.relu(net.c2(torch.relu(net.c1(images)))).flatten(1)
    loss = ((Y - X.reshape(6, -1) @ w.reshape(5, -1).T) ** 2).sum() / 12 + 2.0 * F.cross_entropy(
        F.linear(feat, w.reshape(5, 108), net.fc.bias), labels)
    grad, = torch.autograd.grad(loss, w)
    torch.testing.assert_close(got, grad.pow(2).sum(dim=(0, 2)).sqrt().double(), rtol=1e-5, atol=1e-7)


def test_dcp_loss_is_the_sum_of_cross_entropies():
    g = torch.Generator().manual_seed(4)
    y = torch.randint(0, 4, (7,), generator=g)
    a1, a2, f = (torch.randn(7, 4, generator=g) for _ in range(3))
    want = sum(float(-torch.log_softmax(z, 1)[torch.arange(7), y].mean()) for z in (a1, a2, f))
    assert float(dcp_loss([a1, a2], f, y)) == pytest.approx(want, rel=1e-6)
    assert float(dcp_loss([], f, y)) == pytest.approx(float(F.cross_entropy(f, y)), rel=1e-7)


def test_channel_scores_are_frobenius_norms_per_input_channel():
    grad = torch.tensor([[[3.0, 0.0], [1.0, 1.0]], [[0.0, 4.0], [1.0, 1.0]]])
    assert channel_scores(grad).tolist() == [5.0, 2.0]


def test_greedy_selection_finds_the_channels_the_target_uses():
    g = torch.Generator().manual_seed(5)
    X = torch.randn(400, 6, 2, generator=g)
    Wt = torch.randn(3, 2, 2, generator=g)
    Y = X[:, [1, 4]].reshape(400, -1) @ Wt.reshape(3, -1).T

    def score(W):
        w = W.clone().requires_grad_(True)
        grad, = torch.autograd.grad(((Y - X.reshape(400, -1) @ w.reshape(3, -1).T) ** 2).sum() / 800, w)
        return channel_scores(grad)

    kept, Wk = greedy_select(score, X, Y, 2)
    assert kept == [1, 4]
    torch.testing.assert_close(Wk, Wt, rtol=1e-4, atol=1e-4)


def test_stages_split_and_lookup():
    net = _tiny()
    x = torch.zeros(1, 1, 6, 6)
    layers = dcp_layers(net, skeleton(net, x))
    assert auto_stages(net, x, layers, 2) == ["c2"]        # c2 holds most MACs: it ends the first stage
    order = {n: i for i, (n, _) in enumerate(net.named_modules())}
    assert [stage_of(n, ["c2"], order) for n in ("c2", "fc")] == [0, 1]


def test_config_round_trip_and_errors():
    cfg = DCPConfig(stages=["c2"], aux_weight=0.5, aux_finetune={"epochs": 3})
    back = from_dict(DCPConfig, to_dict(cfg))
    assert back.stages == ["c2"] and back.aux_finetune.epochs == 3 and back.aux_weight == 0.5
    with pytest.raises(ConfigError):
        DCPConfig(aux_weight=-1.0).check()


def test_dcp_prunes_to_budget_and_unknown_stage_is_an_error(digits_slice):
    from prunekit import models
    from prunekit.measure import count_macs

    data = digits_slice(256, 64)
    torch.manual_seed(0)
    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    cfg = DCPConfig(macs=0.5, calib_images=64, aux_finetune={"epochs": 1, "batch_size": 64})
    trained, res = dcp(net, data, cfg, progress=False)
    small = res.apply(trained)
    x = data.train_x[:1]
    assert count_macs(small, x).total / count_macs(net, x).total <= 0.53
    assert res.plan.info["stages"] and all(s["kept"] < s["size"] for s in res.plan.info["layers"])
    with pytest.raises(ConfigError, match="nope"):
        dcp(copy.deepcopy(net), data, DCPConfig(stages=["nope"]), progress=False)
