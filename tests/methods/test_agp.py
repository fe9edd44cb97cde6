"""AGP (Zhu & Gupta 2017): the cubic schedule exactly, and the callback inside the Trainer."""

import pytest
import torch

from prunekit import models
from prunekit.errors import ConfigError
from prunekit.methods.agp import AGPCallback, AGPConfig, agp_prune, agp_sparsity, agp_update_steps


@pytest.fixture(scope="module")
def digits(digits_slice):
    return digits_slice(400, 200)


def test_cubic_schedule_exact():
    # s_t = s_f + (s_i - s_f) (1 - (t - t0)/(n dt))^3 with s_i=0.1, s_f=0.9, t0=10, end=50, dt=10
    expect = {0: 0.0, 9: 0.0, 10: 0.1, 19: 0.1, 20: 0.9 - 0.8 * 0.75 ** 3, 30: 0.9 - 0.8 * 0.5 ** 3,
              40: 0.9 - 0.8 * 0.25 ** 3, 49: 0.9 - 0.8 * 0.25 ** 3, 50: 0.9, 1000: 0.9}
    for t, s in expect.items():
        assert agp_sparsity(t, 0.1, 0.9, 10, 50, 10) == pytest.approx(s, abs=1e-12), t
    assert agp_sparsity(50, 0.0, 0.8, 0, 100, 10) == 0.7
    assert agp_update_steps(0, 25, 10) == [0, 10, 20, 25]
    with pytest.raises(ConfigError, match="end_step"):
        agp_sparsity(0, 0.0, 0.5, 10, 10, 1)


def test_schedule_is_monotone():
    vals = [agp_sparsity(t, 0.0, 0.95, 3, 97, 7) for t in range(120)]
    assert all(a <= b for a, b in zip(vals, vals[1:])) and vals[-1] == 0.95


def test_callback_follows_schedule_and_keeps_zeros(digits):
    from prunekit.sparse import masks_sparsity
    from prunekit.train import LambdaCallback, Trainer

    torch.manual_seed(0)
    net = models.create("lenet300_100", in_channels=1, input_size=(8, 8))
    cb = AGPCallback(0.8, 0.0, begin_step=2, end_step=8, frequency=2)
    seen = {}

    def check(trainer, step):
        seen[step] = masks_sparsity(cb.masks)
        params = dict(trainer.model.named_parameters())
        for n, m in cb.masks.items():
            assert torch.all(params[n].detach()[~m] == 0)

    cfg = {"epochs": 3, "batch_size": 100, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-2,
           "augment": False, "progress": False}
    Trainer(net, digits, cfg, callbacks=[cb, LambdaCallback(on_step_end=check)]).fit()
    for step, s in seen.items():
        assert s == pytest.approx(agp_sparsity(step, 0.0, 0.8, 2, 8, 2), abs=2e-4), step
    assert [u["step"] for u in cb.updates] == [4, 6, 8]  # step 2 is at the initial sparsity 0: no change
    assert seen[12] == pytest.approx(0.8, abs=2e-4)


def test_agp_prune_end_to_end(digits):
    torch.manual_seed(0)
    net = models.create("lenet300_100", in_channels=1, input_size=(8, 8))
    res = agp_prune(net, digits, AGPConfig(final_sparsity=0.9, frequency=1, finetune={"epochs": 2}), progress=False)
    assert res.final["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert res.extra["end_step"] == int(0.7 * 8)  # 400 samples / 128 -> 4 steps x 2 epochs
    assert [r["stage"] for r in res.records] == ["dense", "agp", "agp"]
    assert res.records[-1]["sparsity"] == pytest.approx(0.9, abs=1e-3)


def test_ramp_must_fit(digits):
    net = models.create("lenet300_100", in_channels=1, input_size=(8, 8))
    with pytest.raises(ConfigError, match="does not fit"):
        agp_prune(net, digits, AGPConfig(end_step=10_000, finetune={"epochs": 1}), progress=False)
