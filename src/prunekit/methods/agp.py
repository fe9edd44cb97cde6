"""Gradual magnitude pruning with the AGP cubic schedule (Zhu & Gupta, 2017), as a training callback.

Zhu & Gupta, *To prune, or not to prune: exploring the efficacy of pruning for
model compression* (ICLR workshop 2018, arXiv:1710.01878): during training,
every ``frequency`` steps from ``begin_step`` to ``end_step`` the smallest
weights are masked so that the sparsity follows

    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (end - t_0)) ** 3

rising fast at first (while the network has many redundant weights) and
slowly near the end; training then continues at the final sparsity.
Pruned weights stay pruned (masks only shrink).

:class:`AGPCallback` plugs into any :class:`prunekit.train.Trainer` run;
:func:`agp_prune` trains a model with it.

Example:
    >>> agp_sparsity(50, initial=0.0, final=0.8, begin_step=0, end_step=100, frequency=10)
    0.7
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

from prunekit.errors import ConfigError
from prunekit.methods import register_method
from prunekit.methods._weight import (
    PruneResult, WeightFinetune, evaluate_test, train_with_masks,
)
from prunekit.train import as_finetune, finetune_field
from prunekit.sparse.callbacks import MaskCallback
from prunekit.validate import check_choice, check_fraction, check_int


def agp_sparsity(step: int, initial: float, final: float, begin_step: int, end_step: int,
                 frequency: int = 1) -> float:
    """Target sparsity at training step ``step`` under the AGP cubic schedule (pure).

    The mask is updated at ``begin_step, begin_step + frequency, ...`` and at
    ``end_step``; between updates the sparsity of the last update holds. Before
    ``begin_step`` nothing is pruned (0.0); from ``end_step`` on it is ``final``.

    Example:
        >>> [round(agp_sparsity(t, 0.0, 0.9, 0, 30, 10), 4) for t in (0, 9, 10, 20, 30, 99)]
        [0.0, 0.0, 0.6333, 0.8667, 0.9, 0.9]
    """
    if end_step <= begin_step:
        raise ConfigError(f"end_step ({end_step}) must be after begin_step ({begin_step})")
    if frequency < 1:
        raise ConfigError(f"frequency must be >= 1, got {frequency}")
    if step < begin_step:
        return 0.0
    if step >= end_step:
        return float(final)
    last_update = begin_step + ((step - begin_step) // frequency) * frequency
    progress = (last_update - begin_step) / (end_step - begin_step)
    value = final + (initial - final) * (1.0 - progress) ** 3
    return float(round(value, 12))  # strip float noise so exact schedules compare equal


def agp_update_steps(begin_step: int, end_step: int, frequency: int) -> list[int]:
    """The steps at which the mask changes: every ``frequency`` steps from ``begin_step``, plus ``end_step``.

    Example:
        >>> agp_update_steps(0, 25, 10)
        [0, 10, 20, 25]
    """
    steps = list(range(begin_step, end_step, frequency))
    return steps + [end_step]


class AGPCallback(MaskCallback):
    """Prune gradually during training following :func:`agp_sparsity`.

    Between mask updates it behaves as :class:`~prunekit.sparse.MaskCallback`
    (masked gradients, masks re-applied after every step). At an update step
    the masks are recomputed from the current weights: ``fraction_for_target``
    of the survivors is pruned per layer (``scope="layer"``) or over all layers
    (``scope="global"``).

    Args:
        final_sparsity: sparsity reached at ``end_step``.
        initial_sparsity: sparsity of the first update at ``begin_step``.
        begin_step, end_step: 0-based optimizer-step range of the ramp.
        frequency: steps between mask updates (Zhu & Gupta use 100-1000 on ImageNet).
        scope: ``"layer"`` or ``"global"``.
        layers: names to prune (None = every Conv/Linear weight).
    """

    def __init__(self, final_sparsity: float, initial_sparsity: float = 0.0, begin_step: int = 0,
                 end_step: int = 1000, frequency: int = 100, scope: str = "layer", layers=None) -> None:
        super().__init__({})
        agp_sparsity(begin_step, initial_sparsity, final_sparsity, begin_step, end_step, frequency)  # validates
        self.final, self.initial = final_sparsity, initial_sparsity
        self.begin, self.end, self.frequency = begin_step, end_step, frequency
        self.scope, self.layers = scope, layers
        self.updates: list[dict] = []  # (step, sparsity) of every mask update

    def _update(self, model, step: int) -> None:
        from prunekit.sparse import apply_masks, fraction_for_target, magnitude_masks, masks_sparsity

        target = agp_sparsity(step, self.initial, self.final, self.begin, self.end, self.frequency)
        current = masks_sparsity(self.masks) if self.masks else 0.0
        if self.masks and target <= current:
            return
        if self.masks and self.scope == "layer":
            fractions = {n: fraction_for_target(min(1.0 - int(m.sum()) / m.numel(), target), target)
                         for n, m in self.masks.items()}
            new = magnitude_masks(model, fractions, scope="layer", layers=list(self.masks), existing=self.masks)
        else:
            p = fraction_for_target(min(current, target), target)
            new = magnitude_masks(model, p, scope=self.scope, layers=self.layers, existing=self.masks or None)
        self.set_masks(new)
        apply_masks(model, new)
        self.updates.append({"step": step, "sparsity": masks_sparsity(new)})

    def on_train_begin(self, trainer) -> None:
        if not self.masks:
            # Masks for every prunable layer (all True) so the mask set is complete from the start.
            from prunekit.sparse import magnitude_masks

            self.masks = magnitude_masks(trainer.model, 0.0, layers=self.layers)
        self.bind(trainer.model)
        if trainer.global_step >= self.begin and trainer.global_step <= self.end:
            self._update(trainer.model, trainer.global_step)

    def on_step_end(self, trainer, step: int) -> None:
        if self.begin <= step <= self.end and ((step - self.begin) % self.frequency == 0 or step == self.end):
            self._update(trainer.model, step)
        self._masked.zero_weights()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "updates": list(self.updates)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.updates = list(state.get("updates", []))


@dataclass
class AGPConfig:
    """Hyper-parameters of :func:`agp_prune`.

    Attributes:
        final_sparsity: sparsity at the end of the ramp, in [0, 1).
        initial_sparsity: sparsity of the first mask update.
        begin_step: first step of the ramp (0-based optimizer steps).
        end_step: last step of the ramp; None = ``end_fraction`` of all training steps.
        end_fraction: where the ramp ends when ``end_step`` is None; the remaining
            steps train at the final sparsity (Zhu & Gupta let the network recover).
        frequency: steps between mask updates.
        scope: ``"layer"`` or ``"global"``.
        layers: names to prune (None = every Conv/Linear weight).
        finetune: the training run during which the model is pruned (a
            :class:`prunekit.train.FinetuneConfig` with the weight-level defaults, see
            :class:`~prunekit.methods.magnitude.MagnitudeConfig`).
    """

    RENAMED_KEYS: ClassVar[dict] = {"train": "finetune (e.g. finetune: {epochs: 3})"}

    final_sparsity: float = 0.9
    initial_sparsity: float = 0.0
    begin_step: int = 0
    end_step: Optional[int] = None
    end_fraction: float = 0.7
    frequency: int = 10
    scope: str = "layer"
    layers: Optional[list[str]] = None
    finetune: WeightFinetune = finetune_field(WeightFinetune)

    def __post_init__(self) -> None:
        check_fraction("final_sparsity", self.final_sparsity)
        check_fraction("initial_sparsity", self.initial_sparsity)
        if self.initial_sparsity > self.final_sparsity:
            raise ConfigError(f"initial_sparsity ({self.initial_sparsity}) must not exceed final_sparsity "
                              f"({self.final_sparsity})")
        check_int("begin_step", self.begin_step, minimum=0)
        if self.end_step is not None:
            check_int("end_step", self.end_step)
            if self.end_step <= self.begin_step:
                raise ConfigError(f"end_step ({self.end_step}) must be after begin_step ({self.begin_step})")
        check_fraction("end_fraction", self.end_fraction, allow_one=True)
        check_int("frequency", self.frequency)
        check_choice("scope", self.scope, ("layer", "global"))
        self.finetune = as_finetune(self.finetune, WeightFinetune, "finetune")

    def resolved_end(self, total_steps: int) -> int:
        """``end_step``, or ``end_fraction`` of ``total_steps`` (at least one step after ``begin_step``)."""
        if self.end_step is not None:
            return self.end_step
        return max(self.begin_step + 1, int(math.floor(self.end_fraction * total_steps)))


@register_method("agp", AGPConfig,
                 paper="Zhu & Gupta, To prune, or not to prune, arXiv:1710.01878 (ICLR-W 2018)")
def agp_prune(model, data, config: AGPConfig | None = None, *, progress: bool | None = None) -> PruneResult:
    """Train ``model`` on ``data`` while pruning it gradually to ``final_sparsity`` (in place).

    Returns a :class:`~prunekit.methods._weight.PruneResult` whose records hold the
    test accuracy and the sparsity after every epoch; ``extra["updates"]`` lists
    every mask update as ``{"step", "sparsity"}``.
    """
    from prunekit.train import Trainer

    cfg = config or AGPConfig()
    tc = cfg.finetune.resolve(progress=progress)
    total = Trainer(model, data, tc).steps_per_epoch * tc.epochs
    end = cfg.resolved_end(total)
    if cfg.begin_step >= total or end > total:
        raise ConfigError(f"the AGP ramp (steps {cfg.begin_step}..{end}) does not fit in the {total} training "
                          f"steps of {tc.epochs} epochs; lower begin_step/end_step or train longer")
    cb = AGPCallback(cfg.final_sparsity, cfg.initial_sparsity, cfg.begin_step, end, cfg.frequency,
                     cfg.scope, cfg.layers)
    records = [{"stage": "dense", "sparsity": 0.0, **evaluate_test(model, data)}]
    train_with_masks(model, data, tc, None, [cb], stage="agp", records=records)
    final = {"sparsity": cb.updates[-1]["sparsity"] if cb.updates else 0.0, **evaluate_test(model, data)}
    return PruneResult(method="agp", model=model, masks=cb.masks, config=cfg, records=records, final=final,
                       extra={"updates": cb.updates, "end_step": end})
