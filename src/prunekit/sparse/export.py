"""Saving a pruned model as sparse tensors: only the kept values and compact indices.

A 95%-sparse LeNet-300-100 stored dense is ~1 MB of mostly zeros. Here each
masked weight is stored as its kept values plus their positions, with the
smallest integer type that can hold the indices:

* ``"coo"``: flat (row-major) positions, ``int16`` when the tensor has at most
  32767 entries, else ``int32`` (``int64`` only beyond 2**31);
* ``"csr"``: the tensor viewed as a matrix ``(shape[0], prod(shape[1:]))``;
  ``crow`` row pointers typed by the number of kept values and ``col`` column
  indices typed by the number of columns (784 inputs fit ``int16``), which is
  about half the index bytes of COO for fully connected layers.

Tensors without a mask (biases, BatchNorm) stay dense. The positions stored
*are* the mask, so :func:`from_sparse_state_dict` gives back both the dense
state_dict and the masks; a kept weight whose value happens to be 0 stays kept.

Files are plain data + tensors, written atomically and read with
``torch.load(weights_only=True)``.

Example:
    >>> import torch
    >>> from prunekit.sparse import magnitude_masks
    >>> lin = torch.nn.Linear(4, 3)
    >>> masks = magnitude_masks(lin, 0.5)
    >>> sd = to_sparse_state_dict(lin, masks, layout="csr")
    >>> dense, masks2 = from_sparse_state_dict(sd)
    >>> bool(torch.equal(dense["weight"], lin.weight.detach() * masks["weight"]))
    True
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from prunekit.errors import CheckpointError, PrunekitError
from prunekit.sparse.masks import check_masks
from prunekit.validate import check_choice

STATE_FORMAT = "prunekit.sparse_state"
FILE_FORMAT = "prunekit.sparse_checkpoint"
VERSION = 1
LAYOUTS = ("coo", "csr")


def index_dtype(max_value: int):
    """Smallest signed torch integer type holding ``0..max_value`` (int16, int32 or int64).

    Signed types only: torch has no uint16/uint32 serialisation on older releases,
    and signed int16 still covers every row length of LeNet (784).

    Example:
        >>> index_dtype(784), index_dtype(40000)
        (torch.int16, torch.int32)
    """
    import torch

    if max_value <= 2**15 - 1:
        return torch.int16
    if max_value <= 2**31 - 1:
        return torch.int32
    return torch.int64


def encode_tensor(t, mask, layout: str = "coo") -> dict:
    """One tensor's kept entries as a plain dict (pure; ``t`` and ``mask`` are not modified).

    Returns ``{"layout", "shape", "values", "indices"}`` for COO or
    ``{"layout", "shape", "values", "crow", "col"}`` for CSR.
    """
    import torch

    check_choice("layout", layout, LAYOUTS, error=PrunekitError)
    t = t.detach().cpu()
    mask = mask.cpu()
    shape = list(t.shape)
    if layout == "coo" or t.dim() < 2:
        flat = mask.flatten().nonzero().flatten()
        return {"layout": "coo", "shape": shape, "values": t.flatten()[flat].clone(),
                "indices": flat.to(index_dtype(max(t.numel() - 1, 0)))}
    rows, cols = shape[0], math.prod(shape[1:])
    m2 = mask.reshape(rows, cols)
    col = m2.nonzero()[:, 1]  # nonzero() is row-major, so this is CSR order
    counts = m2.sum(dim=1)
    crow = torch.zeros(rows + 1, dtype=torch.int64)
    crow[1:] = counts.cumsum(0)
    nnz = int(crow[-1])
    return {"layout": "csr", "shape": shape, "values": t.reshape(rows, cols)[m2].clone(),
            "crow": crow.to(index_dtype(nnz)), "col": col.to(index_dtype(max(cols - 1, 0)))}


def decode_tensor(entry: Mapping):
    """Inverse of :func:`encode_tensor`: ``(dense tensor, bool mask)``; raises CheckpointError if malformed."""
    import torch

    try:
        shape = [int(s) for s in entry["shape"]]
        values = entry["values"]
        n = math.prod(shape)
        if entry["layout"] == "coo":
            idx = entry["indices"].to(torch.int64)
            if idx.numel() != values.numel() or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n)):
                raise ValueError("indices do not match values or are out of range")
            mask = torch.zeros(n, dtype=torch.bool)
            mask[idx] = True
            dense = torch.zeros(n, dtype=values.dtype)
            dense[idx] = values
            return dense.view(shape), mask.view(shape)
        if entry["layout"] == "csr":
            rows = shape[0]
            cols = n // rows if rows else 0
            crow = entry["crow"].to(torch.int64)
            col = entry["col"].to(torch.int64)
            if crow.numel() != rows + 1 or int(crow[-1]) != values.numel() or col.numel() != values.numel():
                raise ValueError("row pointers do not match values")
            if col.numel() and (int(col.min()) < 0 or int(col.max()) >= cols):
                raise ValueError("column index out of range")
            row = torch.repeat_interleave(torch.arange(rows), crow.diff())
            flat = row * cols + col
            mask = torch.zeros(n, dtype=torch.bool)
            mask[flat] = True
            dense = torch.zeros(n, dtype=values.dtype)
            dense[flat] = values
            return dense.view(shape), mask.view(shape)
        raise ValueError(f"unknown layout {entry['layout']!r}")
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"malformed sparse tensor entry: {e}") from None


def to_sparse_state_dict(model_or_state, masks: Mapping, layout: str = "coo") -> dict:
    """A state_dict where every masked tensor is stored sparse (see the module docstring).

    Args:
        model_or_state: an ``nn.Module`` or a state_dict.
        masks: ``{name: BoolTensor}``; the names must be state_dict keys.
        layout: ``"coo"`` or ``"csr"``.

    Returns:
        ``{"format", "version", "layout", "dense": {name: tensor}, "sparse": {name: entry}}``,
        plain data that ``torch.save`` stores and ``torch.load(weights_only=True)`` reads.
    """
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else dict(model_or_state)
    check_masks(state, masks)
    check_choice("layout", layout, LAYOUTS, error=PrunekitError)
    dense = {k: v.detach().cpu() for k, v in state.items() if k not in masks}
    sparse = {k: encode_tensor(state[k], masks[k], layout) for k in masks}
    return {"format": STATE_FORMAT, "version": VERSION, "layout": layout, "dense": dense, "sparse": sparse}


def from_sparse_state_dict(sparse_state: Mapping) -> tuple[dict, dict]:
    """Inverse of :func:`to_sparse_state_dict`: ``(dense state_dict, masks)``.

    The state_dict has the original key order of the dense tensors followed by
    the sparse ones; ``load_state_dict`` does not care about order.
    """
    if not isinstance(sparse_state, Mapping) or sparse_state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"not a prunekit sparse state_dict (no '{STATE_FORMAT}' header)")
    if sparse_state.get("version") != VERSION:
        raise CheckpointError(f"sparse state_dict version {sparse_state.get('version')!r} is not supported")
    state = dict(sparse_state["dense"])
    masks = {}
    for name, entry in sparse_state["sparse"].items():
        state[name], masks[name] = decode_tensor(entry)
    return state, masks


def sparse_nbytes(sparse_state: Mapping) -> int:
    """Bytes of tensor data in a sparse state_dict (values + indices + dense tensors)."""
    total = sum(t.numel() * t.element_size() for t in sparse_state["dense"].values())
    for entry in sparse_state["sparse"].values():
        for key in ("values", "indices", "crow", "col"):
            if key in entry:
                total += entry[key].numel() * entry[key].element_size()
    return total


@dataclass
class SparseCheckpoint:
    """A loaded sparse file: the dense runnable model (pruned weights at 0), its masks, and the rest."""

    model: Any
    spec: Any
    masks: dict
    meta: dict
    path: Path


def save_sparse(path: str | os.PathLike, model, masks: Mapping, *, layout: str = "csr",
                meta: dict | None = None, spec=None, overwrite: bool = True) -> Path:
    """Write ``model`` with its masked weights as sparse tensors, atomically.

    The file also carries the model's architecture (``model.prunekit_spec`` or
    ``spec``), so :func:`load_sparse` rebuilds the model with no other argument.

    Raises:
        CheckpointError: the model has no spec and none is given, or ``meta`` is not JSON-able.
    """
    import json

    from prunekit.checkpoint import get_spec
    from prunekit.utils.io import atomic_save_torch, check_overwrite

    p = check_overwrite(path, overwrite)
    spec = spec or get_spec(model)
    if spec is None:
        raise CheckpointError("model has no prunekit_spec; pass spec=prunekit.checkpoint.ModelSpec(...)")
    meta = dict(meta or {})
    try:
        json.dumps(meta)
    except TypeError as e:
        raise CheckpointError(f"meta must be JSON-serialisable: {e}") from None
    payload = {"format": FILE_FORMAT, "version": VERSION, "spec": spec.to_dict(), "meta": meta,
               "sparse_state": to_sparse_state_dict(model, masks, layout)}
    atomic_save_torch(payload, p)
    return p


def load_sparse(path: str | os.PathLike, *, trusted_factories=()) -> SparseCheckpoint:
    """Read a file written by :func:`save_sparse` (weights only, no code executed).

    ``trusted_factories``: the model factories the file may use (see :func:`prunekit.checkpoint.load`).

    Raises:
        CheckpointError: missing, corrupt, not a sparse checkpoint, or weights that do not fit.
    """
    from prunekit.checkpoint import ModelSpec, build, check_base_size, get_spec, read_versioned

    p = Path(path)
    payload = read_versioned(p, FILE_FORMAT, VERSION, "prunekit sparse checkpoint",
                             "dense checkpoints are read by prunekit.checkpoint.load")
    spec = ModelSpec.from_dict(payload["spec"])
    state, masks = from_sparse_state_dict(payload["sparse_state"])
    check_base_size(spec, sum(t.numel() for t in state.values() if hasattr(t, "numel")), str(p))
    model = build(spec, trusted_factories=trusted_factories)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{p}: weights do not fit the stored architecture: {str(e).splitlines()[0]}") from None
    model.eval()
    return SparseCheckpoint(model=model, spec=get_spec(model) or spec, masks=masks,
                            meta=dict(payload.get("meta", {})), path=p)
