"""ADMM weight pruning (Zhang et al., ECCV 2018): element-wise, filter-wise or channel-wise.

Zhang et al., *A Systematic DNN Weight Pruning Framework using Alternating
Direction Methods of Multipliers* (ECCV 2018) write pruning as
``min f(W) s.t. W_i in S_i`` (``S_i``: at most ``k_i`` non-zeros in layer ``i``)
and split it with an auxiliary ``Z_i = W_i`` and scaled duals ``U_i``:

* **W step**: a few epochs of SGD on ``f(W) + sum_i rho/2 ||W_i - Z_i + U_i||^2``;
* **Z step**: ``Z_i = proj_S(W_i + U_i)``, the Euclidean projection onto ``S_i``:
  keep the ``k_i`` largest magnitudes (element-wise) or the ``k_i`` filters
  (output slices) / channels (input slices) of largest L2 norm;
* **U step**: ``U_i += W_i - Z_i`` (``U`` is the scaled dual, rescaled by ``rho_old / rho_new``
  whenever ``rho`` changes);

with ``rho`` raised on a schedule so ``W`` is pulled ever closer to the sparse
``Z``. Then the weights are hard-pruned to the projection's support and
retrained under the mask.

Filter- and channel-wise ADMM project over the structural engine's coupling
groups (:mod:`prunekit.methods.admm_groups`): coupled layers (residual additions,
concatenations, depthwise convolutions) keep or lose a channel together, and the
hard prune is a :class:`prunekit.engine.PruningPlan` (``result.extra["plan"]``) that
removes the channels physically.

Example:
    >>> import torch
    >>> project_topk(torch.tensor([0.1, -3.0, 2.0, -0.5]), 2)
    tensor([ 0., -3.,  2.,  0.])
    >>> rho_schedule(5, rho0=0.01, factor=2.0, every=2, rho_max=1.0)
    0.04
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from prunekit.errors import ConfigError, PrunekitError
from prunekit.methods import register_method
from prunekit.methods._weight import (
    PruneResult, WeightFinetune, evaluate_test, train_with_masks,
)
from prunekit.train import Callback, FinetuneConfig, as_finetune, finetune_field
from prunekit.validate import check_choice, check_fraction, check_int, check_positive

GRANULARITIES = ("element", "filter", "channel")

# ---- pure functions -------------------------------------------------------------------------------


def keep_count(n: int, sparsity: float) -> int:
    """Entries (or filters) kept out of ``n`` at ``sparsity``: ``n - round(sparsity * n)``, at least 1.

    Example:
        >>> keep_count(10, 0.75), keep_count(4, 0.99)
        (2, 1)
    """
    return max(1, n - int(math.floor(sparsity * n + 0.5)))


def topk_mask(w, k: int):
    """Bool mask of the ``k`` largest-magnitude entries of ``w`` (ties: the earlier index wins)."""
    import torch

    flat = w.detach().abs().flatten().to(torch.float64)
    k = max(0, min(int(k), flat.numel()))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=w.device)
    if k:
        order = torch.sort(flat, descending=True, stable=True).indices
        keep[order[:k]] = True
    return keep.view(w.shape)


def project_topk(w, k: int):
    """Euclidean projection of ``w`` onto ``{Z : ||Z||_0 <= k}``: keep the ``k`` largest magnitudes (Z step)."""
    return w.masked_fill(~topk_mask(w, k), 0.0)


def slice_norms(w, dim: int = 0):
    """L2 norm of every slice of ``w`` along ``dim`` (``dim=0``: filters, ``dim=1``: input channels)."""
    moved = w.detach().movedim(dim, 0)
    return moved.reshape(moved.shape[0], -1).norm(dim=1)


def topk_slices(w, k: int, dim: int = 0):
    """Sorted indices of the ``k`` slices along ``dim`` with the largest L2 norm (ties: earlier index wins)."""
    import torch

    norms = slice_norms(w, dim).to(torch.float64)
    order = torch.sort(norms, descending=True, stable=True).indices
    return torch.sort(order[: max(0, min(int(k), norms.numel()))]).values


def slice_mask(w, kept, dim: int = 0):
    """Bool mask (shape of ``w``) keeping the slices ``kept`` along ``dim``."""
    import torch

    keep = torch.zeros(w.shape[dim], dtype=torch.bool, device=w.device)
    keep[kept] = True
    shape = [1] * w.dim()
    shape[dim] = w.shape[dim]
    return keep.view(shape).expand(w.shape).clone()


def project_slices(w, k: int, dim: int = 0):
    """Projection onto "at most ``k`` non-zero slices along ``dim``": keep the ``k`` of largest L2 norm."""
    return w.masked_fill(~slice_mask(w, topk_slices(w, k, dim), dim), 0.0)


def rho_schedule(iteration: int, rho0: float, factor: float = 1.0, every: int = 1,
                 rho_max: float = math.inf) -> float:
    """Penalty ``rho`` at ADMM iteration ``iteration`` (0-based).

    ``rho = min(rho_max, rho0 * factor ** (iteration // every))``.

    Raising ``rho`` progressively (Zhang et al. 2018; Ren et al., ADMM-NN,
    ASPLOS 2019) lets ``W`` first fit the data and then converge onto ``Z``.
    """
    if rho0 <= 0 or factor <= 0 or every < 1:
        raise ConfigError(f"rho schedule needs rho0 > 0, factor > 0, every >= 1 (got {rho0}, {factor}, {every})")
    return float(min(rho_max, rho0 * factor ** (iteration // every)))


def project(w, k: int, granularity: str):
    """The Z-step projection for ``granularity`` (``element``: k entries; ``filter``/``channel``: k slices)."""
    if granularity == "element":
        return project_topk(w, k)
    return project_slices(w, k, 0 if granularity == "filter" else 1)


def support_mask(w, k: int, granularity: str):
    """Bool mask of the support of :func:`project` (used for the hard prune)."""
    if granularity == "element":
        return topk_mask(w, k)
    dim = 0 if granularity == "filter" else 1
    return slice_mask(w, topk_slices(w, k, dim), dim)


# ---- the ADMM training callback -------------------------------------------------------------------


class ADMMCallback(Callback):
    """The W step's penalty gradient plus the Z and U updates, inside :class:`prunekit.train.Trainer`.

    After every backward pass ``rho * (W - Z + U)`` (the gradient of
    ``rho/2 ||W - Z + U||^2``) is added to each layer's gradient; every
    ``update_every`` epochs ``Z`` and ``U`` are updated and ``rho`` follows
    :func:`rho_schedule`. Each epoch's history record gets ``rho`` and the
    relative primal residual ``||W - Z|| / ||W||``.

    Args:
        keep: ``{param name: k}`` entries (element) or slices (filter/channel) to keep.
        granularity: ``"element"``, ``"filter"`` or ``"channel"``.
        rho, rho_factor, rho_every, rho_max: the :func:`rho_schedule`.
        update_every: epochs per ADMM iteration.
        groups: :class:`~prunekit.methods.admm_groups.ChannelGroup` list: project jointly
            over coupled layers (filter/channel granularity); ``keep`` is then ignored.
    """

    def __init__(self, keep: dict, granularity: str = "element", rho: float = 1e-3, rho_factor: float = 1.0,
                 rho_every: int = 1, rho_max: float = 1.0, update_every: int = 1, groups=None) -> None:
        check_choice("granularity", granularity, GRANULARITIES)
        rho_schedule(0, rho, rho_factor, rho_every, rho_max)  # validates
        self.groups = list(groups) if groups is not None else None
        if self.groups is not None:
            keep = {param: 0 for g in self.groups for param, *_ in g.penalised}
        self.keep, self.granularity = dict(keep), granularity
        self.rho0, self.rho_factor, self.rho_every, self.rho_max = rho, rho_factor, rho_every, rho_max
        self.update_every = update_every
        self.iteration = 0
        self.Z: dict = {}
        self.U: dict = {}
        self.log: list = []

    @property
    def rho(self) -> float:
        return rho_schedule(self.iteration, self.rho0, self.rho_factor, self.rho_every, self.rho_max)

    def _params(self, model) -> dict:
        params = dict(model.named_parameters())
        missing = [n for n in self.keep if n not in params]
        if missing:
            raise PrunekitError(f"ADMM: no parameter named {missing[0]!r} in the model")
        return {n: params[n] for n in self.keep}

    def _project(self, tensors: dict) -> dict:
        if self.groups is not None:
            from prunekit.methods.admm_groups import project_groups

            return project_groups(tensors, self.groups)
        return {n: project(t, self.keep[n], self.granularity) for n, t in tensors.items()}

    def on_train_begin(self, trainer) -> None:
        import torch

        self._p = self._params(trainer.model)
        if not self.Z:
            self.Z = self._project({n: p.detach() for n, p in self._p.items()})
            self.U = {n: torch.zeros_like(p.detach()) for n, p in self._p.items()}

    def on_after_backward(self, trainer) -> None:
        rho = self.rho
        for n, p in self._p.items():
            if p.grad is not None:
                p.grad.add_(p.detach() - self.Z[n] + self.U[n], alpha=rho)

    def residual(self) -> float:
        """Relative primal residual ``||W - Z|| / ||W||`` over all layers."""
        num = sum(float((p.detach() - self.Z[n]).pow(2).sum()) for n, p in self._p.items())
        den = sum(float(p.detach().pow(2).sum()) for p in self._p.values())
        return math.sqrt(num / den) if den > 0 else 0.0

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        if (epoch + 1) % self.update_every == 0:
            self.Z = self._project({n: p.detach() + self.U[n] for n, p in self._p.items()})
            for n, p in self._p.items():
                self.U[n] = self.U[n] + p.detach() - self.Z[n]
            rho_old = self.rho
            self.iteration += 1
            # U is the *scaled* dual (Lagrange multiplier / rho): when rho changes the multiplier stays, so U
            # is rescaled by rho_old / rho_new (Boyd et al., Distributed Optimization and Statistical Learning
            # via ADMM, 2011, Sec. 3.4.1). Without it a doubling rho doubles the dual's pull every iteration.
            if self.rho != rho_old:
                scale = rho_old / self.rho
                self.U = {n: u * scale for n, u in self.U.items()}
        metrics["rho"] = self.rho
        metrics["admm_residual"] = self.residual()
        self.log.append({"epoch": epoch, "iteration": self.iteration, "rho": metrics["rho"],
                         "residual": metrics["admm_residual"]})

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "Z": {k: v.cpu() for k, v in self.Z.items()},
                "U": {k: v.cpu() for k, v in self.U.items()}, "log": list(self.log)}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        dev = {n: p.device for n, p in self._p.items()} if getattr(self, "_p", None) else {}
        self.iteration = int(state.get("iteration", 0))
        self.Z = {k: v.to(dev.get(k, "cpu")) for k, v in state.get("Z", {}).items()}
        self.U = {k: v.to(dev.get(k, "cpu")) for k, v in state.get("U", {}).items()}
        self.log = list(state.get("log", []))


# ---- config and method ----------------------------------------------------------------------------

@dataclass
class ADMMTrain(FinetuneConfig):
    """The ADMM phase's training (W steps): 10 epochs of SGD at a constant 0.01, weight decay 1e-4, batch 128."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    weight_decay: float = 1e-4
    schedule: str = "constant"
    augment: bool = False
    checkpoint_every: int = 0


@dataclass
class ADMMConfig:
    """Hyper-parameters of :func:`admm_prune`.

    Attributes:
        sparsity: fraction of entries (element) or slices (filter/channel) removed per layer.
        layer_sparsity: per-layer overrides ``{param or module name: sparsity}`` (Zhang et
            al. give each layer its own rate); for filter/channel granularity the rate of
            the channel group the layer produces.
        granularity: ``"element"``, ``"filter"`` (the producing layers' output slices are
            penalised) or ``"channel"`` (the reading layers' input slices); both remove
            whole channels of the engine's coupling groups.
        layers: names to prune (None = every Conv/Linear weight; for filter/channel the
            groups these layers produce, None = every prunable group: the engine never
            prunes the model's outputs).
        rho, rho_factor, rho_every, rho_max: the penalty schedule (:func:`rho_schedule`, per ADMM iteration).
        update_every: epochs of W steps per ADMM iteration (Z/U update).
        admm: the ADMM phase's training (:class:`ADMMTrain`, a :class:`prunekit.train.FinetuneConfig`;
            its ``epochs`` is the ADMM phase length).
        finetune: the masked retraining after the hard prune (the weight-level fine-tuning
            defaults, 5 epochs).
    """

    RENAMED_KEYS: ClassVar[dict] = {"retrain": "finetune (e.g. finetune: {epochs: 5})"}

    sparsity: float = 0.9
    layer_sparsity: dict = field(default_factory=dict)
    granularity: str = "element"
    layers: Optional[list[str]] = None
    rho: float = 0.05
    rho_factor: float = 1.5
    rho_every: int = 1
    rho_max: float = 1.0
    update_every: int = 1
    admm: ADMMTrain = finetune_field(ADMMTrain)
    finetune: WeightFinetune = finetune_field(WeightFinetune)

    def __post_init__(self) -> None:
        check_fraction("sparsity", self.sparsity)
        for k, v in self.layer_sparsity.items():
            check_fraction(f"layer_sparsity[{k!r}]", v)
        check_choice("granularity", self.granularity, GRANULARITIES)
        for name in ("rho", "rho_factor", "rho_max"):
            v = getattr(self, name)
            check_positive(name, v)
        check_int("rho_every", self.rho_every)
        check_int("update_every", self.update_every)
        self.admm = as_finetune(self.admm, ADMMTrain, "admm")
        self.finetune = as_finetune(self.finetune, WeightFinetune, "finetune")


def layer_keep(model, cfg: ADMMConfig) -> dict:
    """``{param name: k}`` entries to keep per layer (element granularity).

    Filter/channel granularity keeps channels per coupling group instead
    (:func:`prunekit.methods.admm_groups.channel_groups`).
    """
    from prunekit.sparse import select_params

    if cfg.granularity != "element":
        raise PrunekitError("layer_keep is for element-wise ADMM; filter/channel ADMM keeps channels per coupling "
                            "group (prunekit.methods.admm_groups.channel_groups)")
    params = select_params(model, cfg.layers)
    overrides = {}
    for k, v in cfg.layer_sparsity.items():
        key = k if k in params else f"{k}.weight"
        if key not in params:
            raise ConfigError(f"layer_sparsity: {k!r} is not one of the pruned layers ({', '.join(params)})")
        overrides[key] = v
    return {n: keep_count(p.numel(), overrides.get(n, cfg.sparsity)) for n, p in params.items()}


@register_method("admm", ADMMConfig,
                 paper="Zhang et al., A Systematic DNN Weight Pruning Framework using ADMM, ECCV 2018")
def admm_prune(model, data, config: ADMMConfig | None = None, *, progress: bool | None = None) -> PruneResult:
    """ADMM-regularised training, hard pruning, then masked retraining of ``model`` (in place).

    Returns:
        :class:`~prunekit.methods._weight.PruneResult`; ``model`` is ``model``, masked.
        ``extra`` holds ``admm_log`` (rho and residual per epoch) and ``keep``. For
        filter/channel granularity also ``removed_filters`` / ``removed_channels``
        (``{group name: [channels]}``, a group named by its first producing layer),
        ``groups`` (id, name, size, kept, layers) and ``plan``: a
        :class:`prunekit.engine.PruningPlan` as a dict that removes exactly those
        channels; ``PruningPlan.from_dict(result.extra["plan"]).apply(result.model)``
        is the physically smaller model, equal to the masked one.
    """
    from prunekit.sparse import apply_masks, masks_sparsity

    cfg = config or ADMMConfig()
    at, rt = cfg.admm.resolve(progress=progress), cfg.finetune.resolve(progress=progress)
    structured = cfg.granularity != "element"
    if structured:
        from prunekit.graph import analyze
        from prunekit.methods.admm_groups import channel_groups

        example = data.train_x[:1].to(next(model.parameters()).device)
        analysis = analyze(model, example)
        groups = channel_groups(model, analysis, cfg.granularity, cfg.sparsity, cfg.layer_sparsity, cfg.layers)
        cb = ADMMCallback({}, cfg.granularity, cfg.rho, cfg.rho_factor, cfg.rho_every, cfg.rho_max,
                          cfg.update_every, groups=groups)
        keep = {g.name: g.keep for g in groups}
    else:
        keep = layer_keep(model, cfg)
        cb = ADMMCallback(keep, cfg.granularity, cfg.rho, cfg.rho_factor, cfg.rho_every, cfg.rho_max,
                          cfg.update_every)
    records = [{"stage": "dense", "sparsity": 0.0, **evaluate_test(model, data)}]
    if at.epochs > 0:
        train_with_masks(model, data, at, None, [cb], stage="admm", records=records)
    params = dict(model.named_parameters())
    extra: dict = {"admm_log": cb.log, "keep": keep}
    if structured:
        from prunekit.methods.admm_groups import group_keep, group_masks
        from prunekit.engine import plan_from_analysis

        kept = {g.gid: group_keep(params, g) for g in groups}
        masks = group_masks({n: p.shape for n, p in params.items()}, groups, kept)
        removed = {g.gid: sorted(set(range(g.size)) - set(kept[g.gid])) for g in groups}
        plan = plan_from_analysis(analysis, removed, param_names=list(params),
                                  info={"criterion": f"admm-{cfg.granularity}", "sparsity": cfg.sparsity})
        key = "removed_filters" if cfg.granularity == "filter" else "removed_channels"
        extra[key] = {g.name: removed[g.gid] for g in groups}
        extra["groups"] = [{"id": g.gid, "name": g.name, "size": g.size, "kept": len(kept[g.gid]),
                            "layers": sorted({p.rpartition(".")[0] for p, *_ in g.penalised})} for g in groups]
        extra["plan"] = plan.to_dict()
    else:
        masks = {n: support_mask(params[n].detach(), k, cfg.granularity) for n, k in keep.items()}
    apply_masks(model, masks)
    weight_masks = {n: m for n, m in masks.items() if m.dim() >= 2}
    records.append({"stage": "pruned", "sparsity": masks_sparsity(weight_masks), **evaluate_test(model, data)})
    if rt.epochs > 0:
        train_with_masks(model, data, rt, masks, stage="retrain", records=records)
        for r in records:
            if r["stage"] == "retrain":
                r["sparsity"] = masks_sparsity(weight_masks)
    final = {"sparsity": masks_sparsity(weight_masks), **evaluate_test(model, data)}
    return PruneResult(method="admm", model=model, masks=masks, config=cfg, records=records, final=final,
                       extra=extra)
