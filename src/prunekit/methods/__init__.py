"""Pruning methods by name: each is a config dataclass plus a function ``fn(model, data, config)``.

:data:`METHODS` maps a name (``"magnitude"``, ``"agp"``, ``"lth"``, ``"admm"``, ``"snip"``, ``"grasp"``, ``"synflow"``, ...)
to a :class:`MethodInfo`. The modules that define methods are imported on the
first lookup, so ``import prunekit.methods`` stays cheap.

Example:
    >>> from prunekit.methods import METHODS
    >>> info = METHODS.get("magnitude")
    >>> info.config_cls.__name__
    'MagnitudeConfig'
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from prunekit.registry import Registry


@dataclass(frozen=True)
class MethodInfo:
    """A registered method.

    Attributes:
        name: registry name.
        fn: ``fn(model, data, config, **kw) -> result`` (the result has ``.model`` and ``.to_dict()``).
        config_cls: the config dataclass ``fn`` takes.
        kind: ``"weight"`` (unstructured masks) or ``"structural"`` (removes channels).
        paper: the paper the method comes from.
    """

    name: str
    fn: Callable
    config_cls: type
    kind: str = "weight"
    paper: str = ""


# Modules whose import registers methods (appended to by each method family).
_METHOD_MODULES = (
    "prunekit.methods.magnitude",
    "prunekit.methods.agp",
    "prunekit.methods.lottery",
    "prunekit.methods.admm",
    "prunekit.methods.pai",
)


class _LazyRegistry(Registry):
    """A Registry that imports :data:`_METHOD_MODULES` before the first lookup."""

    def _load(self) -> None:
        if not getattr(self, "_loaded", False):
            self._loaded = True  # set first: the modules register into this very object
            try:
                for mod in _METHOD_MODULES:
                    importlib.import_module(mod)
            except BaseException:
                self._loaded = False  # retry (and re-raise the real error) on the next lookup
                raise

    def get(self, name):
        self._load()
        return super().get(name)

    def names(self):
        self._load()
        return super().names()

    def __contains__(self, name):
        self._load()
        return super().__contains__(name)

    def __len__(self):
        self._load()
        return super().__len__()


METHODS: Registry[MethodInfo] = _LazyRegistry("pruning method")


def register_method(name: str, config_cls: type, kind: str = "weight", paper: str = ""):
    """Decorator registering ``fn(model, data, config)`` as the method ``name`` (duplicates raise)."""

    def decorator(fn: Callable) -> Callable:
        METHODS.add(name, MethodInfo(name=name, fn=fn, config_cls=config_cls, kind=kind, paper=paper))
        return fn

    return decorator


__all__ = ["METHODS", "MethodInfo", "register_method"]
