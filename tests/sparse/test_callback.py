"""MaskCallback inside prunekit.train.Trainer: zeros survive momentum + weight decay, and resume keeps masks."""
import dataclasses
import warnings

import pytest
import torch

from prunekit import models
from prunekit.sparse import (
    MaskCallback, magnitude_masks, masks_sparsity, quality_for_sparsity, std_threshold_masks,
)
from prunekit.train import Trainer


@pytest.fixture(scope="module")
def digits():
    from prunekit.data import load_dataset

    d = load_dataset("digits")
    return dataclasses.replace(d, train_x=d.train_x[:300], train_y=d.train_y[:300],
                               test_x=d.test_x[:100], test_y=d.test_y[:100])


CFG = {"epochs": 2, "batch_size": 50, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2, "augment": False,
       "progress": False}


def net():
    torch.manual_seed(0)
    return models.create("lenet300_100", in_channels=1, input_size=(8, 8))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_masks_survive_training(digits, optimizer):
    m = net()
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    masks = magnitude_masks(m, 0.8)
    hist = Trainer(m, digits, {**CFG, "optimizer": optimizer}, callbacks=[MaskCallback(masks)]).fit()
    params = dict(m.named_parameters())
    for n, mask in masks.items():
        assert torch.all(params[n].detach()[~mask] == 0), n
        assert not torch.equal(params[n].detach()[mask], before[n][mask])  # survivors trained
    assert hist.last["sparsity"] == pytest.approx(0.8, abs=1e-4)


def test_resume_restores_masks(digits, tmp_path):
    m = net()
    masks = magnitude_masks(m, 0.7)
    Trainer(m, digits, {**CFG, "epochs": 1}, callbacks=[MaskCallback(masks)], out_dir=tmp_path).fit()
    m2 = net()  # dense weights; the resumed run must bring back weights *and* masks
    all_true = {k: torch.ones_like(v) for k, v in masks.items()}
    cb = MaskCallback(all_true)
    with warnings.catch_warnings():  # "more epochs than the interrupted run" is intended here
        warnings.simplefilter("ignore", UserWarning)
        Trainer(m2, digits, {**CFG, "epochs": 2}, callbacks=[cb], out_dir=tmp_path, resume=True).fit()
    assert all(torch.equal(cb.masks[k], masks[k]) for k in masks)
    params = dict(m2.named_parameters())
    assert all(torch.all(params[n].detach()[~mk] == 0) for n, mk in masks.items())


def test_quality_for_sparsity():
    m = net()
    q = quality_for_sparsity(m, 0.6)
    got = masks_sparsity(std_threshold_masks(m, q))
    assert got == pytest.approx(0.6, abs=1e-3)
    assert masks_sparsity(std_threshold_masks(m, q * 0.9)) < 0.6
