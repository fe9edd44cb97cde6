"""Binary networks: Binary-Weight-Networks and XNOR-Net (Rastegari et al., ECCV 2016; seed 004).

* Layers: :class:`BinaryConv2d`, :class:`BinaryLinear` (``mode="bwn"`` or ``"xnor"``),
  trained with the straight-through estimator; the math is in
  :mod:`prunekit.binary.functional`.
* :func:`binarize` converts a model (keeping the first and last layers in full
  precision, re-ordering XNOR blocks to ``BN -> BinActiv -> BinConv -> Pool``) and
  records it in the model spec, so binarized checkpoints reload with
  :func:`prunekit.checkpoint.load`.
* Deployment: :func:`pack_model`, :func:`save_packed`, :func:`load_packed`,
  :func:`storage_report` (:mod:`prunekit.binary.packed`), on the packed xor + popcount
  GEMM :func:`binary_gemm` (:mod:`prunekit.binary.gemm`, C extension with a NumPy fallback).
* Training recipe: :func:`run_binarize` / ``prunekit binarize`` (:mod:`prunekit.binary.recipe`).

See ``docs/binary.md``.

Example:
    >>> import torch
    >>> from prunekit import models
    >>> from prunekit.binary import binarize, pack_model
    >>> net = binarize(models.create("lenet5", in_channels=1), mode="xnor").eval()
    >>> x = torch.randn(4, 1, 28, 28)
    >>> bool(torch.equal(pack_model(net)(x), net(x)))
    True
"""
from __future__ import annotations

from prunekit.binary.convert import (
    BinarizeOptions, ReorderPlan, apply_binarize_transform, binarizable_layers, binarize, binary_layers,
    plan_reorder, select_layers,
)
from prunekit.binary.layers import BinaryConv2d, BinaryLinear, layer_op_counts
from prunekit.checkpoint import TRANSFORMS as _TRANSFORMS
from prunekit.utils.lazy import lazy_exports

# Checkpoints recording {"kind": "binarize", ...} import this package to replay it.
if "binarize" not in _TRANSFORMS:
    _TRANSFORMS.add("binarize", apply_binarize_transform)

# Imported on first use (NumPy-heavy deployment code, the training recipe).
_LAZY = {
    "binary_gemm": "prunekit.binary.gemm",
    "available_kernels": "prunekit.binary.gemm",
    "best_kernel": "prunekit.binary.gemm",
    "PackedBinaryConv2d": "prunekit.binary.packed",
    "PackedBinaryLinear": "prunekit.binary.packed",
    "StorageReport": "prunekit.binary.packed",
    "load_packed": "prunekit.binary.packed",
    "pack_model": "prunekit.binary.packed",
    "save_packed": "prunekit.binary.packed",
    "storage_report": "prunekit.binary.packed",
    "BinarizeConfig": "prunekit.binary.recipe",
    "run_binarize": "prunekit.binary.recipe",
    "binary_ops": "prunekit.binary.recipe",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "BinarizeOptions", "BinaryConv2d", "BinaryLinear", "ReorderPlan", "apply_binarize_transform",
    "binarizable_layers", "binarize", "binary_layers", "layer_op_counts", "plan_reorder", "select_layers",
    *_LAZY,
]
