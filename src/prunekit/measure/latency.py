"""Wall-clock latency of a forward pass: warm-up, then the median of many timed runs.

How a run is timed (see ``docs/measure.md``):

* the model is put in eval mode (flags restored afterwards) and run under
  ``torch.inference_mode()``;
* ``torch.set_num_threads(threads)`` fixes the intra-op thread count for the
  measurement and the previous count is restored afterwards;
* ``warmup`` untimed runs first (allocator caches, oneDNN primitive creation,
  lazy initialisation), then each timed run is bracketed by
  ``time.perf_counter()`` (with ``torch.cuda.synchronize()`` for CUDA inputs);
* Python's garbage collector is paused while timing, as ``timeit`` does;
* the median (robust to the outliers a shared machine produces) is the headline
  figure, with the mean and the 10th/90th percentiles beside it.

Example:
    >>> import torch, torch.nn as nn
    >>> r = measure_latency(nn.Linear(8, 8), torch.zeros(1, 8), warmup=1, repeats=5, threads=1)
    >>> r.repeats >= 5 and r.p10_ms <= r.median_ms <= r.p90_ms
    True
"""
from __future__ import annotations

import contextlib
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Mapping

from prunekit.errors import ConfigError, PrunekitError
from prunekit.measure._utils import batch_size_of, call_model, eval_mode, is_cuda_input
from prunekit.measure.threads import check_threads, num_threads
from prunekit.validate import check_int, check_number


@dataclass(frozen=True)
class LatencyResult:
    """Summary of the timed runs of one model on one input (all times in milliseconds per forward pass).

    Attributes:
        median_ms: median time of one forward pass (the headline figure).
        mean_ms: mean time.
        p10_ms: 10th percentile (a fast run).
        p90_ms: 90th percentile (a slow run).
        min_ms: fastest run.
        repeats: number of timed runs.
        threads: torch intra-op threads during the runs.
        batch_size: leading dimension of the input.
        round_ms: the time of each timed run in order (ms); with :func:`compare_latency`,
            run ``i`` of every model is round ``i``, so two models' ``round_ms`` are paired.
        session: an id shared by the results of one interleaved timing call ("" otherwise);
            :func:`prunekit.measure.paired_speedup` pairs only results of the same session.
    """

    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    repeats: int
    threads: int
    batch_size: int
    round_ms: tuple = field(default=(), repr=False)
    session: str = ""

    @property
    def per_sample_ms(self) -> float:
        """Median time divided by the batch size."""
        return self.median_ms / self.batch_size

    @property
    def throughput(self) -> float:
        """Samples per second at the median time."""
        return 1000.0 * self.batch_size / self.median_ms if self.median_ms > 0 else float("inf")

    def to_dict(self) -> dict:
        """JSON-able form (``round_ms`` as a list)."""
        d = asdict(self)
        d["round_ms"] = list(self.round_ms)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "LatencyResult":
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ConfigError naming the key.

        ``round_ms`` and ``session`` may be missing (reports written before prunekit kept them).
        """
        names = {f.name for f in fields(cls)}
        optional = {"round_ms", "session"}
        for key in d:
            if key not in names:
                raise ConfigError(f"LatencyResult: unknown key {key!r}")
        for key in names - optional:
            if key not in d:
                raise ConfigError(f"LatencyResult: missing key {key!r}")
        try:
            values = {k: (int(d[k]) if k in ("repeats", "threads", "batch_size") else float(d[k]))
                      for k in names - optional}
            return cls(**values, round_ms=tuple(float(t) for t in d.get("round_ms", ())),
                       session=str(d.get("session", "")))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"LatencyResult: malformed value ({e})") from None

    @classmethod
    def from_times(cls, times_s, threads: int, batch_size: int, session: str = "") -> "LatencyResult":
        """Summarise raw per-run times in seconds (pure function); the times are kept in ``round_ms``."""
        import numpy as np

        t = np.asarray(times_s, dtype=np.float64) * 1000.0
        if t.size == 0:
            raise ValueError("no timings to summarise")
        p10, med, p90 = np.percentile(t, [10, 50, 90])
        return cls(median_ms=float(med), mean_ms=float(t.mean()), p10_ms=float(p10), p90_ms=float(p90),
                   min_ms=float(t.min()), repeats=int(t.size), threads=threads, batch_size=batch_size,
                   round_ms=tuple(float(x) for x in t), session=session)


def check_latency_args(warmup, repeats, threads, min_time_s, max_repeats) -> int:
    """Validate the timing arguments (PrunekitError naming the bad one); returns the cap on timed runs."""
    check_int("warmup", warmup, minimum=0, error=PrunekitError)
    check_int("repeats", repeats, error=PrunekitError)
    check_threads(threads)
    check_number("min_time_s", min_time_s, minimum=0, finite=False, error=PrunekitError)  # inf: always max_repeats
    if max_repeats is None:
        return max(repeats, 20 * repeats)
    check_int("max_repeats", max_repeats, error=PrunekitError)
    if max_repeats < repeats:
        raise PrunekitError(f"max_repeats ({max_repeats}) must be >= repeats ({repeats})")
    return max_repeats


def measure_latency(model, example_input, warmup: int = 10, repeats: int = 50, threads: int | None = None,
                    min_time_s: float = 0.0, max_repeats: int | None = None,
                    progress: bool = False) -> LatencyResult:
    """Time forward passes of ``model`` on ``example_input``; see the module docstring for the method.

    Args:
        model: an ``nn.Module``.
        example_input: a tensor, a tuple of positional inputs or a dict of keyword inputs.
        warmup: untimed runs before timing.
        repeats: minimum number of timed runs.
        threads: torch intra-op threads for the measurement; None keeps the current count.
        min_time_s: keep timing (beyond ``repeats``) until this much time was
            measured, so fast models get enough samples; capped by ``max_repeats``.
        max_repeats: cap on the timed runs (default ``20 * repeats``).
        progress: show a tqdm bar over the timed runs.
    """
    max_runs = check_latency_args(warmup, repeats, threads, min_time_s, max_repeats)
    return compare_latency({"model": model}, example_input, warmup=warmup, repeats=repeats, threads=threads,
                           min_time_s=min_time_s, max_repeats=max_runs, progress=progress)["model"]


def compare_latency(models: Mapping[str, object], example_input, warmup: int = 10, repeats: int = 50,
                    threads: int | None = None, min_time_s: float = 0.0, max_repeats: int | None = None,
                    progress: bool = False) -> dict:
    """Time several models side by side, interleaving their runs, and return ``{name: LatencyResult}``.

    On a shared, noisy machine, a slow spell hits every model alike when runs
    alternate (round ``r`` times model ``A, B, C`` in a rotated order). Each
    result keeps its per-round times and the call's ``session`` id, so
    :func:`prunekit.measure.paired_speedup` turns two of them into a paired ratio
    with a bootstrap interval (:func:`prunekit.measure.compare_speed` does both for two models).

    Args:
        models: ``{name: module}``; every model gets the same ``example_input``.
        example_input: as in :func:`measure_latency`.
        warmup, repeats, threads, min_time_s, max_repeats, progress: as in
            :func:`measure_latency`; ``repeats``/``min_time_s`` apply per model.

    Example:
        >>> import torch, torch.nn as nn
        >>> res = compare_latency({"big": nn.Linear(64, 64), "small": nn.Linear(64, 8)},
        ...                       torch.zeros(1, 64), warmup=1, repeats=3, threads=1)
        >>> sorted(res)
        ['big', 'small']
    """
    if not isinstance(models, Mapping) or not models:
        raise PrunekitError("compare_latency needs a non-empty dict {name: model}")
    max_runs = check_latency_args(warmup, repeats, threads, min_time_s, max_repeats)

    def done(times: dict, rounds: int) -> bool:
        if rounds >= max_runs:
            return True
        return rounds >= repeats and all(sum(t) >= min_time_s for t in times.values())

    return time_rounds(models, example_input, warmup=warmup, threads=threads, done=done,
                       progress_total=repeats if progress else None)


def time_rounds(models: Mapping[str, object], example_input, warmup: int, threads: int | None,
                done: Callable[[dict, int], bool], progress_total: int | None = None, *, warm_calls: int = 0,
                min_turn_s: float = 0.0) -> dict:
    """Time ``models`` on ``example_input`` with :func:`prunekit.measure.interleave.interleave` until ``done``.

    ``done(times, rounds)`` is asked before every round with the times so far
    (``{name: [seconds, ...]}``, one per round) and the number of rounds; the rounds
    rotate the order of the models. ``warm_calls``/``min_turn_s``: as in ``interleave``
    (the defaults time single calls, as :func:`measure_latency` reports them; paired
    comparisons pass ``warm_calls=1``). Returns ``{name: LatencyResult}`` sharing one
    ``session`` id, each with its per-round times. Arguments are not checked here.
    """
    import torch

    from prunekit.measure.interleave import interleave

    names = list(models)
    sync = torch.cuda.synchronize if is_cuda_input(example_input) else None
    fns = [(lambda m=models[n]: call_model(m, example_input)) for n in names]
    with contextlib.ExitStack() as stack:
        for model in models.values():
            stack.enter_context(eval_mode(model))
        used_threads = stack.enter_context(num_threads(threads))
        stack.enter_context(torch.inference_mode())
        bar = None
        if progress_total:
            from prunekit.utils.progress import progress_bar

            bar = stack.enter_context(progress_bar(total=progress_total, desc="latency", unit="round"))

        def on_round(r: int) -> None:
            if bar is not None and r <= progress_total:
                bar.update(1)

        times = interleave(fns, lambda t, r: done(dict(zip(names, t)), r), warmup=warmup, warm_calls=warm_calls,
                           min_turn_s=min_turn_s, sync=sync, on_round=on_round)
    batch = batch_size_of(example_input)
    session = uuid.uuid4().hex[:12]  # ties these results together, so only they pair (paired_speedup)
    return {n: LatencyResult.from_times(t, threads=used_threads, batch_size=batch, session=session)
            for n, t in zip(names, times)}
