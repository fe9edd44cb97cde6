"""Seeding for reproducible runs."""
from __future__ import annotations

import random


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
