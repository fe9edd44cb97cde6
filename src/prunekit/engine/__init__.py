"""The structured-pruning engine: options, planner, plan and policy.

* :mod:`~prunekit.engine.options`: :class:`PlanOptions`, every planner option with
  its help text (the CLI's planner flags and the recipe step ``prune`` come from it),
  and :func:`step_options` (the arithmetic of iterative pruning).
* :mod:`~prunekit.engine.planner`: :func:`plan` (capture, score, choose) and
  :func:`prune` (plan + apply, optionally in steps); :func:`plan_from_channels` /
  :func:`plan_from_analysis` for channels chosen elsewhere (LASSO, ThiNet, ADMM, a search).
* :mod:`~prunekit.engine.plan`: :class:`PruningPlan`, plain JSON data with ``apply`` /
  ``apply_masks``, and the checkpoint transform ``prune_plan``.
* :mod:`~prunekit.engine.policy`: ratios, targets, global ranking and rounding as pure numpy.
* :mod:`~prunekit.engine.gather`: what a criterion sees of a group.

``prunekit.plan``, ``prunekit.prune``, ``prunekit.PlanOptions`` and
``prunekit.PruningPlan`` are shortcuts to these, loaded on first use. Importing
this package imports numpy, not torch.

Example:
    >>> import torch
    >>> from prunekit.engine import PlanOptions, plan
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    >>> plan(net, torch.randn(1, 3, 8, 8), PlanOptions(ratio=0.5)).apply(net)[0].out_channels
    4
"""
from __future__ import annotations

from prunekit.engine.options import PlanOptions, options_with, step_options
from prunekit.engine.plan import PlanGroup, PlanMember, PruningPlan
from prunekit.engine.planner import BudgetWarning, measure_cost, plan, plan_from_analysis, plan_from_channels, prune

__all__ = ["BudgetWarning", "PlanGroup", "PlanMember", "PlanOptions", "PruningPlan", "measure_cost", "options_with",
           "plan", "plan_from_analysis", "plan_from_channels", "prune", "step_options"]
