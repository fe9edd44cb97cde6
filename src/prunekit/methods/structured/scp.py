"""SCP: Operation-aware Soft Channel Pruning (Kang & Han, "Operation-Aware Soft Channel Pruning using
Differentiable Masks", ICML 2020).

A channel after BatchNorm and ReLU is ``relu(gamma * x_hat + beta)`` with ``x_hat`` the normalised
input, taken as standard normal. The channel is non-zero with probability (:func:`mask_probability`)::

    P(gamma * x_hat + beta > 0) = Phi(beta / |gamma|)

so whether the BN + ReLU operation switches a channel off is a differentiable function of the BN
parameters alone. SCP trains with a soft mask per channel, a relaxed Bernoulli (Concrete /
Gumbel-sigmoid) sample with that probability (:func:`relaxed_mask`), multiplying the channel,
plus a sparsity regulariser ``lambda * mean_c Phi(beta_c / |gamma_c|)`` (the expected fraction of
channels on) that drives masks off. The channels whose deterministic mask is off
(``Phi(beta/|gamma|) < threshold``) are removed by the engine (:func:`masks_off`, then
:func:`prunekit.engine.plan_from_channels`), and the compact network is fine-tuned.

With a MACs target the threshold is the smallest (bisection over the sorted probabilities) at
which the pruned network meets the budget: the channels removed are exactly those whose mask is
off at that threshold. Since ``relu(y) * m == relu(y * m)`` for ``m >= 0`` the mask is applied
to the BN output (a forward hook, removed after training). The method needs a BatchNorm
followed by a ReLU in every group it prunes; groups without exactly one BN keep their channels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from prunekit.errors import PrunekitError
from prunekit.methods.structured._common import CommonConfig, example_input, plan_from_removed, skeleton
from prunekit.train import Callback
from prunekit.validate import check_int, check_number


@dataclass
class SCPConfig(CommonConfig):
    """Options of SCP (Kang & Han, ICML 2020).

    Attributes:
        mask_epochs: epochs of training with soft masks and the sparsity regulariser.
        mask_lr: learning rate of that training (the fine-tuning's other settings are used).
        sparsity: ``lambda`` of the regulariser on the mean probability of a channel being on.
        mask_temperature: temperature of the relaxed Bernoulli mask (smaller: closer to 0/1).
        threshold: a channel whose probability of being on is below this is off (used when ``macs`` is None).
    """

    mask_epochs: int = 2
    mask_lr: float = 0.01
    sparsity: float = 0.5
    mask_temperature: float = 0.5
    threshold: float = 0.5
    macs: Optional[float] = 0.5

    def check(self) -> None:
        super().check()
        check_int("config key 'mask_epochs'", self.mask_epochs, minimum=0)
        check_number("config key 'mask_lr'", self.mask_lr, minimum=0)
        check_number("config key 'sparsity'", self.sparsity, minimum=0)
        check_number("config key 'mask_temperature'", self.mask_temperature, minimum=0, low_open=True)
        check_number("config key 'threshold'", self.threshold, minimum=0, maximum=1)


# ---------------------------------------------------------------------------------------- pure math
def mask_probability(gamma, beta):
    """``Phi(beta / |gamma|)``: probability that ``relu(gamma * x + beta)``, ``x ~ N(0, 1)``, is non-zero.

    ``gamma == 0`` gives 1 for ``beta > 0``, 0 for ``beta < 0`` and 0.5 for ``beta == 0``.

    Example:
        >>> import torch
        >>> mask_probability(torch.tensor([1.0, 2.0]), torch.tensor([0.0, -2.0]))
        tensor([0.5000, 0.1587])
    """
    import torch

    z = beta / gamma.abs()
    z = torch.where(gamma == 0, torch.sign(beta) * float("inf"), z)
    z = torch.nan_to_num(z, nan=0.0)
    return torch.special.ndtr(z)


def relaxed_mask(prob, temperature: float, noise):
    """Relaxed Bernoulli (Concrete) sample: ``sigmoid((logit(p) + log u - log(1 - u)) / temperature)``.

    ``noise`` holds ``u ~ U(0, 1)`` of the same shape (the caller draws it, so the function stays pure).
    """
    import torch

    eps = 1e-6
    p = prob.clamp(eps, 1 - eps)
    u = noise.clamp(eps, 1 - eps)
    return torch.sigmoid((torch.log(p) - torch.log1p(-p) + torch.log(u) - torch.log1p(-u)) / temperature)


def masks_off(probs: dict, threshold: float) -> dict:
    """``{group: [channels]}`` whose probability is below ``threshold``; the most probable channel always stays.

    Example:
        >>> import torch
        >>> masks_off({0: torch.tensor([0.9, 0.2, 0.4])}, 0.5)
        {0: [1, 2]}
    """
    out = {}
    for gid, p in probs.items():
        off = [int(i) for i in (p < threshold).nonzero().flatten()]
        if len(off) == len(p):
            off.remove(int(p.argmax()))
        if off:
            out[gid] = off
    return out


# ---------------------------------------------------------------------------------------- layers
def scp_groups(model, base) -> dict:
    """``{group id: BN module name}`` for groups with an output layer and exactly one BatchNorm."""
    import torch

    mods = dict(model.named_modules())
    out = {}
    for g in base.groups:
        bns = {m.module for m in g.members if m.role == "norm"
               and isinstance(mods.get(m.module), (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))}
        if g.size > 1 and len(bns) == 1 and any(m.role == "out" for m in g.members):
            bn = mods[next(iter(bns))]
            if bn.affine and bn.num_features == g.size:
                out[g.id] = next(iter(bns))
    return out


def group_probabilities(model, groups: dict) -> dict:
    """``{group id: Phi(beta/|gamma|)}`` of every SCP group's BN (differentiable in the BN parameters)."""
    mods = dict(model.named_modules())
    return {gid: mask_probability(mods[n].weight, mods[n].bias) for gid, n in groups.items()}


class SCPCallback(Callback):
    """Soft masks on the BN outputs while training, and the sparsity regulariser (SCP's training phase)."""

    def __init__(self, model, groups: dict, lam: float, temperature: float, seed: int = 0) -> None:
        import torch

        self.model, self.groups, self.lam, self.temperature = model, dict(groups), float(lam), float(temperature)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.handles: list = []

    def _hook(self, module, _inputs, output):
        import torch

        if not module.training:
            return output
        p = mask_probability(module.weight, module.bias)
        m = relaxed_mask(p, self.temperature, torch.rand(p.shape, generator=self.gen))
        return output * m.reshape([1, -1] + [1] * (output.dim() - 2))

    def attach(self) -> None:
        """Register the mask hooks (idempotent)."""
        mods = dict(self.model.named_modules())
        if not self.handles:
            self.handles = [mods[n].register_forward_hook(self._hook) for n in self.groups.values()]

    def detach(self) -> None:
        """Remove the mask hooks."""
        for h in self.handles:
            h.remove()
        self.handles = []

    def on_train_begin(self, trainer) -> None:
        self.attach()

    def on_train_end(self, trainer) -> None:
        self.detach()

    def extra_loss(self, trainer, outputs, targets):
        import torch

        probs = list(group_probabilities(self.model, self.groups).values())
        return self.lam * torch.cat(probs).mean() if probs and self.lam else None


def scp_plan(model, x, groups: dict, threshold: float = 0.5, macs: float | None = None, tolerance: float = 0.03):
    """The plan removing the channels whose mask is off at ``threshold``.

    With ``macs`` the threshold is instead the smallest one at which the pruned network meets the
    budget (``threshold`` is then unused): below 0.5 when training turned off more channels than
    the budget needs, above it when fewer. The removed channels are exactly those whose
    probability is below the chosen threshold (``plan.info["threshold"]``).
    """
    import torch

    from prunekit.measure import count_macs

    with torch.no_grad():
        probs = {k: v.detach() for k, v in group_probabilities(model, groups).items()}
    if macs is None:
        return plan_from_removed(model, x, masks_off(probs, threshold),
                                 {"method": "scp", "threshold": threshold})
    dense = float(count_macs(model, x).total)

    def at(thr):
        return plan_from_removed(model, x, masks_off(probs, thr), {"method": "scp", "threshold": thr, "macs": macs})

    # the smallest threshold over the sorted probabilities (bisection on their index) that meets the budget:
    # as many channels as the budget needs, the least probable first
    values = sorted({float(v) for t in probs.values() for v in t} | {1.0 + 1e-9})
    lo, hi = 0, len(values) - 1
    best = at(values[hi])
    while lo < hi:
        mid = (lo + hi) // 2
        cand = at(values[mid])
        if cand.info["macs_after"] / dense <= macs + tolerance:
            best, hi = cand, mid
        else:
            lo = mid + 1
    return best


def scp(model, data, config: SCPConfig | None = None, progress: bool = True):
    """SCP on a copy of ``model``: soft-mask training, then the plan of the masks that are off; ``(net, plan)``.

    Example:
        >>> net, plan = scp(model, load_dataset("fashion-mnist"), SCPConfig(macs=0.5))  # doctest: +SKIP
        >>> small = plan.apply(net)                                                       # doctest: +SKIP
    """
    import copy

    from prunekit.train import run_finetune

    cfg = config or SCPConfig()
    cfg.check()
    x = example_input(data)
    net = copy.deepcopy(model)
    groups = scp_groups(net, skeleton(net, x))
    if not groups:
        raise PrunekitError("scp needs BatchNorm layers after the pruned convolutions; this model has none "
                            "(use a network with BN, e.g. vgg11)")
    if cfg.mask_epochs > 0:
        cb = SCPCallback(net, groups, cfg.sparsity, cfg.mask_temperature, cfg.seed)
        tc = cfg.finetune.replace(epochs=cfg.mask_epochs, lr=cfg.mask_lr, checkpoint_every=0, eval_every=0)
        try:
            run_finetune(net, data, tc, callbacks=[cb], progress=progress, seed=cfg.seed)
        finally:
            cb.detach()
    return net, scp_plan(net, x, groups, cfg.threshold, cfg.macs, cfg.macs_tolerance)
