"""Shared fixtures of the training tests: the small real datasets and a tiny model factory."""
import pytest


@pytest.fixture(scope="session")
def digits():
    """sklearn's 8x8 digits (1437 train / 360 test): small enough for many short runs."""
    from prunekit.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def mnist5k():
    from prunekit.data import load_dataset

    return load_dataset("mnist5k")


@pytest.fixture
def make_mlp():
    """Factory of a small MLP for 8x8 digits, with a prunekit_spec (checkpointable)."""

    def make(seed: int = 0, hidden=(32,)):
        import torch

        from prunekit import models

        torch.manual_seed(seed)
        return models.create("lenet300_100", num_classes=10, in_channels=1, input_size=(8, 8), hidden=hidden)

    return make
