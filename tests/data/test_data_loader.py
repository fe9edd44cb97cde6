"""TensorLoader (determinism, epochs, sharding) and stratified train/val splits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from prunekit.data import RandomCrop, TensorLoader, load_dataset, split_train_val
from prunekit.errors import DataError, PrunekitError


def _data(n=10):
    # x[i] holds the value i, so every batch reveals which samples it holds.
    return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous(), torch.arange(n)


def _ids(loader):
    return [yb.tolist() for _, yb in loader]


@pytest.mark.parametrize("drop_last,expect", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batches_in_order_without_shuffle(drop_last, expect):
    x, y = _data()
    loader = TensorLoader(x, y, 4, shuffle=False, drop_last=drop_last)
    assert len(loader) == len(expect) and [len(b) for b in _ids(loader)] == expect
    assert sum(_ids(loader), []) == list(range(sum(expect)))
    for xb, yb in loader:
        assert torch.equal(xb[:, 0, 0, 0].long(), yb)


def test_shuffle_is_a_permutation_and_deterministic():
    x, y = _data(23)
    a, b = TensorLoader(x, y, 5, seed=1), TensorLoader(x, y, 5, seed=1)
    ep0, ep0_b = _ids(a), _ids(b)
    assert ep0 == ep0_b and sorted(sum(ep0, [])) == list(range(23))
    assert sum(ep0, []) != list(range(23))
    ep1 = _ids(a)  # iterating again advances to epoch 1: a new order
    assert a.epoch == 2 and ep1 != ep0 and sorted(sum(ep1, [])) == list(range(23))
    a.set_epoch(0)
    assert _ids(a) == ep0
    b.set_epoch(1)
    assert _ids(b) == ep1
    assert _ids(TensorLoader(x, y, 5, seed=2)) != ep0
    for xb, yb in TensorLoader(x, y, 5, seed=1):
        assert torch.equal(xb[:, 0, 0, 0].long(), yb)  # x and y stay paired


def test_augmented_batches_are_reproducible():
    x = torch.randn(12, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(12, dtype=torch.long)
    make = lambda: TensorLoader(x, y, 4, augment=RandomCrop(padding=1), seed=3)  # noqa: E731
    a, b = make(), make()
    first = [xb for xb, _ in a]
    assert all(torch.equal(p, q) for p, q in zip(first, (xb for xb, _ in b)))
    second = [xb for xb, _ in a]
    assert not all(torch.equal(p, q) for p, q in zip(first, second))
    assert not torch.equal(torch.cat(first), x[torch.cat([yb for _, yb in TensorLoader(x, torch.arange(12), 4, seed=3)])])


@pytest.mark.parametrize("shuffle", [True, False])
def test_sharding_is_disjoint_and_equal(shuffle):
    x, y = _data(11)
    shards = []
    for rank in range(3):
        loader = TensorLoader(x, y, 2, shuffle=shuffle, seed=5, rank=rank, world_size=3)
        loader.set_epoch(4)
        assert loader.num_samples == 3 and len(loader) == 2
        shards.append(sum(_ids(loader), []))
    assert all(len(s) == 3 for s in shards)
    flat = sum(shards, [])
    assert len(set(flat)) == 9  # disjoint
    single = TensorLoader(x, y, 11, shuffle=shuffle, seed=5)
    single.set_epoch(4)
    order = sum(_ids(single), [])
    assert [shards[r][i] for i in range(3) for r in range(3)] == order[:9]  # interleaved slices of one order


def test_loader_argument_errors():
    x, y = _data(4)
    with pytest.raises(DataError, match="x has 4 samples but y has 3"):
        TensorLoader(x, y[:3], 2)
    with pytest.raises(PrunekitError, match="batch_size must be an integer >= 1"):
        TensorLoader(x, y, 0)
    with pytest.raises(PrunekitError, match="rank 2 is not below world_size 2"):
        TensorLoader(x, y, 2, rank=2, world_size=2)
    with pytest.raises(PrunekitError, match="epoch must be"):
        TensorLoader(x, y, 2).set_epoch(-1)


def test_split_train_val_stratified_and_deterministic():
    x = torch.arange(40, dtype=torch.float32).view(40, 1, 1, 1)
    y = torch.tensor([0] * 20 + [1] * 10 + [2] * 10)
    tv = split_train_val(x, y, 0.2, seed=0)
    assert torch.bincount(tv.val_y).tolist() == [4, 2, 2] and torch.bincount(tv.train_y).tolist() == [16, 8, 8]
    ids = tv.train_x.view(-1).long().tolist() + tv.val_x.view(-1).long().tolist()
    assert sorted(ids) == list(range(40)) and torch.equal(y[tv.val_x.view(-1).long()], tv.val_y)
    again = split_train_val(x, y, 0.2, seed=0)
    assert torch.equal(again.val_x, tv.val_x) and not torch.equal(split_train_val(x, y, 0.2, seed=1).val_x, tv.val_x)
    train_x, train_y, val_x, val_y = split_train_val(x.numpy(), y.numpy(), 8, seed=0)  # NumPy in, NumPy out
    assert isinstance(val_x, np.ndarray) and np.array_equal(val_x, tv.val_x.numpy())


def test_split_train_val_errors():
    x, y = torch.zeros(5, 1), torch.tensor([0, 0, 0, 0, 1])
    with pytest.raises(DataError, match="cannot make a stratified split"):
        split_train_val(x, y, 0.4, seed=0)
    with pytest.raises(DataError, match=r"split fraction must be a number in \(0, 1\), got 1.5"):
        split_train_val(x, y, 1.5, seed=0)
    with pytest.raises(DataError, match="x has 5 samples but y has 4"):
        split_train_val(x, y[:4], 0.5, seed=0)


def test_holdout_never_touches_test():
    s = load_dataset("digits")
    h = s.holdout(0.25, seed=0)
    assert len(h.train_y) + len(h.test_y) == len(s.train_y) and h.mean == s.mean
    train_rows = {tuple(r.tolist()) for r in s.train_x.view(len(s.train_x), -1)}
    assert all(tuple(r.tolist()) in train_rows for r in h.test_x.view(len(h.test_x), -1))  # carved from train
    assert torch.equal(torch.sort(torch.cat([h.train_y, h.test_y])).values, torch.sort(s.train_y).values)
