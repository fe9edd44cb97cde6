"""The dataset registry behind :func:`load_dataset`.

Two kinds of entries exist:

* built-in datasets that need no files (``"mnist5k"``, ``"digits"``, ``"synthetic"``),
  loaded as ``fn(**kw)``;
* file formats that read a directory (``"mnist-idx"``, ``"cifar10"``, ``"cifar100"``,
  ``"imagefolder"``), named with a path spec ``"KIND:DIR"`` (or ``KIND`` plus
  ``root=DIR``) and loaded as ``fn(DIR, **kw)``;
* named datasets whose files have a default place (``"fashion-mnist"``,
  ``"cifar10-jpeg"``): ``KIND`` alone is loaded as ``fn(None, **kw)`` (the loader
  looks in its default places), ``"KIND:PATH"`` as ``fn(PATH, **kw)``.

Example:
    >>> from prunekit.data import load_dataset, list_datasets
    >>> "mnist5k" in list_datasets()
    True
    >>> load_dataset("synthetic", num_samples=40, shape=(1, 8, 8)).train_x.shape
    torch.Size([32, 1, 8, 8])
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Callable

from prunekit.errors import DataError
from prunekit.registry import Registry

# Modules whose import registers datasets; they import heavy libraries only inside functions.
_SOURCE_MODULES = (
    "prunekit.data.builtin",
    "prunekit.data.idx",
    "prunekit.data.cifar",
    "prunekit.data.cifar_jpeg",
    "prunekit.data.imagefolder",
    "prunekit.data.tensors",
)


@dataclass(frozen=True)
class DatasetSource:
    """A registered dataset: its loader and whether it reads a directory.

    Attributes:
        name: registry name (``"digits"``, ``"cifar10"``, ...).
        fn: ``fn(**kw)`` or, with ``takes_path``, ``fn(path, **kw)``; returns DatasetSplits.
        takes_path: True for file formats named as ``"KIND:DIR"``.
        description: one line for listings and error messages.
        path_optional: with ``takes_path``, ``KIND`` alone is allowed and loads ``fn(None, **kw)``.
    """

    name: str
    fn: Callable
    takes_path: bool = False
    description: str = ""
    path_optional: bool = False

    def options(self) -> list[str]:
        """Keyword options the loader accepts (the path argument excluded)."""
        params = list(inspect.signature(self.fn).parameters.values())
        if self.takes_path:
            params = params[1:]
        return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


DATASETS: Registry[DatasetSource] = Registry("dataset")


def register_dataset(name: str, *, takes_path: bool = False, description: str = "", path_optional: bool = False):
    """Decorator registering a dataset loader under ``name`` (duplicate names raise).

    ``path_optional`` (with ``takes_path``): the loader finds its files by itself when
    no path is given, and is then called with ``None``.

    Example:
        >>> @register_dataset("my-blobs", description="two blobs")   # doctest: +SKIP
        ... def my_blobs(seed=0): return make_splits(...)
    """

    def decorator(fn: Callable) -> Callable:
        DATASETS.add(name, DatasetSource(name, fn, takes_path, description, path_optional and takes_path))
        return fn

    return decorator


def _load_all() -> None:
    # Importing an already-imported module is a dict lookup, so no "loaded" flag
    # (global mutable state) is needed.
    for mod in _SOURCE_MODULES:
        importlib.import_module(mod)


def list_datasets() -> list[str]:
    """Registered dataset names, sorted (file formats included, without ``:DIR``)."""
    _load_all()
    return DATASETS.names()


def _known() -> str:
    def spelled(source: DatasetSource) -> str:
        if not source.takes_path:
            return source.name
        return f"{source.name}[:PATH]" if source.path_optional else f"{source.name}:DIR"

    names = [spelled(DATASETS.get(s)) for s in DATASETS.names()]
    return ", ".join(names)


def load_dataset(name: str, **kw):
    """Load a dataset into memory as a :class:`~prunekit.data.DatasetSplits`.

    Args:
        name: ``"mnist5k"``, ``"digits"``, ``"synthetic"``, ``"fashion-mnist[:DIR]"``,
            ``"cifar10-jpeg[:ARCHIVE]"``, or a path spec
            ``"mnist-idx:DIR"``, ``"cifar10:DIR"``, ``"cifar100:DIR"``, ``"imagefolder:DIR"``
            (see ``docs/data.md`` for the on-disk layouts).
        **kw: options of that loader, e.g. ``normalize=False`` (all), ``num_samples``
            and ``shape`` (synthetic), ``image_size`` and ``grayscale`` (imagefolder).
            File formats also accept ``root=DIR`` instead of the ``:DIR`` suffix.

    Raises:
        DataError: unknown name (the message lists the known ones), unknown option,
            or a missing or malformed file (the message names the file).

    Example:
        >>> splits = load_dataset("digits")
        >>> splits.train_x.shape, splits.num_classes
        (torch.Size([1437, 1, 8, 8]), 10)
    """
    _load_all()
    if not isinstance(name, str) or not name:
        raise DataError(f"dataset name must be a non-empty string, got {name!r}")
    kind, sep, path = name.partition(":")
    if kind not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {_known()}")
    source = DATASETS.get(kind)
    if source.takes_path:
        if sep and "root" in kw:
            raise DataError(f"dataset {name!r}: give the directory either after ':' or as root=, not both")
        path = path if sep else kw.pop("root", None)
        if not path and source.path_optional:
            path = None
        elif not path:
            raise DataError(f"dataset {kind!r} reads files: name it as '{kind}:DIR' (or pass root=DIR)")
    elif sep:
        raise DataError(f"dataset {kind!r} is built in and takes no directory; got {name!r}")
    accepted = source.options()
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise DataError(f"dataset {kind!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
                        f"accepted: {', '.join(accepted) or '(none)'}")
    return source.fn(path, **kw) if source.takes_path else source.fn(**kw)
