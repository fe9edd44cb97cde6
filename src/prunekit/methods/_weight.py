"""Shared pieces of the weight-pruning methods: the result type, their fine-tuning defaults, masked training.

Not public API: import the methods from :mod:`prunekit.methods`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prunekit.train import FinetuneConfig


@dataclass
class WeightFinetune(FinetuneConfig):
    """The retraining of the weight-level methods: :class:`~prunekit.train.FinetuneConfig` with their defaults.

    5 epochs of SGD (momentum 0.9) at 0.01 with a cosine schedule, weight decay 1e-4,
    batch 128, no augmentation: Han et al. (NeurIPS 2015) retrain at a fraction of
    the original rate, instead of TrainConfig's train-from-scratch defaults. A recipe
    that sets only ``finetune: {epochs: 3}`` keeps the rest.
    """

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.01
    weight_decay: float = 1e-4
    augment: bool = False
    checkpoint_every: int = 0


@dataclass
class PruneResult:
    """What a weight-pruning method returns.

    Attributes:
        method: registry name of the method.
        model: the pruned (and retrained) model; pruned weights are exactly 0.
        masks: ``{param name: BoolTensor}``, True = kept.
        config: the method's config dataclass.
        records: the accuracy curve, one dict per evaluated point, each with at
            least ``stage``, ``sparsity`` and ``test_top1`` (plus ``epoch``,
            ``round``, ``step``... depending on the method).
        final: ``{"sparsity": ..., "test_top1": ..., "test_loss": ...}`` of the returned model.
        extra: method-specific results (e.g. ADMM's filters to remove).
    """

    method: str
    model: Any
    masks: dict
    config: Any
    records: list = field(default_factory=list)
    final: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def sparsity_report(self):
        """Per-layer :class:`prunekit.sparse.SparsityReport` of the returned model."""
        from prunekit.sparse import sparsity_report

        # weights only: ADMM's filter-wise variant also masks biases, which are not "weights pruned"
        return sparsity_report(self.model, {k: v for k, v in self.masks.items() if v.dim() >= 2})

    def to_dict(self) -> dict:
        """JSON-able summary (no tensors): method, config, curve, final metrics, per-layer sparsity."""
        from prunekit.config import to_dict

        return {"method": self.method, "config": to_dict(self.config), "final": dict(self.final),
                "records": [dict(r) for r in self.records], "extra": dict(self.extra),
                "sparsity": self.sparsity_report().to_dict()}


def evaluate_test(model, data, batch_size: int = 512) -> dict:
    """``{"test_top1", "test_loss"}`` of ``model`` on ``data``'s test split."""
    from prunekit.train import evaluate

    m = evaluate(model, data.test_x, data.test_y, batch_size=batch_size)
    return {"test_top1": m["top1"], "test_loss": m["loss"]}


_TRAINER_KEYS = {"epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "seconds",
                 "sparsity"}


def train_with_masks(model, data, train_cfg, masks=None, callbacks=(), *, progress=None,
                     stage: str = "train", records: list | None = None, extra: dict | None = None,
                     seed: int | None = None):
    """:func:`prunekit.train.run_finetune` with a :class:`~prunekit.sparse.MaskCallback` when ``masks`` is given.

    Every evaluated epoch is appended to ``records`` as
    ``{"stage", "epoch", "step", "sparsity", "test_top1", "test_loss", **extra}``.
    ``seed`` is the method's seed (used when ``train_cfg.seed`` is None).
    Returns the trainer (for its history and ``global_step``).
    """
    from prunekit.sparse import MaskCallback, masks_sparsity
    from prunekit.train import run_finetune

    cbs = list(callbacks)
    if masks is not None:
        cbs.insert(0, MaskCallback(masks))
    trainer = run_finetune(model, data, train_cfg, callbacks=cbs, progress=progress, seed=seed)
    if records is not None:
        for row in trainer.history:
            if row.get("test_top1") is None:
                continue
            step = (row["epoch"] + 1) * trainer.steps_per_epoch
            sp = row.get("sparsity", masks_sparsity(masks) if masks is not None else 0.0)
            rec = {"stage": stage, "epoch": row["epoch"], "step": step, "sparsity": sp,
                   "test_top1": row["test_top1"], "test_loss": row["test_loss"], **(extra or {})}
            # keys callbacks added to the epoch record (ADMM's rho and residual, ...)
            rec.update({k: v for k, v in row.items() if k not in _TRAINER_KEYS and k not in rec
                        and isinstance(v, (int, float))})
            records.append(rec)
    return trainer
