"""Weight-level (unstructured) pruning machinery: masks, masked training, sparse export.

Masks are plain ``dict[str, BoolTensor]`` keyed by parameter name
(``"fc1.weight"``), True = kept. The pieces:

* pure mask computations (:mod:`prunekit.sparse.masks`): :func:`magnitude_masks`
  (per layer or global, pruning a fraction of the survivors),
  :func:`std_threshold_masks` (Deep Compression's quality x std rule),
  :func:`iterative_schedule`, :func:`fraction_for_target`; coarser units in
  :mod:`prunekit.sparse.granularity`: :func:`granular_masks` (whole kernels, kernel
  patterns, N:M groups);
* :func:`sparsity_report` (per-layer total / non-zero / sparsity);
* module-touching helpers (:mod:`prunekit.sparse.apply`): :func:`apply_masks`,
  :func:`zero_masked_grads`, :class:`MaskGuard` (own training loop) and
  :class:`MaskCallback` (for :class:`prunekit.train.Trainer`);
* export (:mod:`prunekit.sparse.export`): :func:`to_sparse_state_dict` /
  :func:`from_sparse_state_dict` (COO or CSR with compact index types),
  :func:`save_sparse` / :func:`load_sparse`; masks in ordinary checkpoints with
  :func:`save_with_masks` / :func:`load_with_masks`;
* sparse inference (:mod:`prunekit.sparse.linear`): :class:`SparseLinear`,
  :func:`to_sparse_inference`.

Example:
    >>> import torch
    >>> from prunekit import sparse
    >>> net = torch.nn.Sequential(torch.nn.Linear(20, 10), torch.nn.ReLU(), torch.nn.Linear(10, 2))
    >>> masks = sparse.magnitude_masks(net, 0.8, scope="global")
    >>> _ = sparse.apply_masks(net, masks)
    >>> round(sparse.sparsity_report(net).total.sparsity, 2)
    0.8
"""
from __future__ import annotations

from prunekit.sparse.apply import MaskedParams, MaskGuard, apply_masks, zero_masked_grads
from prunekit.sparse.ckpt import load_with_masks, masks_from_train_state, save_with_masks
from prunekit.sparse.export import (
    SparseCheckpoint, from_sparse_state_dict, load_sparse, save_sparse, sparse_nbytes, to_sparse_state_dict,
)
from prunekit.sparse.granularity import (
    GRANULARITIES, granular_masks, kernel_mask, nm_mask, parse_nm, pattern_mask,
)
from prunekit.sparse.masks import (
    check_masks, fraction_for_target, intersect_masks, iterative_schedule, magnitude_masks, masks_sparsity,
    prunable_names, quality_for_sparsity, select_params, std_threshold_masks,
)
from prunekit.sparse.report import LayerSparsity, SparsityReport, sparsity_report
from prunekit.utils.lazy import lazy_exports

# Defined in modules that import prunekit.train (heavier, and written in parallel):
# resolved on first access.
_LAZY = {
    "MaskCallback": "prunekit.sparse.callbacks",
    "SparseLinear": "prunekit.sparse.linear",
    "to_sparse_inference": "prunekit.sparse.linear",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "GRANULARITIES", "LayerSparsity", "MaskCallback", "MaskGuard",
    "MaskedParams", "SparseCheckpoint", "SparseLinear", "SparsityReport",
    "apply_masks", "check_masks", "fraction_for_target", "from_sparse_state_dict", "granular_masks",
    "intersect_masks",
    "iterative_schedule", "kernel_mask", "load_sparse", "load_with_masks", "magnitude_masks", "masks_from_train_state",
    "masks_sparsity", "nm_mask", "parse_nm", "pattern_mask",
    "prunable_names", "quality_for_sparsity", "save_sparse", "save_with_masks",
    "select_params", "sparse_nbytes", "sparsity_report", "std_threshold_masks", "to_sparse_inference",
    "to_sparse_state_dict", "zero_masked_grads",
]
