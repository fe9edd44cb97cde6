"""Pruning-at-initialisation saliencies (SNIP, GraSP, SynFlow) as pure score functions.

Each function scores a *copy* of the model (the model itself is never changed) and
returns ``{parameter name: tensor}`` of the parameter's shape, where **higher means
more important** (keep), so that every score ranks the same way as the channel
criteria of :mod:`prunekit.criteria`:

============ ==================================================================================
name         importance of connection ``theta``
============ ==================================================================================
``snip``     ``|g * theta|``, ``g`` the loss gradient on a few batches: connection sensitivity
             (Lee, Ajanthan & Torr, "SNIP: Single-shot Network Pruning based on Connection
             Sensitivity", ICLR 2019)
``grasp``    ``theta * (H g)``, ``H g`` the Hessian-gradient product of the loss (logits divided
             by a temperature): the *negative* of the paper's score ``S(-theta) = -theta * Hg``,
             whose largest values GraSP removes (Wang, Zhang & Grosse, "Picking Winning Tickets
             Before Training by Preserving Gradient Flow", ICLR 2020)
``synflow``  ``|theta * dR/dtheta|`` with ``R = 1^T (prod |W|) 1``: the network with every tensor
             replaced by its absolute value, fed an all-ones input, ``R`` the sum of its outputs;
             data-free (Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any
             data by iteratively conserving synaptic flow", NeurIPS 2020)
============ ==================================================================================

:func:`score_masks` turns scores into global masks with exactly the requested number
of zeros; :func:`synflow_masks` is SynFlow's iterative procedure (``rounds`` rounds on
the exponential schedule, scores recomputed on the masked network each round).

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.Linear(2, 1, bias=False))
    >>> s = synflow_scores(net, torch.zeros(1, 3))
    >>> sorted(s)
    ['0.weight', '1.weight']
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

from prunekit.errors import PrunekitError

__all__ = ["SALIENCIES", "snip_scores", "grasp_scores", "synflow_scores", "synflow_masks", "score_masks",
           "saliency"]

#: the saliencies by name (``saliency(name, ...)`` dispatches on these)
SALIENCIES = ("snip", "grasp", "synflow")


def _params(net, names: Iterable[str] | None) -> dict:
    """``{name: parameter}`` of ``net`` to score (``names`` None: every parameter that requires grad)."""
    all_params = dict(net.named_parameters())
    if names is None:
        return {n: p for n, p in all_params.items() if p.requires_grad}
    missing = [n for n in names if n not in all_params]
    if missing:
        raise PrunekitError(f"no parameter named {missing[0]!r} to score (the model has e.g. "
                            f"{sorted(all_params)[:5]})")
    return {n: all_params[n] for n in names}


def _check_batches(data, what: str) -> list:
    batches = list(data) if data is not None else []
    if not batches:
        raise PrunekitError(f"{what} needs calibration batches: pass data=[(x, y), ...]")
    for b in batches:
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise PrunekitError(f"data for {what} must yield (inputs, targets) pairs")
    return batches


def _forward(net, x):
    return net(*x) if isinstance(x, (tuple, list)) else net(x)


def snip_scores(model, data, names: Iterable[str] | None = None, loss_fn: Callable | None = None) -> dict:
    """SNIP connection sensitivity ``|g * theta|`` (Lee et al., ICLR 2019).

    ``g`` is the gradient of the mean of ``loss_fn`` (default cross-entropy) over the
    batches of ``data``, in training mode. The paper divides by the sum of all scores;
    that scaling does not change any ranking and is left out.

    Args:
        model: the network (a copy is scored).
        data: ``[(x, y), ...]`` batches.
        names: parameters to score (None: all that require grad).
        loss_fn: ``loss_fn(logits, y)``.
    """
    import copy

    import torch

    batches = _check_batches(data, "snip")
    net = copy.deepcopy(model).train()
    params = _params(net, names)
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    for x, y in batches:
        g = torch.autograd.grad(loss_fn(_forward(net, x), y), list(params.values()), allow_unused=True)
        for n, gi in zip(params, g):
            if gi is not None:
                grads[n] += gi / len(batches)
    return {n: (grads[n] * p.detach()).abs() for n, p in params.items()}


def grasp_scores(model, data, names: Iterable[str] | None = None, loss_fn: Callable | None = None,
                 temperature: float = 200.0) -> dict:
    """GraSP importance ``theta * (H g)`` (Wang et al., ICLR 2020); the paper's score is its negative.

    GraSP keeps the gradient flow ``g^T g`` after pruning: removing ``theta`` changes it
    by about ``-2 theta^T H g``, so the paper scores ``S(-theta) = -theta * Hg`` and
    removes the *largest* scores. Here the sign is flipped (higher = keep) so GraSP
    ranks like the other criteria: pruning the lowest ``theta * Hg`` is the paper's rule.

    ``g`` is the mean loss gradient over ``data`` (no graph); ``Hg`` is the gradient of
    ``z = sum(g.detach() * grad(loss))`` per batch, averaged. As in the authors' code the
    logits are divided by ``temperature`` (200) before the loss, and the Hessian is taken
    with respect to the scored parameters only (Conv/Linear weights at the weight level).
    """
    import copy

    import torch

    batches = _check_batches(data, "grasp")
    if not temperature > 0:
        raise PrunekitError(f"grasp temperature must be > 0, got {temperature}")
    net = copy.deepcopy(model).train()
    params = _params(net, names)
    plist = list(params.values())
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    g = [torch.zeros_like(p) for p in plist]
    for x, y in batches:
        gs = torch.autograd.grad(loss_fn(_forward(net, x) / temperature, y), plist, allow_unused=True)
        for acc, gi in zip(g, gs):
            if gi is not None:
                acc += gi / len(batches)
    hg = [torch.zeros_like(p) for p in plist]
    for x, y in batches:
        gf = torch.autograd.grad(loss_fn(_forward(net, x) / temperature, y), plist, create_graph=True,
                                 allow_unused=True)
        z = sum((gw * gi).sum() for gw, gi in zip(g, gf) if gi is not None)
        if not isinstance(z, torch.Tensor) or not z.requires_grad:
            continue  # the loss does not depend on the scored parameters at second order (a linear model)
        hs = torch.autograd.grad(z, plist, allow_unused=True)
        for acc, hi in zip(hg, hs):
            if hi is not None:
                acc += hi.detach() / len(batches)
    return {n: p.detach() * h for (n, p), h in zip(params.items(), hg)}


def synflow_scores(model, example_input, names: Iterable[str] | None = None) -> dict:
    """SynFlow synaptic saliency ``|theta * dR/dtheta|`` (Tanaka et al., NeurIPS 2020); data-free.

    On a float64 copy in eval mode, every parameter and buffer is replaced by its
    absolute value (the authors' ``linearize``), the input is all ones with the shape of
    ``example_input`` (batch 1), and ``R`` is the sum of the outputs. Masked weights that
    are exactly zero score zero.
    """
    import copy

    import torch

    if not isinstance(example_input, torch.Tensor):
        raise PrunekitError("synflow needs a single tensor input to build its all-ones input "
                            f"(got {type(example_input).__name__})")
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    params = _params(net, names)
    ones = torch.ones((1,) + tuple(example_input.shape[1:]), dtype=torch.float64)
    out = _forward(net, ones)
    r = out.sum() if isinstance(out, torch.Tensor) else sum(o.sum() for o in out)
    grads = torch.autograd.grad(r, list(params.values()), allow_unused=True)
    return {n: (p.detach() * (gi if gi is not None else torch.zeros_like(p))).abs()
            for (n, p), gi in zip(params.items(), grads)}


def score_masks(scores: Mapping, sparsity: float, existing: Mapping | None = None) -> dict:
    """Global masks (True = kept) removing exactly ``round(sparsity * total)`` entries of lowest score.

    The count rounds half up. Entries already masked in ``existing`` are removed first
    (never revived); ties go to the earlier entry (stable sort), so masks are reproducible.
    """
    import torch

    if not 0.0 <= sparsity < 1.0:
        raise PrunekitError(f"sparsity must be in [0, 1), got {sparsity}")
    if not scores:
        raise PrunekitError("no scores to build masks from")
    flat = []
    for n, s in scores.items():
        f = s.detach().to(torch.float64).flatten()
        if existing is not None and n in existing:
            f = f.masked_fill(~existing[n].flatten().to(torch.bool), -math.inf)
        flat.append(f)
    allv = torch.cat(flat)
    n_prune = min(allv.numel(), int(math.floor(sparsity * allv.numel() + 0.5)))
    keep = torch.ones(allv.numel(), dtype=torch.bool)
    keep[torch.sort(torch.nan_to_num(allv, nan=-math.inf), stable=True).indices[:n_prune]] = False
    out, start = {}, 0
    for n, s in scores.items():
        out[n] = keep[start:start + s.numel()].reshape(s.shape)
        start += s.numel()
    return out


def synflow_masks(model, example_input, sparsity: float, rounds: int = 100,
                  names: Iterable[str] | None = None) -> dict:
    """SynFlow's iterative pruning: ``rounds`` rounds, density ``(1 - sparsity) ** (k / rounds)`` after round k.

    Each round rescores the masked copy (:func:`synflow_scores`) and prunes globally
    (:func:`score_masks`), as in Algorithm 1 of Tanaka et al. (NeurIPS 2020; they use
    100 rounds). Returns the final masks over the scored parameters.
    """
    import copy

    import torch

    if int(rounds) < 1:
        raise PrunekitError(f"synflow rounds must be >= 1, got {rounds}")
    net = copy.deepcopy(model)
    masks = None
    for k in range(1, int(rounds) + 1):
        target = 1.0 - (1.0 - sparsity) ** (k / rounds)
        masks = score_masks(synflow_scores(net, example_input, names), target, existing=masks)
        with torch.no_grad():  # a private copy: zero the pruned entries so the next round sees them gone
            params = dict(net.named_parameters())
            for n, m in masks.items():
                params[n].mul_(m.to(params[n].dtype))
    return masks


def saliency(name: str, model, data=None, example_input=None, names: Iterable[str] | None = None,
             loss_fn: Callable | None = None) -> dict:
    """The scores of saliency ``name`` (``snip``, ``grasp`` or ``synflow``) with their defaults.

    ``data`` feeds snip and grasp; synflow needs only ``example_input`` (for the shape) and
    is one round here (the iterative procedure is :func:`synflow_masks`).
    """
    if name == "snip":
        return snip_scores(model, data, names, loss_fn)
    if name == "grasp":
        return grasp_scores(model, data, names, loss_fn)
    if name == "synflow":
        if example_input is None and data:
            example_input = list(data)[0][0]
        return synflow_scores(model, example_input, names)
    raise PrunekitError(f"unknown saliency {name!r} (known: {', '.join(SALIENCIES)})")
