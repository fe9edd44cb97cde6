"""Lottery Ticket (Frankle & Carbin 2019): exact rewinding, round sparsities, the reinit control."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.methods import lottery as L


@pytest.fixture(scope="module")
def digits(digits_slice):
    return digits_slice(400, 200)


def test_rewind_restores_initial_values_exactly(make_mlp):
    net = make_mlp(hidden=(300, 100))
    theta0 = L.snapshot(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))  # "training"
    masks = L.prune_round(net, None, L.LotteryConfig(prune_fraction=0.5))
    L.rewind_weights(net, theta0, masks)
    params = dict(net.named_parameters())
    for n, t in theta0.items():
        if n in masks:
            assert torch.equal(params[n].detach()[masks[n]], t[masks[n]])
            assert torch.all(params[n].detach()[~masks[n]] == 0)
        else:
            assert torch.equal(params[n].detach(), t)


def test_prune_round_fractions_and_output_rate(make_mlp):
    net = make_mlp(hidden=(300, 100))
    cfg = L.LotteryConfig(prune_fraction=0.2, output_fraction=0.1)
    m1 = L.prune_round(net, None, cfg)
    m2 = L.prune_round(net, m1, cfg)
    sizes = {n: m.numel() for n, m in m1.items()}
    assert int((~m1["features.0.weight"]).sum()) == round(0.2 * sizes["features.0.weight"])
    assert int((~m1["classifier.weight"]).sum()) == 100  # 10% of 1000
    assert int(m2["features.2.weight"].sum()) == 30000 - 6000 - 4800  # 20% of the 24000 survivors
    assert L.LotteryConfig(rounds=2, target_sparsity=0.75).fraction() == pytest.approx(0.5)


def test_reinitialize_is_seeded_and_leaves_global_rng(make_mlp):
    net = make_mlp(hidden=(300, 100))
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = L.reinitialize(net, 1), L.reinitialize(net, 1), L.reinitialize(net, 2)
    assert torch.rand(1).item() == before.item()
    wa, wb, wc, w0 = (m.features[0].weight for m in (a, b, c, net))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc) and not torch.equal(wa, w0)


def test_lottery_ticket_rounds_rewind_and_control(digits, monkeypatch, make_mlp):
    starts = []
    real = L._train_round

    def spy(model, tune, test, tc, masks, capture_step, stage, rnd, records):
        starts.append((stage, rnd, L.snapshot(model), masks))
        return real(model, tune, test, tc, masks, capture_step, stage, rnd, records)

    monkeypatch.setattr(L, "_train_round", spy)
    net = make_mlp(hidden=(300, 100))
    theta0 = L.snapshot(net)
    cfg = L.LotteryConfig(rounds=2, prune_fraction=0.5, finetune={"epochs": 2, "weight_decay": 1e-3})
    res = L.lottery_ticket(net, digits, cfg, progress=False)
    assert [r["sparsity"] for r in res.rounds] == pytest.approx([0.0, 0.5, 0.75], abs=1e-4)
    assert [r["round"] for r in res.control] == [1, 2]
    for r in res.rounds + res.control:
        assert {"early_stop_step", "test_top1", "test_top1_at_early_stop", "val_loss"} <= set(r)
        assert r["early_stop_step"] in (6, 12)  # 360 training samples / batch 60 = 6 steps per epoch
    # every ticket round starts from theta_0 on the survivors, exactly
    for stage, rnd, state, masks in starts:
        if stage != "ticket" or rnd == 0:
            continue
        for n, t in theta0.items():
            if n in masks:
                assert torch.equal(state[n][masks[n]], t[masks[n]]) and torch.all(state[n][~masks[n]] == 0)
            else:
                assert torch.equal(state[n], t)
    # the control starts elsewhere but with the same mask
    ctrl = [s for s in starts if s[0] == "reinit"]
    assert not torch.equal(ctrl[0][2]["features.0.weight"], starts[1][2]["features.0.weight"])
    assert torch.all(ctrl[0][2]["features.0.weight"][~ctrl[0][3]["features.0.weight"]] == 0)
    assert res.final["sparsity"] == pytest.approx(0.75, abs=1e-4)
    stages = {r["stage"] for r in res.records}
    assert stages == {"ticket", "reinit"}


def test_late_rewinding_and_its_limit(digits, make_mlp):
    net = make_mlp(hidden=(300, 100))
    cfg = L.LotteryConfig(rounds=1, prune_fraction=0.5, rewind_step=3, reinit_control=False,
                          finetune={"epochs": 1})
    res = L.lottery_ticket(net, digits, cfg, progress=False)
    assert res.extra["rewind_step"] == 3 and len(res.rounds) == 2
    with pytest.raises(ConfigError, match="rewind_step"):
        L.lottery_ticket(make_mlp(hidden=(300, 100)), digits,
                         L.LotteryConfig(rounds=1, rewind_step=999, finetune={"epochs": 1}), progress=False)
