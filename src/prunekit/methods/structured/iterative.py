"""Iterative recipes: prune a little, fine-tune, repeat, until a MACs target.

Used with the criteria ``fpgm`` (He, Liu, Wang, Hu & Yang, "Filter Pruning via
Geometric Median", CVPR 2019) and ``taylor`` (Molchanov, Mallya, Tyree, Frosio & Kautz,
"Importance Estimation for Neural Network Pruning", CVPR 2019). Step ``k`` of ``steps``
reaches ``1 - (1 - macs) * k / steps`` of the original MACs; each step is one engine
plan (recorded in the model's spec) followed by ``epochs_per_step`` epochs of training.
"""
from __future__ import annotations

from dataclasses import dataclass

from prunekit.errors import ConfigError
from prunekit.methods.structured._common import CommonConfig, calib_batch, example_input
from prunekit.validate import check_int


@dataclass
class IterativeConfig(CommonConfig):
    """Options of the iterative recipes.

    Attributes:
        steps: number of prune/fine-tune rounds.
        epochs_per_step: fine-tuning epochs between rounds (not after the last one; the
            pipeline's ``finetune.epochs`` follow it), with the ``finetune`` settings.
        global_ranking: rank normalised scores across groups (else every group alike).
        taylor_batches: calibration batches of ``finetune.batch_size`` for the Taylor gradients.
    """

    steps: int = 4
    epochs_per_step: int = 1
    global_ranking: bool = False
    taylor_batches: int = 4

    def check(self) -> None:
        super().check()
        check_int("config key 'steps'", self.steps)
        check_int("config key 'epochs_per_step'", self.epochs_per_step, minimum=0)
        check_int("config key 'taylor_batches'", self.taylor_batches)


def step_targets(macs: float, steps: int) -> list[float]:
    """MACs fraction of the *original* model reached after each step (the engine's :func:`step_options`).

    Example:
        >>> step_targets(0.5, 2)
        [0.75, 0.5]
    """
    from prunekit.engine import PlanOptions, step_options

    opts = PlanOptions(macs=macs, steps=steps)
    return [step_options(opts, k).macs for k in range(1, steps + 1)]


def iterative_prune(model, data, criterion: str, config: IterativeConfig | None = None, progress: bool = True):
    """Prune ``model`` (a copy) in ``steps`` rounds with ``criterion``; ``(pruned model, [plans])``."""
    import copy

    from prunekit.engine import PlanOptions, plan, step_options
    from prunekit.measure import count_macs
    from prunekit.train import run_finetune

    cfg = config or IterativeConfig()
    cfg.check()
    if cfg.macs is None:
        raise ConfigError("the iterative recipes need a MACs target (config key 'macs')")
    ex = example_input(data)
    net = copy.deepcopy(model)
    base = float(count_macs(net, ex).total)
    plans = []
    opts = PlanOptions(criterion=criterion, macs=cfg.macs, steps=cfg.steps, global_ranking=cfg.global_ranking,
                       tolerance=cfg.macs_tolerance)
    for k in range(cfg.steps):
        now = float(count_macs(net, ex).total) / base
        kw = {}
        if criterion == "taylor":
            bs = cfg.finetune.batch_size
            xs, ys = calib_batch(data, bs * cfg.taylor_batches, cfg.seed + k)
            kw["data"] = [(xs[i:i + bs], ys[i:i + bs]) for i in range(0, len(xs), bs)]
        p = plan(net, ex, step_options(opts, k + 1, now), **kw)
        p.info.update({"method": criterion, "step": k + 1, "steps": cfg.steps})
        net = p.apply(net)
        plans.append(p)
        if k + 1 < cfg.steps and cfg.epochs_per_step > 0:
            run_finetune(net, data, cfg.finetune.replace(epochs=cfg.epochs_per_step), progress=progress,
                         seed=cfg.seed + k)
    return net, plans
