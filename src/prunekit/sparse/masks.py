"""Weight masks as plain data, and the pure functions that compute them.

A *mask set* is a ``dict[str, torch.BoolTensor]`` keyed by the parameter's
qualified name (``"fc1.weight"``, ``"layer1.0.conv1.weight"``), with the same
shape as the parameter; ``True`` means the weight is kept. Nothing here touches
a module: the functions read weights and return new masks, so they are easy to
test and to compose (iterative pruning passes the previous masks as
``existing``). :mod:`prunekit.sparse.apply` holds the code that writes masks
into a model.

Magnitude pruning follows Han et al., *Learning both Weights and Connections
for Efficient Neural Networks* (NeurIPS 2015); the standard-deviation threshold
is the "quality parameter x the layer's weight standard deviation" rule of
Han et al., *Deep Compression* (ICLR 2016).

Example:
    >>> import torch
    >>> w = {"fc.weight": torch.tensor([[0.1, -0.5], [2.0, -0.05]])}
    >>> magnitude_masks(w, 0.5)["fc.weight"]
    tensor([[False,  True],
            [ True, False]])
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Union

from prunekit.errors import PrunekitError
from prunekit.validate import check_choice, check_fraction, check_int, check_number

Masks = dict  # dict[str, torch.BoolTensor]; kept as a plain alias so annotations stay import-free
SparsityArg = Union[float, Mapping[str, float]]


def prunable_names(model) -> list[str]:
    """Qualified names of the weights of every Conv (1d/2d/3d, incl. transposed) and Linear layer.

    These are the parameters weight pruning acts on by default; biases and
    normalisation parameters are left dense, as in Han et al. (2015).
    """
    from torch import nn
    from torch.nn.modules.conv import _ConvNd

    names = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (_ConvNd, nn.Linear)) and isinstance(getattr(mod, "weight", None), nn.Parameter):
            names.append(f"{mod_name}.weight" if mod_name else "weight")
    return names


def select_params(model_or_params, layers: Iterable[str] | None = None) -> dict:
    """The tensors to prune, as an ordered ``{qualified name: tensor}`` dict.

    Args:
        model_or_params: an ``nn.Module``, a ``{name: tensor}`` mapping (e.g. a
            state_dict) or an iterable of ``(name, tensor)`` pairs.
        layers: names to select. Each may be a parameter name (``"fc1.weight"``)
            or a module name (``"fc1"``, meaning its ``.weight``). ``None``
            selects the Conv/Linear weights of a module, or every tensor of two
            or more dimensions whose name ends in ``weight`` for a mapping.

    Raises:
        PrunekitError: a requested name is not found (the message lists close names).
    """
    from torch import nn

    if isinstance(model_or_params, nn.Module):
        params = dict(model_or_params.named_parameters())
        default = prunable_names(model_or_params) if layers is None else None
    else:
        items = model_or_params.items() if isinstance(model_or_params, Mapping) else model_or_params
        params = dict(items)
        default = ([n for n, t in params.items() if n.endswith("weight") and t.dim() >= 2]
                   if layers is None else None)
    if default is not None:
        return {n: params[n] for n in default}
    if isinstance(layers, str):
        raise PrunekitError(f"layers must be a list of names, got the string {layers!r}")
    out = {}
    for name in layers:
        if name in params:
            out[name] = params[name]
        elif f"{name}.weight" in params:
            out[f"{name}.weight"] = params[f"{name}.weight"]
        else:
            close = [n for n in params if name.split(".")[0] in n][:5]
            raise PrunekitError(f"layer {name!r} has no parameter to prune"
                                + (f"; did you mean one of {close}?" if close else ""))
    if not out:
        raise PrunekitError("no layers selected for pruning (layers is empty)")
    return out


def check_masks(params: Mapping, masks: Mapping) -> None:
    """Raise PrunekitError unless every mask names a known tensor of the same shape and is boolean."""
    import torch

    for name, m in masks.items():
        if name not in params:
            raise PrunekitError(f"mask {name!r} does not name a parameter of the model")
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            raise PrunekitError(f"mask {name!r} must be a bool tensor, got {getattr(m, 'dtype', type(m))}")
        if tuple(m.shape) != tuple(params[name].shape):
            raise PrunekitError(f"mask {name!r} has shape {tuple(m.shape)} but the parameter has "
                                f"{tuple(params[name].shape)}")


def _n_prune(p: float, n: int) -> int:
    # Round half up (not Python's banker's rounding) so counts are predictable.
    return min(n, int(math.floor(p * n + 0.5)))


def _survivor_scores(t, existing_mask):
    """|t| as float64, with already-pruned entries at -1 so they sort first and are never revived."""
    import torch

    s = t.detach().abs().to(torch.float64).flatten()
    if existing_mask is not None:
        s = s.masked_fill(~existing_mask.flatten().to(s.device), -1.0)
    return s


def _prune_smallest(scores, n_prune: int):
    """Flat bool mask dropping the ``n_prune`` lowest scores (stable: earlier index loses ties)."""
    import torch

    keep = torch.ones_like(scores, dtype=torch.bool)
    if n_prune > 0:
        order = torch.sort(scores, stable=True).indices
        keep[order[:n_prune]] = False
    return keep


def magnitude_masks(model_or_params, sparsity: SparsityArg, scope: str = "layer",
                    layers: Iterable[str] | None = None, existing: Mapping | None = None) -> dict:
    """Masks keeping the largest-magnitude weights (Han et al., 2015).

    Args:
        model_or_params: module, ``{name: tensor}`` mapping or ``(name, tensor)`` pairs.
        sparsity: fraction ``p`` to prune, in ``[0, 1]``. With ``existing`` masks,
            ``p`` is a fraction of the *surviving* weights (so one call with
            ``p=0.2`` on 50%-sparse masks gives 60% sparsity), as in iterative
            pruning and the Lottery Ticket rounds. With ``scope="layer"`` it may
            be a ``{name: p}`` dict giving each layer its own fraction (names
            absent from the dict are left as they are).
        scope: ``"layer"`` prunes ``p`` of every layer separately; ``"global"``
            ranks all selected weights together (layers end up with different
            sparsities).
        layers: which tensors to prune (see :func:`select_params`).
        existing: previous masks; weights they prune stay pruned.

    Returns:
        ``{name: BoolTensor}`` for every selected tensor. Exactly
        ``round(p * survivors)`` weights are pruned (per layer or in total);
        ties in magnitude are broken by position, so results are deterministic.
    """
    import torch

    params = select_params(model_or_params, layers)
    existing = dict(existing or {})
    check_masks(params, {k: v for k, v in existing.items() if k in params})
    check_choice("scope", scope, ("layer", "global"), error=PrunekitError)
    if isinstance(sparsity, Mapping):
        if scope != "layer":
            raise PrunekitError("a per-layer sparsity dict needs scope='layer'")
        unknown = sorted(set(sparsity) - set(params))
        if unknown:
            raise PrunekitError(f"sparsity given for unknown or unselected layer(s) {unknown}")
        per_layer = {n: check_fraction(f"sparsity[{n!r}]", p, allow_one=True, error=PrunekitError)
                     for n, p in sparsity.items()}
    else:
        p = check_fraction("sparsity", sparsity, allow_one=True, error=PrunekitError)
        per_layer = {n: p for n in params}

    masks = {}
    if scope == "layer":
        for name, t in params.items():
            old = existing.get(name)
            if name not in per_layer:
                masks[name] = (old.clone() if old is not None
                               else torch.ones(t.shape, dtype=torch.bool, device=t.device))
                continue
            scores = _survivor_scores(t, old)
            n_dead = 0 if old is None else int((~old).sum())
            n_prune = n_dead + _n_prune(per_layer[name], t.numel() - n_dead)
            masks[name] = _prune_smallest(scores, n_prune).view(t.shape).to(t.device)
        return masks

    names = list(params)
    scores = torch.cat([_survivor_scores(params[n], existing.get(n)).cpu() for n in names])
    n_dead = sum(int((~existing[n]).sum()) for n in names if n in existing)
    keep = _prune_smallest(scores, n_dead + _n_prune(p, scores.numel() - n_dead))
    start = 0
    for n in names:
        t = params[n]
        masks[n] = keep[start:start + t.numel()].view(t.shape).to(t.device)
        start += t.numel()
    return masks


def std_threshold_masks(model_or_params, quality: SparsityArg, layers: Iterable[str] | None = None,
                        existing: Mapping | None = None, unbiased: bool = False) -> dict:
    """Per-layer threshold masks of Deep Compression: keep ``|w| > quality * std(w)``.

    Han et al. (ICLR 2016, and the sensitivity analysis of Han et al. 2015) set
    each layer's pruning threshold to a quality parameter times the standard
    deviation of that layer's weights, so wide and narrow weight distributions
    are pruned alike. The std is taken over the weights still alive (all of
    them when ``existing`` is None); pruned weights stay pruned.

    Args:
        quality: one number for every layer, or ``{name: quality}``
            (layers absent from the dict are left unpruned).
        unbiased: use the sample (n-1) standard deviation instead of the population one.

    Example:
        >>> import torch
        >>> w = {"l.weight": torch.tensor([[-2.0, -1.0], [1.0, 2.0]])}   # population std = sqrt(2.5)
        >>> std_threshold_masks(w, 1.0)["l.weight"]
        tensor([[ True, False],
                [False,  True]])
    """
    import torch

    params = select_params(model_or_params, layers)
    existing = dict(existing or {})
    check_masks(params, {k: v for k, v in existing.items() if k in params})
    if isinstance(quality, Mapping):
        unknown = sorted(set(quality) - set(params))
        if unknown:
            raise PrunekitError(f"quality given for unknown or unselected layer(s) {unknown}")
        per_layer = dict(quality)
    else:
        per_layer = {n: quality for n in params}
    masks = {}
    for name, t in params.items():
        w = t.detach()
        old = existing.get(name)
        alive = torch.ones(w.shape, dtype=torch.bool, device=w.device) if old is None else old.to(w.device)
        if name not in per_layer:
            masks[name] = alive.clone()
            continue
        q = per_layer[name]
        check_number(f"quality for {name!r}", q, minimum=0, error=PrunekitError)
        vals = w[alive].to(torch.float64)
        if vals.numel() < 2:
            masks[name] = alive.clone()
            continue
        threshold = float(q) * float(vals.std(correction=1 if unbiased else 0))
        masks[name] = alive & (w.abs().to(torch.float64) > threshold)
    return masks


def quality_for_sparsity(model_or_params, target_sparsity: float, layers: Iterable[str] | None = None,
                         existing: Mapping | None = None, tol: float = 1e-4, max_iter: int = 60) -> float:
    """The single quality ``q`` for which :func:`std_threshold_masks` reaches ``target_sparsity`` overall.

    Deep Compression's rule gives each layer its own threshold (``q * std``);
    this finds by bisection the one ``q`` whose per-layer thresholds prune the
    requested fraction of all selected weights, so the std rule can be
    compared with plain magnitude pruning at equal sparsity. The reached
    sparsity is within one weight per layer of ``target`` in practice (the
    count is a step function of ``q``); ``tol`` bounds the bisection width.
    """
    t = check_fraction("target_sparsity", target_sparsity, allow_one=True, error=PrunekitError)

    def sparsity_at(q: float) -> float:
        return masks_sparsity(std_threshold_masks(model_or_params, q, layers=layers, existing=existing))

    lo, hi = 0.0, 1.0
    while sparsity_at(hi) < t and hi < 1e6:
        lo, hi = hi, hi * 2.0
    for _ in range(max_iter):
        if hi - lo <= tol:
            break
        mid = 0.5 * (lo + hi)
        if sparsity_at(mid) < t:
            lo = mid
        else:
            hi = mid
    return hi


def fraction_for_target(current_sparsity: float, target_sparsity: float) -> float:
    """Fraction of the surviving weights to prune to go from ``current`` to ``target`` sparsity.

    Example:
        >>> fraction_for_target(0.5, 0.75)
        0.5
    """
    c = check_fraction("current_sparsity", current_sparsity, allow_one=True, error=PrunekitError)
    t = check_fraction("target_sparsity", target_sparsity, allow_one=True, error=PrunekitError)
    if t < c:
        raise PrunekitError(f"target sparsity {t} is below the current sparsity {c}; pruning never revives weights")
    if c >= 1.0:
        return 0.0
    return (t - c) / (1.0 - c)


def iterative_schedule(target_sparsity: float, rounds: int) -> list[float]:
    """Overall sparsity after each of ``rounds`` rounds that each prune the same fraction of survivors.

    Round ``i`` (1-based) reaches ``1 - (1 - target) ** (i / rounds)``, the
    geometric schedule of iterative pruning (Han et al., 2015) and of the
    Lottery Ticket rounds (Frankle & Carbin, 2019); the last entry is exactly ``target``.

    Example:
        >>> iterative_schedule(0.75, 2)
        [0.5, 0.75]
    """
    t = check_fraction("target_sparsity", target_sparsity, allow_one=True, error=PrunekitError)
    check_int("rounds", rounds, error=PrunekitError)
    out = [1.0 - (1.0 - t) ** (i / rounds) for i in range(1, rounds)]
    return out + [t]


def masks_sparsity(masks: Mapping) -> float:
    """Fraction of pruned entries over all masks together (0.0 for an empty mask set)."""
    total = sum(m.numel() for m in masks.values())
    if total == 0:
        return 0.0
    kept = sum(int(m.sum()) for m in masks.values())
    return 1.0 - kept / total


def intersect_masks(a: Mapping, b: Mapping) -> dict:
    """Element-wise AND of two mask sets; a name present in only one keeps that mask."""
    out = {k: v.clone() for k, v in a.items()}
    for k, v in b.items():
        out[k] = out[k] & v if k in out else v.clone()
    return out
