"""Structured (channel) pruning: ``prunekit.plan`` chooses, ``PruningPlan.apply`` removes.

Example:
    >>> import torch, prunekit
    >>> from prunekit import models
    >>> net = models.create("resnet20", num_classes=10)          # doctest: +SKIP
    >>> x = torch.randn(1, 3, 32, 32)
    >>> plan = prunekit.plan(net, x, criterion="l1", ratio=0.5, ignored_layers=[net.fc])  # doctest: +SKIP
    >>> print(plan)                                               # doctest: +SKIP
    >>> small = plan.apply(net)                                   # doctest: +SKIP
    >>> small2 = prunekit.prune(net, x, macs=0.5)                 # doctest: +SKIP

See ``docs/pruning.md`` for the supported constructs and the policy options.
"""
from __future__ import annotations

import math
import sys
import types
from typing import Callable, Iterable

import numpy as np

from prunekit.errors import PrunekitError
from prunekit.plan import PlanGroup, PlanMember, PruningPlan


def _check_fraction(name, v, lo_open=False, allow_one=False):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(float(v)):
        raise PrunekitError(f"{name} must be a number, got {v!r}")
    v = float(v)
    ok = (0.0 < v if lo_open else 0.0 <= v) and (v <= 1.0 if allow_one else v < 1.0)
    if not ok:
        rng = f"{'(' if lo_open else '['}0, 1{']' if allow_one else ')'}"
        raise PrunekitError(f"{name} must be in {rng}, got {v}")
    return v


def _resolve_modules(model, layers, what: str) -> set[str]:
    """Qualified names of ``layers`` (module objects or names), with every submodule below them."""
    if layers is None:
        return set()
    named = dict(model.named_modules())
    by_id = {}
    for n, m in model.named_modules(remove_duplicate=False):
        by_id.setdefault(id(m), []).append(n)
    roots = []
    for layer in layers:
        if isinstance(layer, str):
            if layer not in named:
                raise PrunekitError(f"{what}: the model has no module named {layer!r}")
            roots.append(layer)
        else:
            names = by_id.get(id(layer))
            if not names:
                raise PrunekitError(f"{what}: {type(layer).__name__} object is not a submodule of this model")
            roots.extend(names)
    out = set()
    for r in roots:
        prefix = r + "." if r else ""
        out.update(n for n in named if n == r or n.startswith(prefix) or r == "")
    return out


def _resolve_ratios(model, ratios) -> dict[str, float]:
    if not ratios:
        return {}
    out = {}
    for layer, r in dict(ratios).items():
        r = _check_fraction(f"ratio for {layer!r}", r)
        for name in _resolve_modules(model, [layer], "ratios"):
            out.setdefault(name, r)
    return out


class _LazyRows(list):
    """A list whose items are computed on first access (criteria read only the members they use)."""

    def __init__(self, makers):
        super().__init__([None] * len(makers))
        self._makers = makers
        self._done = [False] * len(makers)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if not self._done[k]:
            super().__setitem__(k, self._makers[k]())
            self._done[k] = True
        return super().__getitem__(k)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _channel_rows(src, m, size: int):
    """``(size, k)`` matrix: row ``c`` holds every slice of ``src`` along ``m.dim`` mapped to channel ``c``."""
    import torch

    n = m.indices.size
    contiguous = n and m.indices[-1] - m.indices[0] == n - 1 and (np.diff(m.indices) == 1).all()
    if contiguous and (m.channels == np.arange(n)).all():
        rows = src.narrow(m.dim, int(m.indices[0]), n).movedim(m.dim, 0).reshape(n, -1)
        return rows.float()
    order = np.argsort(m.channels, kind="stable")
    idx = torch.as_tensor(m.indices[order], dtype=torch.long)
    rows = src.movedim(m.dim, 0).index_select(0, idx).reshape(n, -1).float()
    counts = np.bincount(m.channels, minlength=size)
    if (counts == counts[0]).all() and counts[0] > 0:
        return rows.reshape(size, -1)
    out = torch.zeros(size, int(counts.max()) * rows.shape[1])
    start = 0
    for c in range(size):
        k = int(counts[c])
        out[c, : k * rows.shape[1]] = rows[start:start + k].reshape(-1)
        start += k
    return out


def _gather(tensors: dict, group, grads: dict | None):
    """The criterion's view of a group: per member a (G, k) channel-major matrix, built lazily."""
    from prunekit.criteria import GroupTensors

    def maker(src, m):
        return lambda: _channel_rows(src, m, group.size)

    W, Gs = [], []
    for m in group.members:
        W.append(maker(tensors[m.param].detach(), m))
        g = grads.get(m.param) if grads else None
        Gs.append(maker(g, m) if g is not None else (lambda: None))
    return GroupTensors(_LazyRows(W), _LazyRows(Gs), [m.role for m in group.members],
                        [m.param for m in group.members], seed=group.id)


def _gradients(model, example_inputs, data, loss_fn) -> dict:
    """Accumulated gradients of ``loss_fn`` over ``data`` batches, on a copy of the model."""
    import copy

    import torch

    if data is None:
        raise PrunekitError("criterion 'taylor' needs calibration batches: pass data=[(x, y), ...]")
    net = copy.deepcopy(model)
    net.train()
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    net.zero_grad(set_to_none=True)
    n = 0
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise PrunekitError("data for the taylor criterion must yield (inputs, targets) pairs")
        x, y = batch
        out = net(*x) if isinstance(x, (tuple, list)) else net(x)
        loss_fn(out, y).backward()
        n += 1
    if n == 0:
        raise PrunekitError("data for the taylor criterion is empty")
    return {name: p.grad.detach() / n for name, p in net.named_parameters(remove_duplicate=False) if p.grad is not None}


def plan(model, example_inputs, criterion: str = "l1", ratio: float | None = None, *,
         ratios: dict | None = None, ignored_layers: Iterable | None = None, macs: float | None = None,
         params: float | None = None, global_ranking: bool = False, round_to: int = 1, min_channels: int = 1,
         max_ratio: float = 0.9, normalize: str = "mean", data=None, loss_fn: Callable | None = None,
         keep_scores: bool = False, tolerance: float = 0.01, tracer: str = "auto") -> PruningPlan:
    """Choose the channels to remove from ``model``; nothing is changed.

    Args:
        model: an ``nn.Module``.
        example_inputs: a tensor, a tuple of tensors, or a dict of keyword tensors.
        criterion: a name from :data:`prunekit.criteria.CRITERIA` (l1, l2, fpgm, bn_scale, taylor, lamp, random).
        ratio: fraction of each group's channels to remove, in [0, 1) (default 0.5 when no target is set).
        ratios: per-layer ratios ``{module or name: ratio}``; a group takes the ratio of
            the first of its producing layers listed (containers apply to all layers inside).
        ignored_layers: modules (or names) whose output channels are never pruned;
            their input channels may still shrink with the layers that feed them.
        macs: keep this fraction of the original MACs (0 < macs <= 1), met within ``tolerance``.
        params: keep this fraction of the original parameters.
        global_ranking: rank normalised scores across groups instead of pruning every group alike.
        round_to: keep channel counts multiples of this (hardware-friendly widths).
        min_channels: keep at least this many channels per group.
        max_ratio: never remove more than this fraction of a group (targets, global ranking).
        normalize: score normalisation for global ranking (mean, max, sum, none).
        data: ``[(x, y), ...]`` batches for gradient criteria (taylor).
        loss_fn: loss for gradient criteria (default cross-entropy).
        keep_scores: store every channel's score in the plan (bigger JSON).
        tolerance: allowed error of a MACs/params target, as a fraction of the original.
        tracer: graph capture: ``"auto"`` (torch.fx; torch.export when fx cannot trace
            the root forward), ``"fx"`` or ``"export"``.

    Returns:
        A :class:`~prunekit.plan.PruningPlan`.

    Raises:
        PrunekitError (a ValueError): bad arguments, untraceable model, example inputs
            that do not fit, or a target that cannot be met.
    """
    import torch

    from prunekit import criteria as crit
    from prunekit.graph import analyze
    from prunekit.policy import GroupCost, normalize_scores, select

    if macs is not None and params is not None:
        raise PrunekitError("give at most one of macs= and params=")
    ratio = _check_fraction("ratio", ratio)
    macs = _check_fraction("macs", macs, lo_open=True, allow_one=True)
    params = _check_fraction("params", params, lo_open=True, allow_one=True)
    max_ratio = _check_fraction("max_ratio", max_ratio)
    if ratio is None and macs is None and params is None and not ratios:
        ratio = 0.5
    for name, v in (("round_to", round_to), ("min_channels", min_channels)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise PrunekitError(f"{name} must be a positive integer, got {v!r}")
    if not isinstance(model, torch.nn.Module):
        raise PrunekitError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    score_fn = crit.get(criterion)
    ignored = _resolve_modules(model, ignored_layers, "ignored_layers")
    layer_ratios = _resolve_ratios(model, ratios)

    if tracer not in ("auto", "fx", "export"):
        raise PrunekitError(f"tracer must be 'auto', 'fx' or 'export', got {tracer!r}")
    an = analyze(model, example_inputs, tracer=tracer)
    grads = _gradients(model, example_inputs, data, loss_fn) if criterion in crit.NEEDS_GRADIENTS else None

    cost = _cost_model([n for n, _ in model.named_parameters()], an)
    key_of = {k: i for i, k in enumerate(cost.dims)}

    groups_cost, plan_groups = [], []
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(dict(model.named_buffers(remove_duplicate=False)))
    with torch.no_grad():
        for g in an.groups:
            scores = score_fn(_gather(tensors, g, grads)).detach().double().cpu().numpy()
            if scores.shape != (g.size,):
                raise PrunekitError(f"criterion {criterion!r} returned shape {scores.shape} for a group of {g.size}")
            scores = np.nan_to_num(scores, nan=0.0)
            order = np.argsort(scores, kind="stable")
            members = []
            for m in g.members:
                per_ch = np.bincount(m.channels, minlength=g.size)
                members.append((key_of[(m.param, m.dim)], np.cumsum(per_ch[order])))
            producers = [m.module for m in g.members if m.role in ("out", "norm")]
            allowed = not any(p in ignored for p in producers) and g.size > 1
            r = next((layer_ratios[p] for p in producers if p in layer_ratios), None)
            if layer_ratios and r is None and ratio is None and macs is None and params is None:
                allowed = False  # only the listed layers are pruned
            groups_cost.append(GroupCost(g.size, order, members, normalize_scores(scores, normalize), r, allowed))
            plan_groups.append((g, scores, order))

    counts = select(groups_cost, cost, ratio=ratio, macs=macs, params=params, global_ranking=global_ranking,
                    round_to=round_to, min_channels=min_channels, max_ratio=max_ratio, tolerance=tolerance)

    info = {"criterion": criterion, "ratio": ratio, "macs": macs, "params": params,
            "global_ranking": bool(global_ranking), "round_to": round_to, "min_channels": min_channels,
            "ignored_layers": sorted({n for n in ignored}) if ignored else []}
    removed = {g.id: [int(c) for c in order[:n]] for (g, _, order), n in zip(plan_groups, counts)}
    scores = {g.id: s for g, s, _ in plan_groups} if keep_scores else {}
    return _assemble(an, cost, removed, info, scores)


def _cost_model(param_names, an):
    from prunekit.policy import CostModel

    return CostModel(dims=[(m.param, m.dim) for m in an.members], dim_size=np.array([m.size for m in an.members]),
                     tensors=dict(an.param_shapes), macs_terms=list(an.macs_terms), param_names=list(param_names))


def _assemble(an, cost, removed: dict, info: dict, scores: dict | None = None) -> PruningPlan:
    """The plan of analysis ``an`` removing ``removed[group id]`` channels, with exact MACs/params estimates."""
    rem = np.zeros(len(cost.dims))
    out_groups, removed_comp = [], set()
    for g in an.groups:
        chans = sorted(int(c) for c in removed.get(g.id, ()))
        members = [PlanMember(m.param, m.dim, m.role, m.indices, m.channels) for m in g.members]
        s = (scores or {}).get(g.id)
        out_groups.append(PlanGroup(g.id, g.size, members, chans, [float(v) for v in s] if s is not None else None,
                                    list(g.notes)))
        removed_comp.update((g.id, c) for c in chans)
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
    return PruningPlan(groups=out_groups, attrs=_attribute_updates(an, removed_comp),
                       tensor_shapes={p: list(an.param_shapes[p]) for p in sorted(touched)}, info=info)


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
        tracer: as for :func:`plan`.

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
    if tracer not in ("auto", "fx", "export"):
        raise PrunekitError(f"tracer must be 'auto', 'fx' or 'export', got {tracer!r}")
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


def _attribute_updates(an, removed: set) -> list[dict]:
    out = []
    for b in an.bindings:
        kept = 0
        for c in b.comps.tolist():
            gc = an.group_of_comp.get(c)
            if gc is None or gc not in removed:
                kept += 1
        out.append({"module": b.module, "attr": b.attr, "before": int(b.value), "after": int(kept)})
    return out


def prune(model, example_inputs, criterion: str = "l1", ratio: float | None = None, *, inplace: bool = False,
          steps: int = 1, callback: Callable | None = None, verify: bool = True, **kwargs):
    """Plan and apply in one call; returns the pruned model (``model`` itself only if ``inplace``).

    Args:
        steps: prune iteratively in this many steps, each reaching a larger share of
            the final ratio/target (step ``k`` reaches ``k/steps`` of it, measured on
            the original model); ``callback(model, step)`` runs after each step
            (fine-tuning) and may return a replacement model.
        verify: run the pruned model once on ``example_inputs`` and check its
            output shapes (a safety net; costs one forward pass).
        **kwargs: everything :func:`plan` takes.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PrunekitError(f"steps must be a positive integer, got {steps!r}")
    current = model
    macs_t, params_t = kwargs.pop("macs", None), kwargs.pop("params", None)
    base = None
    for k in range(1, steps + 1):
        kw = dict(kwargs)
        if steps == 1:
            p = plan(current, example_inputs, criterion, ratio, macs=macs_t, params=params_t, **kw)
        elif macs_t is not None or params_t is not None:
            target = macs_t if macs_t is not None else params_t
            key = "macs" if macs_t is not None else "params"
            if base is None:
                base = _count(current, example_inputs, key)
            goal = 1.0 - (1.0 - target) * k / steps
            now = _count(current, example_inputs, key) / base
            kw[key] = min(1.0, goal / now)
            p = plan(current, example_inputs, criterion, **kw)
        else:
            r = 0.5 if ratio is None else ratio
            kept_before = 1.0 - r * (k - 1) / steps
            kept_after = 1.0 - r * k / steps
            p = plan(current, example_inputs, criterion, 1.0 - kept_after / kept_before, **kw)
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


def _count(model, example_inputs, key: str) -> float:
    from prunekit.graph.capture import example_tuple

    if key == "params":
        return float(sum(p.numel() for p in model.parameters()))
    from prunekit.measure import count_macs

    return float(count_macs(model, example_tuple(model, example_inputs)).total)


class _CallablePruneModule(types.ModuleType):
    """``prunekit.prune`` is both this module and :func:`prune` (see ``prunekit.plan`` for why)."""

    def __call__(self, *args, **kwargs):
        return prune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePruneModule
