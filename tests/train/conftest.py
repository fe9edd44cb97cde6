"""Shared fixtures of the training tests (``digits`` and ``make_mlp`` come from tests/conftest.py)."""
import pytest


@pytest.fixture(scope="session")
def mnist5k():
    from prunekit.data import load_dataset

    return load_dataset("mnist5k")
