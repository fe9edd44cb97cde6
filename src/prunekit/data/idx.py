"""MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST), raw or gzip-compressed.

Layout of ``DIR`` (``mnist-idx:DIR``), each file optionally ending in ``.gz``::

    train-images-idx3-ubyte   train-labels-idx1-ubyte
    t10k-images-idx3-ubyte    t10k-labels-idx1-ubyte

The dotted names some mirrors use (``train-images.idx3-ubyte``) and a ``raw/``
subfolder are found too. Format (LeCun et al., 1998): a big-endian int32 magic
number (2051 for images, 2049 for labels), one big-endian int32 per dimension,
then the unsigned bytes in row-major order.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from prunekit.data.registry import register_dataset
from prunekit.data.splits import DatasetSplits, make_splits
from prunekit.errors import DataError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, cols)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)
_GZIP_SIGNATURE = b"\x1f\x8b"

#: where the Debian package ``dataset-fashion-mnist`` installs the four IDX .gz files
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
#: environment variable naming another Fashion-MNIST folder (checked first)
FASHION_MNIST_ENV = "PRUNEKIT_FASHION_MNIST"
#: Fashion-MNIST's labels 0..9 (Xiao, Rasul & Vollgraf, 2017)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _read_bytes(path: Path) -> bytes:
    """File content, gunzipped when it starts with the gzip signature (whatever its name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: missing file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if raw[:2] == _GZIP_SIGNATURE:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path, magic: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes, checking its magic number and its size.

    Args:
        path: the file, raw or gzip-compressed.
        magic: the expected magic number (2051 for images, 2049 for labels).

    Returns:
        A uint8 array with the shape the header declares.

    Raises:
        DataError: missing file, wrong magic number, truncated data or trailing bytes;
            the message names the file.

    Example:
        >>> images = read_idx("train-images-idx3-ubyte.gz", IMAGES_MAGIC)   # doctest: +SKIP
        >>> images.shape                                                     # doctest: +SKIP
        (60000, 28, 28)
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    (found,) = struct.unpack(">i", data[:4])
    if found != magic:
        kind = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(magic, "IDX")
        raise DataError(f"{path}: wrong magic number {found} (expected {magic} for an {kind} file)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated: header needs {header} bytes, file has {len(data)}")
    dims = struct.unpack(f">{ndim}i", data[4:header])
    if any(d < 0 for d in dims):
        raise DataError(f"{path}: negative dimension in header {dims}")
    expected = int(np.prod(dims, dtype=np.int64))
    body = len(data) - header
    if body < expected:
        raise DataError(f"{path}: truncated: header declares shape {dims} ({expected} bytes) "
                        f"but only {body} bytes follow")
    if body > expected:
        raise DataError(f"{path}: {body - expected} unexpected bytes after the {expected} "
                        f"bytes the header {dims} declares")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    """The file for ``stem`` in ``root`` or ``root/raw``: raw preferred over ``.gz``."""
    dotted = stem.replace("-idx", ".idx")  # "train-images.idx3-ubyte", as some mirrors name them
    for folder in (root, root / "raw"):
        for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"{root / stem}: missing file (also looked for {stem}.gz, {dotted}[.gz] "
                    f"and the same names under {root / 'raw'})")


def _read_pair(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    img_path = _find(root, _FILES[f"{split}_images"])
    lbl_path = _find(root, _FILES[f"{split}_labels"])
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lbl_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{img_path}: holds no images")
    return images, labels


@register_dataset("mnist-idx", takes_path=True,
                  description="MNIST / Fashion-MNIST IDX files (raw or .gz) in a directory")
def mnist_idx(path, num_classes: int | None = None, normalize: bool = True) -> DatasetSplits:
    """Load MNIST-format IDX files from a directory (``mnist-idx:DIR``).

    Images become 1xHxW (28x28 for MNIST), scaled to [0, 1] and normalized with
    the train mean/std. ``num_classes`` defaults to the largest label + 1
    (10 for MNIST and Fashion-MNIST); labels beyond a given ``num_classes`` raise.

    Example:
        >>> s = load_dataset("mnist-idx:/data/fashion-mnist")   # doctest: +SKIP
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (mnist-idx expects a folder of IDX files)")
    train_x, train_y = _read_pair(root, "train")
    test_x, test_y = _read_pair(root, "test")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{root}: train images are {train_x.shape[1:]} but test images are {test_x.shape[1:]}")
    top = int(max(train_y.max(), test_y.max()))
    if num_classes is None:
        num_classes = top + 1
    elif top >= num_classes:
        raise DataError(f"{root}: label {top} found but num_classes={num_classes}")
    return make_splits(f"mnist-idx:{path}", train_x[:, None], train_y, test_x[:, None], test_y,
                       scale=255.0, num_classes=num_classes, normalize=normalize, domain="digits")


def fashion_mnist_dir(path=None) -> Path:
    """The Fashion-MNIST folder: ``path``, else ``$PRUNEKIT_FASHION_MNIST``, else ``/usr/share/datasets/fashion-mnist``.

    Raises:
        DataError: no folder found, naming the places looked at and how to install the files.
    """
    if path:
        return Path(path).expanduser()
    env = os.environ.get(FASHION_MNIST_ENV)
    if env:
        return Path(env).expanduser()
    default = Path(FASHION_MNIST_DIR)
    if not default.is_dir():
        raise DataError(f"fashion-mnist: {default} not found; install the IDX files with "
                        f"'apt-get install dataset-fashion-mnist', or name a folder as 'fashion-mnist:DIR' "
                        f"or with ${FASHION_MNIST_ENV}")
    return default


@register_dataset("fashion-mnist", takes_path=True, path_optional=True,
                  description="Fashion-MNIST IDX files (60,000 + 10,000 28x28 clothing images, 10 classes); "
                              "default folder /usr/share/datasets/fashion-mnist")
def fashion_mnist(path=None, normalize: bool = True) -> DatasetSplits:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 60,000 train / 10,000 test 1x28x28 images, 10 classes.

    Read with the IDX reader of ``mnist-idx`` from ``path``, else the folder named by
    ``$PRUNEKIT_FASHION_MNIST``, else ``/usr/share/datasets/fashion-mnist`` (where
    ``apt-get install dataset-fashion-mnist`` puts the files). The official test set
    is the test split; a validation split comes from ``splits.holdout(fraction, seed)``
    as for every dataset. Like ``mnist-idx`` it counts as ``domain="digits"`` (the
    default augmentation translates and never flips), so ``fashion-mnist`` and
    ``mnist-idx:/usr/share/datasets/fashion-mnist`` give the same tensors.

    Example:
        >>> s = load_dataset("fashion-mnist")     # doctest: +SKIP
        >>> len(s.train_y), len(s.test_y), s.class_names[0]   # doctest: +SKIP
        (60000, 10000, 'T-shirt/top')
    """
    root = fashion_mnist_dir(path)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (fashion-mnist expects the folder of the four IDX files)")
    train_x, train_y = _read_pair(root, "train")
    test_x, test_y = _read_pair(root, "test")
    if train_x.shape[1:] != (28, 28) or test_x.shape[1:] != (28, 28):
        raise DataError(f"{root}: Fashion-MNIST images are 28x28, found {train_x.shape[1:]} (train) "
                        f"and {test_x.shape[1:]} (test)")
    top = int(max(train_y.max(), test_y.max()))
    if top >= 10:
        raise DataError(f"{root}: label {top} found; Fashion-MNIST has 10 classes")
    name = "fashion-mnist" if path is None else f"fashion-mnist:{path}"
    return make_splits(name, train_x[:, None], train_y, test_x[:, None], test_y, scale=255.0,
                       num_classes=10, normalize=normalize, domain="digits", class_names=FASHION_MNIST_CLASSES)
