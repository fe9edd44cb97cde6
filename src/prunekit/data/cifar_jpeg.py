"""CIFAR-10 as a tar.gz of JPEG files (``cifar10-jpeg[:ARCHIVE]``), read in place and cached decoded.

The archive holds ``train/<class>/NNNN.jpg`` (50,000 images) and
``test/<class>/NNNN.jpg`` (10,000), 32x32 RGB, for the ten CIFAR-10 classes. It is
read with :mod:`tarfile` as a stream (nothing is extracted) and every image is
decoded with Pillow. JPEG is lossy, so results on this copy are labelled
"CIFAR-10 (JPEG copy)", never plain CIFAR-10.

Decoding 60,000 JPEGs takes tens of seconds, so the decoded uint8 arrays are cached
in one ``.npz`` file in the user's cache folder (``$PRUNEKIT_CACHE``, else
``$XDG_CACHE_HOME/prunekit``, else ``~/.cache/prunekit``), named by the archive's
SHA-256: a changed archive gets a new cache file. The cache is written atomically,
read with ``allow_pickle=False`` and checked (its recorded SHA-256, keys, dtypes,
shapes and label range); a cache that fails any check is decoded again and replaced.

Labels follow the original CIFAR-10 order (``CIFAR10_CLASSES``), whatever order the
folders come in, so label ``i`` means the same class as in the python batches.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import warnings
import zlib
from pathlib import Path

import numpy as np

from prunekit.data.registry import register_dataset
from prunekit.data.splits import DatasetSplits, make_splits
from prunekit.errors import DataError

#: the CIFAR-10 label order of the original batches (``batches.meta``)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ARCHIVE_NAME = "cifar10-jpeg.tar.gz"
#: environment variable naming the folder that holds ``cifar10-jpeg.tar.gz`` (checked first)
DATA_ENV = "PRUNEKIT_DATA"
#: environment variable naming the cache folder
CACHE_ENV = "PRUNEKIT_CACHE"
#: bump when the cache layout changes, so older cache files are not read
CACHE_VERSION = 1
LABEL = "CIFAR-10 (JPEG copy)"

_MEMBER = re.compile(r"^(?:\./)?(train|test)/([^/]+)/([^/]+\.jpe?g)$", re.IGNORECASE)
_MAX_MEMBER_BYTES = 1 << 20  # a 32x32 JPEG is about 1 KB; nothing larger is read into memory
_CACHE_KEYS = ("version", "sha256", "train_x", "train_y", "test_x", "test_y")


def default_archive_places() -> list[Path]:
    """Where ``cifar10-jpeg`` looks for the archive without a path, in order.

    ``$PRUNEKIT_DATA/cifar10-jpeg.tar.gz``, then ``../shared/data/`` next to the
    repository this package is checked out in, then ``../shared/data/`` of the
    current directory.
    """
    places = []
    env = os.environ.get(DATA_ENV)
    if env:
        places.append(Path(env).expanduser() / ARCHIVE_NAME)
    repo = Path(__file__).resolve().parents[3]  # src/prunekit/data/this.py -> the checkout
    places.append(repo.parent / "shared" / "data" / ARCHIVE_NAME)
    places.append(Path.cwd().parent / "shared" / "data" / ARCHIVE_NAME)
    return places


def find_archive(path=None) -> Path:
    """The archive: ``path`` (the file, or a folder holding ``cifar10-jpeg.tar.gz``), else the default places.

    Raises:
        DataError: nothing found, naming every place looked at.
    """
    if path:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / ARCHIVE_NAME
        if not p.is_file():
            raise DataError(f"{p}: no such archive (cifar10-jpeg expects {ARCHIVE_NAME} or a folder holding it)")
        return p
    places = default_archive_places()
    for p in places:
        if p.is_file():
            return p
    raise DataError(f"cifar10-jpeg: {ARCHIVE_NAME} not found in {', '.join(str(p.parent) for p in places)}; "
                    f"name it as 'cifar10-jpeg:PATH' or set ${DATA_ENV} to its folder")


def cache_dir() -> Path:
    """``$PRUNEKIT_CACHE``, else ``$XDG_CACHE_HOME/prunekit``, else ``~/.cache/prunekit``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "prunekit"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    return h.hexdigest()


def decode_jpeg(data: bytes, where: str) -> np.ndarray:
    """One JPEG (bytes) as a (32, 32, 3) uint8 RGB array; anything else raises DataError naming ``where``."""
    from PIL import Image, UnidentifiedImageError

    size = None
    try:
        with Image.open(io.BytesIO(data)) as im:
            size = im.size
            if size == (32, 32):  # checked before decoding: a small file may declare a huge image
                im.load()
                rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{where}: unreadable image ({type(e).__name__}: {e})") from None
    if size != (32, 32):
        raise DataError(f"{where}: image is {size[0]}x{size[1]}, CIFAR-10 images are 32x32")
    return np.asarray(rgb, dtype=np.uint8)


class _CountingReader(io.RawIOBase):
    """A read-only file wrapper that reports the bytes read to a progress bar."""

    def __init__(self, f, bar) -> None:
        self._f, self._bar = f, bar

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        self._bar.update(n or 0)
        return n


def decode_archive(path, *, progress: bool = True, max_members: int | None = None) -> dict:
    """Decode the JPEGs of a CIFAR-10 JPEG archive in one streaming pass (no extraction).

    Args:
        path: the ``.tar.gz`` (or plain ``.tar``) file.
        progress: show a progress bar over the archive's bytes.
        max_members: stop after this many images (a quick look at a large archive).

    Returns:
        ``{"train_x", "train_y", "test_x", "test_y"}``: (N, 3, 32, 32) uint8 images and
        (N,) int64 labels in CIFAR-10 order, sorted by (class, file name) within each split.

    Raises:
        DataError: not a tar archive, an unknown class folder, a file that is not a
            32x32 image, or a split with no images; the message names the member.
    """
    from prunekit.utils.progress import progress_bar

    path = Path(path)
    index = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    found: dict = {"train": [], "test": []}
    count = 0
    size = path.stat().st_size
    with open(path, "rb") as raw, progress_bar(total=size, desc=f"decoding {path.name}", unit="B",
                                               enabled=progress, leave=True) as bar:
        reader = io.BufferedReader(_CountingReader(raw, bar))
        try:
            # "r|*": one sequential pass, gzip or not; members are read as they stream by.
            with tarfile.open(fileobj=reader, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    m = _MEMBER.match(member.name)
                    if m is None:
                        continue  # e.g. a README next to the image folders
                    split, cls, fname = m.groups()
                    if cls not in index:
                        raise DataError(f"{path}: {member.name}: unknown class folder {cls!r} "
                                        f"(CIFAR-10 classes: {', '.join(CIFAR10_CLASSES)})")
                    if member.size > _MAX_MEMBER_BYTES:
                        raise DataError(f"{path}: {member.name}: {member.size:,} bytes, too large for a "
                                        f"32x32 JPEG (at most {_MAX_MEMBER_BYTES:,})")
                    f = tar.extractfile(member)
                    image = decode_jpeg(f.read(), f"{path}: {member.name}")
                    found[split].append((index[cls], fname, image))
                    count += 1
                    if max_members is not None and count >= max_members:
                        break
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: not a readable tar archive ({type(e).__name__}: {e})") from None
        except OSError as e:  # gzip.BadGzipFile and read errors
            raise DataError(f"{path}: cannot read the archive ({type(e).__name__}: {e})") from None
    out = {}
    for split, items in found.items():
        if not items and max_members is None:
            raise DataError(f"{path}: no {split}/<class>/*.jpg images in the archive")
        items.sort(key=lambda t: (t[0], t[1]))
        x = np.stack([t[2] for t in items]) if items else np.zeros((0, 32, 32, 3), np.uint8)
        out[f"{split}_x"] = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        out[f"{split}_y"] = np.array([t[0] for t in items], dtype=np.int64)
    return out


def _cache_path(sha: str) -> Path:
    return cache_dir() / f"cifar10-jpeg-v{CACHE_VERSION}-{sha[:16]}.npz"


def _read_cache(p: Path, sha: str) -> dict | None:
    """The cached arrays if ``p`` is a complete, consistent cache of the archive ``sha``; else None."""
    import zipfile

    if not p.is_file():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            if sorted(z.files) != sorted(_CACHE_KEYS):
                return None
            arrays = {k: z[k] for k in _CACHE_KEYS}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error):
        return None
    try:
        if (arrays["version"].shape != () or int(arrays["version"]) != CACHE_VERSION
                or arrays["sha256"].shape != () or str(arrays["sha256"]) != sha):
            return None
        for split in ("train", "test"):
            x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
            if (x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32) or y.dtype != np.int64
                    or y.shape != (len(x),) or len(x) == 0 or int(y.min()) < 0 or int(y.max()) >= 10):
                return None
    except (TypeError, ValueError):  # e.g. a version that is not a number
        return None
    return {k: arrays[k] for k in ("train_x", "train_y", "test_x", "test_y")}


def _write_cache(p: Path, sha: str, arrays: dict) -> None:
    from prunekit.utils.io import atomic_write

    try:
        with atomic_write(p, "wb") as f:
            # Uncompressed: the pixels barely compress and the load is then a plain read.
            np.savez(f, version=np.int64(CACHE_VERSION), sha256=np.array(sha), **arrays)
    except OSError as e:  # a read-only or full cache folder costs time, not correctness
        warnings.warn(f"cifar10-jpeg: cannot write the cache {p} ({e}); the archive will be decoded again next time",
                      stacklevel=3)


def cached_arrays(archive: Path, *, progress: bool = True) -> dict:
    """The decoded arrays of ``archive``: from the cache when it is valid, else decoded and cached."""
    sha = file_sha256(archive)
    p = _cache_path(sha)
    arrays = _read_cache(p, sha)
    if arrays is None:
        if p.exists():
            warnings.warn(f"cifar10-jpeg: ignoring the unreadable or inconsistent cache {p}; decoding again",
                          stacklevel=3)
        arrays = decode_archive(archive, progress=progress)
        _write_cache(p, sha, arrays)
    return arrays


@register_dataset("cifar10-jpeg", takes_path=True, path_optional=True,
                  description=f"{LABEL}: 50,000 + 10,000 32x32 images from {ARCHIVE_NAME}, read in place, "
                              f"decoded once and cached")
def cifar10_jpeg(path=None, normalize: bool = True, progress: bool = True) -> DatasetSplits:
    """CIFAR-10 (JPEG copy) from ``cifar10-jpeg.tar.gz`` (``cifar10-jpeg`` or ``cifar10-jpeg:PATH``).

    Args:
        path: the archive or its folder; None looks in :func:`default_archive_places`.
        normalize: normalize with the train mean/std (pixels first scaled to [0, 1]).
        progress: show a progress bar while decoding (the first load of an archive only).

    The default augmentation is the CIFAR one (``domain="natural"``: random crop with
    padding 4 and horizontal flip). Class names and label order are CIFAR-10's.

    Example:
        >>> s = load_dataset("cifar10-jpeg")          # doctest: +SKIP
        >>> len(s.train_y), len(s.test_y), s.class_names[:2]   # doctest: +SKIP
        (50000, 10000, ('airplane', 'automobile'))
    """
    archive = find_archive(path)
    arrays = cached_arrays(archive, progress=progress)
    name = "cifar10-jpeg" if path is None else f"cifar10-jpeg:{path}"
    return make_splits(name, arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"],
                       scale=255.0, num_classes=10, normalize=normalize, domain="natural",
                       class_names=CIFAR10_CLASSES)
