"""Automatic per-layer channel search: MetaPruning and AutoSlim (see ``docs/search.md``).

- :class:`SearchSpace`: one width code per coupling group of the engine (residual
  channels share one), candidate widths on a ratio grid; encodings realise as
  masks on the full model or as the engine's :class:`~prunekit.engine.PruningPlan`.
- MetaPruning (Liu et al., ICCV 2019): :class:`PruningNet` + :func:`evolve`.
- AutoSlim (Yu & Huang, 2019): :class:`SandwichRule` slimmable training + :func:`greedy_slim`.
- :class:`LatencyTable`: per-layer latency lookup table for latency budgets.
- :func:`search`: the whole pipeline (``prunekit search`` on the command line).

Example:
    >>> from prunekit.search import search, SearchConfig                  # doctest: +SKIP
    >>> res = search(model, data, SearchConfig(method="autoslim", macs=0.5), "runs/s1")  # doctest: +SKIP
    >>> res.report["test_top1"], res.widths                                # doctest: +SKIP
"""
from __future__ import annotations

from prunekit.utils.lazy import lazy_exports

_EXPORTS = {
    "SearchSpace": "space", "candidate_counts": "space", "DEFAULT_RATIOS": "space",
    "EvolutionConfig": "evolution", "evolve": "evolution", "mutate": "evolution", "crossover": "evolution",
    "random_encoding": "evolution", "next_population": "evolution",
    "SearchLog": "log", "plot_population": "log",
    "recalibrate_bn": "evaluate", "score_model": "evaluate", "ParallelScorer": "evaluate", "EvalData": "evaluate",
    "CandidateCache": "evaluate", "fixed_subset": "evaluate", "PRESETS": "presets",
    "SandwichRule": "slimmable", "greedy_slim": "slimmable", "masked_forward": "slimmable",
    "PruningNet": "pruningnet", "LatencyTable": "latency",
    "search": "api", "SearchConfig": "api", "SearchResult": "api", "METHODS": "api",
    "plot_widths": "report",
}

__all__ = sorted(_EXPORTS)


# lazy: keeps ``import prunekit`` light (torch.func, matplotlib load only when used)
__getattr__, __dir__ = lazy_exports(__name__, {name: f"prunekit.search.{mod}" for name, mod in _EXPORTS.items()})
