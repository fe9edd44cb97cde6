"""Evolutionary search over encodings (MetaPruning, Liu et al., ICCV 2019, Sec. 3.4).

Each iteration keeps the ``top_k`` best encodings seen so far as parents and
builds the next population from ``mutation_num`` mutants (each gene re-drawn
with probability ``mutation_prob``), ``crossover_num`` crossovers (each gene
from one of two parents) and random samples to fill it up. Every child must
satisfy the constraints (MACs, params, latency); failing ones are re-drawn.
The defaults are the paper's: population 50, top-k 10, mutation probability
0.1, 25 mutations + 25 crossovers, 20 iterations.

Randomness is drawn from a generator seeded by ``(seed, iteration)``, so a run
resumed from its log reproduces the uninterrupted run exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from prunekit.errors import PrunekitError
from prunekit.validate import check_fraction, check_int


@dataclass
class EvolutionConfig:
    """Hyper-parameters of the evolutionary search (defaults: MetaPruning's)."""

    population: int = 50
    top_k: int = 10
    mutation_prob: float = 0.1
    mutation_num: int = 25
    crossover_num: int = 25
    iterations: int = 20
    max_tries: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for k in ("population", "top_k", "iterations", "max_tries"):
            check_int(f"evolution: {k}", getattr(self, k))
        for k in ("mutation_num", "crossover_num", "seed"):
            check_int(f"evolution: {k}", getattr(self, k), minimum=0)
        check_fraction("evolution: mutation_prob", self.mutation_prob, allow_one=True)


# ---------------------------------------------------------------------- pure operators
def random_encoding(candidates, rng: np.random.Generator) -> tuple:
    """One encoding drawn uniformly from every group's candidate list."""
    return tuple(int(c[rng.integers(len(c))]) for c in candidates)


def mutate(encoding, candidates, prob: float, rng: np.random.Generator) -> tuple:
    """Re-draw each gene from its candidates with probability ``prob``."""
    return tuple(int(c[rng.integers(len(c))]) if rng.random() < prob else int(k)
                 for k, c in zip(encoding, candidates))


def crossover(a, b, rng: np.random.Generator) -> tuple:
    """Each gene from ``a`` or ``b`` with equal probability."""
    return tuple(int(x if rng.random() < 0.5 else y) for x, y in zip(a, b))


def _draw(make: Callable, ok: Callable, seen: set, tries: int):
    for _ in range(tries):
        enc = make()
        if enc not in seen and ok(enc):
            seen.add(enc)
            return enc
    return None


def next_population(parents, candidates, cfg: EvolutionConfig, ok: Callable, rng: np.random.Generator,
                    exclude=()) -> list[tuple]:
    """The next generation: mutants and crossovers of ``parents``, then random fill; all pass ``ok``.

    ``exclude`` lists encodings never to propose again (already evaluated).
    """
    seen = set(exclude)
    pop = []
    if parents:
        for _ in range(cfg.mutation_num):
            p = parents[rng.integers(len(parents))]
            e = _draw(lambda: mutate(p, candidates, cfg.mutation_prob, rng), ok, seen, cfg.max_tries)
            if e is not None:
                pop.append(e)
        for _ in range(cfg.crossover_num):
            i, j = rng.integers(len(parents)), rng.integers(len(parents))
            e = _draw(lambda: crossover(parents[i], parents[j], rng), ok, seen, cfg.max_tries)
            if e is not None:
                pop.append(e)
    while len(pop) < cfg.population:
        e = _draw(lambda: random_encoding(candidates, rng), ok, seen, cfg.max_tries)
        if e is None:
            break
        pop.append(e)
    if not pop and not parents:
        raise PrunekitError(f"no encoding of the search grid satisfies the constraints in {cfg.max_tries} random "
                            "draws; loosen the budget, add smaller width ratios or (MetaPruning) lower "
                            "budget_floor")
    return pop


def evolve(candidates, evaluate_many: Callable, ok: Callable, cfg: EvolutionConfig, log=None,
           progress: bool = True) -> dict:
    """Run the search; returns the best record ``{"encoding", "score", ...}``.

    Args:
        candidates: per group, the candidate kept counts.
        evaluate_many: ``list[encoding] -> list[dict]``, each dict with at least ``score``
            (higher is better) plus anything to log (macs, latency, accuracy).
        ok: ``encoding -> bool``, the constraints.
        log: a :class:`~prunekit.search.log.SearchLog`; its finished iterations are
            replayed (resume) and each new one is appended and saved.
    """
    from prunekit.search.log import SearchLog

    log = log if log is not None else SearchLog()
    seen = {tuple(r["encoding"]): r for r in log.records}
    start = log.iterations_done()
    from prunekit.utils.progress import progress_bar

    bar = progress_bar(total=cfg.iterations, initial=start, desc="evolution", enabled=progress, leave=True)
    for it in range(start, cfg.iterations):
        rng = np.random.default_rng([cfg.seed, it])
        parents = [tuple(r["encoding"]) for r in _top(seen.values(), cfg.top_k)]
        pop = next_population(parents, candidates, cfg, ok, rng, exclude=seen.keys())
        results = evaluate_many(pop) if pop else []
        recs = []
        for enc, res in zip(pop, results):
            rec = {"iteration": it, "encoding": list(enc), **res}
            seen[enc] = rec
            recs.append(rec)
        log.add_iteration(it, recs, [list(e) for e in parents])
        best = _top(seen.values(), 1)
        bar.set_postfix(best=f"{best[0]['score']:.2f}" if best else "-", refresh=False)
        bar.update(1)
    bar.close()
    best = _top(seen.values(), 1)
    if not best:
        raise PrunekitError("the search evaluated no candidate")
    return best[0]


def _top(records, k: int) -> list[dict]:
    # ties broken by the encoding itself so the order never depends on dict order
    return sorted(records, key=lambda r: (-r["score"], r["encoding"]))[:k]
