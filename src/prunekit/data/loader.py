"""An in-memory batch iterator: the whole dataset is one tensor, batches are index gathers.

torch's DataLoader collates sample by sample through Python; for datasets that
fit in memory (everything prunekit trains on) gathering a batch with one
indexing op is much cheaper and trivially deterministic.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch

from prunekit.errors import DataError, PrunekitError
from prunekit.validate import check_int


def derive_seed(*key: int) -> int:
    """A 63-bit seed from integers (e.g. seed, epoch, stream) via NumPy's SeedSequence.

    Hashing the key, instead of ``seed + epoch``, keeps streams of nearby seeds
    and epochs unrelated (seed 1 epoch 0 and seed 0 epoch 1 differ).
    """
    state = np.random.SeedSequence(list(key)).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class TensorLoader:
    """Iterate ``(xb, yb)`` mini-batches of in-memory tensors, optionally augmented and sharded.

    The order of an epoch depends only on ``seed`` and the epoch number. Each
    ``iter(loader)`` uses the current epoch and then advances it by one, so a
    plain ``for epoch ...: for xb, yb in loader`` reshuffles every epoch;
    ``set_epoch(e)`` pins the epoch the next iteration uses (for resuming, or for
    data-parallel ranks that must agree).

    With ``world_size > 1`` all ranks draw the same permutation and rank ``r``
    takes positions ``r, r + world_size, ...`` of it, so shards are disjoint
    and of equal size ``N // world_size`` (the last ``N % world_size`` samples of
    each epoch's order are skipped so every rank runs the same number of steps).

    Args:
        x: (N, ...) samples (any device; a NumPy array is converted).
        y: (N,) labels.
        batch_size: samples per batch.
        shuffle: draw a new permutation each epoch; otherwise keep the data order.
        augment: ``augment(xb, generator) -> xb`` applied to each batch, e.g.
            :func:`~prunekit.data.default_augment`; its generator is seeded per
            (seed, epoch, rank), so augmentation is reproducible too.
        seed: seed of the shuffling and augmentation.
        drop_last: skip a final batch smaller than ``batch_size``.
        rank: this process's shard index, in ``[0, world_size)``.
        world_size: number of shards.

    Yields batches that may share memory with ``x`` (when not shuffled and not
    augmented); do not modify them in place.

    Example:
        >>> import torch
        >>> loader = TensorLoader(torch.zeros(10, 1, 2, 2), torch.zeros(10, dtype=torch.long), 4)
        >>> len(loader), [len(yb) for _, yb in loader]
        (3, [4, 4, 2])
    """

    def __init__(self, x, y, batch_size: int, shuffle: bool = True,
                 augment: Callable | None = None, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if len(x) != len(y):
            raise DataError(f"TensorLoader: x has {len(x)} samples but y has {len(y)}")
        for name, value, low in (("batch_size", batch_size, 1), ("world_size", world_size, 1),
                                 ("seed", seed, 0), ("rank", rank, 0)):
            check_int(f"TensorLoader: {name}", value, minimum=low, error=PrunekitError)
        if rank >= world_size:
            raise PrunekitError(f"TensorLoader: rank {rank} is not below world_size {world_size}")
        if augment is not None and not callable(augment):
            raise PrunekitError(f"TensorLoader: augment must be callable, got {augment!r}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.augment = augment
        self.seed = seed
        self.drop_last = bool(drop_last)
        self.rank, self.world_size = rank, world_size
        self._epoch = 0

    @property
    def epoch(self) -> int:
        """The epoch the next iteration will use."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use ``epoch`` (its shuffle order and augmentation)."""
        check_int("TensorLoader: epoch", epoch, minimum=0, error=PrunekitError)
        self._epoch = epoch

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (before ``drop_last``)."""
        return len(self.x) // self.world_size if self.world_size > 1 else len(self.x)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def indices(self, epoch: int) -> torch.Tensor | None:
        """The sample indices this rank visits in ``epoch``, in order (None: all, in data order)."""
        n = len(self.x)
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0))
            order = torch.randperm(n, generator=g)
        elif self.world_size == 1:
            return None
        else:
            order = torch.arange(n)
        return order[self.rank: self.num_samples * self.world_size: self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        self._epoch += 1
        return self._batches(epoch)

    def _batches(self, epoch: int):
        order = self.indices(epoch)
        x_order = y_order = None
        if order is not None:
            x_order, y_order = order.to(self.x.device), order.to(self.y.device)
        gen = None
        if self.augment is not None:
            # Stream 1 + rank: independent of the shuffle stream and different on every rank.
            gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 1 + self.rank))
        n = self.num_samples
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, stop)
            if order is None:
                xb, yb = self.x[start:end], self.y[start:end]
            else:
                xb, yb = self.x[x_order[start:end]], self.y[y_order[start:end]]
            if gen is not None:
                xb = self.augment(xb, gen)
            yield xb, yb

    def __repr__(self) -> str:
        return (f"TensorLoader(n={len(self.x)}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"augment={self.augment!r}, seed={self.seed}, drop_last={self.drop_last}, "
                f"rank={self.rank}, world_size={self.world_size}, epoch={self._epoch})")
