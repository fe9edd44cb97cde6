"""Timing and progress of a search's phases: wall time per phase, and bars that show an ETA.

A search runs four phases (super-network training, candidate search, final prune
and fine-tuning, report). :class:`PhaseTimer` records each one's wall time for
the report (``report["seconds"]``), so a slow search says where its time went.
:class:`TrainProgress` draws one bar over the whole super-network training (every
epoch's steps, so tqdm's ETA is the training's, not one epoch's), and
:func:`greedy_steps_estimate` gives greedy slimming's bar a total, which it
otherwise lacks (the number of steps is only known at the end).
"""
from __future__ import annotations

import time
from contextlib import contextmanager

from prunekit.train import Callback


class PhaseTimer:
    """Wall-clock seconds per named phase, in the order first entered.

    Example:
        >>> t = PhaseTimer()
        >>> with t.phase("search"):
        ...     pass
        >>> list(t.seconds)
        ['search']
    """

    def __init__(self) -> None:
        self.seconds: dict = {}
        self._start = time.perf_counter()

    @contextmanager
    def phase(self, name: str):
        """Time the ``with`` block and add it to ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def as_dict(self) -> dict:
        """``{phase: seconds}`` rounded to milliseconds, plus ``total``: the wall time since the timer was made
        (it includes what no phase covers)."""
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        out["total"] = round(time.perf_counter() - self._start, 3)
        return out


class TrainProgress(Callback):
    """One progress bar over every step of a training run (its total set at the start, so it shows an ETA).

    The :class:`~prunekit.train.Trainer`'s own bars cover one epoch each; give the
    trainer ``progress=False`` and this callback instead.

    Args:
        desc: the bar's label.
        enabled: draw it at all (the caller's ``progress`` switch).
    """

    def __init__(self, desc: str = "super-network", enabled: bool = True) -> None:
        self.desc, self.enabled = desc, bool(enabled)
        self.bar = None

    def on_train_begin(self, trainer) -> None:
        from prunekit.utils.progress import progress_bar

        total = trainer.config.epochs * trainer.steps_per_epoch
        self.bar = progress_bar(total=total, initial=trainer.global_step, desc=self.desc, unit="step",
                                enabled=self.enabled and trainer.is_main, leave=True)

    def on_step_end(self, trainer, step: int) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_train_end(self, trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def greedy_steps_estimate(space, ok, moves: int = 1) -> int:
    """Steps greedy slimming will take if every group shrinks alike: the ETA's total (the real count may differ).

    Walks the uniform encodings from the full width down to the first one passing
    ``ok``; each of its one-notch reductions per group is one move, ``moves`` per step.

    Example:
        >>> import torch, torch.nn as nn
        >>> from prunekit.search import SearchSpace
        >>> net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
        >>> space = SearchSpace.build(net, torch.randn(1, 1, 8, 8), ratios=(0.25, 0.5, 1.0))
        >>> greedy_steps_estimate(space, lambda e: e[0] <= 4)
        1
    """
    import math

    ratios = sorted({k / g.size for c, g in zip(space.candidates, space.groups) for k in c}, reverse=True)
    for r in ratios:
        enc = space.uniform(r)
        if ok(enc):
            notches = sum(len(c) - 1 - c.index(k) for c, k in zip(space.candidates, enc))
            return max(1, math.ceil(notches / max(1, moves)))
    return max(1, math.ceil(sum(len(c) - 1 for c in space.candidates) / max(1, moves)))
