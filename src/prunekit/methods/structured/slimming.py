"""Network Slimming (Liu, Li, Shen, Huang, Yan & Zhang, ICCV 2017).

1. Sparsity training: the L1 penalty ``lambda * sum |gamma|`` on every BatchNorm scale,
   applied as its subgradient ``lambda * sign(gamma)`` added to the scale's gradient
   (:class:`SparsityCallback`, the training loop's ``on_after_backward`` hook).
2. One global threshold: the ``percentile`` of all BN scales (:func:`global_threshold`);
   the channels below it go (:func:`channels_below`). With a MACs target instead, the
   engine ranks ``|gamma|`` globally (criterion ``bn_scale``, no normalisation), which is
   the same global threshold moved until the budget is met.
3. The engine removes the channels. Pre-activation ResNets need no ``channel_selection``
   layer: the engine's coupling groups put a BN that reads the residual stream in the
   group of the stream, so its channels are sliced with it.
4. Fine-tune, or train the pruned architecture from scratch (``from_scratch``, Liu et al.,
   "Rethinking the Value of Network Pruning", ICLR 2019).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from prunekit.errors import PrunekitError
from prunekit.methods.structured._common import CommonConfig, example_input, plan_from_removed, skeleton
from prunekit.train import Callback
from prunekit.validate import check_int, check_number


@dataclass
class SlimmingConfig(CommonConfig):
    """Options of Network Slimming.

    Attributes:
        sparsity: lambda of the L1 penalty on BN scales (paper: 1e-4 for VGG on CIFAR).
        sparsity_epochs: epochs of sparsity training before pruning (0: the model is already sparse).
        sparsity_lr: learning rate of sparsity training.
        percentile: global threshold as a percentile of all BN scales, in [0, 100), used
            when ``macs`` is None.
    """

    sparsity: float = 1e-4
    sparsity_epochs: int = 2
    sparsity_lr: float = 0.01
    percentile: float = 50.0
    macs: Optional[float] = 0.5

    def check(self) -> None:
        super().check()
        check_number("config key 'sparsity'", self.sparsity, minimum=0)
        check_int("config key 'sparsity_epochs'", self.sparsity_epochs, minimum=0)
        check_number("config key 'percentile'", self.percentile, minimum=0, maximum=100, high_open=True)


def _bn_types():
    import torch

    return (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def add_sparsity_grad(model, lam: float) -> None:
    """Add ``lam * sign(gamma)`` to the gradient of every BatchNorm scale (the L1 subgradient)."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _bn_types()) and m.weight is not None and m.weight.grad is not None:
                m.weight.grad.add_(torch.sign(m.weight.detach()), alpha=lam)


class SparsityCallback(Callback):
    """Training-loop extension of Network Slimming: ``on_after_backward`` adds ``lambda*sign(gamma)``.

    Example:
        >>> from prunekit.train import fit                          # doctest: +SKIP
        >>> fit(net, data, cfg, callbacks=[SparsityCallback(1e-4)])  # doctest: +SKIP
    """

    def __init__(self, lam: float = 1e-4) -> None:
        if lam < 0:
            raise PrunekitError(f"sparsity lambda must be >= 0, got {lam}")
        self.lam = float(lam)

    def on_after_backward(self, trainer) -> None:
        add_sparsity_grad(trainer.model, self.lam)


def global_threshold(scales, percentile: float) -> float:
    """The ``percentile`` (0..100) of all ``|gamma|`` values (a list of 1-D arrays).

    Example:
        >>> global_threshold([np.array([0.1, -0.4]), np.array([0.2, 0.3])], 50)
        0.25
    """
    allv = np.abs(np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scales]))
    if allv.size == 0:
        raise PrunekitError("the model has no BatchNorm scales: Network Slimming needs BN layers")
    return float(np.percentile(allv, percentile))


def channels_below(scores, threshold: float, min_keep: int = 1) -> list[int]:
    """Channels whose score is below ``threshold``; the ``min_keep`` largest always stay.

    Example:
        >>> channels_below([0.5, 0.01, 0.02], 0.1)
        [1, 2]
        >>> channels_below([0.01, 0.02], 0.1)
        [0]
    """
    s = np.asarray(scores, dtype=np.float64)
    below = np.flatnonzero(s < threshold)
    if len(s) - len(below) < min_keep:
        keep = np.argsort(-s, kind="stable")[:min_keep]
        below = np.setdiff1d(np.arange(len(s)), keep)
    return sorted(int(i) for i in below)


def slimming_plan(model, example, percentile: float = 50.0, macs: float | None = None, tolerance: float = 0.03):
    """The pruning plan of a sparsity-trained ``model``: global threshold, or a MACs target."""
    from prunekit.engine import plan

    if macs is not None:
        p = plan(model, example, criterion="bn_scale", macs=macs, global_ranking=True, normalize="none",
                 tolerance=tolerance)
        p.info["method"] = "slimming"
        return p
    base = skeleton(model, example, criterion="bn_scale", keep_scores=True)
    tensors = dict(model.named_parameters())
    norm_groups, scales = [], []
    for g in base.groups:
        norms = [m.param for m in g.members if m.role == "norm" and m.param.endswith("weight")]
        if norms and g.size > 1 and any(m.role == "out" for m in g.members):
            norm_groups.append(g)
            scales.extend(tensors[n].detach().abs().numpy() for n in norms)
    thr = global_threshold(scales, percentile)
    removed = {g.id: channels_below(g.scores, thr) for g in norm_groups}
    return plan_from_removed(model, example, {k: v for k, v in removed.items() if v},
                             {"method": "slimming", "criterion": "bn_scale", "threshold": thr,
                              "percentile": percentile}, base=base)


def sparsity_train(model, data, cfg: SlimmingConfig, progress: bool = True):
    """Sparsity training (in place) with :class:`SparsityCallback`; returns the training history."""
    from prunekit.train import run_finetune

    # the fine-tuning's settings (batch, weight decay, ...) with sparsity training's own length and rate
    tc = cfg.finetune.replace(epochs=cfg.sparsity_epochs, lr=cfg.sparsity_lr, checkpoint_every=0, eval_every=0)
    return run_finetune(model, data, tc, callbacks=[SparsityCallback(cfg.sparsity)], progress=progress,
                        seed=cfg.seed).history


def slimming(model, data, config: SlimmingConfig | None = None, progress: bool = True):
    """Sparsity-train a copy of ``model`` then plan; ``(sparse model, plan)``."""
    import copy

    cfg = config or SlimmingConfig()
    cfg.check()
    net = copy.deepcopy(model)
    if cfg.sparsity_epochs > 0:
        sparsity_train(net, data, cfg, progress)
    p = slimming_plan(net, example_input(data), cfg.percentile, cfg.macs, cfg.macs_tolerance)
    return net, p
