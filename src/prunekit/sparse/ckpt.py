"""Masks recorded in a prunekit checkpoint, so a pruned model resumes with its masks.

Masks are stored under ``train_state["masks"]`` as bool tensors (plain data,
readable with ``torch.load(weights_only=True)``); ``meta`` stays JSON. A
pruned-and-retrained model loaded with :func:`load_with_masks` can be trained
further under :class:`~prunekit.sparse.MaskCallback` without reviving weights.

Example:
    >>> from prunekit import models
    >>> from prunekit.sparse import magnitude_masks
    >>> net = models.create("lenet300_100", in_channels=1)
    >>> masks = magnitude_masks(net, 0.9)
    >>> save_with_masks("/tmp/pruned.pt", net, masks)          # doctest: +SKIP
    >>> ckpt, masks2 = load_with_masks("/tmp/pruned.pt")        # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Mapping

from prunekit.errors import CheckpointError

MASKS_KEY = "masks"


def save_with_masks(path: str | os.PathLike, model, masks: Mapping, *, meta: dict | None = None,
                    train_state: dict | None = None, overwrite: bool = True, apply: bool = True):
    """:func:`prunekit.checkpoint.save` with ``masks`` recorded in ``train_state["masks"]``.

    Args:
        apply: zero the pruned weights first (they should be zero already; this makes sure).
        train_state: other resume state to store beside the masks.
    """
    from prunekit import checkpoint
    from prunekit.sparse.apply import apply_masks
    from prunekit.sparse.masks import check_masks
    from prunekit.sparse.report import sparsity_report

    check_masks(dict(model.named_parameters()), masks)
    if apply:
        apply_masks(model, masks)
    state = dict(train_state or {})
    state[MASKS_KEY] = {k: v.detach().cpu().clone() for k, v in masks.items()}
    meta = dict(meta or {})
    weights = {k: v for k, v in masks.items() if v.dim() >= 2}  # bias masks do not count as pruned weights
    meta.setdefault("sparsity", sparsity_report(model, weights or masks).to_dict()["total"])
    return checkpoint.save(path, model, meta=meta, train_state=state, overwrite=overwrite)


def masks_from_train_state(train_state: Mapping | None) -> dict | None:
    """The masks stored in a checkpoint's ``train_state``, or None if it has none."""
    import torch

    if not train_state or MASKS_KEY not in train_state:
        return None
    masks = train_state[MASKS_KEY]
    if not isinstance(masks, Mapping) or not all(isinstance(v, torch.Tensor) and v.dtype == torch.bool
                                                 for v in masks.values()):
        raise CheckpointError("train_state['masks'] must map parameter names to bool tensors")
    return dict(masks)


def load_with_masks(path: str | os.PathLike, *, trusted_factories=()):
    """``(Checkpoint, masks or None)`` for a checkpoint written by :func:`save_with_masks`.

    ``trusted_factories``: the model factories the file may use (see :func:`prunekit.checkpoint.load`).
    """
    from prunekit import checkpoint
    from prunekit.sparse.masks import check_masks

    ckpt = checkpoint.load(path, trusted_factories=trusted_factories)
    masks = masks_from_train_state(ckpt.train_state)
    if masks is not None:
        try:
            check_masks(dict(ckpt.model.named_parameters()), masks)
        except ValueError as e:
            raise CheckpointError(f"{path}: stored masks do not fit the model: {e}") from None
    return ckpt, masks
