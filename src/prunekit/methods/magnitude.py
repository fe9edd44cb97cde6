"""Magnitude pruning with retraining (Han et al., NeurIPS 2015), one-shot or iterative.

Han et al., *Learning both Weights and Connections for Efficient Neural
Networks* (NeurIPS 2015): train, remove the weights of smallest magnitude,
retrain the survivors; repeating prune+retrain in several rounds ("iterative")
reaches higher sparsity than one cut. The threshold can be

* a sparsity (``criterion="magnitude"``): prune that fraction, per layer
  (``scope="layer"``) or ranked across all layers (``scope="global"``);
* Deep Compression's sensitivity rule (``criterion="std"``, Han et al. ICLR
  2016): prune ``|w| <= quality * std(layer)``, each layer with its own
  threshold. Give ``quality`` directly, or leave it ``None`` to have the one
  quality that reaches ``sparsity`` overall found by bisection.

The pruning unit (``granularity``) can be coarser than one weight: whole
kernels (Mao et al., *Exploring the Granularity of Sparsity in CNNs*, CVPR
Workshops 2017), one of a few kernel patterns (Niu et al., *PatDNN*, ASPLOS
2020) or N:M groups such as Ampere's 2:4 (Zhou et al., *Learning N:M
Fine-grained Structured Sparse Neural Networks From Scratch*, ICLR 2021); see
:mod:`prunekit.sparse.granularity`.

Iterative pruning over ``rounds`` rounds follows the geometric schedule of
:func:`prunekit.sparse.iterative_schedule` (each round prunes the same
fraction of the survivors), and retrains ``finetune.epochs`` epochs per round.

Example:
    >>> from prunekit.methods import METHODS
    >>> cfg = MagnitudeConfig(sparsity=0.9, schedule="iterative", rounds=3)
    >>> result = magnitude_prune(model, data, cfg)          # doctest: +SKIP
    >>> result.final["sparsity"]                            # doctest: +SKIP
    0.9
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from prunekit.methods import register_method
from prunekit.methods._weight import PruneResult, WeightFinetune, evaluate_test, train_with_masks
from prunekit.train import as_finetune, finetune_field
from prunekit.utils.progress import progress_bar
from prunekit.validate import check_choice, check_fraction, check_int


@dataclass
class MagnitudeConfig:
    """Hyper-parameters of :func:`magnitude_prune`.

    Attributes:
        sparsity: final fraction of the selected weights to remove, in [0, 1).
        scope: ``"layer"`` (every layer at ``sparsity``) or ``"global"`` (one ranking).
        criterion: ``"magnitude"`` (fraction) or ``"std"`` (quality x layer std, Deep Compression).
        quality: the std rule's quality parameter (a number or ``{layer: q}``); None
            searches the single quality reaching ``sparsity``. Ignored for ``"magnitude"``.
        schedule: ``"oneshot"`` (prune once, retrain) or ``"iterative"`` (``rounds`` x prune+retrain).
        rounds: number of prune+retrain rounds of the iterative schedule (1 for one-shot).
        layers: parameter or module names to prune; None = every Conv/Linear weight.
        granularity: the pruning unit: ``"element"`` (single weights), ``"kernel"`` (whole k x k
            kernels of a convolution, by L2 norm; a Linear weight has 1x1 kernels), ``"pattern"``
            (every kernel keeps one of ``patterns`` shapes, PatDNN) or ``"nm"`` (N:M groups along the
            input dimension). Anything but ``"element"`` needs ``scope="layer"`` and
            ``criterion="magnitude"``; ``"nm"`` prunes ``1 - N/M`` (``sparsity`` is not used) in one shot.
        nm: ``"N:M"`` of ``granularity="nm"`` (default ``"2:4"``).
        patterns: size of the pattern library of ``granularity="pattern"`` (PatDNN uses 6-12).
        finetune: the retraining of every round (:class:`~prunekit.methods._weight.WeightFinetune`,
            a :class:`prunekit.train.FinetuneConfig`; epochs are per round). Unset keys take the
            fine-tuning defaults ``epochs=5, lr=0.01, momentum=0.9, weight_decay=1e-4, cosine,
            no augmentation``.
    """

    sparsity: float = 0.9
    scope: str = "layer"
    criterion: str = "magnitude"
    quality: Optional[Union[float, dict]] = None
    schedule: str = "oneshot"
    rounds: int = 1
    layers: Optional[list[str]] = None
    granularity: str = "element"
    nm: str = "2:4"
    patterns: int = 8
    finetune: WeightFinetune = finetune_field(WeightFinetune)

    def __post_init__(self) -> None:
        check_fraction("sparsity", self.sparsity)
        check_choice("scope", self.scope, ("layer", "global"))
        check_choice("criterion", self.criterion, ("magnitude", "std"))
        check_choice("schedule", self.schedule, ("oneshot", "iterative"))
        check_int("rounds", self.rounds)
        if self.schedule == "oneshot" and self.rounds != 1:
            from prunekit.errors import ConfigError

            raise ConfigError(f"rounds must be 1 for schedule 'oneshot' (got {self.rounds}); "
                              "use schedule 'iterative'")
        self._check_granularity()
        self.finetune = as_finetune(self.finetune, WeightFinetune, "finetune")  # checked now, not after round 1

    def _check_granularity(self) -> None:
        from prunekit.errors import ConfigError, PrunekitError
        from prunekit.sparse.granularity import GRANULARITIES, parse_nm

        check_choice("granularity", self.granularity, GRANULARITIES)
        check_int("patterns", self.patterns)
        try:
            parse_nm(self.nm)
        except PrunekitError as e:
            raise ConfigError(f"nm: {e}") from None
        if self.granularity == "element":
            return
        if self.scope != "layer" or self.criterion != "magnitude":
            raise ConfigError(f"granularity {self.granularity!r} needs scope 'layer' and criterion 'magnitude' "
                              f"(got scope {self.scope!r}, criterion {self.criterion!r})")
        if self.granularity == "nm" and self.rounds != 1:
            raise ConfigError("granularity 'nm' prunes N of every M weights in one shot: rounds must be 1")

    def nm_sparsity(self) -> float:
        """The sparsity of ``nm`` (``1 - N/M``)."""
        from prunekit.sparse.granularity import parse_nm

        n, m = parse_nm(self.nm)
        return 1.0 - n / m


def round_masks(model, cfg: MagnitudeConfig, round_index: int, existing=None) -> dict:
    """Masks after round ``round_index`` (0-based) of ``cfg``'s schedule, from the current weights.

    Pure with respect to the model (reads weights only). With ``criterion="std"``
    and an explicit ``quality``, round ``i`` of ``n`` uses ``quality * (i+1)/n``
    on the surviving weights, so the last round applies the full quality.
    """
    from prunekit.sparse import (
        fraction_for_target, iterative_schedule, magnitude_masks, masks_sparsity, quality_for_sparsity,
        std_threshold_masks,
    )

    target = iterative_schedule(cfg.sparsity, cfg.rounds)[round_index] if cfg.sparsity > 0 else 0.0
    if cfg.granularity != "element":
        from prunekit.sparse.granularity import granular_masks

        # every round recomputes the unit ranking at the round's target; earlier cuts stay cut
        return granular_masks(model, target, cfg.granularity, nm=cfg.nm, num_patterns=cfg.patterns,
                              layers=cfg.layers, existing=existing)
    if cfg.criterion == "magnitude":
        current = masks_sparsity(existing) if existing else 0.0
        if cfg.scope == "layer" and existing:
            # Per layer: each layer goes from its own current sparsity to the target.
            from prunekit.sparse import select_params

            params = select_params(model, cfg.layers)
            fractions = {}
            for name in params:
                m = existing.get(name)
                cur = 0.0 if m is None else 1.0 - int(m.sum()) / m.numel()
                fractions[name] = fraction_for_target(min(cur, target), target)
            return magnitude_masks(model, fractions, scope="layer", layers=cfg.layers, existing=existing)
        p = fraction_for_target(min(current, target), target)
        return magnitude_masks(model, p, scope=cfg.scope, layers=cfg.layers, existing=existing)
    if cfg.quality is None:
        q = quality_for_sparsity(model, target, layers=cfg.layers, existing=existing)
        return std_threshold_masks(model, q, layers=cfg.layers, existing=existing)
    frac = (round_index + 1) / cfg.rounds
    quality = ({k: v * frac for k, v in cfg.quality.items()} if isinstance(cfg.quality, dict)
               else cfg.quality * frac)
    return std_threshold_masks(model, quality, layers=cfg.layers, existing=existing)


@register_method("magnitude", MagnitudeConfig,
                 paper="Han et al., Learning both Weights and Connections for Efficient Neural Networks, NeurIPS 2015")
def magnitude_prune(model, data, config: MagnitudeConfig | None = None, *, progress: bool | None = None,
                    masks: dict | None = None) -> PruneResult:
    """Prune ``model`` (in place) by weight magnitude and retrain it on ``data``.

    Args:
        model: a trained model (its weights decide what is pruned).
        data: a :class:`prunekit.data.DatasetSplits`.
        config: :class:`MagnitudeConfig` (defaults when None).
        progress: force progress bars on/off (default: the fine-tuning config's ``progress``).
        masks: masks already in force (e.g. from a previous run); they are kept.

    Returns:
        :class:`~prunekit.methods._weight.PruneResult` with the accuracy after
        pruning (``stage="pruned"``, before retraining) and after each retraining epoch.
    """
    from prunekit.sparse import apply_masks, masks_sparsity

    cfg = config or MagnitudeConfig()
    ft = cfg.finetune
    show = ft.progress if progress is None else progress
    records = [{"stage": "dense", "round": 0, "sparsity": masks_sparsity(masks) if masks else 0.0,
                **evaluate_test(model, data)}]
    current = dict(masks) if masks else None
    for r in progress_bar(range(cfg.rounds), desc="magnitude rounds", enabled=show and cfg.rounds > 1):
        current = round_masks(model, cfg, r, existing=current)
        apply_masks(model, current)
        records.append({"stage": "pruned", "round": r + 1, "sparsity": masks_sparsity(current),
                        **evaluate_test(model, data)})
        if ft.epochs > 0:
            train_with_masks(model, data, ft, current, progress=show, stage="finetune",
                             records=records, extra={"round": r + 1})
    final = {"sparsity": masks_sparsity(current), **evaluate_test(model, data)}
    return PruneResult(method="magnitude", model=model, masks=current, config=cfg, records=records, final=final)
