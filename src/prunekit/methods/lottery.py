"""The Lottery Ticket procedure (Frankle & Carbin, ICLR 2019), with late rewinding and the reinit control.

Frankle & Carbin, *The Lottery Ticket Hypothesis: Finding Sparse, Trainable
Neural Networks* (ICLR 2019), iterative magnitude pruning with resetting:

1. start from the initial weights ``theta_0`` and train;
2. prune ``p``% of the *surviving* weights (per layer, or globally), the
   output layer optionally at a lower rate (the paper halves it for LeNet);
3. reset the survivors to their values in ``theta_0`` -- or, with
   ``rewind_step = k > 0``, to their values after ``k`` training steps
   ("late rewinding", Frankle et al., *Linear Mode Connectivity and the
   Lottery Ticket Hypothesis*, ICML 2020) -- and retrain under the mask;
4. repeat for ``rounds`` rounds.

The control of the paper trains the same masks from a fresh random
initialisation (``reinit_control``). Each round records its sparsity, the
early-stopping iteration (the step of minimum validation loss, on a
validation split carved from the training data as in the paper), and the test
accuracy there and at the end. Validation is measured once per epoch, so the
early-stopping iteration has one-epoch resolution.

Example:
    >>> cfg = LotteryConfig(rounds=3, prune_fraction=0.2, finetune={"epochs": 5})
    >>> result = lottery_ticket(model, data, cfg)           # doctest: +SKIP
    >>> [r["sparsity"] for r in result.rounds]              # doctest: +SKIP
    [0.0, 0.2, 0.36, 0.488]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from prunekit.errors import ConfigError
from prunekit.methods import register_method
from prunekit.methods._weight import PruneResult
from prunekit.train import Callback, FinetuneConfig, as_finetune, finetune_field, reinitialize
from prunekit.utils.progress import progress_bar
from prunekit.validate import check_choice, check_fraction, check_int


@dataclass
class LotteryFinetune(FinetuneConfig):
    """The training of every Lottery Ticket round: Frankle & Carbin train LeNet with Adam at 1.2e-3,
    batch 60, no weight decay, constant rate (10 epochs here)."""

    epochs: int = 10
    batch_size: int = 60
    optimizer: str = "adam"
    lr: float = 1.2e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    augment: bool = False
    checkpoint_every: int = 0


@dataclass
class LotteryConfig:
    """Hyper-parameters of :func:`lottery_ticket`.

    Attributes:
        rounds: pruning rounds after the dense training (N).
        prune_fraction: fraction ``p`` of the surviving weights pruned per round.
        target_sparsity: if set, ``p = 1 - (1 - target) ** (1 / rounds)`` so the last
            round reaches it (overrides ``prune_fraction``).
        output_fraction: per-round fraction of the output layer (the paper uses ``p/2``
            for LeNet's last layer); None prunes it like the others.
        scope: ``"layer"`` (p of every layer) or ``"global"`` (p of all layers together).
        rewind_step: 0 resets survivors to the initial weights; ``k > 0`` to their
            values after ``k`` optimizer steps of the first training (late rewinding).
        reinit_control: also train every round's mask from a fresh random initialisation
            (:func:`prunekit.train.reinitialize`, the from-scratch rule of every family).
        val_fraction: share of the training set held out for the early-stopping criterion.
        seed: seed of the validation split, of the control's re-initialisations and (unless
            ``finetune.seed`` is set) of the training.
        layers: names to prune (None = every Conv/Linear weight).
        finetune: the training of every round (:class:`LotteryFinetune`, a
            :class:`prunekit.train.FinetuneConfig`; defaults: the paper's LeNet setting,
            Adam 1.2e-3, batch 60, 10 epochs here).
    """

    RENAMED_KEYS: ClassVar[dict] = {"train": "finetune (e.g. finetune: {epochs: 5})"}

    rounds: int = 5
    prune_fraction: float = 0.2
    target_sparsity: Optional[float] = None
    output_fraction: Optional[float] = None
    scope: str = "layer"
    rewind_step: int = 0
    reinit_control: bool = True
    val_fraction: float = 0.1
    seed: int = 0
    layers: Optional[list[str]] = None
    finetune: LotteryFinetune = finetune_field(LotteryFinetune)

    def __post_init__(self) -> None:
        check_int("rounds", self.rounds, minimum=0)
        check_fraction("prune_fraction", self.prune_fraction)
        if self.target_sparsity is not None:
            check_fraction("target_sparsity", self.target_sparsity)
        if self.output_fraction is not None:
            check_fraction("output_fraction", self.output_fraction)
        check_choice("scope", self.scope, ("layer", "global"))
        check_int("rewind_step", self.rewind_step, minimum=0)
        check_fraction("val_fraction", self.val_fraction)
        if self.val_fraction <= 0:
            raise ConfigError("val_fraction must be > 0: the early-stopping iteration needs a validation split")
        self.finetune = as_finetune(self.finetune, LotteryFinetune, "finetune")

    def fraction(self) -> float:
        """The per-round fraction ``p`` of surviving weights to prune."""
        if self.target_sparsity is not None and self.rounds > 0:
            return 1.0 - (1.0 - self.target_sparsity) ** (1.0 / self.rounds)
        return self.prune_fraction


@dataclass
class LotteryResult(PruneResult):
    """:class:`~prunekit.methods._weight.PruneResult` plus the per-round records.

    Attributes:
        rounds: one dict per round (round 0 = dense): ``round``, ``sparsity``,
            ``early_stop_step``, ``early_stop_epoch``, ``val_loss``, ``test_top1_at_early_stop``,
            ``test_top1`` (after the last epoch).
        control: the same records for the random re-initialisation control (rounds >= 1).
    """

    rounds: list = field(default_factory=list)
    control: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "rounds": [dict(r) for r in self.rounds],
                "control": [dict(r) for r in self.control]}


# ---- pure-ish helpers -----------------------------------------------------------------------------


def prune_round(model, masks, cfg: LotteryConfig) -> dict:
    """Masks after one more round: ``p`` of the survivors pruned (the output layer at ``output_fraction``)."""
    from prunekit.sparse import magnitude_masks, select_params

    p = cfg.fraction()
    names = list(select_params(model, cfg.layers))
    if cfg.output_fraction is None or len(names) < 2:
        return magnitude_masks(model, p, scope=cfg.scope, layers=names, existing=masks)
    out_name, rest = names[-1], names[:-1]
    new = magnitude_masks(model, p, scope=cfg.scope, layers=rest, existing=masks)
    new.update(magnitude_masks(model, cfg.output_fraction, layers=[out_name], existing=masks))
    return new


def snapshot(model) -> dict:
    """A detached deep copy of ``model.state_dict()`` (parameters and buffers)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def rewind_weights(model, state: dict, masks: dict | None):
    """Reset ``model`` to ``state`` (weights and buffers; None keeps them), then zero what ``masks`` prune.

    Returns ``model``.

    After this, every surviving weight equals its value in ``state`` exactly.
    """
    from prunekit.sparse import apply_masks

    if state is not None:
        model.load_state_dict(state)
    if masks:
        apply_masks(model, masks)
    return model


class _Recorder(Callback):
    """Snapshot the weights at ``rewind_step`` and add the real test accuracy to every epoch record."""

    def __init__(self, test_x, test_y, capture_step: int | None = None) -> None:
        self.test_x, self.test_y = test_x, test_y
        self.capture_step = capture_step
        self.captured: dict | None = None

    def on_train_begin(self, trainer) -> None:
        if self.capture_step == 0:
            self.captured = snapshot(trainer.model)

    def on_step_end(self, trainer, step: int) -> None:
        if self.capture_step is not None and step == self.capture_step:
            self.captured = snapshot(trainer.model)

    def on_epoch_end(self, trainer, epoch: int, metrics: dict) -> None:
        from prunekit.train import evaluate

        metrics["heldout_test_top1"] = evaluate(trainer.model, self.test_x, self.test_y)["top1"]


def _train_round(model, tune, test, tc, masks, capture_step, stage, rnd, records):
    """Train one round; append per-epoch curve rows; return (round summary, captured state)."""
    from prunekit.sparse import MaskCallback, masks_sparsity
    from prunekit.train import run_finetune

    rec = _Recorder(test.test_x, test.test_y, capture_step)
    cbs = ([MaskCallback(masks)] if masks else []) + [rec]
    trainer = run_finetune(model, tune, tc, callbacks=cbs)
    sparsity = masks_sparsity(masks) if masks else 0.0
    spe = trainer.steps_per_epoch
    for row in trainer.history:
        records.append({"stage": stage, "round": rnd, "epoch": row["epoch"], "step": (row["epoch"] + 1) * spe,
                        "sparsity": sparsity, "val_loss": row["test_loss"], "val_top1": row["test_top1"],
                        "test_top1": row["heldout_test_top1"]})
    best = trainer.history.best("test_loss", mode="min")  # minimum validation loss
    last = trainer.history.last
    summary = {"round": rnd, "sparsity": sparsity, "early_stop_epoch": best["epoch"],
               "early_stop_step": (best["epoch"] + 1) * spe, "val_loss": best["test_loss"],
               "val_top1": best["test_top1"], "test_top1_at_early_stop": best["heldout_test_top1"],
               "test_top1": last["heldout_test_top1"]}
    return summary, rec.captured


@register_method("lth", LotteryConfig,
                 paper="Frankle & Carbin, The Lottery Ticket Hypothesis, ICLR 2019")
def lottery_ticket(model, data, config: LotteryConfig | None = None, *, progress: bool | None = None) -> LotteryResult:
    """Find a winning ticket of ``model`` on ``data`` by iterative pruning with rewinding (in place).

    ``model``'s current weights are ``theta_0``, the initialisation the survivors
    are reset to: pass a freshly initialised model, not a trained one.

    Returns:
        :class:`LotteryResult`; ``model``/``masks`` are the last round's trained ticket.

    Raises:
        ConfigError: ``rewind_step`` lies beyond the first training run.
    """
    from prunekit.sparse import masks_sparsity

    cfg = config or LotteryConfig()
    tc = cfg.finetune.resolve(seed=cfg.seed, progress=progress)
    tune = data.holdout(cfg.val_fraction, seed=cfg.seed)
    theta0 = snapshot(model)
    records: list = []
    rounds: list = []
    control: list = []

    summary, captured = _train_round(model, tune, data, tc, None, cfg.rewind_step, "ticket", 0, records)
    if captured is None:
        raise ConfigError(f"rewind_step {cfg.rewind_step} is beyond the {records[-1]['step']} steps of "
                          "the first training run; lower it or train longer")
    rewind_state = theta0 if cfg.rewind_step == 0 else captured
    rounds.append(summary)
    masks = None
    for r in progress_bar(range(1, cfg.rounds + 1), desc="lottery rounds", enabled=tc.progress):
        masks = prune_round(model, masks, cfg)
        rewind_weights(model, rewind_state, masks)
        summary, _ = _train_round(model, tune, data, tc, masks, None, "ticket", r, records)
        rounds.append(summary)
        if cfg.reinit_control:
            ctrl = rewind_weights(reinitialize(model, seed=cfg.seed + 1000 + r), None, masks)
            summary, _ = _train_round(ctrl, tune, data, tc, masks, None, "reinit", r, records)
            control.append(summary)
    last = rounds[-1]
    final = {"sparsity": masks_sparsity(masks) if masks else 0.0, "test_top1": last["test_top1"],
             "test_top1_at_early_stop": last["test_top1_at_early_stop"]}
    if masks is None:
        from prunekit.sparse import magnitude_masks

        masks = magnitude_masks(model, 0.0, layers=cfg.layers)
    return LotteryResult(method="lth", model=model, masks=masks, config=cfg, records=records, final=final,
                         rounds=rounds, control=control,
                         extra={"rewind_step": cfg.rewind_step, "prune_fraction": cfg.fraction()})
