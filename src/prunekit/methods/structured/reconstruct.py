"""Channel Pruning by LASSO + least squares (He et al., ICCV 2017) and ThiNet (Luo et al., ICCV 2017).

Both methods go layer by layer through the groups read by a single layer
(:func:`~prunekit.methods.structured._common.prunable_layers`). For the layer ``C``
reading a group they sample input patches and choose which input channels of ``C``
to keep; then they re-fit ``C``'s weights on the kept channels:

* ``lasso``: LASSO on the channel mask beta (formula 3, W fixed), raising alpha until
  at most ``c'`` channels remain, then one least-squares fit of W (formula 4).
* ``first_k`` / ``max_response``: the two baselines of He et al. Fig. 4, followed by the
  same least-squares fit.
* ``thinet``: greedy removal of the channels whose summed contribution is smallest,
  then a least-squares scale per kept channel.

Accumulated error is taken into account as He et al. do: the inputs ``X`` come from the
network pruned so far, the targets ``Y`` from the original network. The result is a
plan plus reconstructed weights: ``small = plan.apply(model)`` then
``write_reconstructed(small, plan, weights)`` (see :meth:`ReconstructionResult.apply`).

Not implemented (see docs/methods.md): the residual-branch target ``Y1 - Y1' + Y2``
and the bottleneck's wide-input sampling; in residual networks only the groups inside
a branch are pruned and reconstructed towards the original branch output.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from prunekit.errors import ConfigError, PrunekitError
from prunekit.methods.structured import lasso_math as lm
from prunekit.methods.structured._common import (CommonConfig, budget_counts, calib_batch, example_input,
                                                 layer_input, layer_weight, plan_from_removed, prunable_layers,
                                                 sample_patches, skeleton, write_reconstructed)

#: channel selectors of the reconstruction methods
SELECTORS = ("lasso", "first_k", "max_response", "thinet")


@dataclass
class ChannelPruningConfig(CommonConfig):
    """Options of Channel Pruning (He et al. 2017).

    Attributes:
        points_per_image: feature-map points sampled per calibration image (paper: 10).
        selector: ``lasso`` (the paper), or a Fig. 4 baseline ``first_k`` / ``max_response``.
        n_alphas: size of the alpha grid solved at once per refinement round.
        lasso_iters: FISTA iterations per grid (``lasso_solver="fista"``).
        lasso_solver: ``cd`` (scikit-learn coordinate descent) or ``fista`` (batched torch).
        max_points: cap on sampled points per layer (memory).
    """

    points_per_image: int = 10
    selector: str = "lasso"
    n_alphas: int = 24
    lasso_iters: int = 300
    lasso_solver: str = "cd"
    max_points: int = 10000

    def check(self) -> None:
        super().check()
        if self.selector not in ("lasso", "first_k", "max_response"):
            raise ConfigError(f"config key 'selector' must be lasso, first_k or max_response, got {self.selector!r}")
        if self.lasso_solver not in ("cd", "fista"):
            raise ConfigError(f"config key 'lasso_solver' must be cd or fista, got {self.lasso_solver!r}")
        for key in ("points_per_image", "n_alphas", "lasso_iters", "max_points"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r} must be >= 1, got {getattr(self, key)}")


@dataclass
class ThiNetConfig(CommonConfig):
    """Options of ThiNet (Luo, Wu & Lin, ICCV 2017).

    Attributes:
        points_per_image: sampled points per calibration image (ThiNet: 10).
        rescale: least-squares rescaling of the kept channels (Sec. 3.3 of the paper).
        max_points: cap on sampled points per layer.
    """

    points_per_image: int = 10
    rescale: bool = True
    max_points: int = 10000

    def check(self) -> None:
        super().check()
        for key in ("points_per_image", "max_points"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r} must be >= 1, got {getattr(self, key)}")


@dataclass
class LayerStat:
    """Per-layer record: kept channels and relative reconstruction error before/after the re-fit."""

    layer: str
    group: int
    size: int
    kept: int
    error_selected: float
    error_reconstructed: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ReconstructionResult:
    """A plan plus the re-fitted weights of the layers reading the pruned channels.

    Use :meth:`apply`: ``plan.apply`` removes the channels, then the weights are written.
    """

    plan: object
    weights: dict
    layers: list = field(default_factory=list)

    def apply(self, model):
        """The pruned model with reconstructed weights (``model`` is left untouched)."""
        small = self.plan.apply(model)
        write_reconstructed(small, self.plan, self.weights)
        return small


def select_and_fit(X, W, Y, keep: int, selector: str, *, n_alphas=24, iters=300, rescale=True, solver="cd"):
    """Pure step for one layer: ``(kept, W_kept (n, c', k), err_selected, err_fitted)``.

    ``err_selected`` is the relative error of keeping the chosen channels with the
    original weights; ``err_fitted`` after the least-squares re-fit (or ThiNet's scaling).
    """
    import torch

    c = X.shape[1]
    if selector in ("lasso", "thinet"):
        G, b, _ = lm.gram_stats(X, W, Y)
    if selector == "lasso":
        kept, _ = lm.lasso_select(G, b, keep, scale=float(Y.numel()), n_alphas=n_alphas, iters=iters, solver=solver)
    elif selector == "thinet":
        kept = lm.thinet_greedy(G, keep)
    elif selector == "first_k":
        kept = lm.first_k(c, keep)
    elif selector == "max_response":
        kept = lm.max_response(W, keep)
    else:
        raise PrunekitError(f"unknown selector {selector!r}; choose from {', '.join(SELECTORS)}")
    idx = torch.as_tensor(kept, dtype=torch.long)
    Xk, Wk0 = X[:, idx], W[:, idx]
    err_sel = lm.relative_error(Xk, Wk0, Y)
    if selector == "thinet":
        Wk = Wk0 * lm.channel_scales(G, b, kept).float().view(1, -1, 1) if rescale else Wk0
    else:
        Wk = lm.least_squares(Xk, Y)
    return kept, Wk, err_sel, lm.relative_error(Xk, Wk, Y)


def reconstruct_prune(model, images, counts: dict, selector: str, *, points_per_image=10, max_points=10000,
                      seed=0, n_alphas=24, iters=300, rescale=True, solver="cd", base=None, progress=True):
    """Layer-by-layer selection and re-fit; returns a :class:`ReconstructionResult` (model untouched).

    Args:
        model: the trained dense model.
        images: calibration images ``(B, C, H, W)``.
        counts: ``{group id: channels to remove}`` (see ``budget_counts``).
        selector: one of :data:`SELECTORS`.
    """
    import torch

    x = images[:1]
    base = base if base is not None else skeleton(model, x)
    layers = [p for p in prunable_layers(model, base) if counts.get(p.group, 0) > 0]
    work = copy.deepcopy(model).eval()        # the pruned-so-far network, removed columns zeroed
    removed, weights, stats = {}, {}, []
    bar = _bar(len(layers), f"{selector} layers", progress)
    try:
        for step, p in enumerate(layers):
            layer = model.get_submodule(p.consumer)
            W = layer_weight(layer)
            ppi = max(1, min(points_per_image, max_points // max(1, len(images))))
            X_orig = sample_patches(layer, layer_input(model, p.consumer, images), ppi, seed + step)
            X_cur = sample_patches(layer, layer_input(work, p.consumer, images), ppi, seed + step)
            Y = X_orig.reshape(len(X_orig), -1) @ W.reshape(W.shape[0], -1).T
            keep = p.size - counts[p.group]
            kept, Wk, e_sel, e_fit = select_and_fit(X_cur, W, Y, keep, selector, n_alphas=n_alphas, iters=iters,
                                                    rescale=rescale, solver=solver)
            removed[p.group] = sorted(set(range(p.size)) - set(kept))
            weights[p.consumer] = Wk.reshape(W.shape[0], keep, *layer.weight.shape[2:])
            _write_dense(work.get_submodule(p.consumer), kept, Wk)
            stats.append(LayerStat(p.consumer, p.group, p.size, keep, e_sel, e_fit))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(layer=p.consumer, err=f"{e_fit:.3f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    info = {"method": selector, "criterion": selector, "layers": [s.to_dict() for s in stats]}
    return ReconstructionResult(plan_from_removed(model, x, removed, info, base=base), weights, stats)


def _write_dense(layer, kept, Wk) -> None:
    """Working copy only: the layer's weight with the re-fit kept columns and zeros elsewhere.

    Zero columns make the removed channels invisible to the layer, which is exactly what
    removal does, so later layers sample the inputs of the pruned network.
    """
    import torch

    with torch.no_grad():
        w = torch.zeros_like(layer.weight).reshape(layer.weight.shape[0], layer.weight.shape[1], -1)
        w[:, torch.as_tensor(kept, dtype=torch.long)] = Wk.to(w.dtype)
        layer.weight.copy_(w.reshape(layer.weight.shape))


def _bar(total, desc, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _counts(model, x, cfg: CommonConfig, base):
    layers = prunable_layers(model, base)
    if not layers:
        raise PrunekitError("no prunable layer: this method prunes channels read by exactly one Conv2d/Linear")
    return budget_counts(model, x, layers, macs=cfg.macs, ratio=cfg.ratio if cfg.macs is None else None, base=base,
                         tolerance=cfg.macs_tolerance)


def channel_pruning(model, data, config: ChannelPruningConfig | None = None, progress: bool = True):
    """Channel Pruning (He et al. 2017) of ``model`` on ``data``'s training images.

    Example:
        >>> res = channel_pruning(net, splits, ChannelPruningConfig(macs=0.5))   # doctest: +SKIP
        >>> small = res.apply(net)                                               # doctest: +SKIP
    """
    cfg = config or ChannelPruningConfig()
    cfg.check()
    images, _ = calib_batch(data, cfg.calib_images, cfg.seed)
    x = example_input(data)
    base = skeleton(model, x)
    return reconstruct_prune(model, images, _counts(model, x, cfg, base), cfg.selector,
                             points_per_image=cfg.points_per_image, max_points=cfg.max_points, seed=cfg.seed,
                             n_alphas=cfg.n_alphas, iters=cfg.lasso_iters, solver=cfg.lasso_solver, base=base,
                             progress=progress)


def thinet(model, data, config: ThiNetConfig | None = None, progress: bool = True):
    """ThiNet (Luo et al. 2017): greedy channel selection of each layer's input + least-squares scaling.

    Deviation: the greedy criterion sums over *all* output channels at each sampled point
    (the paper draws one random output channel per point); it needs only the Gram matrix.
    """
    cfg = config or ThiNetConfig()
    cfg.check()
    images, _ = calib_batch(data, cfg.calib_images, cfg.seed)
    x = example_input(data)
    base = skeleton(model, x)
    return reconstruct_prune(model, images, _counts(model, x, cfg, base), "thinet",
                             points_per_image=cfg.points_per_image, max_points=cfg.max_points, seed=cfg.seed,
                             rescale=cfg.rescale, base=base, progress=progress)
