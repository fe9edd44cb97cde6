"""Evolutionary search operators, constraints, the log, and exact resume."""
import json

import numpy as np
import pytest

from prunekit.errors import ConfigError, PrunekitError
from prunekit.search import EvolutionConfig, SearchLog, crossover, evolve, mutate, next_population, random_encoding

CANDS = [(2, 4, 6, 8), (4, 8, 12, 16), (1, 2, 3), (8, 16)]


def _ok(enc):  # a "MACs" budget: sum of products of neighbours
    return enc[0] * enc[1] + enc[1] * enc[2] + enc[3] <= 100


def test_paper_defaults():
    c = EvolutionConfig()
    assert (c.population, c.top_k, c.mutation_prob, c.mutation_num, c.crossover_num, c.iterations) == \
        (50, 10, 0.1, 25, 25, 20)


@pytest.mark.parametrize("bad", [{"population": 0}, {"mutation_prob": 1.5}, {"top_k": 2.5}, {"crossover_num": -1}])
def test_bad_config_raises(bad):
    with pytest.raises(ConfigError):
        EvolutionConfig(**bad)


def test_operators_stay_on_grid():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = random_encoding(CANDS, rng), random_encoding(CANDS, rng)
        for e in (a, mutate(a, CANDS, 0.5, rng), crossover(a, b, rng)):
            assert all(k in c for k, c in zip(e, CANDS))
        assert all(k in (x, y) for k, x, y in zip(crossover(a, b, rng), a, b))


def test_mutation_prob_extremes():
    rng = np.random.default_rng(1)
    a = (2, 4, 1, 8)
    assert mutate(a, CANDS, 0.0, rng) == a
    changed = [mutate(a, CANDS, 1.0, rng) != a for _ in range(50)]
    assert sum(changed) >= 45


def test_next_population_respects_constraints_and_is_seeded():
    cfg = EvolutionConfig(population=12, top_k=3, mutation_num=4, crossover_num=4, seed=3)
    parents = [(2, 4, 1, 8), (4, 8, 2, 16), (6, 4, 3, 8)]
    a = next_population(parents, CANDS, cfg, _ok, np.random.default_rng(5), exclude=parents)
    b = next_population(parents, CANDS, cfg, _ok, np.random.default_rng(5), exclude=parents)
    assert a == b and len(a) == 12 and len(set(a)) == 12
    assert all(_ok(e) and e not in parents for e in a)


def test_impossible_budget_raises():
    cfg = EvolutionConfig(population=4, max_tries=20)
    with pytest.raises(PrunekitError, match="constraints"):
        next_population([], CANDS, cfg, lambda e: False, np.random.default_rng(0))


def _score_many(encs):
    return [{"score": float(sum(e)), "macs": float(e[0] * e[1])} for e in encs]


def test_evolve_finds_the_best_feasible_encoding():
    cfg = EvolutionConfig(population=16, top_k=4, mutation_num=6, crossover_num=6, iterations=8, seed=0)
    best = evolve(CANDS, _score_many, _ok, cfg, progress=False)
    feasible = [e for e in np.array(np.meshgrid(*CANDS)).T.reshape(-1, 4).tolist() if _ok(tuple(e))]
    assert best["score"] == max(sum(e) for e in feasible)
    assert _ok(tuple(best["encoding"]))


def test_resume_from_log_continues_exactly(tmp_path):
    cfg = EvolutionConfig(population=8, top_k=3, mutation_num=3, crossover_num=3, iterations=4, seed=2)
    header = {"k": 1}
    full = SearchLog.open(tmp_path / "a.json", header, resume=False)
    best_a = evolve(CANDS, _score_many, _ok, cfg, full, progress=False)

    calls = []

    def counting(encs):
        calls.append(len(encs))
        return _score_many(encs)

    part = SearchLog.open(tmp_path / "b.json", header, resume=False)
    evolve(CANDS, counting, _ok, EvolutionConfig(**{**cfg.__dict__, "iterations": 2}), part, progress=False)
    n_first = len(calls)
    resumed = SearchLog.open(tmp_path / "b.json", header, resume=True)
    assert resumed.iterations_done() == 2
    best_b = evolve(CANDS, counting, _ok, cfg, resumed, progress=False)
    assert len(calls) == n_first + 2  # only the two missing iterations were evaluated
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert a["records"] == b["records"] and best_a == best_b


def test_resume_with_other_settings_raises(tmp_path):
    SearchLog.open(tmp_path / "l.json", {"seed": 0}, resume=False).save()
    with pytest.raises(PrunekitError, match="seed"):
        SearchLog.open(tmp_path / "l.json", {"seed": 1}, resume=True)
