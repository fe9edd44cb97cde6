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
network pruned so far, the targets ``Y`` from the original network.

Residual networks (He et al. Sec. 3.3, Fig. 3(c)):

* **Residual target.** When ``C`` is the last layer of a residual branch (its output,
  possibly through an eval-mode BatchNorm, is added to a shortcut ``Y1``), the target is
  ``Y2 + (Y1 - Y1')`` in ``C``'s output space: ``Y1'`` is the shortcut of the network
  pruned so far, and a BatchNorm's per-channel scale divides the difference
  (:mod:`.residual`; ``residual_target``, on by default). All selectors use it; for
  ThiNet only its least-squares scaling sees the target (the greedy choice depends on
  ``X`` and ``W`` alone), an addition to the ThiNet paper, which has no such term.
* **Wide-input sampling** (``sample_wide_inputs`` of Channel Pruning, on by default; not
  for ThiNet, whose paper leaves the block input alone). The first layer of a branch
  reads the residual stream, which the engine cannot prune (several readers); its input
  channels are chosen by the same selector and the layer then reads only those through a
  :class:`~prunekit.surgery.select.ChannelSelect` (He et al.'s channel sampler) while the
  stream keeps its width (:mod:`.wide_inputs`). The MACs budget then covers the branches
  and the sampled inputs together.

The result is a plan, the input selections and the reconstructed weights:
``small = plan.apply(model)``, the selections (a checkpoint transform, so the model
reloads), then ``write_reconstructed(small, plan, weights)`` (see
:meth:`ReconstructionResult.apply`).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

from prunekit.errors import PrunekitError
from prunekit.methods.structured import lasso_math as lm
from prunekit.methods.structured._common import (CommonConfig, budget_counts, calib_batch, example_input,
                                                 gather_outputs, gather_patches, layer_input, layer_weight,
                                                 plan_from_removed, prunable_layers, sample_positions, skeleton,
                                                 write_reconstructed)
from prunekit.methods.structured.wide_inputs import joint_counts, wide_input_layers
from prunekit.validate import check_choice, check_int

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
        residual_target: reconstruct the last layer of a residual branch towards
            ``Y2 + Y1 - Y1'`` (Sec. 3.3); False: towards its own original output ``Y2``.
        sample_wide_inputs: select the input channels of the first layer of each residual
            branch too (the paper's channel sampler); the stream keeps its width.
    """

    points_per_image: int = 10
    selector: str = "lasso"
    n_alphas: int = 24
    lasso_iters: int = 300
    lasso_solver: str = "cd"
    max_points: int = 10000
    residual_target: bool = True
    sample_wide_inputs: bool = True

    def check(self) -> None:
        super().check()
        check_choice("config key 'selector'", self.selector, ("lasso", "first_k", "max_response"))
        check_choice("config key 'lasso_solver'", self.lasso_solver, ("cd", "fista"))
        for key in ("points_per_image", "n_alphas", "lasso_iters", "max_points"):
            check_int(f"config key {key!r}", getattr(self, key))


@dataclass
class ThiNetConfig(CommonConfig):
    """Options of ThiNet (Luo, Wu & Lin, ICCV 2017).

    Attributes:
        points_per_image: sampled points per calibration image (ThiNet: 10).
        rescale: least-squares rescaling of the kept channels (Sec. 3.3 of the paper).
        max_points: cap on sampled points per layer.
        residual_target: the rescaling of a residual branch's last layer aims at
            ``Y2 + Y1 - Y1'`` as in He et al. (not in the ThiNet paper; False: at ``Y2``).
    """

    points_per_image: int = 10
    rescale: bool = True
    max_points: int = 10000
    residual_target: bool = True

    def check(self) -> None:
        super().check()
        for key in ("points_per_image", "max_points"):
            check_int(f"config key {key!r}", getattr(self, key))


@dataclass
class LayerStat:
    """Per-layer record: kept channels and relative reconstruction error before/after the re-fit.

    ``kind`` is ``channels`` (the group read by ``layer`` loses channels) or ``inputs``
    (``layer`` reads only ``kept`` of the ``size`` channels of its wide input group);
    ``residual`` tells whether the target included the shortcut term ``Y1 - Y1'``.
    """

    layer: str
    group: int
    size: int
    kept: int
    error_selected: float
    error_reconstructed: float
    kind: str = "channels"
    residual: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ReconstructionResult:
    """A plan, the input selections and the re-fitted weights of the layers reading the pruned channels.

    Use :meth:`apply`: ``plan.apply`` removes the channels, the selections put a
    channel sampler before the wide-input layers, then the weights are written.

    Attributes:
        plan: the :class:`~prunekit.engine.PruningPlan` of the removed channels.
        weights: layer -> re-fitted weight (original outputs, kept inputs).
        layers: one :class:`LayerStat` per re-fitted layer.
        selections: wide-input layer -> the input channels it keeps.
    """

    plan: object
    weights: dict
    layers: list = field(default_factory=list)
    selections: dict = field(default_factory=dict)

    def apply(self, model):
        """The pruned model with reconstructed weights (``model`` is left untouched)."""
        from prunekit.checkpoint import apply_transform
        from prunekit.surgery.select import selection_transform

        small = self.plan.apply(model)
        if self.selections:
            small = apply_transform(small, selection_transform(self.selections))
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


@dataclass(frozen=True)
class _Step:
    layer: str
    group: int
    size: int
    remove: int
    kind: str  # "channels" or "inputs"


def reconstruct_prune(model, images, counts: dict, selector: str, *, points_per_image=10, max_points=10000,
                      seed=0, n_alphas=24, iters=300, rescale=True, solver="cd", base=None, progress=True,
                      samples: dict | None = None, residual_target: bool = True):
    """Layer-by-layer selection and re-fit; returns a :class:`ReconstructionResult` (model untouched).

    Args:
        model: the trained dense model.
        images: calibration images ``(B, C, H, W)``.
        counts: ``{group id: channels to remove}`` (see ``budget_counts``).
        selector: one of :data:`SELECTORS`.
        samples: ``{wide-input layer: input channels to drop}`` (see
            :func:`~prunekit.methods.structured.wide_inputs.wide_input_layers`).
        residual_target: the last layer of a residual branch aims at ``Y2 + Y1 - Y1'``.

    Layers are visited in the order the forward pass calls them; each is fitted on the
    inputs of the network pruned so far (``work``, removed columns zeroed).
    """
    from prunekit.methods.structured.residual import ResidualGraph

    x = images[:1]
    base = base if base is not None else skeleton(model, x)
    samples = samples or {}
    layers = prunable_layers(model, base)
    steps = [_Step(p.consumer, p.group, p.size, counts[p.group], "channels")
             for p in layers if counts.get(p.group, 0) > 0]
    if samples:
        wides = {w.layer: w for w in wide_input_layers(model, base, layers)}
        for name, n in samples.items():
            if name not in wides:
                raise PrunekitError(f"layer {name!r} has no wide input to sample (see wide_input_layers)")
            if n > 0:
                steps.append(_Step(name, wides[name].group, wides[name].size, int(n), "inputs"))
    graph = ResidualGraph(model, x) if steps else None
    if graph is not None and not graph.available and residual_target:
        warnings.warn(f"the exported graph of {type(model).__name__} takes inputs other than its tensors and one "
                      "image batch: residual branches are reconstructed towards their own output (no Y1 - Y1' term)",
                      UserWarning, stacklevel=2)
    mod_order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    call_order = graph.order() if graph is not None else {}
    steps.sort(key=lambda st: (call_order.get(st.layer, len(mod_order)), mod_order.get(st.layer, 0)))
    work = copy.deepcopy(model).eval()        # the pruned-so-far network, removed columns zeroed
    removed, weights, stats, selections = {}, {}, [], {}
    bar = _bar(len(steps), f"{selector} layers", progress)
    try:
        for step, st in enumerate(steps):
            layer = model.get_submodule(st.layer)
            site = graph.site(st.layer) if residual_target and graph is not None and graph.available else None
            ppi = max(1, min(points_per_image, max_points // max(1, len(images))))
            X_cur, Y = layer_targets(model, work, st.layer, images, ppi, seed + step, site=site, graph=graph)
            W = layer_weight(layer)
            keep = st.size - st.remove
            kept, Wk, e_sel, e_fit = select_and_fit(X_cur, W, Y, keep, selector, n_alphas=n_alphas, iters=iters,
                                                    rescale=rescale, solver=solver)
            if st.kind == "channels":
                removed[st.group] = sorted(set(range(st.size)) - set(kept))
            else:
                selections[st.layer] = sorted(int(k) for k in kept)
            weights[st.layer] = Wk.reshape(W.shape[0], keep, *layer.weight.shape[2:])
            _write_dense(work.get_submodule(st.layer), kept, Wk)
            stats.append(LayerStat(st.layer, st.group, st.size, keep, e_sel, e_fit, st.kind, site is not None))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(layer=st.layer, err=f"{e_fit:.3f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    info = {"method": selector, "criterion": selector, "layers": [s.to_dict() for s in stats]}
    if selections:
        info["input_selection"] = {k: {"before": next(st.size for st in steps if st.layer == k), "after": len(v)}
                                   for k, v in selections.items()}
    plan = plan_from_removed(model, x, removed, info, base=base)
    res = ReconstructionResult(plan, weights, stats, selections)
    if selections:
        _record_selection_cost(res, model, x)
    return res


def layer_targets(model, work, name: str, images, points_per_image: int, seed: int, site=None, graph=None):
    """``(X, Y)`` of one layer: sampled inputs of the pruned-so-far network and the reconstruction target.

    ``X`` ``(N, c, k)`` are the patches of layer ``name``'s input in ``work`` at random
    output positions; ``Y`` ``(N, n)`` is the layer's original output there (bias excluded),
    ``X_orig W^T``, plus, for the last layer of a residual branch (``site``, a
    :class:`~prunekit.methods.structured.residual.ResidualSite` of ``graph``), the shortcut
    term ``(Y1 - Y1') / scale`` read at the same positions (He et al. Sec. 3.3).
    """
    layer = model.get_submodule(name)
    W = layer_weight(layer)
    if site is None:
        inp = layer_input(model, name, images)
        pos = sample_positions(layer, inp.shape, points_per_image, seed)
        X_orig = gather_patches(layer, inp, pos)
        del inp
        X_cur = gather_patches(layer, layer_input(work, name, images), pos)
        return X_cur, X_orig.reshape(len(X_orig), -1) @ W.reshape(W.shape[0], -1).T
    inp, y1 = graph.values(model, [site.input, site.shortcut], images)
    pos = sample_positions(layer, inp.shape, points_per_image, seed)
    X_orig, y1 = gather_patches(layer, inp, pos), gather_outputs(layer, y1, pos)
    del inp
    inp, y1p = graph.values(work, [site.input, site.shortcut], images)
    X_cur, y1p = gather_patches(layer, inp, pos), gather_outputs(layer, y1p, pos)
    Y = X_orig.reshape(len(X_orig), -1) @ W.reshape(W.shape[0], -1).T
    return X_cur, Y + graph.offset(site, y1, y1p, model)


def _record_selection_cost(res, model, x) -> None:
    """MACs and parameters of the whole result (plan + input selections) in ``res.plan.info``."""
    from prunekit.measure import count_macs

    small = res.apply(model)
    res.plan.info["macs_after_selection"] = float(count_macs(small, x).total)
    res.plan.info["params_after_selection"] = float(sum(t.numel() for t in small.parameters()))


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
    from prunekit.utils.progress import progress_bar

    return progress_bar(total=total, desc=desc, enabled=enabled)


def _counts(model, x, cfg: CommonConfig, base, sample_wide_inputs: bool = False):
    """``(counts, samples)``: channels to remove per group and input channels to drop per wide-input layer."""
    layers = prunable_layers(model, base)
    if not layers:
        raise PrunekitError("no prunable layer: this method prunes channels read by exactly one Conv2d/Linear")
    wides = wide_input_layers(model, base, layers) if sample_wide_inputs else []
    if wides:
        return joint_counts(model, x, layers, wides, macs=cfg.macs, ratio=cfg.ratio if cfg.macs is None else None,
                            base=base, tolerance=cfg.macs_tolerance)
    return budget_counts(model, x, layers, macs=cfg.macs, ratio=cfg.ratio if cfg.macs is None else None, base=base,
                         tolerance=cfg.macs_tolerance), {}


def channel_pruning(model, data, config: ChannelPruningConfig | None = None, progress: bool = True):
    """Channel Pruning (He et al. 2017) of ``model`` on ``data``'s training images.

    In residual networks the last layer of each branch aims at ``Y2 + Y1 - Y1'`` and the
    first layer of each branch samples its wide input (``residual_target``,
    ``sample_wide_inputs``; see the module docstring).

    Example:
        >>> res = channel_pruning(net, splits, ChannelPruningConfig(macs=0.5))   # doctest: +SKIP
        >>> small = res.apply(net)                                               # doctest: +SKIP
    """
    cfg = config or ChannelPruningConfig()
    cfg.check()
    images, _ = calib_batch(data, cfg.calib_images, cfg.seed)
    x = example_input(data)
    base = skeleton(model, x)
    counts, samples = _counts(model, x, cfg, base, cfg.sample_wide_inputs)
    return reconstruct_prune(model, images, counts, cfg.selector, points_per_image=cfg.points_per_image,
                             max_points=cfg.max_points, seed=cfg.seed, n_alphas=cfg.n_alphas, iters=cfg.lasso_iters,
                             solver=cfg.lasso_solver, base=base, progress=progress, samples=samples,
                             residual_target=cfg.residual_target)


def thinet(model, data, config: ThiNetConfig | None = None, progress: bool = True):
    """ThiNet (Luo et al. 2017): greedy channel selection of each layer's input + least-squares scaling.

    Deviation: the greedy criterion sums over *all* output channels at each sampled point
    (the paper draws one random output channel per point); it needs only the Gram matrix.
    Residual networks: only the channels inside the branches are pruned, as in the paper
    (no wide-input sampling); the scaling of a branch's last layer uses He et al.'s target
    ``Y2 + Y1 - Y1'`` unless ``residual_target`` is False (the greedy choice does not
    depend on the target).
    """
    cfg = config or ThiNetConfig()
    cfg.check()
    images, _ = calib_batch(data, cfg.calib_images, cfg.seed)
    x = example_input(data)
    base = skeleton(model, x)
    counts, _ = _counts(model, x, cfg, base)
    return reconstruct_prune(model, images, counts, "thinet", points_per_image=cfg.points_per_image,
                             max_points=cfg.max_points, seed=cfg.seed, rescale=cfg.rescale, base=base,
                             progress=progress, residual_target=cfg.residual_target)
