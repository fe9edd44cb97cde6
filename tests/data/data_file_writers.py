"""Writers of tiny dataset files in the exact on-disk formats prunekit reads (used by the data tests)."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, magic: int, gz: bool = False) -> Path:
    """An IDX file: big-endian int32 magic, one int32 per dimension, then the bytes."""
    body = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()
    path = Path(str(path) + ".gz") if gz else Path(path)
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


def make_idx_dir(root: Path, gz: bool = False, n_train: int = 12, n_test: int = 6, hw=(4, 5), seed: int = 0):
    """A tiny MNIST-layout directory; returns the raw arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        "train_y": np.arange(n_train, dtype=np.uint8) % 3,
        "test_x": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "test_y": np.arange(n_test, dtype=np.uint8) % 3,
    }
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte", arrays["train_x"], 2051, gz)
    write_idx(root / "train-labels-idx1-ubyte", arrays["train_y"], 2049, gz)
    write_idx(root / "t10k-images-idx3-ubyte", arrays["test_x"], 2051, gz)
    write_idx(root / "t10k-labels-idx1-ubyte", arrays["test_y"], 2049, gz)
    return arrays


def write_pickle(path: Path, obj) -> None:
    # Protocol 2 with bytes keys, like the original (Python 2 cPickle) CIFAR files.
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar10_dir(root: Path, per_batch: int = 3, n_test: int = 4, seed: int = 0):
    """data_batch_1..5 + test_batch + batches.meta; returns (train_x, train_y, test_x, test_y) as written."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        write_pickle(root / f"data_batch_{i}", {b"batch_label": b"training batch", b"labels": y,
                                               b"data": x, b"filenames": [b"f.png"] * per_batch})
        xs.append(x)
        ys.extend(y)
    tx = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    ty = [int(v) for v in rng.integers(0, 10, n_test)]
    write_pickle(root / "test_batch", {b"labels": ty, b"data": tx})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(root / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return np.concatenate(xs), np.array(ys), tx, np.array(ty)


def make_cifar100_dir(root: Path, n_train: int = 6, n_test: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for name, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [int(v) for v in rng.integers(0, 20, n)]
        write_pickle(root / name, {b"data": x, b"fine_labels": fine, b"coarse_labels": coarse})
        out.append((x, np.array(fine), np.array(coarse)))
    return out


def make_image_tree(root: Path, classes=("cat", "dog"), per_class: int = 5, size=(6, 7),
                    mode: str = "RGB", seed: int = 0):
    """root/<class>/<i>.png with random pixels; returns {class: [array per file, in file order]}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = {}
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        out[c] = []
        for i in range(per_class):
            shape = (*size, 3) if mode == "RGB" else size
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i:02d}.png")
            out[c].append(arr)
    return out
