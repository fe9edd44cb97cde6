"""Shared pytest setup: keep torch on few threads so parallel workers do not oversubscribe 2 cores."""
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
