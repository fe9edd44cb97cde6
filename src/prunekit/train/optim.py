"""Optimizers and learning-rate schedules, both looked up by name.

Schedules are pure functions of the global step: ``lr_factor(config, step,
steps_per_epoch)`` gives the multiplier of each parameter group's base rate, so
the only scheduler state a checkpoint needs is the step counter, and a resumed
run follows exactly the same curve.

Example:
    >>> cfg = TrainConfig(epochs=4, schedule="step", milestones=[2], gamma=0.1)
    >>> [round(lr_factor(cfg, s, steps_per_epoch=10), 3) for s in (0, 19, 20, 39)]
    [1.0, 1.0, 0.1, 0.1]
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

from prunekit.registry import Registry
from prunekit.train.config import TrainConfig

# name -> fn(params, config) -> torch.optim.Optimizer
OPTIMIZERS: Registry[Callable] = Registry("optimizer")
# name -> fn(config, epoch_progress: float, total_epochs: int) -> factor (warmup is applied on top)
SCHEDULES: Registry[Callable] = Registry("lr schedule")


@OPTIMIZERS.register("sgd")
def _sgd(params, cfg: TrainConfig):
    import torch

    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params, cfg: TrainConfig):
    import torch

    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params, cfg: TrainConfig):
    import torch

    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_optimizer(params: Iterable, cfg: TrainConfig):
    """The optimizer ``cfg.optimizer`` over ``params`` (tensors or param-group dicts)."""
    return OPTIMIZERS.get(cfg.optimizer)(params, cfg)


@SCHEDULES.register("constant")
def _constant(cfg: TrainConfig, t: float, total: int) -> float:
    return 1.0


@SCHEDULES.register("cosine")
def _cosine(cfg: TrainConfig, t: float, total: int) -> float:
    # Loshchilov & Hutter 2017 (SGDR) without restarts: 1 -> 0 over the post-warmup run.
    start = min(cfg.warmup_epochs, total)
    span = total - start
    if span <= 0:
        return 1.0
    frac = min(max((t - start) / span, 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * frac))


@SCHEDULES.register("step")
def _step(cfg: TrainConfig, t: float, total: int) -> float:
    epoch = int(t + 1e-9)  # the rate changes at the first step of a milestone epoch
    return cfg.gamma ** sum(1 for m in default_milestones(cfg) if epoch >= m)


def default_milestones(cfg: TrainConfig) -> list[int]:
    """``cfg.milestones``, or 50% and 75% of the epochs when none are given."""
    if cfg.milestones:
        return list(cfg.milestones)
    return sorted({m for m in (int(cfg.epochs * 0.5), int(cfg.epochs * 0.75)) if m >= 1})


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based).

    Linear warmup over ``cfg.warmup_epochs`` (Goyal et al. 2017), then the schedule
    ``cfg.schedule`` evaluated at the fractional epoch ``step / steps_per_epoch``.
    """
    if steps_per_epoch < 1:
        raise ValueError("steps_per_epoch must be >= 1")
    t = step / steps_per_epoch
    factor = SCHEDULES.get(cfg.schedule)(cfg, t, cfg.epochs)
    warmup_steps = cfg.warmup_epochs * steps_per_epoch
    if warmup_steps > 0 and step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


def set_lr(optimizer, factor: float) -> None:
    """Set every group's ``lr`` to its ``initial_lr`` times ``factor``.

    ``initial_lr`` (the key torch's own schedulers use) is filled from the group's
    current ``lr`` the first time a group is seen, so groups added later by a
    callback keep their own base rate.
    """
    for group in optimizer.param_groups:
        base = group.setdefault("initial_lr", group["lr"])
        group["lr"] = base * factor
