"""Your own arrays as a dataset (``tensors:FILE``): a ``.npz`` or a ``.pt`` of images and labels.

The file holds ``x_train``, ``y_train``, ``x_test``, ``y_test`` (or only ``x`` and ``y``,
split 80/20 stratified by class with a fixed seed). Images are ``(N, C, H, W)`` (or
``(N, H, W)``, one channel) and are used **as stored**: no scaling, no normalization,
so a model trained in Python on these arrays sees the same values on the command line.
Labels are integer class indices. Training augments them as the ``synthetic`` dataset
(a small random translation, no flip). A ``.pt`` is read with ``torch.load(weights_only=True)``
(a dict of tensors); a ``.npz`` with ``numpy.load(allow_pickle=False)``: no code runs.

Example:
    >>> np.savez("mydata.npz", x=images, y=labels)          # doctest: +SKIP
    >>> splits = load_dataset("tensors:mydata.npz")          # doctest: +SKIP
    $ prunekit eval model.pt --data tensors:mydata.npz
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from prunekit.data.registry import register_dataset
from prunekit.data.splits import DatasetSplits, make_splits, stratified_indices
from prunekit.errors import DataError
from prunekit.validate import check_fraction

_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read(p: Path) -> dict:
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as f:
                return {k: np.asarray(f[k]) for k in f.files}
        except (OSError, ValueError) as e:   # not a zip, or an object array (refused: it would need pickle)
            raise DataError(f"{p}: not a readable .npz of arrays ({e})") from None
    if p.suffix == ".pt":
        import torch

        try:
            d = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:   # torch's unpickler raises assorted types on bad files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"{p}: not readable with weights_only=True ({first[:200]})") from None
        if not isinstance(d, dict) or not all(isinstance(v, torch.Tensor) for v in d.values()):
            raise DataError(f"{p}: expected a dict of tensors (x_train, y_train, x_test, y_test, or x, y)")
        return {str(k): v.numpy() for k, v in d.items()}
    raise DataError(f"{p}: a tensors dataset is a .npz or .pt file")


def _images(a: np.ndarray, p: Path, key: str) -> np.ndarray:
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or not np.issubdtype(a.dtype, np.number) or len(a) == 0:
        raise DataError(f"{p}: {key} must be a non-empty numeric array (N, C, H, W) or (N, H, W), got shape "
                        f"{list(a.shape)} of {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise DataError(f"{p}: {key} holds NaN or infinity")
    return a.astype(np.float32, copy=False)


def _labels(a: np.ndarray, n: int, p: Path, key: str) -> np.ndarray:
    if a.ndim != 1 or len(a) != n or not np.issubdtype(a.dtype, np.integer) or (len(a) and a.min() < 0):
        raise DataError(f"{p}: {key} must be {n} non-negative integer class indices, got shape {list(a.shape)} "
                        f"of {a.dtype}")
    return a.astype(np.int64, copy=False)


@register_dataset("tensors", takes_path=True,
                  description="your own arrays: a .npz/.pt with x_train, y_train, x_test, y_test (or x, y)")
def tensors(path, test_fraction: float = 0.2, seed: int = 0) -> DatasetSplits:
    """Load ``tensors:FILE``: images and labels from a ``.npz`` or ``.pt`` file, values kept as stored.

    Args:
        path: the file (see the module docstring for the keys).
        test_fraction: with only ``x``/``y``, the fraction put in the test split (stratified).
        seed: seed of that split.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    d = _read(p)
    if all(k in d for k in _KEYS):
        tx, ex = _images(d["x_train"], p, "x_train"), _images(d["x_test"], p, "x_test")
        ty, ey = _labels(d["y_train"], len(tx), p, "y_train"), _labels(d["y_test"], len(ex), p, "y_test")
        if tx.shape[1:] != ex.shape[1:]:
            raise DataError(f"{p}: x_train samples are {list(tx.shape[1:])} but x_test ones {list(ex.shape[1:])}")
    elif "x" in d and "y" in d:
        x = _images(d["x"], p, "x")
        y = _labels(d["y"], len(x), p, "y")
        check_fraction("tensors: test_fraction", test_fraction, error=DataError)
        tr, te = stratified_indices(y, test_fraction, seed, what=str(p))
        tx, ty, ex, ey = x[tr], y[tr], x[te], y[te]
    else:
        raise DataError(f"{p}: expected arrays x_train, y_train, x_test, y_test (or x and y); found "
                        f"{', '.join(sorted(d)) or 'none'}")
    classes = int(max(ty.max(), ey.max())) + 1
    # domain "synthetic": training augmentation is a small random translation and no flip, the safe choice
    # when prunekit cannot know whether a mirrored sample keeps its class
    return make_splits(f"tensors:{path}", tx, ty, ex, ey, scale=1.0, num_classes=classes, normalize=False,
                       domain="synthetic")
