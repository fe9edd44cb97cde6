"""DCFF: Dynamic-coded Filter Fusion (Lin, Chen, Chao & Ji, "Training Compact CNNs for Image
Classification using Dynamic-coded Filter Fusion", IEEE TPAMI 2023; arXiv:2107.06916, 2021).

For every prunable layer with filters ``W_1..W_c`` (one row per output channel):

1. Inter-similarity distribution with temperature ``t`` (:func:`similarity_distribution`)::

       p_k^j = exp(-t * D(W_k, W_j)) / sum_g exp(-t * D(W_k, W_g)),   D = Euclidean distance

2. Dynamic-coded importance, the mean KL divergence of a filter's distribution from the
   others' (:func:`kl_importance`)::

       I(W_k) = 1/c * sum_g KL(p_k || p_g) = 1/c * sum_g sum_j p_k^j * log(p_k^j / p_g^j)

   The ``c'`` filters of highest importance are kept (:func:`keep_top`).
3. Filter fusion: each kept filter ``k`` is replaced by ``F_k = sum_j p_k^j W_j``
   (:func:`fuse_filters`); the compact network made of the fused filters runs the forward
   pass and the gradients reach *all* original filters through the fusion.
4. The distributions, the importance and the kept set are re-computed at the start of every
   epoch from the current filters (the "dynamic coding"), with the temperature annealed from
   ``T_s`` to ``T_e`` (:func:`temperature`); as ``t`` grows ``p_k`` tends to the one-hot vector
   of ``k`` itself, so the fused filter tends to the kept filter. By default (``anneal="step"``)
   the temperature and the distributions also advance after every step, so that the short runs
   of a fine-tuning budget anneal too.
5. At the end the fused filters (at ``t = T_e``) become the weights of the compact network,
   which the engine cuts out (:func:`prunekit.engine.plan_from_channels`).

How this module emulates the paper's compact network on a trained dense model: the dense
model runs with every prunable layer's weight replaced by ``(mask * P) @ W`` (a pure
function of the parameters, through ``torch.func.functional_call``; no module is changed)
and the channels outside the kept set zeroed in their bias and BatchNorm, so the next layer
sees exactly the compact network's activations. The number of channels each layer keeps
comes from the engine's MACs budgeting (criterion ``l1``); DCFF chooses *which*.
As in the authors' code (github.com/lmbxmu/DCFF), ``P`` and the kept set are fixed within an
epoch (computed from the detached filters), so the gradient reaches the filters through the
fusion only; their code divides the distances by a falling ``t`` instead of multiplying by a
rising one, which ranks and fuses the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from prunekit.errors import ConfigError, PrunekitError
from prunekit.methods.structured._common import CommonConfig, example_input, plan_from_removed, skeleton
from prunekit.train import Callback
from prunekit.validate import check_int, check_number


@dataclass
class DCFFConfig(CommonConfig):
    """Options of DCFF (Lin et al., TPAMI 2023).

    Attributes:
        fusion_epochs: epochs of training with fused filters before the compact network is cut out.
        fusion_lr: learning rate of that training (the fine-tuning's other settings are used).
        t_start: temperature ``T_s`` at the first epoch (paper: 1).
        t_end: temperature ``T_e`` at the end, used for the final fused filters (paper: 1e4).
        anneal: ``"step"``: the temperature follows the schedule at fractional epochs, the
            distributions are recomputed after every optimizer step (the kept set still once per
            epoch), so a short run anneals too; ``"epoch"``: both once per epoch, as in the paper's
            300-epoch runs (with one epoch the training then never leaves ``t_start``).
    """

    fusion_epochs: int = 2
    fusion_lr: float = 0.01
    t_start: float = 1.0
    t_end: float = 1e4
    anneal: str = "step"
    macs: Optional[float] = 0.5

    def check(self) -> None:
        super().check()
        check_int("config key 'fusion_epochs'", self.fusion_epochs, minimum=0)
        check_number("config key 'fusion_lr'", self.fusion_lr, minimum=0)
        check_number("config key 't_start'", self.t_start, minimum=0)
        check_number("config key 't_end'", self.t_end, minimum=0)
        if self.anneal not in ("step", "epoch"):
            raise ConfigError(f"config key 'anneal' must be 'step' or 'epoch', got {self.anneal!r}")
        if self.t_end < self.t_start:
            raise ConfigError(f"config key 't_end' ({self.t_end}) must be >= 't_start' ({self.t_start})")


# ---------------------------------------------------------------------------------------- pure math
def similarity_distribution(filters, t: float):
    """``(c, c)`` matrix ``P`` with ``P[k, j] = softmax_j(-t * ||W_k - W_j||_2)`` for ``filters`` ``(c, d)``.

    Computed in float64 (large temperatures make the off-diagonal terms tiny).

    Example:
        >>> import torch
        >>> similarity_distribution(torch.tensor([[0.0], [1.0]]), 0.0).tolist()
        [[0.5, 0.5], [0.5, 0.5]]
    """
    return _log_distribution(filters, t).exp()


def _log_distribution(filters, t: float):
    import torch

    f = filters.detach().reshape(len(filters), -1).double()
    return torch.log_softmax(-float(t) * torch.cdist(f, f), dim=1)


def kl_importance(filters, t: float):
    """``(c,)`` importance ``I_k = 1/c * sum_g KL(p_k || p_g)`` of each filter (DCFF's dynamic-coded criterion).

    Computed from log-probabilities (``log_softmax``) so a large temperature does not divide by zero.
    """
    logp = _log_distribution(filters, t)
    p = logp.exp()
    # KL(p_k || p_g) = sum_j p_k^j (log p_k^j - log p_g^j), for every pair (k, g)
    kl = (p * logp).sum(1, keepdim=True) - p @ logp.T
    return kl.mean(1)


def keep_top(importance, n_keep: int) -> list[int]:
    """Indices of the ``n_keep`` most important filters, sorted (ties: the lower index first).

    Example:
        >>> keep_top([0.1, 0.9, 0.5], 2)
        [1, 2]
    """
    s = np.asarray([float(v) for v in importance], dtype=np.float64)
    if not 1 <= n_keep <= len(s):
        raise PrunekitError(f"keep_top: n_keep must be in [1, {len(s)}], got {n_keep}")
    return sorted(int(i) for i in np.argsort(-s, kind="stable")[:n_keep])


def fuse_filters(weight, dist, dim: int = 0):
    """Fused filters ``F_k = sum_j dist[k, j] * W_j`` along dimension ``dim`` of ``weight`` (differentiable)."""
    w = weight.movedim(dim, 0)
    fused = (dist.to(weight.dtype) @ w.reshape(len(w), -1)).reshape(w.shape)
    return fused.movedim(0, dim)


def temperature(epoch: float, total: float, t_start: float = 1.0, t_end: float = 1e4) -> float:
    """The paper's annealing: ``T_s + (T_e - T_s) * ((1 - e^-e)/(1 + e^-e)) * ((1 + e^-E)/(1 - e^-E))``.

    ``epoch`` runs from 0 (``T_s``) to ``total`` (``T_e``).

    Example:
        >>> temperature(0, 3), temperature(3, 3)
        (1.0, 10000.0)
    """
    if total <= 0 or epoch >= total:
        return float(t_end)
    e, E = float(epoch), float(total)
    g = (1 - math.exp(-e)) / (1 + math.exp(-e)) * (1 + math.exp(-E)) / (1 - math.exp(-E))
    return float(t_start + (t_end - t_start) * g)


# ---------------------------------------------------------------------------------------- layers
@dataclass
class FusionGroup:
    """One prunable group of the engine as DCFF sees it.

    Attributes:
        group: the engine's group id.
        size: channels before pruning.
        keep: channels kept (``size`` minus the budget's removal count).
        fused: parameters whose rows are filters (``(name, dim)``), fused with ``P``.
        masked: per-channel parameters of the removed channels' BN / bias (``(name, dim)``), zeroed.
        kept: the current kept channels (updated every epoch).
        dist: the current ``(size, size)`` distribution ``P``.
    """

    group: int
    size: int
    keep: int
    fused: list
    masked: list
    kept: list
    dist: object = None


def _identity(m, size: int) -> bool:
    return (len(m.indices) == size and np.array_equal(m.indices, np.arange(size))
            and np.array_equal(m.channels, np.arange(size)))


def fusion_groups(model, base, counts: dict) -> list[FusionGroup]:
    """The groups DCFF fuses: ``counts[group] > 0`` channels to remove and whole-tensor filter rows.

    A group qualifies when every producer weight (role ``out``) and every per-channel
    parameter (``norm``/``bias``) spans the whole tensor dimension in channel order
    (plain conv/linear + BN chains; coupled residual streams too when their mapping is the identity).
    """
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    out = []
    for g in base.groups:
        n_rm = int(counts.get(g.id, 0))
        if n_rm <= 0 or g.size < 2:
            continue
        producers = {m.module for m in g.members if m.role == "out"}
        fused, masked, ok = [], [], True
        for m in g.members:
            if m.param not in shapes or m.role not in ("out", "bias", "norm"):
                continue
            if not _identity(m, g.size) or shapes[m.param][m.dim] != g.size:
                ok = False
                break
            if m.role == "out" or (m.role == "bias" and m.module in producers):
                fused.append((m.param, m.dim))
            else:
                masked.append((m.param, m.dim))
        weights = [f for f in fused if f[0].endswith("weight")]
        if ok and weights:
            keep = g.size - n_rm
            out.append(FusionGroup(g.id, g.size, keep, fused, masked, list(range(keep))))
    return out


def group_filters(params: dict, fg: FusionGroup):
    """``(size, d)`` filter vectors of a group: its producer weights' rows, concatenated."""
    import torch

    rows = [params[n].detach().movedim(d, 0).reshape(fg.size, -1) for n, d in fg.fused if n.endswith("weight")]
    return torch.cat(rows, 1)


def update_groups(params: dict, groups: list[FusionGroup], t: float) -> None:
    """Dynamic coding: recompute each group's distribution and kept set from the current filters at ``t``."""
    for fg in groups:
        f = group_filters(params, fg)
        fg.dist = similarity_distribution(f, t)
        fg.kept = keep_top(kl_importance(f, t), fg.keep)


def effective_params(params: dict, groups: list[FusionGroup]) -> dict:
    """The compact network's parameters in dense shape: fused kept filters, zeroed removed channels."""
    import torch

    out = {}
    for fg in groups:
        mask = torch.zeros(fg.size, dtype=torch.float64)
        mask[fg.kept] = 1.0
        q = mask[:, None] * fg.dist
        for name, dim in fg.fused:
            out[name] = fuse_filters(params[name], q, dim)
        for name, dim in fg.masked:
            shape = [1] * params[name].dim()
            shape[dim] = fg.size
            out[name] = params[name] * mask.to(params[name].dtype).reshape(shape)
    return out


def _module_cls():
    import torch

    class FusedNetwork(torch.nn.Module):
        """``net`` run with DCFF's fused filters (:func:`effective_params`); its parameters are ``net``'s."""

        def __init__(self, net, groups):
            super().__init__()
            self.net = net
            self.groups = groups

        def forward(self, *args, **kwargs):
            from torch.func import functional_call

            params = dict(self.net.named_parameters())
            params.update(effective_params(params, self.groups))
            return functional_call(self.net, params, args, kwargs)

    return FusedNetwork


def fused_network(net, groups: list[FusionGroup]):
    """A module running ``net`` with DCFF's fused filters; training it updates ``net``'s original filters."""
    return _module_cls()(net, groups)


class DCFFCallback(Callback):
    """Re-codes the filters at the start of every epoch with the annealed temperature (DCFF step 4).

    With ``per_step`` the distributions also follow the schedule after every optimizer step
    (fractional epoch ``step / steps_per_epoch``), the kept set staying fixed within the epoch.
    """

    def __init__(self, net, groups: list[FusionGroup], epochs: int, t_start: float, t_end: float,
                 per_step: bool = False) -> None:
        self.net, self.groups, self.epochs = net, groups, int(epochs)
        self.t_start, self.t_end, self.per_step = float(t_start), float(t_end), bool(per_step)
        self.temperatures: list[float] = []
        self.t_last = float(t_start)

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        t = temperature(epoch, self.epochs, self.t_start, self.t_end)
        self.temperatures.append(t)
        self.t_last = t
        update_groups(dict(self.net.named_parameters()), self.groups, t)

    def on_step_end(self, trainer, step: int) -> None:
        if not self.per_step:
            return
        t = temperature(step / max(1, trainer.steps_per_epoch), self.epochs, self.t_start, self.t_end)
        self.t_last = t
        params = dict(self.net.named_parameters())
        for fg in self.groups:
            fg.dist = similarity_distribution(group_filters(params, fg), t)


def removal_counts(model, x, cfg: DCFFConfig) -> dict:
    """Channels to remove per group for the budget (the engine's ``l1`` budgeting; DCFF chooses which)."""
    from prunekit.engine import plan

    kw = {"macs": cfg.macs, "tolerance": cfg.macs_tolerance} if cfg.macs is not None else {"ratio": cfg.ratio}
    return {g.id: len(g.removed) for g in plan(model, x, criterion="l1", **kw).groups if g.removed}


def bake(net, groups: list[FusionGroup], x, t_end: float):
    """``(dense, plan)``: a copy of ``net`` holding the final fused filters at ``t_end``, and the plan cutting it."""
    import copy

    import torch

    params = dict(net.named_parameters())
    update_groups(params, groups, t_end)
    dense = copy.deepcopy(net)
    with torch.no_grad():
        eff = effective_params(params, groups)
        dense.load_state_dict({k: v.detach().to(params[k].dtype) for k, v in eff.items()}, strict=False)
    removed = {fg.group: sorted(set(range(fg.size)) - set(fg.kept)) for fg in groups}
    info = {"method": "dcff", "t_end": t_end, "kept": {str(fg.group): list(fg.kept) for fg in groups}}
    return dense, plan_from_removed(dense, x, removed, info)


def dcff(model, data, config: DCFFConfig | None = None, progress: bool = True):
    """DCFF on a copy of ``model``: fused training, then the compact network; ``(compact, plan, temperatures)``.

    Example:
        >>> small, plan, ts = dcff(net, load_dataset("digits"), DCFFConfig(macs=0.5))  # doctest: +SKIP
    """
    import copy

    from prunekit.train import run_finetune

    cfg = config or DCFFConfig()
    cfg.check()
    x = example_input(data)
    net = copy.deepcopy(model)
    groups = fusion_groups(net, skeleton(net, x), removal_counts(net, x, cfg))
    if not groups:
        raise PrunekitError("dcff: no layer of this model can be pruned for the given budget")
    cb = DCFFCallback(net, groups, cfg.fusion_epochs, cfg.t_start, cfg.t_end, per_step=cfg.anneal == "step")
    if cfg.fusion_epochs > 0:
        tc = cfg.finetune.replace(epochs=cfg.fusion_epochs, lr=cfg.fusion_lr, checkpoint_every=0, eval_every=0)
        run_finetune(fused_network(net, groups), data, tc, callbacks=[cb], progress=progress, seed=cfg.seed)
    dense, p = bake(net, groups, x, cfg.t_end)
    return p.apply(dense), p, cb.temperatures
