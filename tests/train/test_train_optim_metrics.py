import math

import pytest
import torch
import torch.nn.functional as F

from prunekit.errors import PrunekitError
from prunekit.train import OPTIMIZERS, TrainConfig, build_optimizer, evaluate, lr_factor, predict, topk_correct
from prunekit.train.optim import default_milestones, set_lr


def test_step_schedule_exact():
    cfg = TrainConfig(epochs=4, schedule="step", milestones=[2, 3], gamma=0.5)
    got = [lr_factor(cfg, s, steps_per_epoch=10) for s in (0, 19, 20, 29, 30, 39)]
    assert got == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_step_schedule_default_milestones_are_half_and_three_quarters():
    assert default_milestones(TrainConfig(epochs=160, schedule="step")) == [80, 120]
    assert default_milestones(TrainConfig(epochs=1, schedule="step")) == []


def test_cosine_schedule_exact_points():
    cfg = TrainConfig(epochs=2, schedule="cosine")
    assert lr_factor(cfg, 0, 10) == 1.0
    assert lr_factor(cfg, 10, 10) == pytest.approx(0.5)  # halfway
    assert lr_factor(cfg, 5, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_warmup_is_linear_then_schedule():
    cfg = TrainConfig(epochs=3, schedule="constant", warmup_epochs=1)
    assert [lr_factor(cfg, s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cos = TrainConfig(epochs=3, schedule="cosine", warmup_epochs=1)
    assert lr_factor(cos, 4, 4) == 1.0  # cosine starts after the warmup
    assert lr_factor(cos, 8, 4) == pytest.approx(0.5)


def test_set_lr_keeps_each_groups_base_rate():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    set_lr(opt, 0.5)
    set_lr(opt, 0.5)  # applies to the base, not compounding
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.005]


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_registered_optimizer_builds_with_config_values(name):
    p = torch.nn.Parameter(torch.ones(2))
    opt = build_optimizer([p], TrainConfig(optimizer=name, lr=0.02, weight_decay=0.1))
    assert opt.param_groups[0]["lr"] == 0.02 and opt.param_groups[0]["weight_decay"] == 0.1


def test_topk_correct_exact():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 1, 0])
    c1, c2, c5 = topk_correct(logits, targets, (1, 2, 5))
    assert (c1.item(), c2.item(), c5.item()) == (1, 2, 3)


def test_evaluate_exact_on_known_logits():
    torch.manual_seed(0)
    logits = torch.randn(37, 6)
    y = torch.randint(0, 6, (37,))
    net = torch.nn.Identity()
    r = evaluate(net, logits, y, batch_size=8)
    top1 = 100.0 * (logits.argmax(1) == y).sum().item() / 37
    top5 = 100.0 * sum(int(y[i] in logits[i].topk(5).indices) for i in range(37)) / 37
    assert r["n"] == 37
    assert r["top1"] == pytest.approx(top1) and r["top5"] == pytest.approx(top5)
    assert r["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)


def test_evaluate_no_top5_below_five_classes_and_restores_mode():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
    net.train()
    r = evaluate(net, torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0]))
    assert r["top5"] is None
    assert net.training  # mode restored
    net.eval()
    evaluate(net, torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0]))
    assert not net.training


def test_evaluate_user_errors():
    net = torch.nn.Linear(3, 2)
    with pytest.raises(PrunekitError, match="3 inputs but 2 labels"):
        evaluate(net, torch.randn(3, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(PrunekitError, match="empty"):
        evaluate(net, torch.randn(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(PrunekitError, match="logits"):
        evaluate(torch.nn.Flatten(0), torch.randn(3, 3), torch.zeros(3, dtype=torch.long))


def test_predict_labels_and_logits():
    logits = torch.tensor([[0.0, 2.0], [3.0, 1.0], [0.5, 0.4]])
    assert predict(torch.nn.Identity(), logits, batch_size=2).tolist() == [1, 0, 0]
    assert torch.equal(predict(torch.nn.Identity(), logits, logits=True), logits)
