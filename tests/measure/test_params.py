"""Parameter and non-zero counts on tiny models, by hand."""
import pytest
import torch
import torch.nn as nn
from torch.nn.utils import prune as torch_prune

from prunekit.measure import count_nonzero_params, count_params, nonzero_per_param, sparsity


@pytest.mark.parametrize("module,expected", [
    (nn.Linear(10, 5), 55),
    (nn.Linear(10, 5, bias=False), 50),
    (nn.Conv2d(3, 8, 3), 8 * 3 * 9 + 8),
    (nn.Conv2d(8, 16, 3, groups=4, bias=False), 16 * 2 * 9),
    (nn.Conv2d(8, 8, 3, groups=8), 8 * 9 + 8),
    (nn.BatchNorm2d(6), 12),
    (nn.ReLU(), 0),
])
def test_count_params_exact(module, expected):
    assert count_params(module) == expected


def test_trainable_only_and_tied_parameters():
    emb = nn.Linear(4, 4, bias=False)
    head = nn.Linear(4, 4, bias=False)
    head.weight = emb.weight  # tied: counted once
    net = nn.Sequential(emb, head, nn.Linear(4, 2))
    assert count_params(net) == 16 + 10
    net[2].weight.requires_grad_(False)
    assert count_params(net, trainable_only=True) == 16 + 2


def test_nonzero_counts_zeros_exactly():
    lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 1, 0, 2], [3, 0, 0, 0]]))
        lin.bias.copy_(torch.tensor([0.0, 5.0]))
    assert count_nonzero_params(lin) == 4
    assert sparsity(lin) == pytest.approx(1 - 4 / 10)
    assert nonzero_per_param(lin) == {"weight": (3, 8), "bias": (1, 2)}


def test_torch_prune_masks_are_seen_through():
    lin = nn.Linear(10, 10, bias=False)
    torch_prune.l1_unstructured(lin, "weight", amount=30)  # weight_orig stays dense, weight_mask zeroes 30
    assert count_params(lin) == 100
    assert count_nonzero_params(lin) == 70
    assert nonzero_per_param(lin) == {"weight_orig": (70, 100)}


def test_sparsity_of_parameterless_model_is_zero():
    assert sparsity(nn.ReLU()) == 0.0
