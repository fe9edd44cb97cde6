"""Structured (channel) pruning: :func:`plan` chooses, ``PruningPlan.apply`` removes, :func:`prune` does both.

Exposed as ``prunekit.plan`` / ``prunekit.prune`` (plain functions, loaded on
first use). Both take a :class:`~prunekit.engine.options.PlanOptions`, or its
fields as keyword arguments, or both (keywords override the object's fields).

Example:
    >>> import torch, prunekit
    >>> from prunekit import models
    >>> net = models.create("resnet20", num_classes=10)          # doctest: +SKIP
    >>> x = torch.randn(1, 3, 32, 32)
    >>> plan = prunekit.plan(net, x, criterion="l1", ratio=0.5, ignored_layers=[net.fc])  # doctest: +SKIP
    >>> print(plan)                                               # doctest: +SKIP
    >>> small = plan.apply(net)                                   # doctest: +SKIP
    >>> small2 = prunekit.prune(net, x, prunekit.PlanOptions(macs=0.5))  # doctest: +SKIP

See ``docs/pruning.md`` for the supported constructs and the policy options.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from prunekit.engine.options import TRACERS, PlanOptions, options_with, step_options
from prunekit.engine.pruning_plan import PlanGroup, PlanMember, PruningPlan
from prunekit.errors import PrunekitError
from prunekit.validate import check_choice

__all__ = ["BudgetWarning", "measure_cost", "plan", "plan_from_analysis", "plan_from_channels", "prune"]


class BudgetWarning(UserWarning):
    """A MACs/params target was met only as closely as whole channels allow (``best_effort``)."""


def _resolve_modules(model, layers, what: str) -> set[str]:
    """Qualified names of ``layers`` (module objects or names), with every submodule below them."""
    named = dict(model.named_modules())
    out = set()
    for r in _root_names(model, layers, what):
        prefix = r + "." if r else ""
        out.update(n for n in named if n == r or n.startswith(prefix) or r == "")
    return out


def _root_names(model, layers, what: str) -> list[str]:
    """The qualified name(s) of each of ``layers`` (module objects or names)."""
    named = dict(model.named_modules())
    by_id = {}
    for n, m in model.named_modules(remove_duplicate=False):
        by_id.setdefault(id(m), []).append(n)
    roots = []
    for layer in layers or ():
        if isinstance(layer, str):
            if layer not in named:
                raise PrunekitError(f"{what}: the model has no module named {layer!r}")
            roots.append(layer)
        else:
            names = by_id.get(id(layer))
            if not names:
                raise PrunekitError(f"{what}: {type(layer).__name__} object is not a submodule of this model")
            roots.extend(names)
    return roots


def _resolve_ratios(model, ratios: dict) -> dict[str, float]:
    out = {}
    for layer, r in ratios.items():
        for name in _resolve_modules(model, [layer], "ratios"):
            out.setdefault(name, r)
    return out


def _by_name(model, options: PlanOptions) -> PlanOptions:
    """``options`` with layers given as module objects replaced by their names (which survive a deepcopy)."""
    import dataclasses

    ignored = _root_names(model, options.ignored_layers, "ignored_layers")
    ratios = {}
    for layer, r in options.ratios.items():
        for name in _root_names(model, [layer], "ratios"):
            ratios.setdefault(name, r)
    return dataclasses.replace(options, ignored_layers=ignored, ratios=ratios)


def plan(model, example_inputs, options: PlanOptions | None = None, *, data=None, loss_fn: Callable | None = None,
         **overrides) -> PruningPlan:
    """Choose the channels to remove from ``model``; nothing is changed.

    Args:
        model: an ``nn.Module``.
        example_inputs: a tensor, a tuple of tensors, or a dict of keyword tensors.
        options: a :class:`~prunekit.engine.options.PlanOptions` (default: the defaults).
        data: ``[(x, y), ...]`` batches for gradient criteria (taylor, snip, grasp).
        loss_fn: loss for gradient criteria (default cross-entropy).
        **overrides: any :class:`PlanOptions` field by name (``criterion="l2", macs=0.5``);
            they override ``options``. Layers (``ignored_layers``, the keys of ``ratios``)
            may be module objects or qualified names.

    Returns:
        A :class:`~prunekit.engine.pruning_plan.PruningPlan`. ``options.steps`` is not used
        here (a plan is one step; :func:`prune` iterates).

    Raises:
        PrunekitError (a ValueError): bad options, untraceable model, example inputs
            that do not fit, or a target that cannot be met.
        BudgetWarning (a warning): with ``best_effort``, a target met only as closely as
            whole channels allow; also listed in ``plan.info["warnings"]``.

    Example:
        >>> import torch, prunekit
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
        >>> prunekit.plan(net, torch.randn(1, 3, 8, 8), ratio=0.25).num_removed
        2
    """
    import torch

    from prunekit import criteria as crit
    from prunekit.engine.gather import gather_group, gradients
    from prunekit.engine.policy import GroupCost, normalize_scores, select
    from prunekit.graph import analyze
    from prunekit.validate import find_invalid_values

    opts = options_with(options, overrides)
    ratio, target = opts.ratio, opts.target
    if ratio is None and target is None and not opts.ratios and opts.latency is None:
        ratio = 0.5
    if not isinstance(model, torch.nn.Module):
        raise PrunekitError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    # criteria rank channels by value: on NaN (a diverged model) they would silently pick channels 0, 1, ...
    bad = find_invalid_values(model)
    if bad is not None:
        raise PrunekitError(f"{bad[0]} holds NaN or infinite values: the model diverged or its file is damaged, "
                            "so its channels cannot be ranked")
    score_fn = crit.get(opts.criterion)
    ignored = _resolve_modules(model, opts.ignored_layers, "ignored_layers")
    layer_ratios = _resolve_ratios(model, opts.ratios)

    an = analyze(model, example_inputs, tracer=opts.tracer)
    grads = gradients(model, data, loss_fn) if opts.criterion in crit.NEEDS_GRADIENTS else None
    if opts.criterion in crit.SALIENCY_CRITERIA:
        from prunekit.saliency import saliency

        # pruning-at-initialisation criteria: per-parameter saliencies, summed per channel by the criterion
        ex = example_inputs if isinstance(example_inputs, torch.Tensor) else None
        grads = saliency(opts.criterion, model, data, ex, loss_fn=loss_fn)

    cost = _cost_model([n for n, _ in model.named_parameters()], an)
    key_of = {k: i for i, k in enumerate(cost.dims)}

    groups_cost, plan_groups = [], []
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(dict(model.named_buffers(remove_duplicate=False)))
    with torch.no_grad():
        for g in an.groups:
            scores = score_fn(gather_group(tensors, g, grads)).detach().double().cpu().numpy()
            if scores.shape != (g.size,):
                raise PrunekitError(f"criterion {opts.criterion!r} returned shape {scores.shape} for a group of "
                                    f"{g.size}")
            scores = np.nan_to_num(scores, nan=0.0)
            order = np.argsort(scores, kind="stable")
            members = []
            for m in g.members:
                per_ch = np.bincount(m.channels, minlength=g.size)
                members.append((key_of[(m.param, m.dim)], np.cumsum(per_ch[order])))
            producers = [m.module for m in g.members if m.role in ("out", "norm")]
            allowed = not any(p in ignored for p in producers) and g.size > 1
            r = next((layer_ratios[p] for p in producers if p in layer_ratios), None)
            if layer_ratios and r is None and ratio is None and target is None:
                allowed = False  # only the listed layers are pruned
            groups_cost.append(GroupCost(g.size, order, members, normalize_scores(scores, opts.normalize), r,
                                         allowed))
            plan_groups.append((g, scores, order))

    round_to = opts.round_to
    if round_to is None:
        from prunekit.engine.latency_budget import fast_round_to

        round_to = fast_round_to() if opts.latency is not None else 1
    info = {"criterion": opts.criterion, "ratio": ratio, "macs": opts.macs, "params": opts.params,
            "global_ranking": bool(opts.global_ranking), "round_to": round_to,
            "min_channels": opts.min_channels, "ignored_layers": sorted({n for n in ignored}) if ignored else []}
    scores = {g.id: s for g, s, _ in plan_groups} if opts.keep_scores else {}

    def build(counts):
        removed = {g.id: [int(c) for c in order[:n]] for (g, _, order), n in zip(plan_groups, counts)}
        return _assemble(an, cost, removed, info, scores)

    if opts.latency is not None:
        from prunekit.engine.latency_budget import plan_for_latency

        return plan_for_latency(model, example_inputs, an, groups_cost, [n for n, _ in model.named_parameters()],
                                build, opts, round_to)
    counts = select(groups_cost, cost, ratio=ratio, macs=opts.macs, params=opts.params,
                    global_ranking=opts.global_ranking, round_to=round_to, min_channels=opts.min_channels,
                    max_ratio=opts.max_ratio, tolerance=opts.tolerance, best_effort=opts.best_effort)
    out = build(counts)
    if target is not None:
        _check_budget(out, *target, opts.tolerance)
    return out


def _check_budget(p: PruningPlan, key: str, target: float, tolerance: float) -> None:
    """Warn (and note in ``p.info``) when a best-effort plan misses its target by more than ``tolerance``."""
    before = p.info.get(f"{key}_before")
    if not before:
        return
    reached = p.info[f"{key}_after"] / before
    p.info[f"{key}_reached"] = reached
    if abs(reached - target) > tolerance:
        msg = (f"{key} target {target:g} cannot be met within {tolerance:g} with whole channels: took the "
               f"nearest reachable, {reached:.3f} of the original (best_effort; a larger tolerance silences "
               f"this, best_effort=False (--no-best-effort) makes it an error)")
        p.info["warnings"] = list(p.info.get("warnings", [])) + [msg]
        warnings.warn(msg, BudgetWarning, stacklevel=3)


def _cost_model(param_names, an):
    from prunekit.engine.policy import CostModel

    return CostModel(dims=[(m.param, m.dim) for m in an.members], dim_size=np.array([m.size for m in an.members]),
                     tensors=dict(an.param_shapes), macs_terms=list(an.macs_terms), param_names=list(param_names))


def _assemble(an, cost, removed: dict, info: dict, scores: dict | None = None) -> PruningPlan:
    """The plan of analysis ``an`` removing ``removed[group id]`` channels, with exact MACs/params estimates."""
    rem = np.zeros(len(cost.dims))
    out_groups, chans_of = [], {}
    for g in an.groups:
        chans = chans_of[g.id] = sorted(int(c) for c in removed.get(g.id, ()))
        members = [PlanMember(m.param, m.dim, m.role, m.indices, m.channels) for m in g.members]
        s = (scores or {}).get(g.id)
        out_groups.append(PlanGroup(g.id, g.size, members, chans, [float(v) for v in s] if s is not None else None,
                                    list(g.notes)))
        if chans:
            for m in g.members:
                per_ch = np.bincount(m.channels, minlength=g.size)
                rem[cost.key_index((m.param, m.dim))] += float(per_ch[chans].sum())
    zero = np.zeros(len(cost.dims))
    touched = {m.param for g in an.groups for m in g.members}
    info = dict(info)
    info.update({"macs_before": cost.macs(zero), "macs_after": cost.macs(rem), "params_before": cost.params(zero),
                 "params_after": cost.params(rem), "warnings": list(an.warnings),
                 "output_shapes": _shapes(an.output_meta)})
    return PruningPlan(groups=out_groups, attrs=_attribute_updates(an, chans_of),
                       tensor_shapes={p: list(an.param_shapes[p]) for p in sorted(touched)}, info=info,
                       frozen=[f.to_dict() for f in an.frozen],
                       tied=[dict(r.to_dict(), groups=list(names)) for r, names in an.tied])


def plan_from_channels(model, example_inputs, removed: dict, *, info: dict | None = None,
                       tracer: str = "auto") -> PruningPlan:
    """A plan removing exactly the channels you name, in the engine's coupling groups.

    For methods whose choice is not a per-group score (LASSO, ThiNet, ADMM, a
    search's per-layer widths, a hand-written list): the engine captures the model,
    forms its groups, and removes ``removed[key]`` from each; module attributes that
    follow channel counts and the MACs/params estimates are computed as in :func:`plan`.

    Args:
        model: an ``nn.Module``.
        example_inputs: as for :func:`plan`.
        removed: ``{group: [channel indices]}``; a group is its id (``PlanGroup.id``) or
            its name (``PlanGroup.name``: the first layer producing its channels, e.g.
            ``"layer1.0.conv1"``). Groups not listed keep every channel.
        info: extra entries for ``plan.info`` (how the channels were chosen).
        tracer: as for :class:`~prunekit.engine.options.PlanOptions`.

    Raises:
        PrunekitError: an unknown group, an index out of range, or all channels of a group.

    Example:
        >>> import torch, prunekit
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))
        >>> p = prunekit.plan_from_channels(net, torch.randn(1, 1, 8, 8), {"0": [1, 3]})
        >>> p.apply(net)[0].weight.shape
        torch.Size([2, 1, 3, 3])
    """
    import torch

    from prunekit.graph import analyze

    if not isinstance(model, torch.nn.Module):
        raise PrunekitError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(removed, dict):
        raise PrunekitError(f"removed must be a dict {{group id or name: [channels]}}, got {type(removed).__name__}")
    check_choice("tracer", tracer, TRACERS, error=PrunekitError)
    return plan_from_analysis(analyze(model, example_inputs, tracer=tracer), removed,
                              param_names=[n for n, _ in model.named_parameters()], info=info)


def plan_from_analysis(analysis, removed: dict, *, param_names: list, info: dict | None = None) -> PruningPlan:
    """:func:`plan_from_channels` on an analysis already made with :func:`prunekit.graph.analyze`.

    For callers that build many plans for one model (a search realising candidates):
    the graph is captured once. ``removed`` is as for :func:`plan_from_channels`;
    ``param_names`` are the model's parameter names (``[n for n, _ in
    model.named_parameters()]``), counted by the plan's ``params_after`` estimate.
    """
    an = analysis
    by_id = {g.id: g for g in an.groups}
    by_name = {}
    for g in an.groups:
        name = next((m.module for m in g.members if m.role == "out"), g.members[0].module if g.members else None)
        by_name.setdefault(name, g)
    resolved: dict = {}
    for key, chans in removed.items():
        g = by_id.get(key) if isinstance(key, (int, np.integer)) and not isinstance(key, bool) else by_name.get(key)
        if g is None:
            names = ", ".join(sorted(str(n) for n in by_name)[:12])
            raise PrunekitError(f"plan_from_channels: no prunable group {key!r} in this model (groups: {names}...)")
        try:
            cs = sorted({int(c) for c in chans})
        except (TypeError, ValueError):
            raise PrunekitError(f"group {key!r}: channels must be a list of integers, got {chans!r}") from None
        if cs and (cs[0] < 0 or cs[-1] >= g.size):
            raise PrunekitError(f"group {key!r}: channel index out of range [0, {g.size})")
        if len(cs) >= g.size:
            raise PrunekitError(f"group {key!r}: cannot remove all {g.size} channels")
        if g.id in resolved and resolved[g.id] != cs:
            raise PrunekitError(f"group {key!r} is listed twice with different channels")
        resolved[g.id] = cs
    base = {"criterion": "explicit"}
    base.update(info or {})
    return _assemble(an, _cost_model(param_names, an), resolved, base)


def _attribute_updates(an, removed: dict) -> list[dict]:
    """Module attributes after removing ``removed[group id]`` channels: one unit per index left.

    An index of a binding is left when its component is in no group or is a
    channel not removed. Vectorised over the components (a dict lookup per index
    was a tenth of planning ResNet-50: every BatchNorm's ``num_features`` counts).
    """
    if not an.bindings:
        return []
    if an.comp_group is None:  # an Analysis made without the component arrays
        gone_pairs = {(g, int(c)) for g, chans in removed.items() for c in chans}
        return [{"module": b.module, "attr": b.attr, "before": int(b.value),
                 "after": sum(1 for c in b.comps.tolist() if an.group_of_comp.get(c) not in gone_pairs)}
                for b in an.bindings]
    sizes = np.array([g.size for g in an.groups], dtype=np.int64)
    start = np.cumsum(sizes) - sizes
    gone = np.zeros(int(sizes.sum()), dtype=bool)
    for gid, chans in removed.items():
        if len(chans):
            gone[start[gid] + np.asarray(chans, dtype=np.int64)] = True
    out = []
    for b in an.bindings:
        g = an.comp_group[b.comps]
        live = g >= 0
        n_gone = int(gone[start[g[live]] + an.comp_channel[b.comps[live]]].sum())
        out.append({"module": b.module, "attr": b.attr, "before": int(b.value), "after": int(b.comps.size) - n_gone})
    return out


def prune(model, example_inputs, options: PlanOptions | None = None, *, inplace: bool = False,
          callback: Callable | None = None, verify: bool = True, data=None, loss_fn: Callable | None = None,
          **overrides):
    """Plan and apply in one call; returns the pruned model (``model`` itself only if ``inplace``).

    Args:
        options, **overrides: the planner options, as for :func:`plan`. With
            ``steps > 1`` the model is pruned iteratively, each step reaching a larger
            share of the final ratio/target (step ``k`` reaches ``k/steps`` of it,
            measured on the original model; see :func:`~prunekit.engine.options.step_options`).
        callback: ``callback(model, step)`` runs after each step (fine-tuning) and may
            return a replacement model.
        verify: run the pruned model once on ``example_inputs`` and check its
            output shapes (a safety net; costs one forward pass).
        data, loss_fn: as for :func:`plan`.

    Example:
        >>> import torch, prunekit
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
        >>> prunekit.prune(net, torch.randn(1, 3, 8, 8), ratio=0.5, steps=2)[0].out_channels
        4
    """
    opts = options_with(options, overrides)
    if opts.steps > 1:
        opts = _by_name(model, opts)  # later steps plan on pruned copies, which hold other module objects
    target = opts.target
    base = measure_cost(model, example_inputs, target[0]) if target and opts.steps > 1 else None
    current = model
    for k in range(1, opts.steps + 1):
        kept = measure_cost(current, example_inputs, target[0]) / base if base else 1.0
        p = plan(current, example_inputs, step_options(opts, k, kept), data=data, loss_fn=loss_fn)
        current = p.apply(current, inplace=inplace or k > 1)
        if verify:
            _verify(current, example_inputs, p.info.get("output_shapes"))
        if callback is not None:
            replaced = callback(current, k)
            if replaced is not None:
                current = replaced
    return current


def _verify(model, example_inputs, expected) -> None:
    """Run the pruned model once and compare its output shapes with the dense model's."""
    import torch

    from prunekit.graph.capture import example_tuple, summarize

    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            out = summarize(model(*example_tuple(model, example_inputs)))
    except Exception as e:
        raise PrunekitError(f"the pruned model fails on the example inputs ({type(e).__name__}: {e}); this is "
                            "an engine bug: please report it, and pass the layer involved in ignored_layers") from None
    finally:
        for m, t in flags.items():
            m.training = t
    if expected is not None and _shapes(out) != _shapes(expected):
        raise PrunekitError(f"the pruned model's outputs have shapes {_shapes(out)} instead of {_shapes(expected)}; "
                            "this is an engine bug: please report it")


def _shapes(summary):
    if isinstance(summary, list) and all(isinstance(s, list) and all(isinstance(i, int) for i in s) for s in summary):
        return summary  # already a list of shapes (from plan info)
    if isinstance(summary, tuple) and summary and summary[0] == "tensor":
        return [list(summary[1])]
    if isinstance(summary, (list, tuple)):
        return [s for v in summary for s in _shapes(v)]
    if isinstance(summary, dict):
        return [s for v in summary.values() for s in _shapes(v)]
    return []


def measure_cost(model, example_inputs, key: str) -> float:
    """The model's parameter count (``key="params"``) or MACs on ``example_inputs`` (``"macs"``), as measured.

    What iterative pruning compares with the original model to set each step's goal.
    """
    from prunekit.graph.capture import example_tuple

    if key == "params":
        return float(sum(p.numel() for p in model.parameters()))
    from prunekit.measure import count_macs

    return float(count_macs(model, example_tuple(model, example_inputs)).total)
