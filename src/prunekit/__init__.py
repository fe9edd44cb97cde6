"""prunekit: make trained PyTorch networks smaller and faster.

Importing ``prunekit`` is cheap: subpackages (``prunekit.models``,
``prunekit.data``, ``prunekit.train``, ``prunekit.measure``, ...) are imported
on first attribute access, and optional extras (onnxruntime, ray) only where
they are used.

Example:
    >>> import prunekit
    >>> model = prunekit.models.create("lenet5", num_classes=10, in_channels=1)
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "binary", "checkpoint", "cli", "compress", "criteria", "data", "engine", "errors", "graph",
    "measure", "methods", "models", "registry", "runs", "search", "sparse", "spec", "surgery", "train", "validate",
}
# Top-level shortcuts to the engine, resolved lazily: name -> (module, attribute).
# They are plain functions and classes; no submodule is named plan or prune, so
# importing one never shadows these names.
_SHORTCUTS = {
    "plan": ("prunekit.engine.planner", "plan"),
    "prune": ("prunekit.engine.planner", "prune"),
    "plan_from_channels": ("prunekit.engine.planner", "plan_from_channels"),
    "PlanOptions": ("prunekit.engine.options", "PlanOptions"),
    "PruningPlan": ("prunekit.engine.pruning_plan", "PruningPlan"),
}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"prunekit.{name}")
    if name in _SHORTCUTS:
        module, attr = _SHORTCUTS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'prunekit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES | set(_SHORTCUTS))
