"""L1-norm filter pruning with sensitivity analysis (Li, Kadav, Durdanovic, Samet & Graf, ICLR 2017).

1. Sensitivity: prune each layer *alone* at 10%..90% of its filters (smallest L1 norm
   first) and evaluate without fine-tuning (:func:`sensitivity_analysis`).
2. Per-layer ratios: the largest ratio whose accuracy drop stays within a tolerance
   (:func:`choose_ratios`), or the tolerance found by bisection that meets a MACs target
   (:func:`ratios_for_macs`).
3. The engine prunes with those ratios (criterion ``l1``); the pipeline fine-tunes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from prunekit.errors import ConfigError, PrunekitError
from prunekit.methods.structured._common import CommonConfig, calib_batch, example_input, skeleton
from prunekit.validate import check_fraction, check_number


@dataclass
class L1Config(CommonConfig):
    """Options of L1 filter pruning.

    Attributes:
        sensitivity_ratios: ratios tried per layer.
        tolerance: accuracy drop (percentage points) allowed per layer when ``macs`` is None.
        eval_samples: training images (a seeded subset) used by the sensitivity analysis; the
            test split is never used to choose ratios.
    """

    sensitivity_ratios: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    tolerance: float = 1.0
    eval_samples: int = 500
    macs: Optional[float] = 0.5

    def check(self) -> None:
        super().check()
        if not self.sensitivity_ratios:
            raise ConfigError("config key 'sensitivity_ratios' must be a non-empty list of numbers in (0, 1)")
        for i, r in enumerate(self.sensitivity_ratios):
            check_fraction(f"config key 'sensitivity_ratios'[{i}]", r, allow_zero=False)
        check_number("config key 'tolerance'", self.tolerance, minimum=0)


def sensitivity_analysis(model, x_eval, y_eval, example, ratios=(0.1, 0.3, 0.5, 0.7, 0.9), base=None,
                         progress=True) -> dict:
    """``{layer: {ratio: top-1 %}}``: each group pruned alone (L1 order), evaluated without fine-tuning.

    Pruning is simulated with :meth:`PruningPlan.apply_masks` (zeroing the removed
    channels everywhere), which computes exactly what removal computes.
    Also holds ``"__baseline__"``: the unpruned accuracy.
    """
    from prunekit.engine import PruningPlan
    from prunekit.train import evaluate

    base = base if base is not None else skeleton(model, example, keep_scores=True)
    layers = [g for g in base.groups if g.size > 1 and any(m.role == "out" for m in g.members)
              and g.scores is not None]
    table = {"__baseline__": float(evaluate(model, x_eval, y_eval)["top1"])}
    from prunekit.utils.progress import progress_bar

    bar = progress_bar(total=len(layers) * len(ratios), desc="sensitivity", enabled=progress)
    for g in layers:
        order = np.argsort(np.asarray(g.scores), kind="stable")
        row = {}
        for r in ratios:
            n = min(int(round(r * g.size)), g.size - 1)
            one = copy.deepcopy(g)
            one.removed = sorted(int(c) for c in order[:n])
            masked = PruningPlan([one], tensor_shapes=base.tensor_shapes).apply_masks(model)
            row[float(r)] = float(evaluate(masked, x_eval, y_eval)["top1"])
            bar.update(1)
        table[g.name] = row
    bar.close()
    return table


def choose_ratios(table: dict, tolerance: float) -> dict:
    """Per layer, the largest ratio such that it and every smaller ratio lose at most ``tolerance`` points.

    Example:
        >>> t = {"__baseline__": 90.0, "a": {0.1: 90.0, 0.5: 89.5, 0.9: 60.0}, "b": {0.1: 80.0, 0.5: 79.0}}
        >>> choose_ratios(t, 1.0)
        {'a': 0.5, 'b': 0.0}
    """
    base = table["__baseline__"]
    out = {}
    for layer, row in table.items():
        if layer == "__baseline__":
            continue
        best = 0.0
        for r in sorted(row):
            if base - row[r] > tolerance:
                break
            best = r
        out[layer] = best
    return out


def ratios_for_macs(model, example, table: dict, macs: float, rel_tol: float = 0.03) -> tuple[dict, float]:
    """Per-layer ratios meeting a MACs target (fraction kept) from the sensitivity table; ``(ratios, tolerance)``.

    Li et al. (ICLR 2017) choose per-layer ratios from the sensitivity curves; a tolerance (accuracy drop
    per layer) turns the curves into ratios (:func:`choose_ratios`). The tolerance is bisected to the
    smallest one whose plan keeps at most ``macs``. Because the curves are sampled on a coarse grid
    (steps of 10% of a layer's filters), that plan can land well below the target and the previous
    tolerance's plan well above it, so the ratios are then interpolated linearly between the two
    adjacent tolerances' ratios (every layer moving in the same proportion, each staying between its
    two sensitivity-chosen ratios) to the least pruning that keeps at most ``macs``, or one step less
    pruning when that lands nearer the target and at most ``rel_tol`` above it: the target is met to
    within about one channel instead of one grid step. When even the largest tolerance cannot reach
    ``macs`` its plan is accepted if it keeps at most ``macs + rel_tol``, else an error is raised. The
    returned tolerance is the one whose ratios bound the result from above.
    """
    drops = sorted({max(0.0, table["__baseline__"] - a) for k, row in table.items() if k != "__baseline__"
                    for a in row.values()})
    if not drops:
        raise PrunekitError("sensitivity table is empty: no prunable layer")
    hi_ratios = choose_ratios(table, drops[-1])
    hi_kept = _kept_macs(model, example, hi_ratios)
    if hi_kept > macs + rel_tol:
        raise PrunekitError(f"MACs target {macs:g} is out of reach with ratios up to "
                            f"{max(max(r) for k, r in table.items() if k != '__baseline__'):g}")
    if hi_kept > macs:
        return hi_ratios, drops[-1]
    lo, hi = 0, len(drops) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _kept_macs(model, example, choose_ratios(table, drops[mid])) <= macs:
            hi = mid
        else:
            lo = mid + 1
    upper = choose_ratios(table, drops[lo])
    lower = choose_ratios(table, drops[lo - 1]) if lo > 0 else {k: 0.0 for k in upper}
    if _kept_macs(model, example, lower) <= macs:  # the least pruning already meets it
        return lower, drops[max(lo - 1, 0)]
    t_lo, t_hi = 0.0, 1.0  # kept(t_lo) > macs >= kept(t_hi)
    for _ in range(14):
        t = (t_lo + t_hi) / 2
        if _kept_macs(model, example, _blend(lower, upper, t)) <= macs:
            t_hi = t
        else:
            t_lo = t
    # one channel less pruned may land nearer the target (a wide layer's channel can be several % of the MACs):
    # take it when it is above the target by at most rel_tol and by less than the other falls below it
    below, above = _kept_macs(model, example, _blend(lower, upper, t_hi)), _kept_macs(model, example,
                                                                                     _blend(lower, upper, t_lo))
    if above - macs <= rel_tol and above - macs < macs - below:
        return _blend(lower, upper, t_lo), drops[lo]
    return _blend(lower, upper, t_hi), drops[lo]


def _blend(lower: dict, upper: dict, t: float) -> dict:
    """Ratios ``lower + t * (upper - lower)`` per layer (``t`` in [0, 1])."""
    return {k: lower.get(k, 0.0) + t * (upper[k] - lower.get(k, 0.0)) for k in upper}


def _kept_macs(model, example, ratios) -> float:
    p = l1_plan(model, example, ratios)
    return p.info["macs_after"] / p.info["macs_before"]


def l1_plan(model, example, ratios: dict):
    """The engine's plan for per-layer ratios (criterion ``l1``, only the listed layers pruned)."""
    from prunekit.engine import plan

    ratios = {k: v for k, v in ratios.items() if v > 0}
    if not ratios:
        return plan(model, example, criterion="l1", ratio=0.0)
    return plan(model, example, criterion="l1", ratios=ratios)


def l1_prune(model, data, config: L1Config | None = None, progress: bool = True):
    """Sensitivity analysis, ratio choice and the engine's plan; ``(plan, sensitivity table, ratios)``."""
    cfg = config or L1Config()
    cfg.check()
    if cfg.eval_samples < 1:
        raise ConfigError(f"config key 'eval_samples' must be >= 1, got {cfg.eval_samples}")
    x_eval, y_eval = calib_batch(data, cfg.eval_samples, cfg.seed + 1)
    ex = example_input(data)
    table = sensitivity_analysis(model, x_eval, y_eval, ex, cfg.sensitivity_ratios, progress=progress)
    if cfg.macs is not None:
        ratios, tol = ratios_for_macs(model, ex, table, cfg.macs, cfg.macs_tolerance)
    else:
        ratios, tol = choose_ratios(table, cfg.tolerance), cfg.tolerance
    p = l1_plan(model, ex, ratios)
    p.info.update({"method": "l1", "tolerance": tol, "layer_ratios": ratios})
    return p, table, ratios


def plot_sensitivity(table: dict, path) -> None:
    """PNG: accuracy against pruning ratio, one line per layer (Li et al. Fig. 2)."""
    from prunekit.runs import figure

    with figure(path, figsize=(7, 4.5), dpi=110) as (fig, ax):
        for layer, row in table.items():
            if layer == "__baseline__":
                continue
            rs = sorted(row)
            ax.plot([100 * r for r in rs], [row[r] for r in rs], marker="o", ms=3, label=layer)
        ax.axhline(table["__baseline__"], color="k", ls="--", lw=0.8, label="unpruned")
        ax.set_xlabel("filters pruned away (%)")
        ax.set_ylabel("top-1 accuracy (%) without fine-tuning")
        ax.set_title("Sensitivity to pruning, one layer at a time")
        ax.legend(fontsize=6, ncol=2)
