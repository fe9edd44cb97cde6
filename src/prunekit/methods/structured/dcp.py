"""Discrimination-aware Channel Pruning (Zhuang et al., NeurIPS 2018; TPAMI 2021 extension).

Zhuang, Tan, Zhuang, Liu, Guo, Wu, Huang & Zhu, "Discrimination-aware Channel Pruning
for Deep Neural Networks", NeurIPS 2018. The network is split into stages; an auxiliary
classifier (average pool + linear, :class:`AuxHead`) reads the output of each stage.

1. **Discrimination-aware fine-tuning**: the network and the heads are trained on
   :func:`dcp_loss`, the sum of every auxiliary cross-entropy and the final one.
2. **Channel selection**, stage by stage, for every layer ``C`` reading a prunable group:
   the loss of ``C``'s weight ``W`` is ``L(W) = L_M(W) + lambda * L_S(W)``, with
   ``L_M = ||Y - X W||^2 / (2N)`` the reconstruction error on sampled input patches ``X``
   of the network pruned so far (``Y``: the original outputs) and ``L_S`` the cross-entropy
   of the auxiliary head of ``C``'s stage (the final loss for the last stage). Starting
   from ``A = {}`` and ``W = 0``, the channel with the largest ``||dL/dW_c||_F`` joins
   ``A`` (:func:`channel_scores`), then ``W_A`` is re-optimised (least squares on ``L_M``,
   :func:`~prunekit.methods.structured.lasso_math.least_squares`), until ``A`` holds the
   channels the MACs budget keeps (counts from the engine's policy, as LASSO/ThiNet).
3. The removed channels become one engine plan (``plan_from_channels``), the re-fitted
   weights are written, the heads are dropped and the pipeline fine-tunes.

Deviations: ``W_A`` is re-fitted by least squares on the reconstruction term (the paper
runs SGD on ``L``); there is no fine-tuning between stages (only the final one).
Stage boundaries: ``stages`` names the modules whose outputs end a stage; by default
``n_stages`` boundaries split the pruned layers into parts of equal MACs.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np

from prunekit.errors import ConfigError, PrunekitError
from prunekit.methods.structured import lasso_math as lm
from prunekit.methods.structured._common import (CommonConfig, PrunableLayer, StructuredFinetune, budget_counts,
                                                 calib_batch, example_input, gather_patches, layer_input,
                                                 plan_from_removed, sample_positions, skeleton)
from prunekit.methods.structured.reconstruct import ReconstructionResult
from prunekit.train import as_finetune, finetune_field
from prunekit.validate import check_int, check_number


@dataclass
class DCPFinetune(StructuredFinetune):
    """The discrimination-aware fine-tuning before selection (a :class:`~prunekit.train.FinetuneConfig`; 1 epoch)."""

    epochs: int = 1


@dataclass
class DCPConfig(CommonConfig):
    """Options of DCP (Zhuang et al., NeurIPS 2018).

    Attributes:
        stages: names of the modules whose outputs end a stage (None: automatic).
        n_stages: number of stages when ``stages`` is None (equal-MACs split of the pruned layers).
        aux_weight: ``lambda`` of ``L_M + lambda * L_S`` in channel selection (paper: 1.0).
        aux_finetune: the discrimination-aware fine-tuning (``epochs: 0`` skips it).
        points_per_image: sampled output positions per calibration image for ``L_M``.
        max_points: cap on sampled points per layer.
        channels_per_step: channels added to ``A`` per greedy step (paper: 1).
    """

    stages: Optional[list] = None
    n_stages: int = 2
    aux_weight: float = 1.0
    aux_finetune: DCPFinetune = finetune_field(DCPFinetune)
    points_per_image: int = 10
    max_points: int = 10000
    channels_per_step: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.aux_finetune = as_finetune(self.aux_finetune, DCPFinetune, "aux_finetune")

    def check(self) -> None:
        super().check()
        for key in ("n_stages", "points_per_image", "max_points", "channels_per_step"):
            check_int(f"config key {key!r}", getattr(self, key))
        check_number("config key 'aux_weight'", self.aux_weight, minimum=0.0)
        if self.stages is not None and (not isinstance(self.stages, list) or
                                        not all(isinstance(s, str) for s in self.stages)):
            raise ConfigError("config key 'stages' must be a list of module names (or null for automatic)")


# ---------------------------------------------------------------------------------------- pure math
def dcp_loss(aux_logits, final_logits, targets):
    """The discrimination-aware loss: ``sum_p CE(aux_p, y) + CE(final, y)`` (Zhuang et al. Eq. 4 summed over stages)."""
    import torch.nn.functional as F

    loss = F.cross_entropy(final_logits, targets)
    for z in aux_logits:
        loss = loss + F.cross_entropy(z, targets)
    return loss


def channel_scores(grad):
    """``||G_c||_F`` per input channel ``c`` of a ``(n, c, k)`` gradient (Zhuang et al. Alg. 2, line 4)."""
    return grad.detach().double().pow(2).sum(dim=(0, 2)).sqrt()


def reconstruction_loss(X, W, Y):
    """``L_M = ||Y - X W^T||^2 / (2N)`` for ``(N, c, k)`` patches, ``(n, c, k)`` weights and ``(N, n)`` targets."""
    return (Y - X.reshape(len(X), -1) @ W.reshape(W.shape[0], -1).T).pow(2).sum() / (2 * len(X))


class AuxHead:
    """Factory of DCP's auxiliary classifier: average pool (4-D features) + linear (Zhuang et al. Fig. 1)."""

    @staticmethod
    def build(features: int, classes: int):
        """A ``torch.nn.Module`` mapping ``(B, features, ...)`` features to ``(B, classes)`` logits."""
        import torch

        class _Head(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(features, classes)

            def forward(self, z):
                z = z.flatten(2).mean(-1) if z.dim() > 2 else z
                return self.fc(z)

        return _Head()


# ---------------------------------------------------------------------------------------- layers
@dataclass(frozen=True)
class DCPLayer:
    """A group read by one layer whose input is channel-major (conv, or a linear after flatten).

    ``k`` columns of the flattened weight belong to each channel (kernel area, or the
    flattened spatial size).
    """

    group: int
    consumer: str
    size: int
    k: int


def dcp_layers(model, base) -> list[DCPLayer]:
    """The groups DCP prunes: one Conv2d(groups=1) / 2-D Linear reader, channel ``c`` at columns ``c*k .. c*k+k-1``."""
    import torch

    mods = dict(model.named_modules())
    order = {n: i for i, n in enumerate(mods)}
    out = []
    for g in base.groups:
        ins = [m for m in g.members if m.role == "in"]
        if len(ins) != 1 or g.size < 2 or not any(m.role == "out" for m in g.members):
            continue
        m = ins[0]
        mod = mods.get(m.module)
        if m.param != m.module + ".weight" or m.dim != 1:
            continue
        if isinstance(mod, torch.nn.Conv2d) and mod.groups == 1 and mod.in_channels == g.size:
            k = int(np.prod(mod.kernel_size))
            ok = np.array_equal(m.indices, np.arange(g.size)) and np.array_equal(m.channels, m.indices)
        elif isinstance(mod, torch.nn.Linear) and mod.in_features % g.size == 0:
            k = mod.in_features // g.size
            idx = np.arange(mod.in_features)
            ok = np.array_equal(m.indices, idx) and np.array_equal(m.channels, idx // k)
        else:
            continue
        if ok:
            out.append(DCPLayer(g.id, m.module, g.size, k))
    return sorted(out, key=lambda p: order.get(p.consumer, 0))


def auto_stages(model, x, layers: list[DCPLayer], n_stages: int) -> list[str]:
    """Boundary modules of ``n_stages`` stages: the pruned layers split into parts of equal MACs.

    Each boundary is the last pruned layer of its part; the last stage ends at the model's
    output (so ``n_stages - 1`` names are returned).
    """
    from prunekit.measure import count_macs

    per = count_macs(model, x).per_layer
    macs = np.array([float(per.get(p.consumer, 0)) + 1.0 for p in layers])
    cum = np.cumsum(macs) / macs.sum()
    bounds = []
    for s in range(1, n_stages):
        i = int(np.searchsorted(cum, s / n_stages))
        name = layers[min(i, len(layers) - 1)].consumer
        if name not in bounds and i < len(layers) - 1:
            bounds.append(name)
    return bounds


def stage_of(layer: str, stages: list[str], order: dict) -> int:
    """Index of the stage of ``layer``: the first boundary at or after it (``len(stages)``: the final stage)."""
    for i, s in enumerate(stages):
        if order[layer] <= order[s]:
            return i
    return len(stages)


# ---------------------------------------------------------------------------------------- autograd
class _Stop(Exception):
    pass


def stage_output(model, images, boundary: Optional[str]):
    """Output of module ``boundary`` for ``images`` (the model's output when None); differentiable."""
    if boundary is None:
        return model(images)
    store = []

    def hook(_m, _a, out):
        store.append(out)
        raise _Stop

    h = model.get_submodule(boundary).register_forward_hook(hook)
    try:
        model(images)
    except _Stop:
        pass
    finally:
        h.remove()
    return store[0]


def dcp_scores(work, layer: DCPLayer, W, X, Y, images, labels, boundary, head, aux_weight: float):
    """Channel scores ``||dL/dW_c||_F`` of layer ``layer`` in ``work`` with its weight set to ``W`` ``(n, c, k)``.

    ``L = L_M(W) + aux_weight * CE(head(stage output), labels)`` (``head`` None: the
    model's own logits). ``work`` is not changed (its weight is restored).
    """
    import torch
    import torch.nn.functional as F

    mod = work.get_submodule(layer.consumer)
    saved, flag = mod.weight.detach().clone(), mod.weight.requires_grad
    Wt = W.detach().clone().float().requires_grad_(True)
    mod.weight.requires_grad_(True)
    try:
        with torch.no_grad():
            mod.weight.copy_(Wt.reshape(mod.weight.shape))
        loss = reconstruction_loss(X, Wt, Y)
        if aux_weight:
            z = stage_output(work, images, boundary)
            logits = head(z) if head is not None else z
            g_aux = torch.autograd.grad(F.cross_entropy(logits, labels), mod.weight)[0]
            g = torch.autograd.grad(loss, Wt)[0] + aux_weight * g_aux.reshape(Wt.shape)
        else:
            g = torch.autograd.grad(loss, Wt)[0]
    finally:
        with torch.no_grad():
            mod.weight.copy_(saved)
        mod.weight.requires_grad_(flag)
    return channel_scores(g)


def greedy_select(score_fn, X, Y, keep: int, per_step: int = 1):
    """Alg. 2 of Zhuang et al.: grow ``A`` by the best-scoring channels, re-fitting ``W_A`` after each step.

    ``score_fn(W)`` returns the per-channel scores at weights ``W`` ``(n, c, k)``.
    Returns ``(kept (sorted), W_kept (n, keep, k))``.
    """
    import torch

    n, c, k = Y.shape[1], X.shape[1], X.shape[2]
    A: list[int] = []
    W = torch.zeros(n, c, k)
    while len(A) < keep:
        s = score_fn(W).clone()
        s[A] = -float("inf")
        take = torch.argsort(s, descending=True, stable=True)[: min(per_step, keep - len(A))].tolist()
        A = sorted(A + [int(t) for t in take])
        W = torch.zeros(n, c, k)
        W[:, A] = lm.least_squares(X[:, A], Y).float()
    return A, W[:, A]


# ---------------------------------------------------------------------------------------- method
def _patches(model, layer: DCPLayer, images, positions):
    """``(N, c, k)`` input patches of ``layer`` (sampled positions for conv, the whole input for linear)."""
    import torch

    mod = model.get_submodule(layer.consumer)
    inp = layer_input(model, layer.consumer, images)
    if isinstance(mod, torch.nn.Linear):
        if inp.dim() != 2:
            raise PrunekitError(f"DCP: linear layer {layer.consumer!r} reads a {inp.dim()}-D input (needs 2-D)")
        return inp.float().reshape(len(inp), layer.size, layer.k)
    return gather_patches(mod, inp, positions)


def discrimination_finetune(model, data, boundaries: list[str], config, seed: int, progress: bool):
    """Train ``model`` (in place) and one :class:`AuxHead` per boundary on :func:`dcp_loss`; returns the heads."""
    import torch

    from prunekit.train import run_finetune

    x = example_input(data)
    with torch.no_grad():
        feats = [stage_output(model.eval(), x, b) for b in boundaries]
    classes = int(getattr(data, "num_classes", 0) or int(data.train_y.max()) + 1)
    torch.manual_seed(seed)
    heads = [AuxHead.build(int(f.shape[1]), classes) for f in feats]
    if config.epochs <= 0 or not boundaries:
        return heads
    store: dict = {}
    hooks = [model.get_submodule(b).register_forward_hook(
        lambda _m, _a, out, i=i: store.__setitem__(i, out) if torch.is_grad_enabled() else None)
        for i, b in enumerate(boundaries)]

    def loss_fn(out, y):
        aux = [heads[i](store.pop(i)) for i in range(len(heads))]
        return dcp_loss(aux, out, y)

    params = list(model.parameters()) + [p for h in heads for p in h.parameters()]
    try:
        run_finetune(model, data, config, progress=progress, seed=seed, params=params, loss_fn=loss_fn)
    finally:
        for h in hooks:
            h.remove()
    return heads


def dcp(model, data, config: DCPConfig | None = None, progress: bool = True):
    """DCP of ``model`` on ``data``; returns ``(trained copy, ReconstructionResult)`` (``model`` untouched).

    ``result.apply(trained)`` is the pruned model with the re-fitted weights.

    Example:
        >>> net2, res = dcp(net, splits, DCPConfig(macs=0.5))   # doctest: +SKIP
        >>> small = res.apply(net2)                              # doctest: +SKIP
    """
    import torch

    cfg = config or DCPConfig()
    cfg.check()
    x = example_input(data)
    net = copy.deepcopy(model)
    base = skeleton(net, x)
    layers = dcp_layers(net, base)
    if not layers:
        raise PrunekitError("DCP: no prunable layer (a group read by one Conv2d or 2-D Linear)")
    mods = dict(net.named_modules())
    order = {n: i for i, n in enumerate(mods)}
    if cfg.stages is not None:
        unknown = [s for s in cfg.stages if s not in mods]
        if unknown:
            raise ConfigError(f"config key 'stages': no module named {', '.join(map(repr, unknown))}")
        stages = sorted(cfg.stages, key=order.get)
    else:
        stages = auto_stages(net, x, layers, cfg.n_stages)
    heads = discrimination_finetune(net, data, stages, cfg.aux_finetune, cfg.seed, progress)
    net.eval()
    counts = budget_counts(net, x, [PrunableLayer(p.group, p.consumer, (), p.size) for p in layers],
                           macs=cfg.macs, ratio=cfg.ratio if cfg.macs is None else None, base=base,
                           tolerance=cfg.macs_tolerance)
    images, labels = calib_batch(data, cfg.calib_images, cfg.seed)
    work = copy.deepcopy(net).eval()
    for p in work.parameters():
        p.requires_grad_(False)
    removed, weights, stats = {}, {}, []
    for step, lay in enumerate(p for p in layers if counts.get(p.group, 0) > 0):
        mod = net.get_submodule(lay.consumer)
        pos = None
        if isinstance(mod, torch.nn.Conv2d):
            inp_shape = layer_input(net, lay.consumer, images[:1]).shape
            ppi = max(1, min(cfg.points_per_image, cfg.max_points // max(1, len(images))))
            pos = sample_positions(mod, (len(images), *inp_shape[1:]), ppi, cfg.seed + step)
        W0 = mod.weight.detach().float().reshape(mod.weight.shape[0], lay.size, lay.k)
        X_orig = _patches(net, lay, images, pos)
        Y = X_orig.reshape(len(X_orig), -1) @ W0.reshape(W0.shape[0], -1).T
        X = _patches(work, lay, images, pos)
        si = stage_of(lay.consumer, stages, order)
        boundary, head = (stages[si], heads[si]) if si < len(stages) else (None, None)
        wmod = work.get_submodule(lay.consumer)
        keep = lay.size - counts[lay.group]

        def score(W, lay=lay, X=X, Y=Y, boundary=boundary, head=head):
            return dcp_scores(work, lay, W, X, Y, images, labels, boundary, head, cfg.aux_weight)

        kept, Wk = greedy_select(score, X, Y, keep, cfg.channels_per_step)
        with torch.no_grad():  # the working copy sees the removed channels as zero columns
            full = torch.zeros(W0.shape)
            full[:, kept] = Wk
            wmod.weight.copy_(full.reshape(wmod.weight.shape))
        removed[lay.group] = sorted(set(range(lay.size)) - set(kept))
        weights[lay.consumer] = Wk.reshape(W0.shape[0], keep * lay.k)
        stats.append({"layer": lay.consumer, "group": lay.group, "size": lay.size, "kept": keep, "stage": si,
                      "error": float(lm.relative_error(X[:, kept], Wk, Y))})
    info = {"method": "dcp", "criterion": "dcp", "stages": stages, "layers": stats}
    plan = plan_from_removed(net, x, removed, info, base=base)
    return net, ReconstructionResult(plan, weights, [])
