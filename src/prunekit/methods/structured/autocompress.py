"""AutoCompress: annealing-guided search of per-layer structured pruning rates, then purification.

Liu, Ma, Xu, Wang, Tang & Ye, "AutoCompress: An Automatic DNN
Structured Pruning Framework for Ultra-High Compression Rates", AAAI 2020.

The search (Sec. 4 of the paper, its "simulated annealing guided" heuristic) runs in
``rounds`` with an increasing target: round ``r`` keeps
``1 - (1 - macs) * (r + 1) / rounds`` of the MACs. A state is a positive preference per
prunable group; its rates are ``clip(s * preference, 0, max_rate)`` with ``s`` found by
bisection so the engine's MACs estimate meets the round's target. A move multiplies one
random group's preference by ``exp(+-step)``; the candidate is scored by a cheap proxy:
the cross-entropy on ``eval_images`` training images after zeroing its lowest-L1 filters
(the paper evaluates each candidate after a short ADMM pruning). A worse candidate is
accepted with probability ``exp(-delta / T)`` (:func:`anneal_accept`), ``T`` cools by
``cooling`` per move; each round starts from the previous round's best state.

Structured ADMM (Zhang et al.'s, ``prunekit.methods.admm`` at filter granularity, the paper's
pruning step) then trains the network for ``admm_epochs`` toward the best state's per-group
rates and zeroes the filters it prunes (``admm_epochs: 0``: the lowest-L1 filters of those
rates are zeroed instead), and :func:`dead_channels` ("purification", Sec. 4.3)
finds every channel that is dead: all its producing slices zero (weight, bias, BN
scale/shift: it outputs 0) or all its reading slices zero (nobody reads it). Those
channels are removed through one engine plan (``plan_from_channels``); the pipeline then
fine-tunes.

A structured method (``prunekit prune --method autocompress``), not a ``prunekit search``
method: the search registry is for super-network searches (MetaPruning, AutoSlim) and
their files; AutoCompress needs only the pruning pipeline.
"""
from __future__ import annotations

import copy
import math
import random
import warnings
from dataclasses import dataclass

import numpy as np

from prunekit.errors import PrunekitError
from prunekit.methods.structured._common import CommonConfig, calib_batch, example_input
from prunekit.validate import check_fraction, check_int, check_number, check_positive


@dataclass
class AutoCompressConfig(CommonConfig):
    """Options of AutoCompress (Liu et al., AAAI 2020).

    Attributes:
        rounds: search rounds with an increasing target (the last one is ``macs``).
        iterations: annealing moves per round.
        temperature: initial temperature ``T`` (proxy loss units).
        cooling: ``T`` is multiplied by this after every move.
        step: a move multiplies one preference by ``exp(+-step)``.
        max_rate: largest fraction of a group's channels that may go.
        eval_images: training images of the proxy loss.
        admm_epochs: epochs of structured (filter) ADMM training toward the found per-group
            rates before the hard prune and purification (the paper prunes with ADMM; 0: the
            found rates' lowest-L1 filters are removed directly).
        admm_rho: the ADMM penalty's initial rho (grown x1.5 per epoch, as ``sparsify --method admm``).
    """

    rounds: int = 2
    iterations: int = 20
    temperature: float = 0.05
    cooling: float = 0.9
    step: float = 0.5
    max_rate: float = 0.9
    eval_images: int = 512
    admm_epochs: int = 2
    admm_rho: float = 0.05

    def check(self) -> None:
        super().check()
        if self.macs is None:
            raise PrunekitError("autocompress needs a MACs target (config key 'macs')")
        for key in ("rounds", "iterations", "eval_images"):
            check_int(f"config key {key!r}", getattr(self, key))
        check_positive("config key 'temperature'", self.temperature)
        check_number("config key 'cooling'", self.cooling, minimum=0.0, maximum=1.0, low_open=True)
        check_positive("config key 'step'", self.step)
        check_fraction("config key 'max_rate'", self.max_rate, allow_zero=False)
        check_int("config key 'admm_epochs'", self.admm_epochs, minimum=0)
        check_positive("config key 'admm_rho'", self.admm_rho)


# ---------------------------------------------------------------------------------------- pure functions
def anneal_accept(delta: float, temperature: float, rng: random.Random) -> bool:
    """Metropolis rule: accept a better move (``delta <= 0``), a worse one if ``u < exp(-delta / T)``.

    ``u`` is drawn from ``rng`` only for a worse move.
    """
    if delta <= 0:
        return True
    return rng.random() < math.exp(-delta / temperature)


def channel_slices(tensors: dict, group, role_in: bool):
    """``(size, ...)`` per-channel L1 norms of a group's reading (``role_in``) or producing slices.

    ``tensors`` maps parameter names to tensors; members whose parameter is missing
    (buffers) are skipped. Returns a float64 numpy array of length ``group.size``.
    """
    import torch

    out = np.zeros(group.size)
    for m in group.members:
        if (m.role == "in") != role_in or m.param not in tensors:
            continue
        t = tensors[m.param].detach().abs().double()
        t = t.movedim(m.dim, 0)[torch.as_tensor(m.indices, dtype=torch.long)].reshape(len(m.indices), -1).sum(1)
        np.add.at(out, np.asarray(m.channels), t.numpy())
    return out


def dead_channels(tensors: dict, groups) -> dict:
    """Purification: ``{group id: channels}`` whose producing slices are all zero, or whose reading slices are.

    A channel is dead if every parameter slice that writes it (conv/linear rows, bias,
    BN scale and shift) is zero, so it carries 0, or if every slice that reads it is zero,
    so nothing sees it. Groups with no reader (the network's output) are skipped, and a
    group never loses all of its channels.
    """
    out = {}
    for g in groups:
        if not any(m.role == "in" for m in g.members) or not any(m.role != "in" for m in g.members):
            continue
        dead = np.flatnonzero((channel_slices(tensors, g, False) == 0) | (channel_slices(tensors, g, True) == 0))
        if 0 < len(dead) < g.size:
            out[g.id] = [int(c) for c in dead]
    return out


def zero_filters(tensors: dict, groups, removed: dict) -> dict:
    """New tensors with the producing slices of ``removed[group id]`` channels zeroed (inputs untouched)."""
    import torch

    out = dict(tensors)
    by_id = {g.id: g for g in groups}
    for gid, chans in removed.items():
        chans = set(int(c) for c in chans)
        for m in by_id[gid].members:
            if m.role == "in" or m.param not in out:
                continue
            idx = [int(i) for i, c in zip(m.indices, m.channels) if int(c) in chans]
            if idx:
                t = out[m.param].detach().clone()
                t.index_fill_(m.dim, torch.as_tensor(idx, dtype=torch.long), 0.0)
                out[m.param] = t
    return out


def lowest_filters(norms: np.ndarray, rate: float) -> list[int]:
    """The ``round(rate * size)`` channels of smallest filter norm (ties: lower index first), never all."""
    n = min(int(round(rate * len(norms))), len(norms) - 1)
    return sorted(int(i) for i in np.argsort(norms, kind="stable")[:n])


# ---------------------------------------------------------------------------------------- search
class _Space:
    """The groups, their filter norms and a fast MACs estimate of a rate vector (one graph capture)."""

    def __init__(self, model, x, max_rate: float):
        from prunekit.graph import analyze

        self.an = analyze(model, x)
        self.names = [n for n, _ in model.named_parameters()]
        tensors = dict(model.named_parameters())
        self.groups = [g for g in self.an.groups
                       if any(m.role == "in" for m in g.members) and any(m.role == "out" for m in g.members)
                       and g.size > 1]
        self.norms = [channel_slices(tensors, g, False) for g in self.groups]
        self.max_rate = max_rate
        self.macs0 = self.plan({}).info["macs_before"]

    def removed(self, rates) -> dict:
        return {g.id: lowest_filters(n, r) for g, n, r in zip(self.groups, self.norms, rates)}

    def plan(self, removed: dict, info: dict | None = None):
        from prunekit.engine import plan_from_analysis

        return plan_from_analysis(self.an, removed, param_names=self.names, info=info)

    def kept(self, rates) -> float:
        return self.plan(self.removed(rates)).info["macs_after"] / self.macs0

    def rates_for(self, pref, target: float):
        """Rates ``clip(s * pref)`` whose kept MACs is closest to ``target`` from below (bisection on ``s``)."""
        lo, hi = 0.0, self.max_rate / max(float(np.min(pref)), 1e-9)
        for _ in range(30):
            mid = (lo + hi) / 2
            if self.kept(np.clip(mid * pref, 0, self.max_rate)) > target:
                lo = mid
            else:
                hi = mid
        return np.clip(hi * pref, 0, self.max_rate)


def _proxy_loss(model, tensors, images, labels) -> float:
    import torch
    import torch.nn.functional as F

    net = copy.deepcopy(model).eval()
    with torch.no_grad():
        net.load_state_dict({**net.state_dict(), **tensors})
        return float(F.cross_entropy(net(images), labels))


def autocompress_search(model, data, cfg: AutoCompressConfig):
    """The annealing search; returns ``(space, best rates, log)`` (``model`` untouched)."""
    x = example_input(data)
    space = _Space(model, x, cfg.max_rate)
    if not space.groups:
        raise PrunekitError("autocompress: no prunable group (channels written and read by layers)")
    images, labels = calib_batch(data, cfg.eval_images, cfg.seed + 1)
    tensors = {k: v.detach() for k, v in model.named_parameters()}
    rng = random.Random(cfg.seed)

    def cost(rates):
        return _proxy_loss(model, zero_filters(tensors, space.groups, space.removed(rates)), images, labels)

    pref = np.ones(len(space.groups))
    log = []
    best_rates = None
    for r in range(cfg.rounds):
        target = 1.0 - (1.0 - cfg.macs) * (r + 1) / cfg.rounds
        cur_rates = space.rates_for(pref, target)
        cur = cost(cur_rates)
        best_pref, best, best_rates, T = pref.copy(), cur, cur_rates, cfg.temperature
        for it in range(cfg.iterations):
            cand = pref.copy()
            i = rng.randrange(len(cand))
            cand[i] *= math.exp(cfg.step if rng.random() < 0.5 else -cfg.step)
            rates = space.rates_for(cand, target)
            c = cost(rates)
            ok = anneal_accept(c - cur, T, rng)
            log.append({"round": r, "iteration": it, "target": target, "loss": c, "accepted": ok,
                        "macs_kept": space.kept(rates)})
            if ok:
                pref, cur = cand, c
                if c < best:
                    best_pref, best, best_rates = cand.copy(), c, rates
            T *= cfg.cooling
        pref = best_pref
    return space, best_rates, log


def autocompress(model, data, config: AutoCompressConfig | None = None, progress: bool = True):
    """AutoCompress of ``model`` (left unchanged); returns ``(net, plan)``: apply ``plan`` to ``net``.

    ``net`` is a copy of ``model`` trained by the ADMM step and masked by its hard prune
    (``model`` itself when ``admm_epochs`` is 0).

    Example:
        >>> net2, p = autocompress(net, splits, AutoCompressConfig(macs=0.5))   # doctest: +SKIP
        >>> small = p.apply(net2)                                               # doctest: +SKIP
    """
    cfg = config or AutoCompressConfig()
    cfg.check()
    space, rates, log = autocompress_search(model, data, cfg)
    if space.kept(rates) > cfg.macs + cfg.macs_tolerance:
        warnings.warn(f"autocompress: {cfg.macs:.3f} of the MACs is out of reach with max_rate {cfg.max_rate}; "
                      f"the result keeps {space.kept(rates):.3f}", UserWarning, stacklevel=2)
    if cfg.admm_epochs > 0:
        model = copy.deepcopy(model)  # ADMM trains and masks its own copy; the caller's model stays as it was
    admm_log = _admm_to_rates(model, data, space, rates, cfg, progress) if cfg.admm_epochs > 0 else None
    if admm_log is None:
        tensors = zero_filters({k: v.detach() for k, v in model.named_parameters()}, space.groups,
                               space.removed(rates))
    else:  # ADMM trained the weights toward the rates and zeroed the filters it removed (in place)
        tensors = {k: v.detach() for k, v in model.named_parameters()}
    dead = dead_channels(tensors, space.an.groups)   # purification: what the zeroed filters made redundant
    info = {"method": "autocompress", "criterion": "autocompress",
            "rates": {str(g.id): float(r) for g, r in zip(space.groups, rates)},
            "search": log, "purified": {str(k): len(v) for k, v in dead.items()}}
    if admm_log is not None:
        info["admm"] = admm_log
    return model, space.plan(dead, info)


def _admm_to_rates(model, data, space, rates, cfg: AutoCompressConfig, progress: bool) -> list:
    """Structured (filter) ADMM toward the searched per-group rates, then its hard prune, in place on ``model``.

    Zhang et al.'s ADMM (``prunekit.methods.admm``, ``granularity="filter"``) with one rate per
    coupling group, given through the groups' producing layers; no retraining here (the
    pipeline fine-tunes after the cut). Returns the ADMM log (rho and residual per epoch).
    """
    from prunekit.methods.admm import ADMMConfig, admm_prune

    layer_sparsity = {}
    for g, r in zip(space.groups, rates):
        if r <= 0:
            continue
        for m in g.members:
            if m.role == "out" and m.param.endswith(".weight"):
                layer_sparsity.setdefault(m.module, float(r))
    if not layer_sparsity:
        return []
    acfg = ADMMConfig(sparsity=0.0, layer_sparsity=layer_sparsity, granularity="filter", layers=list(layer_sparsity),
                      rho=cfg.admm_rho, admm={"epochs": cfg.admm_epochs, "seed": cfg.seed},
                      finetune={"epochs": 0})
    res = admm_prune(model, data, acfg, progress=progress)
    return res.extra["admm_log"]
