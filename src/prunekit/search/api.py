"""One-call channel search: super-network training -> search -> realise -> fine-tune -> report.

:func:`search` runs MetaPruning (PruningNet + evolutionary search) or AutoSlim
(slimmable training + greedy slimming) on a model and a dataset, writing to
``out_dir``:

- ``supernet.pt``: the trained PruningNet / slimmable weights (skipped on resume),
  with ``supernet.json``: what it was trained for (method, grid, seed, split), so it can
  be reused by searches under other budgets (``supernet=`` / ``--supernet``),
- ``search_log.json``: every evaluated candidate (encoding, MACs, params, latency, accuracy),
- ``population.png``: the candidates over iterations; ``widths.png``: the found channel counts,
- ``plan.json``: the engine's pruning plan of the found encoding,
- ``finetune/``: the fine-tuning run (checkpoints), ``pruned.pt``: the final model,
- ``report.json``: settings, the found encoding and widths, costs and test accuracy, provenance;
  ``report.md``: the same as Markdown (:mod:`prunekit.runs`).

A fresh search refuses a folder holding any of these files (a user's ``report.json``
included) unless ``overwrite=True``, which first clears the previous search's outputs.

Re-running with ``resume=True`` continues after an interruption: the trained
super-network is reloaded, the log's finished iterations are replayed, and the
fine-tuning resumes from its last checkpoint.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from prunekit.errors import ConfigError
from prunekit.search.evolution import EvolutionConfig
from prunekit.train import FinetuneConfig, as_finetune
from prunekit.validate import check_choice, check_fraction, check_int, check_positive

METHODS = ("metapruning", "autoslim")


@dataclass
class SearchFinetune(FinetuneConfig):
    """The fine-tuning of the found network: :class:`~prunekit.train.FinetuneConfig` with the search's defaults
    (lr 0.02, batch 128, no augmentation, evaluated at the end; ``epochs: 0`` skips it). The class defaults are
    the ``thorough`` preset's (5 epochs); a :class:`SearchConfig` without an explicit instance takes its
    preset's values (``fast``: 1 epoch), see :mod:`prunekit.search.presets`."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.02
    augment: bool = False
    eval_every: int = 0


@dataclass
class SearchConfig:
    """Settings of :func:`search` (round-trips through dict/JSON/YAML via :meth:`to_dict`/:meth:`from_dict`).

    Attributes:
        method: ``"metapruning"`` (Liu et al., ICCV 2019) or ``"autoslim"`` (Yu & Huang, 2019).
        macs: keep at most this fraction of the MACs (e.g. 0.3).
        params: keep at most this fraction of the parameters.
        latency_ms: the found network's predicted latency (lookup table) must not exceed this.
        budget_floor: MetaPruning only: every candidate of the evolution must also use at least
            this fraction of each budget given (0.9: MACs between 90% and 100% of ``macs``), so
            the search ranks networks of the size asked for instead of drifting to smaller ones
            its noisy accuracy estimates happen to favour (the range constraint of e.g.
            mmrazor's evolution search); 0 is the paper's upper bound alone. AutoSlim ignores
            it: greedy slimming stops at the first network within budget anyway.
        ratios: candidate width ratios per group.
        round_to: kept channel counts are multiples of this.
        min_channels: never keep fewer channels per group.
        ignored_layers: modules whose output channels keep their full width.
        val_fraction: share of the training data carved off as the sub-validation split searched on.
        seed: seeds the split, the sampling and the search.
        supernet: TrainConfig dict for PruningNet / slimmable training.
        finetune: the fine-tuning of the found network (:class:`SearchFinetune`, a
            :class:`prunekit.train.FinetuneConfig`; ``epochs: 0`` skips it; its seed defaults to ``seed``).
        evolution: :class:`EvolutionConfig` fields (MetaPruning).
        num_random: random widths per step of the sandwich rule (AutoSlim).
        greedy_moves: groups shrunk per greedy-slimming step (AutoSlim: 1); 0: half the groups
            (rounded up), so the number of steps does not grow with the number of groups.
        hidden: PruningNet meta-network hidden width (the paper's 32).
        rank: rank of each PruningNet block's last weight (``numel x hidden`` factorised through
            ``rank``; 8 keeps training within ~1.3x of the full model's time, ``rank >= hidden``
            is the paper's dense block; see :mod:`prunekit.search.pruningnet`).
        calib_batches: training batches used to recalibrate BatchNorm before each evaluation.
        init: weights of the found network: ``"original"`` (inherit the input model's),
            ``"supernet"`` (the slimmable / generated weights) or ``"scratch"`` (re-initialised by
            :func:`prunekit.train.reinitialize` with ``seed``, the from-scratch rule of every family).
        workers: parallel evaluation processes on this machine; None (default) uses
            ``min(4, CPU count)`` (1 on a single-core machine: evaluation then runs in-process).
        ray_address: evaluate on a Ray cluster at this address (``"local"`` starts one).
        latency_repeats: timing repeats per lookup-table entry.
        latency_mode: ``"median"`` (each table timing a median: the typical latency) or
            ``"fastest"`` (the grid timed up front in ``latency_rounds`` interleaved passes,
            every entry at its fastest, and the found network's measurement the fastest of 10
            rounds half a second apart: the CPU's own speed, steadier on a shared machine; see docs/search.md).
        latency_rounds: passes over the grid in ``"fastest"`` mode.
        latency_table: path of a saved :class:`~prunekit.search.latency.LatencyTable` (e.g. an
            earlier search's ``OUT/latency_table.json``) to use instead of building one; it
            must have been built for this model, input shape and grid (checked) and keeps
            the mode it was built with. Budgets derived from one table stay comparable.
    """

    method: str = "autoslim"
    macs: Optional[float] = None
    params: Optional[float] = None
    latency_ms: Optional[float] = None
    budget_floor: float = 0.9
    preset: str = "fast"
    ratios: Optional[list[float]] = None
    round_to: int = 1
    min_channels: int = 1
    ignored_layers: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    seed: int = 0
    supernet: dict = field(default_factory=dict)
    supernet_samples: Optional[int] = None
    finetune: Any = None  # a SearchFinetune, or a dict merged over the preset's (resolved in __post_init__)
    evolution: dict = field(default_factory=dict)
    num_random: Optional[int] = None
    greedy_moves: Optional[int] = None
    hidden: int = 32
    rank: int = 8
    calib_batches: Optional[int] = None
    calib_batch_size: Optional[int] = None
    eval_samples: Optional[int] = None
    init: str = "original"
    workers: Optional[int] = None
    ray_address: Optional[str] = None
    latency_repeats: int = 20
    latency_mode: str = "median"
    latency_rounds: int = 3
    latency_table: Optional[str] = None

    def __post_init__(self) -> None:
        from prunekit.search.presets import PRESET_NAMES, PRESETS, resolve

        check_choice("preset", self.preset, PRESET_NAMES)
        # fields left unset (None) take the preset's value; nested dicts are merged under the user's keys
        ft = self.finetune
        given = {k: getattr(self, k) for k in PRESETS[self.preset] if k != "finetune"}
        for k, v in resolve(self.preset, {**given, "finetune": ft if isinstance(ft, dict) else None}).items():
            if k != "finetune":
                setattr(self, k, v)
            elif ft is None or isinstance(ft, dict):
                self.finetune = v
        check_int("supernet_samples", self.supernet_samples, minimum=0)
        check_int("eval_samples", self.eval_samples, minimum=0)
        check_int("calib_batches", self.calib_batches)
        check_int("calib_batch_size", self.calib_batch_size)
        check_int("num_random", self.num_random, minimum=0)
        check_choice("method", self.method, METHODS)
        check_choice("init", self.init, ("original", "supernet", "scratch"))
        for k in ("macs", "params"):
            check_fraction(k, getattr(self, k), allow_zero=False, allow_one=True, allow_none=True)
        check_positive("latency_ms", self.latency_ms, allow_none=True)
        check_fraction("budget_floor", self.budget_floor)
        check_choice("latency_mode", self.latency_mode, ("median", "fastest"))
        check_int("latency_rounds", self.latency_rounds)
        if self.macs is None and self.params is None and self.latency_ms is None:
            raise ConfigError("give a budget: macs, params and/or latency_ms")
        check_int("greedy_moves", self.greedy_moves, minimum=0)
        for k in ("hidden", "rank"):
            check_int(k, getattr(self, k))
        check_int("workers", self.workers, allow_none=True)
        check_fraction("val_fraction", self.val_fraction, allow_zero=False)
        from prunekit.config import from_dict
        from prunekit.train import TrainConfig

        from_dict(TrainConfig, self.supernet, where="supernet")
        self.finetune = as_finetune(self.finetune, SearchFinetune, "finetune")
        from_dict(EvolutionConfig, self.evolution, where="evolution")

    def train_config(self, which: str):
        """The :class:`~prunekit.train.TrainConfig` of "supernet" (defaults filled in) or "finetune" (:attr:`finetune`)."""
        from prunekit.config import from_dict
        from prunekit.train import TrainConfig

        if which == "finetune":
            return self.finetune
        return from_dict(TrainConfig, dict(getattr(self, which)), where=which)

    def evolution_config(self) -> EvolutionConfig:
        """The :class:`EvolutionConfig` (seeded with :attr:`seed` unless it sets its own)."""
        from prunekit.config import from_dict

        return from_dict(EvolutionConfig, {"seed": self.seed, **self.evolution}, where="evolution")

    def to_dict(self) -> dict:
        """Plain JSON/YAML-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        """Build from a dict; unknown keys or wrong types raise ConfigError naming the key."""
        from prunekit.config import from_dict

        return from_dict(cls, d)


@dataclass
class SearchResult:
    """What :func:`search` found and produced."""

    encoding: tuple
    widths: list
    plan: object
    model: object
    report: dict


def _budget(space, cfg: SearchConfig, lut):
    """``(within, in_band, limits)``: the upper-bound check, the same plus :attr:`SearchConfig.budget_floor`."""
    full = space.full
    macs_max = cfg.macs * space.macs(full) if cfg.macs is not None else None
    params_max = cfg.params * space.params(full) if cfg.params is not None else None
    floor = float(cfg.budget_floor)

    def measures(enc):
        # lazily, cheapest first: the table may time layers it has not seen yet
        if macs_max is not None:
            yield space.macs(enc), macs_max
        if params_max is not None:
            yield space.params(enc), params_max
        if cfg.latency_ms is not None:
            yield lut.predict(enc), cfg.latency_ms

    def within(enc) -> bool:
        return all(v <= top for v, top in measures(enc))

    def in_band(enc) -> bool:
        return all(floor * top <= v <= top for v, top in measures(enc))

    if cfg.method == "metapruning" and floor > 0 and not _band_reachable(space, in_band, cfg):
        import warnings

        warnings.warn(f"search: no encoding of the width grid found within {100 * floor:.0f}-100% of the budget "
                      f"in {cfg.evolution_config().max_tries} random draws; searching under the upper bound "
                      "alone (a finer --ratios grid lets the search use the budget)", stacklevel=3)
        floor, in_band = 0.0, within
    limits = {"macs_max": macs_max, "params_max": params_max, "latency_ms_max": cfg.latency_ms,
              "budget_floor": floor if cfg.method == "metapruning" else 0.0}
    return within, in_band, limits


def _band_reachable(space, in_band, cfg: SearchConfig) -> bool:
    """Whether random draws, which seed the evolution, hit the budget band (a coarse grid may have none there)."""
    import numpy as np

    from prunekit.search.evolution import random_encoding

    rng = np.random.default_rng([cfg.seed, 7919])  # its own stream: the search's draws stay as they were
    return any(in_band(random_encoding(space.candidates, rng)) for _ in range(cfg.evolution_config().max_tries))


#: every file a search writes into its folder (the refusal names the first one found)
OUTPUT_FILES = ("search_log.json", "supernet.pt", "supernet.json", "latency_table.json", "population.png",
                "widths.png", "plan.json", "pruned.pt", "finetune/")


def search(model, data, config: SearchConfig | dict, out_dir, *, resume: bool = False, progress: bool = True,
           overwrite: bool = False, supernet=None, provenance: dict | None = None) -> SearchResult:
    """Search per-group channel counts of ``model`` under a budget, then prune, fine-tune and report.

    Args:
        model: the trained network (not modified); ideally from :func:`prunekit.models.create`
            so the result can be checkpointed.
        data: a :class:`prunekit.data.DatasetSplits`; the search only sees a split of its
            training data, the test split is used once for the final report.
        config: a :class:`SearchConfig` or its dict.
        out_dir: output folder (see the module docstring).
        resume: continue an interrupted run in ``out_dir``.
        overwrite: allow a fresh run into a folder that already holds a search.
        supernet: path of a ``supernet.pt`` written by an earlier search of the same model
            with the same method, grid, seed and split: it is reused instead of trained
            (one PruningNet / slimmable network serves every budget, as both papers do).
            Its ``supernet.json`` records what it was trained for; a mismatch is an error.
        provenance: what the caller knows of the run's origin (``{"command": ..., "source": path}``,
            see :func:`prunekit.runs.provenance`); completed with the config and the dataset.
    """
    import copy

    import torch

    from prunekit.search import latency as lat
    from prunekit.search.evaluate import CandidateCache, EvalData, ParallelScorer, fixed_subset
    from prunekit.search.log import SearchLog, plot_population
    from prunekit.search.phases import PhaseTimer
    from prunekit.search.space import SearchSpace

    from prunekit.runs import RunDir, source_path

    cfg = config if isinstance(config, SearchConfig) else SearchConfig.from_dict(dict(config))
    out = Path(out_dir)
    log_path = out / "search_log.json"
    source = source_path(provenance)
    # a reused super-network may be the previous search's own (its supernet.json is checked beside it)
    reused = [supernet, Path(supernet).with_name("supernet.json")] if supernet is not None else []
    run = RunDir.open(out, OUTPUT_FILES, overwrite=overwrite, resume=resume, resumable=True, what="a search",
                      keep=[*reused, cfg.latency_table, source])
    out.mkdir(parents=True, exist_ok=True)
    timer = PhaseTimer()
    torch.manual_seed(cfg.seed)
    example = data.train_x[:1]
    model = copy.deepcopy(model).eval()
    with timer.phase("space"):
        space = SearchSpace.build(model, example, ratios=cfg.ratios, round_to=cfg.round_to,
                                  min_channels=cfg.min_channels, ignored_layers=cfg.ignored_layers)
    lut = None
    if cfg.latency_ms is not None:
        # a resumed search keeps the table it started with, so its constraint checks do not move
        source = cfg.latency_table or (out / "latency_table.json" if resume and (out / "latency_table.json").exists()
                                       else None)
        if source is not None:
            lut = lat.LatencyTable.load(source)
            lut.check_matches(model, example, space, where=f"latency table {source}")
        else:
            lut = lat.LatencyTable.build(model, example, space, repeats=cfg.latency_repeats, progress=progress,
                                         mode=cfg.latency_mode, rounds=cfg.latency_rounds)
        lut.save(out / "latency_table.json")
    within, in_band, limits = _budget(space, cfg, lut)
    sub = data.holdout(cfg.val_fraction, seed=cfg.seed)
    # drawn once: every candidate is scored on the same images, calibrated on the same batches
    val_x, val_y = fixed_subset(sub.test_x, sub.test_y, cfg.eval_samples, cfg.seed)
    with timer.phase("supernet"):
        from prunekit.search.supernet import supernet_data, train_supernet

        supernet = train_supernet(model, space, supernet_data(sub, val_x, val_y, cfg), cfg, out / "supernet.pt",
                                  resume, progress, source=supernet)

    def realise(enc):
        base = supernet.subnet(enc) if cfg.method == "metapruning" else supernet
        return space.plan(enc).apply(base)

    calib_x = sub.train_x[: cfg.calib_batches * cfg.calib_batch_size].clone()  # only what is used goes to workers
    edata = EvalData(calib_x, val_x, val_y, cfg.calib_batches, cfg.calib_batch_size)
    header = {"method": cfg.method, "seed": cfg.seed, "greedy_moves": cfg.greedy_moves, "limits": limits, "groups": [list(c) for c in space.candidates],
              "evolution": dataclasses.asdict(cfg.evolution_config()) if cfg.method == "metapruning" else None,
              "evaluation": {"calib_batches": cfg.calib_batches, "calib_batch_size": cfg.calib_batch_size,
                             "eval_samples": len(val_y)}}
    log = SearchLog.open(log_path, header, resume)
    import os

    workers = cfg.workers if cfg.workers is not None else max(1, min(4, os.cpu_count() or 1))
    with timer.phase("search"), ParallelScorer(edata, workers=workers, ray_address=cfg.ray_address) as scorer:
        def score_many(encs):
            res = scorer.map([realise(e) for e in encs])
            rows = []
            for e, r in zip(encs, res):
                row = {"score": r["accuracy"], "accuracy": r["accuracy"], "macs": space.macs(e),
                       "params": space.params(e)}
                if lut is not None:
                    row["latency_ms"] = lut.predict(e)
                rows.append(row)
            return rows

        cache = CandidateCache(score_many)
        if cfg.method == "metapruning":
            from prunekit.search.evolution import evolve

            best = evolve(space.candidates, cache, in_band, cfg.evolution_config(), log, progress)
        else:
            from prunekit.search.slimmable import greedy_slim

            moves = cfg.greedy_moves or -(-len(space) // 2)  # 0: half the groups per step
            best = greedy_slim(space, cache, within, log, progress, moves=moves)
        plot_population(log, out / "population.png")
    if lut is not None:
        lut.save(out / "latency_table.json")  # with the entries the search measured on the way
    enc = tuple(best["encoding"])
    counts = {"candidates_evaluated": cache.evaluated, "candidates_cached": cache.hits}
    return _finish(model, supernet, space, enc, best, data, cfg, run, resume, progress, lut, limits, provenance,
                   timer, counts)


def _finish(model, supernet, space, enc, best, data, cfg, run, resume, progress, lut, limits, provenance, timer,
            counts):
    from prunekit import checkpoint
    from prunekit.measure import count_macs, count_params
    from prunekit.runs import complete
    from prunekit.search.evaluate import recalibrate_bn
    from prunekit.search.report import build_report, plot_widths
    from prunekit.train import evaluate, reinitialize, run_finetune

    out = run.path
    plan = space.plan(enc, info={"method": cfg.method})
    plan.save(out / "plan.json")
    if cfg.init == "supernet":
        base = supernet.subnet(enc) if cfg.method == "metapruning" else supernet
        base.prunekit_spec = getattr(model, "prunekit_spec", None)
    else:
        base = model
    pruned = plan.apply(base)
    if cfg.init == "scratch":
        pruned = reinitialize(pruned, cfg.seed)
    bs = cfg.calib_batch_size
    x = data.train_x[: cfg.calib_batches * bs]
    recalibrate_bn(pruned, [x[i:i + bs] for i in range(0, len(x), bs)])
    before = evaluate(pruned, data.test_x, data.test_y)
    ft = cfg.finetune
    with timer.phase("finetune"):
        if ft.epochs > 0:
            can_ckpt = checkpoint.get_spec(pruned) is not None
            run_finetune(pruned, data, ft, progress=progress and ft.progress, seed=cfg.seed,
                         out_dir=out / "finetune" if can_ckpt else None, resume=resume and can_ckpt, overwrite=True)
    pruned.eval()
    after = evaluate(pruned, data.test_x, data.test_y)
    example = data.train_x[:1]
    full_macs = float(count_macs(model, example).total)
    macs = float(count_macs(pruned, example).total)
    report = {
        "method": cfg.method, "config": cfg.to_dict(), "limits": limits, "encoding": list(enc),
        "widths": space.layer_widths(enc), "search_score": best.get("score"),
        "macs": macs, "macs_full": full_macs, "macs_fraction": macs / full_macs,
        "params": int(count_params(pruned)), "params_full": int(count_params(model)),
        "test_top1_before_finetune": before["top1"], "test_top1": after["top1"],
        "test_top1_full_model": evaluate(model, data.test_x, data.test_y)["top1"],
        "preset": cfg.preset, **counts,
    }
    if lut is not None:
        report.update(_latency_report(lut, enc, pruned, model, example))
    if checkpoint.get_spec(pruned) is not None:
        from prunekit.runs import lineage, source_path

        lin = lineage(source_path(provenance), None, dataset=getattr(data, "name", None),
                      input_shape=tuple(data.test_x.shape[1:]))
        checkpoint.save(out / "pruned.pt", pruned, meta={"search": {k: report[k] for k in
                                                                    ("method", "encoding", "test_top1")}, **lin})
        report["checkpoint"] = str(out / "pruned.pt")
    plot_widths(space.layer_widths(enc), out / "widths.png", title=f"{cfg.method}: channels kept")
    report["seconds"] = timer.as_dict()  # wall time per phase (the latency measurement above counts in total only)
    prov = complete(provenance, call="prunekit.search.search", config=cfg.to_dict(),
                    dataset=getattr(data, "name", None))
    run.write_report(build_report(report), prov)
    return SearchResult(enc, space.layer_widths(enc), plan, pruned, report)


def _latency_report(lut, enc, pruned, model, example) -> dict:
    """Measured latency of the found network beside the table's prediction, and how much the machine drifted.

    The found and the full network are timed interleaved (:func:`prunekit.measure.compare_latency`,
    their runs alternating) in 5 rounds ("fastest" mode: 10, half a second apart); the table's
    mode picks the statistic of the rounds' medians (their median, or the fastest round). The
    per-run pairs of all rounds give ``latency_ratio``, the paired ratio found/full with its
    bootstrap interval (:func:`prunekit.measure.speedup_from_times`; "not measurable" when the
    rounds disagree too much). The full network's time now against the table's ``reference_ms``
    (the same network timed when the table was built) says how much faster or slower this
    machine is than when the table was measured; ``latency_ms_measured_at_table_speed``
    removes that drift from the measurement.
    """
    from prunekit.measure import compare_latency, speedup_from_times
    from prunekit.search.latency import timing_rounds

    found, full, found_runs, full_runs = [], [], [], []
    for _ in timing_rounds(lut.mode):
        res = compare_latency({"full": model.eval(), "found": pruned.eval()}, example, threads=1)
        found.append(float(res["found"].median_ms))
        full.append(float(res["full"].median_ms))
        found_runs += [t / 1000.0 for t in res["found"].round_ms]
        full_runs += [t / 1000.0 for t in res["full"].round_ms]
    measured, full_now = lut.statistic(found), lut.statistic(full)
    ratio = speedup_from_times(full_runs, found_runs, threads=1, batch_size=res["full"].batch_size)
    rep = {"latency_mode": lut.mode, "latency_ms_predicted": lut.predict(enc), "latency_ms_measured": measured,
           "latency_ms_full_measured": full_now, "latency_ms_full_at_table": lut.reference_ms,
           "latency_ratio": ratio.to_dict()}
    if lut.reference_ms > 0:
        rep["latency_drift"] = full_now / lut.reference_ms
        rep["latency_ms_measured_at_table_speed"] = measured / rep["latency_drift"]
    return rep
