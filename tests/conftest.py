"""Shared pytest setup: keep torch on few threads so parallel workers do not oversubscribe 2 cores; shared fixtures."""
import dataclasses
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture
def cli_env():
    """Environment for CLI subprocesses: one thread, no progress-bar noise."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PRUNEKIT_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="session")
def digits():
    """sklearn's 8x8 digits (1437 train / 360 test): small enough for many short runs."""
    from prunekit.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_slice():
    """Factory: the first ``n_train`` training and ``n_test`` test samples of digits (training runs of < 1 s).

    Modules override ``digits`` with it (``return digits_slice(400, 200)``), so it loads the dataset itself
    rather than requesting ``digits`` (which would then resolve to the override).
    """

    def take(n_train: int, n_test: int):
        from prunekit.data import load_dataset

        d = load_dataset("digits")
        return dataclasses.replace(d, train_x=d.train_x[:n_train], train_y=d.train_y[:n_train],
                                   test_x=d.test_x[:n_test], test_y=d.test_y[:n_test])

    return take


@pytest.fixture
def make_mlp():
    """Factory of a seeded MLP (lenet300_100) for 8x8 digits, with a prunekit_spec (checkpointable)."""

    def make(seed: int = 0, hidden=(32,)):
        import torch

        from prunekit import models

        torch.manual_seed(seed)
        return models.create("lenet300_100", num_classes=10, in_channels=1, input_size=(8, 8), hidden=hidden)

    return make
