"""The :class:`DatasetSplits` container, per-channel normalization, and stratified splits.

Every loader in :mod:`prunekit.data` ends in :func:`make_splits`, which turns raw
arrays into float32 tensors, computes the per-channel mean and standard deviation
of the *train* split only (so nothing about the test set leaks into training), and
normalizes both splits with them.

Example:
    >>> import numpy as np
    >>> x = np.arange(2 * 1 * 2 * 2, dtype=np.uint8).reshape(2, 1, 2, 2)
    >>> s = make_splits("toy", x, [0, 1], x, [0, 1], scale=1.0, num_classes=2)
    >>> s.mean, abs(s.train_x.mean().item()) < 1e-6
    ((3.5,), True)
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch

from prunekit.errors import DataError
from prunekit.validate import check_fraction, check_int

# What default_augment does depends on the kind of images, not on the loader:
# "digits" must not be flipped, "natural" photos may be.
DOMAINS = ("digits", "natural", "synthetic")


@dataclass
class DatasetSplits:
    """A dataset loaded into memory: normalized train and test tensors plus metadata.

    Attributes:
        name: the name it was loaded by, e.g. ``"mnist5k"`` or ``"cifar10:/data/cifar"``.
        train_x: (N, C, H, W) float32, normalized with ``mean``/``std``.
        train_y: (N,) int64 class indices in ``[0, num_classes)``.
        test_x: (M, C, H, W) float32, normalized with the *train* statistics.
        test_y: (M,) int64.
        num_classes: number of classes.
        in_channels: C.
        image_size: (H, W).
        mean: per-channel mean of the (scaled) train images, before normalization.
        std: per-channel standard deviation (population) of the scaled train images.
        domain: ``"digits"``, ``"natural"`` or ``"synthetic"``; picks the default augmentation.
        class_names: human-readable class names where the files give them, else empty.

    Example:
        >>> from prunekit.data import load_dataset      # doctest: +SKIP
        >>> print(load_dataset("digits").summary())     # doctest: +SKIP
        digits: 1437 train / 360 test, 10 classes, 1x8x8, mean=(0.3054,), std=(0.3761,)
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    domain: str = "natural"
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A loader bug (or a hand-built instance) that mismatches shapes would
        # otherwise surface much later as a confusing error inside training.
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim != 4 or x.dtype != torch.float32:
                raise DataError(f"{self.name}: {split}_x must be (N, C, H, W) float32, "
                                f"got {tuple(x.shape)} {x.dtype}")
            if y.ndim != 1 or y.dtype != torch.int64 or len(y) != len(x):
                raise DataError(f"{self.name}: {split}_y must be ({len(x)},) int64, "
                                f"got {tuple(y.shape)} {y.dtype}")
            if tuple(x.shape[1:]) != (self.in_channels, *self.image_size):
                raise DataError(f"{self.name}: {split}_x has sample shape {tuple(x.shape[1:])}, "
                                f"expected {(self.in_channels, *self.image_size)}")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise DataError(f"{self.name}: {split}_y has labels outside [0, {self.num_classes})")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise DataError(f"{self.name}: mean/std need {self.in_channels} values each")
        if self.domain not in DOMAINS:
            raise DataError(f"{self.name}: domain must be one of {DOMAINS}, got {self.domain!r}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample, as models and checkpoints expect it."""
        return (self.in_channels, *self.image_size)

    def summary(self) -> str:
        """One line describing sizes, shape and normalization."""
        h, w = self.image_size
        mean = ", ".join(f"{m:.4f}" for m in self.mean)
        std = ", ".join(f"{s:.4f}" for s in self.std)
        comma = "," if self.in_channels == 1 else ""
        return (f"{self.name}: {len(self.train_y)} train / {len(self.test_y)} test, "
                f"{self.num_classes} classes, {self.in_channels}x{h}x{w}, "
                f"mean=({mean}{comma}), std=({std}{comma})")

    def __repr__(self) -> str:  # the dataclass default would print whole tensors
        return f"DatasetSplits({self.summary()})"

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalization: ``x * std + mean`` per channel (for viewing images)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x * std + mean

    def holdout(self, val_fraction: float = 0.1, seed: int = 0) -> "DatasetSplits":
        """A copy whose test split is a stratified validation slice carved from train.

        Search and tuning code uses this so the real test set is never looked at.
        The normalization statistics stay those of the full train split.

        Example:
            >>> tune = splits.holdout(0.1, seed=0)   # doctest: +SKIP
            >>> len(tune.train_y) + len(tune.test_y) == len(splits.train_y)  # doctest: +SKIP
            True
        """
        tv = split_train_val(self.train_x, self.train_y, val_fraction, seed)
        return dataclasses.replace(self, name=f"{self.name}[holdout {val_fraction}, seed {seed}]",
                                   train_x=tv.train_x, train_y=tv.train_y,
                                   test_x=tv.val_x, test_y=tv.val_y)


class TrainValSplit(NamedTuple):
    """Result of :func:`split_train_val`; unpacks as ``train_x, train_y, val_x, val_y``."""

    train_x: object
    train_y: object
    val_x: object
    val_y: object


def stratified_indices(y: Sequence[int] | np.ndarray, test_size: float | int,
                       seed: int, what: str = "dataset") -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) index arrays of a seeded stratified split (scikit-learn's).

    ``test_size`` is a fraction in (0, 1) or a count. Indices are returned sorted,
    so both parts keep the original order of the samples.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(y)
    n = len(labels)
    if isinstance(test_size, numbers.Integral) and not isinstance(test_size, bool):  # a count (numpy ints too)
        test_size = check_int(f"{what}: split count", test_size, minimum=1, maximum=n - 1, error=DataError)
    else:  # anything else must be a fraction
        test_size = check_fraction(f"{what}: split fraction", test_size, allow_zero=False, error=DataError)
    try:
        train_idx, test_idx = train_test_split(np.arange(n), test_size=test_size,
                                               random_state=seed, stratify=labels)
    except ValueError as e:  # e.g. a class with a single sample, or fewer split samples than classes
        raise DataError(f"{what}: cannot make a stratified split of {n} samples: {e}") from None
    return np.sort(train_idx), np.sort(test_idx)


def split_train_val(x, y, val_fraction: float | int, seed: int = 0) -> TrainValSplit:
    """Carve a stratified, seeded validation split out of a training set.

    Works on torch tensors and NumPy arrays alike; each class keeps its share in
    both parts, and the same ``seed`` always gives the same split.

    Args:
        x: samples, indexed along the first dimension.
        y: integer class labels, same length as ``x``.
        val_fraction: fraction in (0, 1) of samples moved to validation, or a count.
        seed: seed of the split.

    Returns:
        ``TrainValSplit(train_x, train_y, val_x, val_y)``.

    Example:
        >>> import torch
        >>> tv = split_train_val(torch.zeros(10, 1, 2, 2), torch.arange(10) % 2, 0.2, seed=0)
        >>> sorted(tv.val_y.tolist())
        [0, 1]
    """
    if len(x) != len(y):
        raise DataError(f"split_train_val: x has {len(x)} samples but y has {len(y)}")
    labels = y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    train_idx, val_idx = stratified_indices(labels, val_fraction, seed, what="split_train_val")

    def take(a, idx):
        if isinstance(a, torch.Tensor):
            return a[torch.from_numpy(idx).to(a.device)]
        return np.asarray(a)[idx]

    return TrainValSplit(take(x, train_idx), take(y, train_idx), take(x, val_idx), take(y, val_idx))


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population standard deviation of an (N, C, H, W) tensor.

    Sums are accumulated in float64 over chunks of samples, so a 50,000-image
    CIFAR train set needs no float64 copy of the whole tensor.
    """
    n, c = x.shape[0], x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        part = x[start:start + chunk].to(torch.float64)
        total += part.sum(dim=(0, 2, 3)).cpu()
        total_sq += part.square().sum(dim=(0, 2, 3)).cpu()
    count = max(n * x.shape[2] * x.shape[3], 1)
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def make_splits(name: str, train_x, train_y, test_x, test_y, *, scale: float, num_classes: int,
                normalize: bool = True, domain: str = "natural",
                class_names: Sequence[str] = ()) -> DatasetSplits:
    """Build a :class:`DatasetSplits` from raw (N, C, H, W) arrays.

    Images are converted to float32, divided by ``scale`` (255 for 8-bit pixels),
    then normalized per channel with the train split's mean and std (a channel
    with zero spread gets std 1, so a constant channel stays finite). With
    ``normalize=False`` the mean is 0 and the std 1, i.e. the scaled values are kept.
    """
    xs = []
    for arr in (train_x, test_x):
        # Always a copy, so the caller's (possibly cached) array is never modified in place below.
        if isinstance(arr, torch.Tensor):
            t = arr.detach().to(device="cpu", dtype=torch.float32, copy=True)
        else:
            t = torch.tensor(np.asarray(arr), dtype=torch.float32)
        if scale != 1.0:
            t.div_(scale)
        xs.append(t)
    channels = xs[0].shape[1]
    if normalize:
        mean, std = channel_stats(xs[0])
        std = tuple(s if s > 0 else 1.0 for s in std)
        m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        for t in xs:
            t.sub_(m).div_(s)
    else:
        mean, std = (0.0,) * channels, (1.0,) * channels
    ys = [v.detach().to(device="cpu", dtype=torch.int64, copy=True) if isinstance(v, torch.Tensor)
          else torch.tensor(np.asarray(v), dtype=torch.int64) for v in (train_y, test_y)]
    return DatasetSplits(name=name, train_x=xs[0], train_y=ys[0], test_x=xs[1], test_y=ys[1],
                         num_classes=int(num_classes), in_channels=int(channels),
                         image_size=(int(xs[0].shape[2]), int(xs[0].shape[3])),
                         mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
                         domain=domain, class_names=tuple(class_names))
