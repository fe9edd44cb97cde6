"""How alike do the pruning criteria rank channels? Spearman correlation per layer.

Huang et al., *Rethinking the Pruning Criteria for Convolutional Neural
Network* (NeurIPS 2021) observe that the common norm-based criteria (L1, L2,
FPGM) rank the filters of a trained network almost identically: their Spearman
rank correlations per layer are close to 1, so choosing between them hardly
changes which filters are pruned. :func:`analyze_criteria` measures this on any
model: it scores every coupling group of the structural engine with each
criterion of :data:`prunekit.criteria.CRITERIA` (so every criterion sees the
same channels and the same weights the planner would prune) and correlates
every pair per group. :func:`write_criteria_report` writes the JSON/Markdown
report and a heatmap through :mod:`prunekit.runs`.

The rank and correlation functions are hand-written (scipy is not a dependency):
ties share the mean of the ranks they span, as in ``scipy.stats.rankdata``.

Example:
    >>> rankdata([10.0, 20.0, 10.0, 5.0]).tolist()
    [2.5, 4.0, 2.5, 1.0]
    >>> round(spearman([1, 2, 3, 4], [1, 3, 2, 4]), 6)
    0.8
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from prunekit.errors import PrunekitError

#: the criteria compared by default (Huang et al. compare the norm-based ones, BN-scale and Taylor)
DEFAULT_CRITERIA = ("l1", "l2", "fpgm", "bn_scale", "taylor")


def rankdata(x):
    """1-based ranks of ``x`` (a 1-D array-like); tied values get the mean of the ranks they span.

    Example:
        >>> rankdata([3.0, 1.0, 3.0]).tolist()
        [2.5, 1.0, 2.5]
    """
    import numpy as np

    a = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(a, kind="stable")
    s = a[order]
    ranks = np.empty(a.size, dtype=np.float64)
    # boundaries of runs of equal values in the sorted array
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if a.size else np.array([], dtype=int)
    ends = np.r_[starts[1:], a.size]
    for i, j in zip(starts, ends):
        ranks[order[i:j]] = (i + j - 1) / 2.0 + 1.0
    return ranks


def spearman(a, b) -> float:
    """Spearman rank correlation of ``a`` and ``b``: Pearson correlation of their tie-averaged ranks.

    Returns NaN when either vector is constant or shorter than 2 (the correlation is undefined).
    """
    import numpy as np

    ra, rb = rankdata(a), rankdata(b)
    if ra.size != rb.size:
        raise PrunekitError(f"spearman needs vectors of one length, got {ra.size} and {rb.size}")
    if ra.size < 2:
        return math.nan
    da, db = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((da * da).sum()) * float((db * db).sum()))
    if denom == 0.0:
        return math.nan
    return float(np.clip((da * db).sum() / denom, -1.0, 1.0))


@dataclass
class CriteriaRanking:
    """What :func:`analyze_criteria` found.

    Attributes:
        criteria: the criteria compared, in order.
        layers: one dict per coupling group with at least 2 channels: ``name`` (its producing
            layers), ``group`` (the engine's group id), ``channels``, ``scores`` (``{criterion: list}``,
            a criterion that does not apply to the group, e.g. ``bn_scale`` without a norm layer, is absent)
            and ``spearman`` (``{"a|b": rho}`` for every pair both scored; NaN when undefined).
        notes: what was skipped and why.
    """

    criteria: list
    layers: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def matrix(self, layer: int | None = None):
        """``(C, C)`` numpy matrix of rank correlations: one layer's, or the mean over layers (NaN-free ones).

        The diagonal is 1; a pair no layer scored is NaN.
        """
        import numpy as np

        c = len(self.criteria)
        layers = self.layers if layer is None else [self.layers[layer]]
        out = np.full((c, c), np.nan)
        for i, a in enumerate(self.criteria):
            for j, b in enumerate(self.criteria):
                if i == j:
                    out[i, j] = 1.0
                    continue
                key = f"{a}|{b}" if i < j else f"{b}|{a}"
                vals = [lay["spearman"][key] for lay in layers
                        if key in lay["spearman"] and not math.isnan(lay["spearman"][key])]
                if vals:
                    out[i, j] = float(np.mean(vals))
        return out

    def to_dict(self) -> dict:
        """JSON-able data: criteria, per-layer scores and correlations, the mean matrix, notes."""
        mean = self.matrix()
        return {"criteria": list(self.criteria), "layers": [dict(lay) for lay in self.layers],
                "mean_spearman": [[None if math.isnan(v) else float(v) for v in row] for row in mean],
                "notes": list(self.notes)}


def analyze_criteria(model, example_inputs, *, data=None, criteria: Sequence[str] = DEFAULT_CRITERIA,
                     loss_fn=None, tracer: str = "auto") -> CriteriaRanking:
    """Score every coupling group of ``model`` with each criterion and correlate the rankings (Huang et al. 2021).

    Args:
        model: an ``nn.Module`` (not changed).
        example_inputs: inputs for tracing (as :func:`prunekit.engine.plan` takes them).
        data: ``[(x, y), ...]`` calibration batches for gradient criteria (``taylor``); without
            them those criteria are left out (noted).
        criteria: names from :data:`prunekit.criteria.CRITERIA`.
        loss_fn: loss of gradient criteria (default cross-entropy).
        tracer: the graph capture (``"auto"``, ``"fx"`` or ``"export"``, as in PlanOptions).

    Returns:
        :class:`CriteriaRanking`. ``bn_scale`` is scored only on groups that hold a
        normalisation layer (elsewhere the criterion falls back to ``l1``, which would
        report a trivial correlation of 1).
    """
    import torch

    from prunekit import criteria as crit
    from prunekit.engine.gather import gather_group, gradients
    from prunekit.graph import analyze

    names = list(criteria)
    if len(names) < 2:
        raise PrunekitError(f"compare at least two criteria, got {names}")
    fns = {n: crit.CRITERIA.get(n) for n in names}   # unknown names raise, listing the known ones
    notes = []
    needs_grad = [n for n in names if n in crit.NEEDS_GRADIENTS]
    grads = None
    if needs_grad:
        if data is None:
            notes.append(f"{', '.join(needs_grad)} left out: no calibration batches were given")
            names = [n for n in names if n not in needs_grad]
        else:
            grads = gradients(model, data, loss_fn)
    an = analyze(model, example_inputs, tracer=tracer)
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(dict(model.named_buffers(remove_duplicate=False)))
    layers = []
    no_norm = 0
    with torch.no_grad():
        for g in an.groups:
            if g.size < 2:
                continue
            view = gather_group(tensors, g, grads)
            scores = {}
            for n in names:
                if n == "bn_scale" and "norm" not in view.roles:
                    no_norm += 1
                    continue
                scores[n] = [float(v) for v in fns[n](view).detach().double().cpu().flatten()]
            producers = g.producers
            rho = {}
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    if a in scores and b in scores:
                        rho[f"{a}|{b}"] = spearman(scores[a], scores[b])
            layers.append({"name": ", ".join(producers) or f"group {g.id}", "group": int(g.id),
                           "channels": int(g.size), "scores": scores, "spearman": rho})
    if no_norm and "bn_scale" in names:
        if no_norm == len(layers):
            names = [n for n in names if n != "bn_scale"]
            notes.append("bn_scale left out: the model has no normalisation layer")
        else:
            notes.append(f"bn_scale left out of {no_norm} group(s) without a normalisation layer")
    if not layers:
        raise PrunekitError("the model has no prunable coupling group of 2 or more channels to compare")
    return CriteriaRanking(criteria=names, layers=layers, notes=notes)


def plot_heatmaps(ranking: CriteriaRanking, path, title: str = "") -> None:
    """PNG: the mean Spearman matrix (left) and the per-layer correlation of every pair (right)."""
    import numpy as np

    from prunekit.runs import figure

    names = ranking.criteria
    mean = ranking.matrix()
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    per_layer = np.array([[lay["spearman"].get(f"{a}|{b}", np.nan) for lay in ranking.layers] for a, b in pairs])
    with figure(path, ncols=2, figsize=(12, 4.8), title=title) as (fig, (ax1, ax2)):
        im = ax1.imshow(mean, vmin=-1, vmax=1, cmap="RdBu_r")
        ax1.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax1.set_yticks(range(len(names)), names)
        for i in range(len(names)):
            for j in range(len(names)):
                if not np.isnan(mean[i, j]):
                    ax1.text(j, i, f"{mean[i, j]:.2f}", ha="center", va="center", fontsize=8)
        ax1.set_title("mean Spearman over layers")
        ax2.imshow(per_layer, vmin=-1, vmax=1, cmap="RdBu_r", aspect="auto")
        ax2.set_yticks(range(len(pairs)), [f"{a} / {b}" for a, b in pairs], fontsize=7)
        ax2.set_xticks(range(len(ranking.layers)), [lay["name"] for lay in ranking.layers], rotation=60,
                       ha="right", fontsize=6)
        ax2.set_title("per layer")
        fig.colorbar(im, ax=ax2, shrink=0.9, label="Spearman rank correlation")


def ranking_markdown(ranking: CriteriaRanking) -> str:
    """The mean matrix and the per-layer pairs as Markdown tables."""
    from prunekit.runs import md_table

    names = ranking.criteria
    mean = ranking.matrix()
    cell = (lambda v: "-" if math.isnan(v) else f"{v:.3f}")
    out = ["Mean over layers:", "", md_table(["", *names], [[a, *(cell(v) for v in row)]
                                                            for a, row in zip(names, mean)]), "", "Per layer:", ""]
    pairs = [f"{a}|{b}" for i, a in enumerate(names) for b in names[i + 1:]]
    rows = [[lay["name"], lay["channels"], *(cell(lay["spearman"].get(p, math.nan)) for p in pairs)]
            for lay in ranking.layers]
    out.append(md_table(["layer", "channels", *(p.replace("|", " / ") for p in pairs)], rows))
    return "\n".join(out)


def write_criteria_report(ranking: CriteriaRanking, run, info: dict, provenance: dict | None = None) -> dict:
    """Write ``criteria_heatmap.png``, ``report.json`` and ``report.md`` into ``run`` (a :class:`prunekit.runs.RunDir`).

    ``info`` holds ``source`` and ``data`` (kept in report.json). Returns the JSON dict.
    """
    from prunekit.runs import Report, Section

    plot_heatmaps(ranking, run.file("criteria_heatmap.png"), title=f"criteria rankings: {info.get('source')}")
    names = ranking.criteria
    mean = ranking.matrix()
    off = [mean[i, j] for i in range(len(names)) for j in range(len(names)) if i < j and not math.isnan(mean[i, j])]
    summary = [("source", f"`{info.get('source')}`"), ("data", f"`{info.get('data')}`"),
               ("criteria", ", ".join(names)), ("layers (coupling groups)", len(ranking.layers)),
               ("mean pairwise Spearman", f"{sum(off) / len(off):.3f}" if off else "-")]
    sections = [Section("Spearman rank correlation between criteria",
                        "![heatmap](criteria_heatmap.png)\n\n" + ranking_markdown(ranking))]
    if ranking.notes:
        sections.append(Section("Notes", "\n".join(f"- {n}" for n in ranking.notes)))
    report = Report(title="prunekit analyze criteria", data={**info, **ranking.to_dict()}, summary=summary,
                    sections=sections, plots=["criteria_heatmap.png"])
    return run.write_report(report, provenance)


__all__ = ["CriteriaRanking", "DEFAULT_CRITERIA", "analyze_criteria", "plot_heatmaps", "rankdata",
           "ranking_markdown", "spearman", "write_criteria_report"]
