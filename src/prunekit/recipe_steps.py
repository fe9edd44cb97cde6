"""The built-in steps of YAML recipes (``prunekit run``); see :mod:`prunekit.recipe`.

Each step takes the shared :class:`~prunekit.recipe.RecipeState` and one config
dataclass, whose fields are exactly the keys the step accepts in YAML:

* ``train``: :class:`prunekit.train.TrainConfig`; ``finetune``: :class:`prunekit.train.FinetuneConfig`
  (the same keys; it keeps weight masks from an earlier ``sparsify`` step fixed). Both run
  through :func:`prunekit.train.run_finetune`, like every method's fine-tuning.
* ``eval``: :class:`EvalConfig`; ``profile``: :class:`ProfileStepConfig`.
* ``prune``: :class:`prunekit.engine.PlanOptions` (the engine's options: criterion,
  ratio, macs, params, tolerance, best_effort, global_ranking, round_to, steps, ...).
* ``structured``: :class:`StructuredStepConfig` (l1, slimming, lasso, thinet, fpgm, taylor, dcp, autocompress,
  dcff, scp, pai, random).
* ``dynamic``: :class:`prunekit.methods.dynamic.DynamicConfig` (FBS run-time gates; the model becomes the gated one).
* ``sparsify``: :class:`SparsifyStepConfig` (a weight-level method and its config).
* ``compress``: :class:`prunekit.compress.CompressConfig` (Deep Compression).
* ``binarize``: :class:`prunekit.binary.recipe.BinarizeStepConfig` (BWN / XNOR-Net).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from prunekit.engine.options import PlanOptions
from prunekit.recipe import register_step
from prunekit.train import FinetuneConfig, TrainConfig


@dataclass
class EvalConfig:
    """Options of the ``eval`` step."""

    batch_size: int = 512


@dataclass
class ProfileStepConfig:
    """Options of the ``profile`` step: batch sizes to time, and whether to time at all."""

    batch_sizes: tuple[int, ...] = (1, 32)
    latency: bool = True


def _train(state, cfg: TrainConfig, name: str) -> None:
    from prunekit.train import run_finetune

    callbacks = []
    if state.masks and name == "finetune":
        from prunekit.sparse import MaskCallback

        callbacks.append(MaskCallback(state.masks))
    index = sum(1 for r in state.records if r["step"] == name)
    trainer = run_finetune(state.model, state.data, cfg, callbacks=callbacks,
                           progress=None if state.extras.get("progress", True) else False,
                           out_dir=state.out_dir / f"{name}{index or ''}", overwrite=True)
    history, cfg = trainer.history, trainer.config
    last = history.last or {}
    state.record(name, epochs=cfg.epochs, test_top1=last.get("test_top1"), train_loss=last.get("train_loss"))


@register_step("train", TrainConfig, help="train the model (TrainConfig keys)")
def train_step(state, cfg: TrainConfig) -> None:
    """Train ``state.model`` on ``state.data``."""
    _train(state, cfg, "train")


@register_step("finetune", FinetuneConfig, help="fine-tune after pruning (FinetuneConfig keys; masks stay fixed)")
def finetune_step(state, cfg: FinetuneConfig) -> None:
    """Fine-tune ``state.model``; weight masks of an earlier sparsify step are kept."""
    _train(state, cfg, "finetune")


@register_step("eval", EvalConfig, help="evaluate on the test split")
def eval_step(state, cfg: EvalConfig) -> None:
    """Record test top-1/top-5/loss of ``state.model``."""
    from prunekit.train import evaluate

    m = evaluate(state.model, state.data.test_x, state.data.test_y, batch_size=cfg.batch_size)
    state.record("eval", top1=m["top1"], top5=m["top5"], loss=m["loss"], n=m["n"])


@register_step("profile", ProfileStepConfig, help="params, MACs and latency (later ones: against the first)")
def profile_step(state, cfg: ProfileStepConfig) -> None:
    """Profile ``state.model`` and write ``profile<N>.json`` into the run directory.

    The first profile step keeps a copy of the model; a later one times the current model
    interleaved with that copy (:func:`prunekit.measure.profile_many`) and records the paired
    latency ratio now/first with its interval (``latency_vs_profile0``; in report.md the
    sentence, or "not measurable"), so before/after latencies of a recipe are never two
    separate measurements.
    """
    import copy

    from prunekit.measure import paired_speedup, profile, profile_many

    shape = (state.data.in_channels, *state.data.image_size)
    first = state.extras.get("profile_baseline")
    index = sum(1 for r in state.records if r["step"] == "profile")
    vs_first = {}
    if first is None or not cfg.latency:
        rep = profile(state.model, shape, batch_sizes=cfg.batch_sizes, latency=cfg.latency)
    else:
        reps = profile_many({"first": first, "now": state.model}, shape, batch_sizes=cfg.batch_sizes)
        rep = reps["now"]
        vs_first = {bs: paired_speedup(reps["first"].latency[bs], r) for bs, r in rep.latency.items()}
    if first is None:
        state.extras["profile_baseline"] = copy.deepcopy(state.model)
    rep.save_json(state.out_dir / f"profile{index}.json")
    extra = {}
    if vs_first:
        extra = {**{f"latency_bs{bs}_vs_profile0": sp.describe() for bs, sp in vs_first.items()},
                 "latency_vs_profile0": {str(bs): sp.summary() for bs, sp in vs_first.items()}}
    state.record("profile", params=rep.params, macs=rep.macs.total,
                 **{f"latency_bs{bs}_ms": r.median_ms for bs, r in rep.latency.items()}, **extra)


@register_step("prune", PlanOptions, help="structural pruning with the engine (PlanOptions keys)")
def prune_step(state, cfg: PlanOptions) -> None:
    """Plan and apply structural pruning (in ``cfg.steps`` steps); writes ``plan<N>.json`` per step."""
    import torch

    from prunekit.engine import measure_cost, plan, step_options

    example = torch.zeros(1, state.data.in_channels, *state.data.image_size)
    before_macs, before_params = measure_cost(state.model, example, "macs"), measure_cost(state.model, example,
                                                                                           "params")
    target = cfg.target
    model = state.model
    index = sum(1 for r in state.records if r["step"] == "prune")
    for k in range(1, cfg.steps + 1):
        kept = 1.0
        if target is not None and cfg.steps > 1:
            base = before_macs if target[0] == "macs" else before_params
            kept = measure_cost(model, example, target[0]) / base
        p = plan(model, example, step_options(cfg, k, kept))
        model = p.apply(model)
        p.save(state.out_dir / f"plan{index}{'_' + str(k) if cfg.steps > 1 else ''}.json")
    state.model = model
    state.masks = None  # weight masks do not survive a change of shapes
    state.record("prune", criterion=cfg.criterion, macs_kept=measure_cost(model, example, "macs") / before_macs,
                 params_kept=measure_cost(model, example, "params") / before_params)


@dataclass
class SparsifyStepConfig:
    """Options of the ``sparsify`` step: a weight-level method and its own config.

    ``method`` is a name from :data:`prunekit.methods.METHODS` (magnitude, agp, lth,
    admm, snip, grasp, synflow); ``config`` holds that method's config keys (e.g. ``MagnitudeConfig``).
    """

    method: str = "magnitude"
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        from prunekit.config import from_dict
        from prunekit.methods import METHODS

        info = METHODS.get(self.method)  # unknown names raise, listing the known ones
        from_dict(info.config_cls, self.config, where=f"sparsify.config")  # checked now, not mid-run


@register_step("sparsify", SparsifyStepConfig, help="weight-level pruning with retraining (masks kept after)")
def sparsify_step(state, cfg: SparsifyStepConfig) -> None:
    """Run a weight-level method on ``state.model``; its masks stay in force for later steps.

    A method that returns a structural plan (filter/channel-wise ADMM) hands its channels
    to the engine instead: the plan is applied (the model gets physically smaller, no
    masks remain) and saved as ``sparsify_plan<N>.json``.
    """
    from prunekit.config import from_dict
    from prunekit.methods import METHODS

    info = METHODS.get(cfg.method)
    result = info.fn(state.model, state.data, from_dict(info.config_cls, cfg.config),
                     progress=state.extras.get("progress", True))
    final = dict(getattr(result, "final", {}) or {})
    extra = {}
    if "plan" in (result.extra or {}):
        from prunekit.engine import PruningPlan

        index = sum(1 for r in state.records if r["step"] == "sparsify")
        plan = PruningPlan.from_dict(result.extra["plan"])
        state.model = plan.apply(result.model)
        state.masks = None
        path = plan.save(state.out_dir / f"sparsify_plan{index}.json")
        extra = {"plan": path.name, "macs_kept": plan.info["macs_after"] / plan.info["macs_before"]}
    else:
        state.model = result.model
        state.masks = result.masks
    state.record("sparsify", method=cfg.method, sparsity=final.get("sparsity"), test_top1=final.get("test_top1"),
                 **extra)


@dataclass
class StructuredStepConfig:
    """Options of the ``structured`` step: a structured method and its own config.

    ``method`` is a name from :data:`prunekit.methods.structured.STRUCTURED_METHODS`
    (l1, slimming, lasso, thinet, fpgm, taylor, dcp, autocompress, dcff, scp, pai,
    random); ``config`` holds that method's
    config keys (macs, finetune: {epochs, lr, ...}, points_per_image, ...), see docs/methods.md.
    """

    method: str = "l1"
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        from prunekit.methods.structured import STRUCTURED_METHODS
        from prunekit.methods.structured.pipeline import coerce_config

        coerce_config(STRUCTURED_METHODS.get(self.method).config_cls, self.config)  # checked now, not mid-run


@register_step("structured", StructuredStepConfig,
               help="a structured method's pipeline (sparsity training, pruning, fine-tuning)")
def structured_step(state, cfg: StructuredStepConfig) -> None:
    """Run :func:`prunekit.methods.structured.run_structured`; its files go to ``<out>/structured<N>/``."""
    from prunekit.methods.structured import run_structured

    index = sum(1 for r in state.records if r["step"] == "structured")
    result = run_structured(state.model, state.data, cfg.method, dict(cfg.config),
                            out_dir=state.out_dir / f"structured{index or ''}",
                            progress=state.extras.get("progress", True), overwrite=True)
    state.model = result.model
    state.masks = None  # weight masks do not survive a change of shapes
    rep = result.report
    state.record("structured", method=cfg.method, macs_kept=rep.get("macs", {}).get("kept"),
                 top1=(rep.get("after_finetune") or {}).get("top1"))


def _register_dynamic() -> None:
    from prunekit.methods.dynamic import DynamicConfig

    @register_step("dynamic", DynamicConfig,
                   help="dynamic channel pruning: FBS gates trained with the network (DynamicConfig keys)")
    def dynamic_step(state, cfg) -> None:
        """Run :func:`prunekit.methods.dynamic.run_dynamic`; its files go to ``<out>/dynamic<N>/``."""
        from prunekit.methods.dynamic import run_dynamic

        index = sum(1 for r in state.records if r["step"] == "dynamic")
        result = run_dynamic(state.model, state.data, cfg, out_dir=state.out_dir / f"dynamic{index or ''}",
                             progress=state.extras.get("progress", True), overwrite=True)
        state.model = result.model
        state.masks = None
        rep = result.report
        state.record("dynamic", keep=cfg.keep, macs_kept=rep["dynamic"]["macs_kept"], top1=rep["dynamic"]["top1"],
                     static_top1=(rep.get("static") or {}).get("top1"))


_register_dynamic()


def _register_compress() -> None:
    from prunekit.compress import CompressConfig
    from prunekit.compress.pipeline import recipe_step

    register_step("compress", CompressConfig, help="Deep Compression into model.pkz (CompressConfig keys)")(
        lambda state, cfg: recipe_step(state, cfg))


def _register_binarize() -> None:
    from prunekit.binary.recipe import BinarizeStepConfig, binarize_step

    register_step("binarize", BinarizeStepConfig, help="BWN/XNOR-Net: binarize, train, write model.pkb")(
        binarize_step)


_register_compress()
_register_binarize()
