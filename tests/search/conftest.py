"""Shared fixtures of the search tests."""
import pytest
import torch

from prunekit import models
from prunekit.search import SearchSpace


@pytest.fixture(scope="module")
def tiny():
    """ConvNet-3 on 8x8 inputs, an example input and its search space on the grid (0.5, 1.0)."""
    torch.manual_seed(0)
    m = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8)).eval()
    x = torch.randn(1, 1, 8, 8)
    return m, x, SearchSpace.build(m, x, ratios=(0.5, 1.0))
