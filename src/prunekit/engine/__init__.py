"""The structured-pruning engine: options, planner, plan and policy.

* :mod:`~prunekit.engine.options`: :class:`PlanOptions`, every planner option with
  its help text (the CLI's planner flags and the recipe step ``prune`` come from it),
  and :func:`step_options` (the arithmetic of iterative pruning).
* :mod:`~prunekit.engine.planner`: :func:`plan` (capture, score, choose) and
  :func:`prune` (plan + apply, optionally in steps); :func:`plan_from_channels` /
  :func:`plan_from_analysis` for channels chosen elsewhere (LASSO, ThiNet, ADMM, a search).
* :mod:`~prunekit.engine.pruning_plan`: :class:`PruningPlan`, plain JSON data with ``apply`` /
  ``apply_masks``, and the checkpoint transform ``prune_plan``.
* :mod:`~prunekit.engine.policy`: ratios, targets, global ranking and rounding as pure numpy.
* :mod:`~prunekit.engine.gather`: what a criterion sees of a group.

``prunekit.plan``, ``prunekit.prune``, ``prunekit.PlanOptions`` and
``prunekit.PruningPlan`` are shortcuts to these, loaded on first use. Importing
this package imports nothing (its submodules load on first use; none imports torch at
import time).

Example:
    >>> import torch
    >>> from prunekit.engine import PlanOptions, plan
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    >>> plan(net, torch.randn(1, 3, 8, 8), PlanOptions(ratio=0.5)).apply(net)[0].out_channels
    4
"""
from __future__ import annotations

import importlib

# name -> submodule defining it; loaded on first access so that importing the options
# (the CLI builds its flags from them) does not import numpy or the planner.
_EXPORTS = {
    "PlanOptions": "options", "options_with": "options", "step_options": "options",
    "PlanGroup": "pruning_plan", "PlanMember": "pruning_plan", "PruningPlan": "pruning_plan",
    "BudgetWarning": "planner", "measure_cost": "planner", "plan": "planner", "plan_from_analysis": "planner",
    "plan_from_channels": "planner", "prune": "planner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"prunekit.engine.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'prunekit.engine' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
