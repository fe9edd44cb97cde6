"""CIFAR-10 and CIFAR-100 in their "python version" pickle batches (Krizhevsky, 2009).

Layouts (``DIR`` may also be the folder that contains the extracted archive folder)::

    cifar10:DIR    DIR/data_batch_1 .. data_batch_5, DIR/test_batch, [DIR/batches.meta]
                   (the archive extracts to cifar-10-batches-py/)
    cifar100:DIR   DIR/train, DIR/test, [DIR/meta]      (archive folder: cifar-100-python/)

Each batch is a pickled dict with ``b"data"``, a (N, 3072) uint8 array holding
the red, green and blue 32x32 planes of each image in row-major order, and the
labels (``b"labels"`` for CIFAR-10; ``b"fine_labels"``/``b"coarse_labels"`` for CIFAR-100).

Pickles can run code when loaded, so a restricted unpickler is used that only
rebuilds NumPy arrays and plain containers; anything else is refused.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np

from prunekit.data.registry import register_dataset
from prunekit.data.splits import DatasetSplits, make_splits
from prunekit.errors import DataError

_PIXELS = 3 * 32 * 32
# The only globals a CIFAR pickle needs: NumPy's array reconstruction helpers
# (module names of NumPy 1 and 2) and the codec Python 3 uses for bytes in protocol 2.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global outside :data:`_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not a plain data pickle)")
        with warnings.catch_warnings():  # numpy.core.* is a deprecated alias in NumPy 2
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    """Load one CIFAR pickle (``encoding="bytes"``) and return it with ``str`` keys."""
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path}: missing file") from None
    except Exception as e:  # noqa: BLE001 - unpickling garbage can raise almost any exception type
        raise DataError(f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels of one batch file, validated."""
    batch = read_pickle(path)
    missing = [k for k in ("data", label_key) if k not in batch]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}; found {', '.join(sorted(batch)) or 'none'}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, {_PIXELS}), got {desc}")
    try:
        labels = np.asarray(batch[label_key])
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: '{label_key}' is not a list of integers ({e})") from None
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: '{label_key}' must be {len(data)} integers, got {labels.dtype} "
                        f"array of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: '{label_key}' has values outside [0, {num_classes})")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _class_names(path: Path, key: str, num_classes: int) -> tuple[str, ...]:
    """Class names from the optional meta file; () when the file is absent."""
    if not path.is_file():
        return ()
    meta = read_pickle(path)
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != num_classes:
        raise DataError(f"{path}: '{key}' must list {num_classes} class names")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _resolve_root(path, marker: str, archive_folder: str) -> Path:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    if not (root / marker).exists() and (root / archive_folder / marker).exists():
        return root / archive_folder
    return root


@register_dataset("cifar10", takes_path=True, description="CIFAR-10 python pickle batches in a directory")
def cifar10(path, normalize: bool = True) -> DatasetSplits:
    """Load CIFAR-10 from ``data_batch_1..5`` and ``test_batch`` (``cifar10:DIR``).

    50,000 train / 10,000 test 3x32x32 images for the real files; scaled to [0, 1]
    and normalized with the train mean/std. Class names come from ``batches.meta``.
    """
    root = _resolve_root(path, "data_batch_1", "cifar-10-batches-py")
    parts = [_read_batch(root / f"data_batch_{i}", "labels", 10) for i in range(1, 6)]
    test_x, test_y = _read_batch(root / "test_batch", "labels", 10)
    names = _class_names(root / "batches.meta", "label_names", 10)
    return make_splits(f"cifar10:{path}", np.concatenate([p[0] for p in parts]),
                       np.concatenate([p[1] for p in parts]), test_x, test_y, scale=255.0,
                       num_classes=10, normalize=normalize, domain="natural", class_names=names)


@register_dataset("cifar100", takes_path=True, description="CIFAR-100 python pickles (train, test) in a directory")
def cifar100(path, labels: str = "fine", normalize: bool = True) -> DatasetSplits:
    """Load CIFAR-100 from ``train`` and ``test`` (``cifar100:DIR``).

    Args:
        path: the directory.
        labels: ``"fine"`` (100 classes, the usual benchmark) or ``"coarse"`` (20 superclasses).
        normalize: normalize with the train mean/std.
    """
    if labels not in ("fine", "coarse"):
        raise DataError(f"cifar100: labels must be 'fine' or 'coarse', got {labels!r}")
    num_classes = 100 if labels == "fine" else 20
    root = _resolve_root(path, "train", "cifar-100-python")
    key = f"{labels}_labels"
    train_x, train_y = _read_batch(root / "train", key, num_classes)
    test_x, test_y = _read_batch(root / "test", key, num_classes)
    names = _class_names(root / "meta", f"{labels}_label_names", num_classes)
    return make_splits(f"cifar100:{path}", train_x, train_y, test_x, test_y, scale=255.0,
                       num_classes=num_classes, normalize=normalize, domain="natural", class_names=names)
