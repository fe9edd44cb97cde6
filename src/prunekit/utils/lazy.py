"""Public names of a package that live in submodules imported on first use (PEP 562).

Packages such as :mod:`prunekit.binary` or :mod:`prunekit.search` export names
whose modules are heavy (NumPy kernels, matplotlib, torch.func) or import
prunekit.train; importing them only when a name is first used keeps
``import prunekit.<package>`` cheap. One helper instead of one hand-written
``__getattr__`` per package, so the error message and ``dir()`` agree everywhere.

Example (in a package's ``__init__.py``)::

    _LAZY = {"pack_model": "prunekit.binary.packed"}
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY)
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable, Callable]:
    """The module-level ``(__getattr__, __dir__)`` of ``package`` for ``exports`` (name -> module path).

    ``__getattr__(name)`` imports ``exports[name]`` and returns its attribute ``name``; any other name
    raises AttributeError naming the package, as Python's own message does.
    """
    exports = dict(exports)  # a private copy: later changes to the caller's dict do not leak in

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
