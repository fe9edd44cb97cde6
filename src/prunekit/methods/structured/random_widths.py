"""Random channel pruning (``prune --method random``): sample widths under the budget, keep the best.

Li, Yang, Wang, Ding, Tao, Zhao, Van Gool & Timofte, "Revisiting Random Channel Pruning
for Neural Network Compression" (CVPR 2022) show that per-layer widths drawn at random
under a FLOPs budget, each fine-tuned briefly and the best one kept, match elaborate
width searches. Here:

1. ``candidates`` width configurations are drawn (:func:`sample_removal_counts`): a
   random pruning propensity ``u_g ~ U(0, 1)`` per prunable group, scaled by one factor
   ``t`` (bisection) so that removing ``floor(min(max_ratio, t u_g) * size)`` channels
   per group lands on the MACs target; a draw that whole channels cannot bring within
   ``macs_tolerance`` is rejected and redrawn (at most ``max_tries`` draws);
2. inside a group the channels of smallest L1 norm go (``within="l1"``; ``"random"``
   removes random ones), and the engine builds the plan (:func:`prunekit.engine.plan_from_analysis`);
3. each candidate, pruned from the trained model, is fine-tuned ``candidate_epochs``
   epochs on the training split minus a held-out validation slice (``val_fraction``,
   stratified, seeded) and scored on that slice, never on the test split;
4. the best candidate goes back to the pipeline, which fine-tunes it ``finetune.epochs``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prunekit.errors import ConfigError, PrunekitError
from prunekit.methods.structured._common import CommonConfig, example_input
from prunekit.validate import check_choice, check_fraction, check_int


@dataclass
class RandomChannelConfig(CommonConfig):
    """Options of random channel pruning (Li et al., CVPR 2022).

    Attributes:
        candidates: width configurations drawn and fine-tuned.
        candidate_epochs: fine-tuning epochs of each candidate before the choice (0: none).
        val_fraction: fraction of the training split held out to choose the candidate.
        max_ratio: the largest fraction of a group's channels a draw removes.
        max_tries: draws allowed in all (rejected ones included) before giving up.
        within: which channels of a group go: ``l1`` (smallest filter L1 norm) or ``random``.
    """

    candidates: int = 10
    candidate_epochs: int = 1
    val_fraction: float = 0.1
    max_ratio: float = 0.9
    max_tries: int = 1000
    within: str = "l1"

    def check(self) -> None:
        super().check()
        if self.macs is None:
            raise ConfigError("random channel pruning needs a MACs target (config key 'macs')")
        check_int("config key 'candidates'", self.candidates)
        check_int("config key 'candidate_epochs'", self.candidate_epochs, minimum=0)
        check_fraction("config key 'val_fraction'", self.val_fraction, allow_zero=False)
        check_fraction("config key 'max_ratio'", self.max_ratio, allow_zero=False)
        check_int("config key 'max_tries'", self.max_tries)
        check_choice("config key 'within'", self.within, ("l1", "random"))


def counts_for(u, sizes, t: float, max_ratio: float) -> list[int]:
    """Channels removed per group at scale ``t``: ``floor(min(max_ratio, t u_g) size_g)``, at most ``size_g - 1``.

    Example:
        >>> counts_for([0.5, 1.0], [10, 4], 1.0, 0.9)
        [5, 3]
    """
    return [min(s - 1, int(np.floor(min(max_ratio, t * float(ui)) * s))) for ui, s in zip(u, sizes)]


def sample_removal_counts(macs_of, sizes, target: float, tolerance: float, rng, max_ratio: float = 0.9,
                          max_tries: int = 1000) -> tuple[list[int], float, int]:
    """One random width configuration meeting ``target`` within ``tolerance``; ``(counts, macs, draws)``.

    Args:
        macs_of: ``counts -> kept MACs fraction`` (the engine's cost model).
        sizes: channels of each prunable group.
        rng: a ``numpy.random.Generator`` (seeded by the caller).

    Raises:
        PrunekitError: the target is out of reach, or no draw met it in ``max_tries``.
    """
    sizes = list(sizes)
    if macs_of(counts_for([1.0] * len(sizes), sizes, max_ratio, max_ratio)) > target + tolerance:
        raise PrunekitError(f"MACs target {target:g} is out of reach removing at most {max_ratio:g} of each group")
    for draw in range(1, max_tries + 1):
        u = rng.uniform(0.0, 1.0, len(sizes))
        lo, hi = 0.0, max_ratio / max(float(u.min()), 1e-12)
        best = None
        for _ in range(40):  # MACs fall as t grows: bisect for the target
            mid = (lo + hi) / 2
            c = counts_for(u, sizes, mid, max_ratio)
            m = macs_of(c)
            if best is None or abs(m - target) < abs(best[1] - target):
                best = (c, m)
            if m > target:
                lo = mid
            else:
                hi = mid
        if abs(best[1] - target) <= tolerance:
            return best[0], best[1], draw
    raise PrunekitError(f"no random width configuration met MACs {target:g} +- {tolerance:g} in {max_tries} draws")


def random_channel_prune(model, data, config: RandomChannelConfig | None = None, progress: bool = True):
    """Draw, fine-tune and rank the candidates; ``(best model, best plan, [candidate records])``."""
    from prunekit.engine import plan_from_analysis
    from prunekit.graph import analyze
    from prunekit.methods.structured._common import skeleton
    from prunekit.train import evaluate, run_finetune
    from prunekit.utils.progress import progress_bar

    cfg = config or RandomChannelConfig()
    cfg.check()
    ex = example_input(data)
    base = skeleton(model, ex, keep_scores=True)
    groups = [g for g in base.groups if g.size > 1 and any(m.role == "out" for m in g.members)]
    if not groups:
        raise PrunekitError("the model has no prunable channel group")
    an = analyze(model, ex)
    names = [n for n, _ in model.named_parameters()]
    rng = np.random.default_rng(cfg.seed)

    def removed_of(counts):
        out = {}
        for g, n in zip(groups, counts):
            if n <= 0:
                continue
            order = (np.argsort(np.asarray(g.scores), kind="stable") if cfg.within == "l1"
                     else rng.permutation(g.size))
            out[g.id] = [int(c) for c in order[:n]]
        return out

    def macs_of(counts):
        p = plan_from_analysis(an, {g.id: list(range(n)) for g, n in zip(groups, counts) if n > 0},
                               param_names=names)
        return p.info["macs_after"] / p.info["macs_before"]

    hold = data.holdout(cfg.val_fraction, seed=cfg.seed)
    records, best = [], None
    for i in progress_bar(range(cfg.candidates), desc="random candidates", enabled=progress):
        counts, kept, draws = sample_removal_counts(macs_of, [g.size for g in groups], cfg.macs,
                                                    cfg.macs_tolerance, rng, cfg.max_ratio, cfg.max_tries)
        p = plan_from_analysis(an, removed_of(counts), param_names=names,
                               info={"method": "random", "candidate": i})
        net = p.apply(model)
        if cfg.candidate_epochs > 0:
            run_finetune(net, hold, cfg.finetune.replace(epochs=cfg.candidate_epochs, eval_every=0),
                         progress=progress, seed=cfg.seed + i)
        acc = float(evaluate(net, hold.test_x, hold.test_y)["top1"])
        widths = {g.name: g.size - len(g.removed) for g in p.groups if g.id in {x.id for x in groups}}
        records.append({"candidate": i, "widths": widths, "macs_kept": kept, "val_top1": acc, "draws": draws})
        if best is None or acc > best[0]:
            best = (acc, i, net, p)
    acc, i, net, p = best
    p.info.update({"best_candidate": i, "val_top1": acc})
    return net, p, records
