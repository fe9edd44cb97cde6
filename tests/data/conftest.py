"""Fixtures of the data tests: tiny dataset directories written in the real formats."""
from __future__ import annotations

import pytest
from data_file_writers import make_cifar10_dir, make_idx_dir


@pytest.fixture
def idx_dir(tmp_path):
    arrays = make_idx_dir(tmp_path / "mnist")
    return tmp_path / "mnist", arrays


@pytest.fixture
def cifar10_dir(tmp_path):
    arrays = make_cifar10_dir(tmp_path / "cifar-10-batches-py")
    return tmp_path / "cifar-10-batches-py", arrays
