"""Checkpoints that carry their architecture, so loading needs no other argument.

A prunekit checkpoint is a ``torch.save`` of plain data (dicts, lists, strings,
numbers, tensors) and is always loaded with ``torch.load(weights_only=True)``:
no pickled code is ever executed. It stores

* ``arch``: how to build the dense base model, either a zoo name
  (``{"model": "resnet20", "kwargs": {...}}``) or an importable factory of the
  user's own (``{"factory": "mypkg.nets:build", "kwargs": {...}}``);
* ``input_shape``: the shape of one input sample, e.g. ``[1, 28, 28]``;
* ``transforms``: an ordered list of structural changes applied to the base
  model before the weights fit, e.g. a pruning plan (``{"kind": "prune_plan", ...}``),
  binarization, or input-channel selection (``select_inputs``, see
  :mod:`prunekit.surgery.select`); each kind is registered in :data:`TRANSFORMS`;
* ``state_dict`` and free-form JSON-able ``meta`` (dataset, metrics, ...);
* optionally ``train_state`` (optimizer, scheduler, epoch) to resume training.

The model spec travels with a model as the attribute ``model.prunekit_spec``
(a :class:`~prunekit.spec.ModelSpec`, defined in the leaf module :mod:`prunekit.spec`
and re-exported here), set by :func:`prunekit.models.create` and extended by
code that changes the structure, so ``save(path, model)`` just works;
:func:`build` rebuilds the model a spec describes.

Example:
    >>> from prunekit import models, checkpoint
    >>> net = models.create("lenet5", num_classes=10, in_channels=1)
    >>> checkpoint.save("/tmp/lenet5.pt", net)          # doctest: +SKIP
    >>> net2 = checkpoint.load("/tmp/lenet5.pt").model   # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prunekit.errors import CheckpointError
from prunekit.registry import Registry
from prunekit.spec import ModelSpec, attach_spec, get_spec
from prunekit.utils.io import atomic_save_torch, check_overwrite

__all__ = ["Checkpoint", "ModelSpec", "TRANSFORMS", "apply_transform", "build", "build_base", "get_spec", "load",
           "read_raw", "read_versioned", "save", "transform_function"]

FORMAT = "prunekit.checkpoint"
VERSION = 1

# kind -> fn(model, transform_dict) -> model. A kind listed in TRANSFORM_SOURCES is
# registered on first use: "module:function" names the function, a bare "module"
# registers its kinds itself when imported. Checkpoints store only the kind, so a
# kind keeps its name when the code behind it moves (old checkpoints still load).
TRANSFORMS: Registry[Callable] = Registry("checkpoint transform")
TRANSFORM_SOURCES = {
    "prune_plan": "prunekit.engine.pruning_plan:replay_transform",
    "binarize": "prunekit.binary",
    "select_inputs": "prunekit.surgery.select",
}


def transform_function(kind) -> Callable:
    """The function of the registered transform ``kind``, importing the code behind it on first use."""
    source = TRANSFORM_SOURCES.get(kind) if isinstance(kind, str) else None
    if source is not None and kind not in TRANSFORMS:
        module, _, name = source.partition(":")
        mod = importlib.import_module(module)
        # a module may register its kinds itself when imported; register only what is still missing
        if name and kind not in TRANSFORMS:
            TRANSFORMS.add(kind, getattr(mod, name))
    return TRANSFORMS.get(kind)


def build_base(spec: ModelSpec):
    """Build the dense base architecture of ``spec`` with freshly initialised weights."""
    kwargs = dict(spec.arch.get("kwargs", {}))
    if "model" in spec.arch:
        from prunekit import models

        return models.create(spec.arch["model"], **kwargs)
    if "factory" in spec.arch:
        target = spec.arch["factory"]
        mod_name, _, fn_name = target.partition(":")
        try:
            fn = getattr(importlib.import_module(mod_name), fn_name)
        except (ImportError, AttributeError) as e:
            raise CheckpointError(f"cannot import model factory {target!r}: {e}") from None
        return attach_spec(fn(**kwargs), spec.base())
    raise CheckpointError(f"model spec has neither 'model' nor 'factory': {spec.arch}")


def build(spec: ModelSpec):
    """The model ``spec`` describes: base architecture with every transform applied, ready for ``load_state_dict``.

    Example:
        >>> spec = ModelSpec(arch={"model": "lenet5", "kwargs": {"in_channels": 1}}, input_shape=[1, 28, 28])
        >>> build(spec).conv1.in_channels                   # doctest: +SKIP
        1
    """
    model = attach_spec(build_base(spec), spec.base())
    for t in spec.transforms:
        model = apply_transform(model, t)
    return model


def apply_transform(model, transform: dict):
    """Apply one registered structural transform and record it in ``model.prunekit_spec``."""
    fn = transform_function(transform.get("kind"))
    spec = get_spec(model)
    model = fn(model, transform)
    if spec is not None:
        model.prunekit_spec = spec.with_transform(transform)
    return model


@dataclass
class Checkpoint:
    """A loaded checkpoint: the runnable model plus everything stored beside it."""

    model: Any
    spec: ModelSpec
    meta: dict
    train_state: dict | None
    path: Path


def save(path: str | os.PathLike, model, *, spec: ModelSpec | None = None, meta: dict | None = None,
         train_state: dict | None = None, overwrite: bool = True) -> Path:
    """Write ``model`` with its architecture to ``path`` atomically.

    Args:
        path: destination file (``.pt`` by convention).
        model: the module; its ``prunekit_spec`` is used unless ``spec`` is given.
        spec: explicit architecture description (needed for models not built by prunekit).
        meta: JSON-able extra information (dataset, metrics, command line).
        train_state: optimizer/scheduler/epoch state for resuming.
        overwrite: when False, refuse to replace an existing file.
    """
    p = check_overwrite(path, overwrite)
    spec = spec or get_spec(model)
    if spec is None:
        raise CheckpointError(
            "model has no prunekit_spec; pass spec=ModelSpec(arch={'factory': 'module:function', 'kwargs': {...}}, "
            "input_shape=[C, H, W])")
    meta = meta or {}
    try:
        json.dumps(meta)
    except TypeError as e:
        raise CheckpointError(f"meta must be JSON-serialisable: {e}") from None
    payload = {"format": FORMAT, "version": VERSION, "spec": spec.to_dict(),
               "state_dict": model.state_dict(), "meta": meta}
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_save_torch(payload, p)
    return p


def read_versioned(path: str | os.PathLike, fmt: str, version: int, what: str, hint: str) -> dict:
    """Load a ``torch.save``-d dict whose ``format``/``version`` header must be ``fmt``/``version``.

    Weights only, no code executed. Every failure is a CheckpointError naming the file:
    missing, unreadable (corrupt or not a torch file), another format (``hint`` says
    what to use instead), or an unsupported version. ``what`` names the kind of file.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's unpickler raises assorted types on garbage input
        text = str(e).strip()
        detail = text.splitlines()[0][:200] if text else type(e).__name__
        raise CheckpointError(f"{p}: not a readable {what} (corrupt or not a torch file: {detail})") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise CheckpointError(f"{p}: not a {what} (no '{fmt}' header); {hint}")
    if payload.get("version") != version:
        raise CheckpointError(f"{p}: {what} format version {payload.get('version')!r} is not supported "
                              f"(this prunekit reads version {version})")
    return payload


def read_raw(path: str | os.PathLike) -> dict:
    """Load and validate the raw checkpoint dict (weights only, no code executed)."""
    return read_versioned(path, FORMAT, VERSION, "prunekit checkpoint",
                          "plain state_dicts need the architecture: see prunekit.checkpoint.save")


def load(path: str | os.PathLike, *, strict: bool = True) -> Checkpoint:
    """Rebuild the model stored at ``path`` and load its weights.

    Raises:
        CheckpointError: the file is missing, corrupt, not a prunekit checkpoint,
            or its weights do not fit the architecture it describes.
    """
    p = Path(path)
    payload = read_raw(p)
    spec = ModelSpec.from_dict(payload["spec"])
    model = build(spec)
    try:
        model.load_state_dict(payload["state_dict"], strict=strict)
    except RuntimeError as e:
        raise CheckpointError(f"{p}: weights do not fit the stored architecture: {str(e).splitlines()[0]}") from None
    model.eval()
    return Checkpoint(model=model, spec=get_spec(model) or spec, meta=dict(payload.get("meta", {})),
                      train_state=payload.get("train_state"), path=p)
