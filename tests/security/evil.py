"""A model factory with a visible side effect: it writes a marker file when it runs.

The security tests store its name in crafted checkpoint and .pkz files: loading
such a file without trusting the factory must not run it (no marker appears).
"""
from pathlib import Path

from torch import nn


def build(marker: str, num_classes: int = 10):
    """A tiny conv net for 1x8x8 inputs (the digits dataset) that records that it was built."""
    with open(marker, "a") as f:
        f.write("factory ran\n")
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, num_classes))


NAME = "tests.security.evil:build"
