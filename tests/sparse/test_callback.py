"""MaskCallback inside prunekit.train.Trainer: zeros survive momentum + weight decay, and resume keeps masks."""
import warnings

import pytest
import torch

from prunekit.sparse import (
    MaskCallback, magnitude_masks, masks_sparsity, quality_for_sparsity, std_threshold_masks,
)
from prunekit.train import Trainer


@pytest.fixture(scope="module")
def digits(digits_slice):
    return digits_slice(300, 100)


CFG = {"epochs": 2, "batch_size": 50, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2, "augment": False,
       "progress": False}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_masks_survive_training(digits, optimizer, make_mlp):
    m = make_mlp(hidden=(300, 100))
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    masks = magnitude_masks(m, 0.8)
    hist = Trainer(m, digits, {**CFG, "optimizer": optimizer}, callbacks=[MaskCallback(masks)]).fit()
    params = dict(m.named_parameters())
    for n, mask in masks.items():
        assert torch.all(params[n].detach()[~mask] == 0), n
        assert not torch.equal(params[n].detach()[mask], before[n][mask])  # survivors trained
    assert hist.last["sparsity"] == pytest.approx(0.8, abs=1e-4)


def test_resume_restores_masks(digits, tmp_path, make_mlp):
    m = make_mlp(hidden=(300, 100))
    masks = magnitude_masks(m, 0.7)
    Trainer(m, digits, {**CFG, "epochs": 1}, callbacks=[MaskCallback(masks)], out_dir=tmp_path).fit()
    m2 = make_mlp(hidden=(300, 100))  # dense weights; the resumed run must bring back weights *and* masks
    all_true = {k: torch.ones_like(v) for k, v in masks.items()}
    cb = MaskCallback(all_true)
    with warnings.catch_warnings():  # "more epochs than the interrupted run" is intended here
        warnings.simplefilter("ignore", UserWarning)
        Trainer(m2, digits, {**CFG, "epochs": 2}, callbacks=[cb], out_dir=tmp_path, resume=True).fit()
    assert all(torch.equal(cb.masks[k], masks[k]) for k in masks)
    params = dict(m2.named_parameters())
    assert all(torch.all(params[n].detach()[~mk] == 0) for n, mk in masks.items())


def test_quality_for_sparsity(make_mlp):
    m = make_mlp(hidden=(300, 100))
    q = quality_for_sparsity(m, 0.6)
    got = masks_sparsity(std_threshold_masks(m, q))
    assert got == pytest.approx(0.6, abs=1e-3)
    assert masks_sparsity(std_threshold_masks(m, q * 0.9)) < 0.6
