"""Pruning at initialisation, weight level: SNIP, GraSP and SynFlow (``sparsify --method snip|grasp|synflow``).

The setting of the survey's "pruning at initialisation" (PaI) family: the network is
re-initialised (:func:`prunekit.train.reinitialize`), scored *before any training*,
pruned globally to ``sparsity`` by one of

* SNIP, connection sensitivity ``|g * theta|`` on a few batches (Lee, Ajanthan & Torr,
  "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019);
* GraSP, gradient-flow preservation ``-theta * Hg`` (Wang, Zhang & Grosse, "Picking
  Winning Tickets Before Training by Preserving Gradient Flow", ICLR 2020);
* SynFlow, data-free synaptic flow, iterated over ``rounds`` rounds (Tanaka, Kunin,
  Yamins & Ganguli, "Pruning neural networks without any data by iteratively conserving
  synaptic flow", NeurIPS 2020),

and then trained with the masks kept (:class:`~prunekit.sparse.MaskCallback`) for
``finetune.epochs`` epochs. ``score_given_weights=True`` scores the checkpoint's own
(trained) weights instead and trains on from them. The scores are the pure functions of
:mod:`prunekit.saliency`.

Example:
    >>> from prunekit.methods import METHODS
    >>> METHODS.get("synflow").config_cls.__name__
    'SynflowConfig'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from prunekit.methods import register_method
from prunekit.methods._weight import PruneResult, WeightFinetune, evaluate_test, train_with_masks
from prunekit.train import as_finetune, finetune_field
from prunekit.validate import check_fraction, check_int, check_number


@dataclass
class PaIConfig:
    """Options shared by :func:`snip_prune`, :func:`grasp_prune` and :func:`synflow_prune`.

    Attributes:
        sparsity: fraction of the selected weights removed, ranked globally, in [0, 1).
        score_given_weights: score (and then train on from) the checkpoint's weights instead of
            a fresh initialisation (the PaI setting, default False).
        batches: calibration batches of ``finetune.batch_size`` training images (seeded) for the
            data-driven scores (snip, grasp; unused by synflow).
        layers: parameter or module names to prune; None = every Conv/Linear weight.
        seed: seeds the re-initialisation, the calibration batches and (unless ``finetune.seed``
            is set) training.
        finetune: the training after pruning (:class:`~prunekit.methods._weight.WeightFinetune`,
            a :class:`prunekit.train.FinetuneConfig`).
    """

    sparsity: float = 0.9
    score_given_weights: bool = False
    batches: int = 1
    layers: Optional[list[str]] = None
    seed: int = 0
    finetune: WeightFinetune = finetune_field(WeightFinetune)

    def __post_init__(self) -> None:
        check_fraction("sparsity", self.sparsity)
        check_int("batches", self.batches)
        self.finetune = as_finetune(self.finetune, WeightFinetune, "finetune")


@dataclass
class SnipConfig(PaIConfig):
    """Options of SNIP (Lee et al., ICLR 2019): those of :class:`PaIConfig`."""


@dataclass
class GraspConfig(PaIConfig):
    """Options of GraSP (Wang et al., ICLR 2020).

    Attributes:
        temperature: the logits are divided by it before the loss (the authors' code: 200).
    """

    temperature: float = 200.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("temperature", self.temperature, minimum=0.0, low_open=True)


@dataclass
class SynflowConfig(PaIConfig):
    """Options of SynFlow (Tanaka et al., NeurIPS 2020).

    Attributes:
        rounds: prune-rescore rounds on the exponential schedule (the paper uses 100).
    """

    rounds: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("rounds", self.rounds)


def pai_masks(model, data, method: str, config: PaIConfig) -> dict:
    """The masks ``method`` (snip, grasp, synflow) gives ``model`` at ``config.sparsity``; ``model`` is unchanged."""
    from prunekit.methods.structured._common import calib_batch
    from prunekit.saliency import grasp_scores, score_masks, snip_scores, synflow_masks
    from prunekit.sparse import select_params

    names = list(select_params(model, config.layers))
    if method == "synflow":
        return synflow_masks(model, data.train_x[:1], config.sparsity, config.rounds, names)
    bs = config.finetune.batch_size
    xs, ys = calib_batch(data, bs * config.batches, config.seed + 1)
    batches = [(xs[i:i + bs], ys[i:i + bs]) for i in range(0, len(xs), bs)]
    if method == "snip":
        scores = snip_scores(model, batches, names)
    else:
        scores = grasp_scores(model, batches, names, temperature=config.temperature)
    return score_masks(scores, config.sparsity)


def pai_prune(model, data, method: str, config: PaIConfig, progress: bool | None = None) -> PruneResult:
    """Re-initialise (unless ``score_given_weights``), prune with ``method``'s masks, train with the masks kept."""
    from prunekit.sparse import apply_masks, masks_sparsity
    from prunekit.train import reinitialize

    cfg = config
    net = model if cfg.score_given_weights else reinitialize(model, seed=cfg.seed)
    records = [{"stage": "init" if not cfg.score_given_weights else "dense", "sparsity": 0.0,
                **evaluate_test(net, data)}]
    masks = pai_masks(net, data, method, cfg)
    apply_masks(net, masks)
    records.append({"stage": "pruned", "sparsity": masks_sparsity(masks), **evaluate_test(net, data)})
    ft = cfg.finetune
    show = ft.progress if progress is None else progress
    if ft.epochs > 0:
        train_with_masks(net, data, ft, masks, progress=show, stage="train", records=records, seed=cfg.seed)
    final = {"sparsity": masks_sparsity(masks), **evaluate_test(net, data)}
    return PruneResult(method=method, model=net, masks=masks, config=cfg, records=records, final=final,
                       extra={"score_given_weights": cfg.score_given_weights})


@register_method("snip", SnipConfig,
                 paper="Lee, Ajanthan & Torr, SNIP: Single-shot Network Pruning based on Connection Sensitivity, "
                       "ICLR 2019")
def snip_prune(model, data, config: SnipConfig | None = None, *, progress: bool | None = None) -> PruneResult:
    """SNIP at initialisation, then training with the masks kept (see the module docstring)."""
    return pai_prune(model, data, "snip", config or SnipConfig(), progress)


@register_method("grasp", GraspConfig,
                 paper="Wang, Zhang & Grosse, Picking Winning Tickets Before Training by Preserving Gradient Flow, "
                       "ICLR 2020")
def grasp_prune(model, data, config: GraspConfig | None = None, *, progress: bool | None = None) -> PruneResult:
    """GraSP at initialisation, then training with the masks kept (see the module docstring)."""
    return pai_prune(model, data, "grasp", config or GraspConfig(), progress)


@register_method("synflow", SynflowConfig,
                 paper="Tanaka, Kunin, Yamins & Ganguli, Pruning neural networks without any data by iteratively "
                       "conserving synaptic flow, NeurIPS 2020")
def synflow_prune(model, data, config: SynflowConfig | None = None, *, progress: bool | None = None) -> PruneResult:
    """Iterative SynFlow at initialisation (data-free), then training with the masks kept."""
    return pai_prune(model, data, "synflow", config or SynflowConfig(), progress)
