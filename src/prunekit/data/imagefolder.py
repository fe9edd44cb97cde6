"""Folders of image files, one sub-folder per class (``imagefolder:DIR``).

Two layouts are accepted::

    DIR/train/<class>/*.png|jpg|...   DIR/test/<class>/...   (or DIR/val instead of DIR/test)
    DIR/<class>/*.png|jpg|...         one tree, split into train/test (seeded, stratified)

Class indices follow the sorted class folder names of the train tree. Files whose
suffix is not an image suffix, and hidden files and folders, are ignored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from prunekit.data.registry import register_dataset
from prunekit.data.splits import DatasetSplits, make_splits, stratified_indices
from prunekit.errors import DataError
from prunekit.validate import check_int_sequence

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _scan(root: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files of a ``<class>/<file>`` tree."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if not classes:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/<image files>)")
    tree = {}
    for folder in classes:
        files = sorted(f for f in folder.iterdir()
                       if f.is_file() and _visible(f) and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder}: class folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        tree[folder.name] = files
    return tree


def _size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    h, w = check_int_sequence("imagefolder: image_size (an int or height, width)", image_size, length=2,
                              allow_scalar=True, error=DataError)
    return h, w


def read_images(files: list[Path], size: tuple[int, int] | None, grayscale: bool,
                progress: bool = True) -> np.ndarray:
    """Decode ``files`` into one (N, C, H, W) uint8 array with Pillow.

    Images are converted to RGB (C=3) or 8-bit grayscale (C=1) and resized
    bilinearly to ``size`` = (height, width) when they differ from it. Without a
    ``size``, every image must have the size of the first one.
    """
    from PIL import Image, UnidentifiedImageError
    from prunekit.utils.progress import progress_bar

    mode = "L" if grayscale else "RGB"
    fixed = size is not None  # with no size given, the first image's size is the law
    out = None
    for i, path in enumerate(progress_bar(files, desc="reading images", unit="img", enabled=progress, leave=True)):
        try:
            with Image.open(path) as im:
                im.load()  # decode now, so a truncated file fails here and is named
                im = im.convert(mode)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
        if size is None:
            size = (im.height, im.width)
        if (im.height, im.width) != size:
            if not fixed:
                raise DataError(f"{path}: image is {im.height}x{im.width} but {files[0]} is "
                                f"{size[0]}x{size[1]}; pass image_size=(H, W) to resize all images")
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        if out is None:
            out = np.empty((len(files), *size, 1 if grayscale else 3), dtype=np.uint8)
        out[i] = np.asarray(im, dtype=np.uint8).reshape(out.shape[1:])
    return out.transpose(0, 3, 1, 2)


@register_dataset("imagefolder", takes_path=True,
                  description="image files in <class> folders: DIR/train + DIR/test, or one tree")
def imagefolder(path, image_size=None, grayscale: bool = False, test_fraction: float = 0.2,
                seed: int = 0, normalize: bool = True, progress: bool = True) -> DatasetSplits:
    """Load an image-folder dataset (``imagefolder:DIR``) with Pillow.

    Args:
        path: the directory, laid out as described in the module docstring.
        image_size: int or (height, width) every image is resized to (bilinear);
            None keeps the size of the images, which must then all agree.
        grayscale: read images as 1-channel 8-bit grayscale instead of RGB.
        test_fraction: for a single tree, the fraction (or count) of images put in the
            test split, stratified by class.
        seed: seed of that split.
        normalize: normalize with the train mean/std (pixels are first scaled to [0, 1]).
        progress: show a progress bar while decoding.

    Example:
        >>> s = load_dataset("imagefolder:/data/flowers", image_size=64)   # doctest: +SKIP
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    size = _size(image_size)
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir():
        if test_dir is None:
            raise DataError(f"{root}: found {root / 'train'} but neither {root / 'test'} nor {root / 'val'}")
        train_tree, test_tree = _scan(root / "train"), _scan(test_dir)
        extra = sorted(set(test_tree) - set(train_tree))
        if extra:
            raise DataError(f"{test_dir}: class folder(s) {', '.join(extra)} have no counterpart in {root / 'train'}")
    else:
        train_tree, test_tree = _scan(root), None
    classes = sorted(train_tree)
    index = {c: i for i, c in enumerate(classes)}

    def flatten(tree):
        files = [f for c in sorted(tree) for f in tree[c]]
        labels = np.array([index[c] for c in sorted(tree) for _ in tree[c]], dtype=np.int64)
        return files, labels

    train_files, train_y = flatten(train_tree)
    if test_tree is None:
        tr, te = stratified_indices(train_y, test_fraction, seed, what=str(root))
        test_files, test_y = [train_files[i] for i in te], train_y[te]
        train_files, train_y = [train_files[i] for i in tr], train_y[tr]
    else:
        test_files, test_y = flatten(test_tree)
    images = read_images(train_files + test_files, size, grayscale, progress)
    n = len(train_files)
    return make_splits(f"imagefolder:{path}", images[:n], train_y, images[n:], test_y, scale=255.0,
                       num_classes=len(classes), normalize=normalize, domain="natural",
                       class_names=classes)
