"""Masked training inside :class:`prunekit.train.Trainer`.

Example:
    >>> from prunekit import models, sparse, train                      # doctest: +SKIP
    >>> net = models.create("lenet300_100", in_channels=1)               # doctest: +SKIP
    >>> masks = sparse.magnitude_masks(net, 0.9)                         # doctest: +SKIP
    >>> train.fit(net, data, cfg, callbacks=[sparse.MaskCallback(masks)])  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Mapping

from prunekit.sparse.apply import MaskedParams
from prunekit.sparse.masks import check_masks, masks_sparsity
from prunekit.train.callbacks import Callback


class MaskCallback(Callback):
    """Keep pruned weights at exactly zero during :meth:`prunekit.train.Trainer.fit`.

    * ``on_train_begin``: zero the pruned weights;
    * ``on_after_backward``: zero their gradients (no update reaches them);
    * ``on_step_end``: zero them again after ``optimizer.step()``, because SGD
      momentum accumulated before pruning and Adam's moments move a weight
      even when its gradient is zero (and weight decay is applied inside the
      step).

    The masks are part of the callback's ``state_dict``, so a resumed run
    (``Trainer(..., resume=True)``) continues with the same masks.

    Args:
        masks: ``{param name: BoolTensor}``, True = kept (see :mod:`prunekit.sparse.masks`).
    """

    def __init__(self, masks: Mapping) -> None:
        self.masks = {k: v for k, v in masks.items()}
        self._masked: MaskedParams | None = None
        self._model = None

    def bind(self, model) -> None:
        """Resolve the masked parameters of ``model`` and zero the pruned weights."""
        check_masks(dict(model.named_parameters()), self.masks)
        self._model = model
        self._masked = MaskedParams(model, self.masks)
        self._masked.zero_weights()

    def set_masks(self, masks: Mapping) -> None:
        """Replace the masks mid-training (used by gradual pruning); applies them at once if bound."""
        self.masks = {k: v for k, v in masks.items()}
        if self._model is not None:
            self.bind(self._model)

    def on_train_begin(self, trainer) -> None:
        self.bind(trainer.model)

    def on_after_backward(self, trainer) -> None:
        self._masked.zero_grads()

    def on_step_end(self, trainer, step: int) -> None:
        self._masked.zero_weights()

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        # Recorded in the history so accuracy curves carry the sparsity they were measured at.
        metrics["sparsity"] = masks_sparsity(self.masks)

    def state_dict(self) -> dict:
        return {"masks": {k: v.detach().cpu().clone() for k, v in self.masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state and "masks" in state:
            self.set_masks(state["masks"])
