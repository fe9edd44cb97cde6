"""Paired latency ratios with a bootstrap confidence interval, and the verdict whether they mean anything.

Two models timed one after the other on a shared machine measure the machine, not
the models: a slow spell during one of the two measurements becomes the result.
prunekit therefore times before and after **interleaved** in rounds (round ``r``
runs both models back to back, in alternating order; see
:func:`prunekit.measure.compare_latency`) and reports, from the per-round times:

* ``ratio``: the **median of the per-round ratios** ``t_after / t_before``. Each
  round's two runs share the machine's state of that moment, so a slow spell
  inflates both and cancels in their ratio; the median then ignores the rounds
  where only one of the two runs was hit. (The ratio of the two medians would
  throw the pairing away: a spell during half of the after-runs moves it.)
* ``low``/``high``: a percentile **bootstrap** interval of that median: rounds are
  resampled with replacement (``resamples`` times, seeded: the same times give the
  same interval), the median ratio of each resample taken, and the
  ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles reported
  (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13).
* ``half_width``: the interval's half-width relative to the ratio,
  ``(high - low) / (2 * ratio)``; ``spread``: the round-to-round spread of the
  ratios, their interquartile range relative to the ratio.
* ``measurable``: False when ``half_width > tolerance`` (default 0.10: the ratio is
  known to within +-10%) or fewer than :data:`MIN_ROUNDS` rounds were timed. A
  result that is not measurable is described as such, never as a number.

Example:
    >>> before = [0.010, 0.012, 0.011, 0.010, 0.013, 0.010]   # seconds per round
    >>> after = [t / 2 for t in before]                         # exactly twice as fast every round
    >>> r = speedup_from_times(before, after, threads=1, batch_size=1)
    >>> (r.ratio, r.low, r.high, r.measurable)
    (0.5, 0.5, 0.5, True)
    >>> r.describe()
    '0.50x latency [0.50, 0.50] (95% CI, 6 rounds, batch 1, 1 thread)'
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, fields
from typing import Mapping, Optional, Sequence

from prunekit.errors import ConfigError, PrunekitError
from prunekit.measure import interleave as _interleave
from prunekit.measure.latency import LatencyResult

__all__ = ["DEFAULT_CONFIDENCE", "DEFAULT_RESAMPLES", "DEFAULT_TOLERANCE", "MIN_ROUNDS", "SpeedConfig",
           "SpeedupResult", "bootstrap_median_interval", "compare_speed", "paired_speedup", "speedup_from_times",
           "time_interleaved"]

#: the interval's probability
DEFAULT_CONFIDENCE = 0.95
#: bootstrap resamples (2000: the percentile endpoints move by well under 1% between seeds)
DEFAULT_RESAMPLES = 2000
#: largest relative half-width of the interval for a ratio to count as measured (+-10%)
DEFAULT_TOLERANCE = 0.10
#: fewer rounds than this give no usable interval, whatever its width
MIN_ROUNDS = _interleave.MIN_ROUNDS
#: how a timing ended: the rounds asked for, the interval got tight, or the time limit passed
STOPS = ("rounds", "tight", "time limit")


@dataclass(frozen=True)
class SpeedupResult:
    """The latency of ``after`` relative to ``before``, timed interleaved: a ratio, its interval and a verdict.

    Attributes:
        ratio: median over rounds of ``t_after / t_before`` (0.5: ``after`` takes half the time).
        low, high: the bootstrap interval of ``ratio`` at ``confidence``.
        confidence: the interval's probability (0.95).
        rounds: interleaved rounds timed (one run of each model per round).
        half_width: ``(high - low) / (2 * ratio)``, what ``measurable`` is decided on.
        spread: interquartile range of the per-round ratios divided by ``ratio``.
        tolerance: the largest ``half_width`` counted as measurable.
        measurable: whether the ratio is known to within ``tolerance`` (and enough rounds ran).
        reason: why not, in words ("" when measurable).
        stopped: ``"rounds"`` (the rounds asked for), ``"tight"`` or ``"time limit"`` (repeat-until-tight).
        threads: torch intra-op threads during the runs.
        batch_size: leading dimension of the input.
        before, after: each model's own :class:`LatencyResult` over the same rounds.
    """

    ratio: float
    low: float
    high: float
    confidence: float
    rounds: int
    half_width: float
    spread: float
    tolerance: float
    measurable: bool
    reason: str
    stopped: str
    threads: int
    batch_size: int
    before: LatencyResult
    after: LatencyResult

    @property
    def speedup(self) -> float:
        """``1 / ratio``: how many times faster ``after`` is (its interval is ``(1 / high, 1 / low)``)."""
        return 1.0 / self.ratio

    def describe(self) -> str:
        """One line: ``"0.52x latency [0.49, 0.55] (95% CI, 40 rounds, batch 32, 2 threads)"``, or why not measurable."""
        if not self.measurable:
            return f"latency not measurable on this machine right now: {self.reason}"
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return (f"{self.ratio:.2f}x latency [{self.low:.2f}, {self.high:.2f}] ({100 * self.confidence:.0f}% CI, "
                f"{self.rounds} rounds, batch {self.batch_size}, {threads})")

    def short(self) -> str:
        """The ratio and interval for a table cell (``"0.52x [0.49, 0.55]"``), or ``"not measurable (+-23%)"``."""
        if not self.measurable:
            return f"not measurable (+-{100 * self.half_width:.0f}%)" if self.rounds >= MIN_ROUNDS else \
                "not measurable"
        return f"{self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}]"

    def summary(self) -> dict:
        """The headline numbers for a report: ratio, low, high, confidence, rounds, measurable, reason, threads,
        batch_size and both medians (``before_ms``, ``after_ms``), without the per-round times."""
        keys = ("ratio", "low", "high", "confidence", "rounds", "measurable", "reason", "threads", "batch_size")
        return {**{k: getattr(self, k) for k in keys}, "before_ms": self.before.median_ms,
                "after_ms": self.after.median_ms}

    def to_dict(self) -> dict:
        """JSON-able form (``before``/``after`` as :meth:`LatencyResult.to_dict`)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["before"], d["after"] = self.before.to_dict(), self.after.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "SpeedupResult":
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ConfigError naming the key."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"SpeedupResult: expected a mapping, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        for key in d:
            if key not in names:
                raise ConfigError(f"SpeedupResult: unknown key {key!r}")
        for key in names:
            if key not in d:
                raise ConfigError(f"SpeedupResult: missing key {key!r}")
        kinds = {"rounds": int, "threads": int, "batch_size": int, "measurable": bool, "reason": str,
                 "stopped": str}
        try:
            values = {k: kinds.get(k, float)(d[k]) for k in names if k not in ("before", "after")}
        except (TypeError, ValueError) as e:
            raise ConfigError(f"SpeedupResult: malformed value ({e})") from None
        return cls(**values, before=LatencyResult.from_dict(d["before"]), after=LatencyResult.from_dict(d["after"]))


def bootstrap_median_interval(values, confidence: float = DEFAULT_CONFIDENCE, resamples: int = DEFAULT_RESAMPLES,
                              seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values`` (pure, seeded).

    ``resamples`` samples of ``len(values)`` indices are drawn with replacement by
    ``numpy.random.default_rng(seed).integers``; the interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of their medians.

    Example:
        >>> bootstrap_median_interval([2.0, 2.0, 2.0])
        (2.0, 2.0)
    """
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise PrunekitError(f"bootstrap needs a non-empty 1-d sequence of values, got shape {v.shape}")
    rng = np.random.default_rng(seed)
    medians = np.median(v[rng.integers(0, v.size, size=(resamples, v.size))], axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return float(low), float(high)


def _check_options(confidence, tolerance, resamples, seed) -> None:
    from prunekit.validate import check_int, check_number

    check_number("confidence", confidence, minimum=0.0, maximum=1.0, low_open=True, high_open=True,
                 error=PrunekitError)
    check_number("tolerance", tolerance, minimum=0.0, error=PrunekitError)
    check_int("resamples", resamples, minimum=1, error=PrunekitError)
    check_int("seed", seed, minimum=0, error=PrunekitError)


def speedup_from_times(before_s: Sequence[float], after_s: Sequence[float], threads: int, batch_size: int, *,
                       confidence: float = DEFAULT_CONFIDENCE, tolerance: float = DEFAULT_TOLERANCE,
                       resamples: int = DEFAULT_RESAMPLES, seed: int = 0, stopped: str = "rounds") -> SpeedupResult:
    """The :class:`SpeedupResult` of per-round paired times in seconds (``before_s[i]``, ``after_s[i]``: round ``i``).

    Pure: the same times and seed give the same result. See the module docstring for the method.

    Args:
        before_s, after_s: one time per round for each model, same length, positive.
        threads, batch_size: recorded in the result.
        confidence: the interval's probability.
        tolerance: largest relative half-width of the interval counted as measurable.
        resamples, seed: of the bootstrap.
        stopped: how the timing ended (one of ``"rounds"``, ``"tight"``, ``"time limit"``).

    Example:
        >>> r = speedup_from_times([1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5], threads=2, batch_size=8)
        >>> r.ratio, r.measurable, r.reason
        (0.5, False, 'only 4 rounds were timed (at least 5 are needed)')
    """
    import numpy as np

    _check_options(confidence, tolerance, resamples, seed)
    if stopped not in STOPS:
        raise PrunekitError(f"stopped must be one of {', '.join(STOPS)}, got {stopped!r}")
    b, a = np.asarray(before_s, dtype=np.float64), np.asarray(after_s, dtype=np.float64)
    if b.ndim != 1 or b.shape != a.shape or b.size == 0:
        raise PrunekitError(f"paired times need one time per round for each model: got {b.size} before and "
                            f"{a.size} after")
    if not (np.isfinite(b).all() and np.isfinite(a).all() and (b > 0).all() and (a > 0).all()):
        raise PrunekitError("paired times must be positive and finite")
    ratios = a / b
    ratio = float(np.median(ratios))
    low, high = bootstrap_median_interval(ratios, confidence, resamples, seed)
    q25, q75 = np.percentile(ratios, [25, 75])
    half_width = (high - low) / (2.0 * ratio)
    spread = float(q75 - q25) / ratio
    if b.size < MIN_ROUNDS:
        reason = f"only {b.size} rounds were timed (at least {MIN_ROUNDS} are needed)"
    elif half_width > tolerance:
        reason = (f"spread {100 * spread:.0f}% between rounds; the {100 * confidence:.0f}% interval "
                  f"[{low:.2f}, {high:.2f}] is +-{100 * half_width:.0f}% of the ratio {ratio:.2f} "
                  f"(more than +-{100 * tolerance:.0f}%)")
    else:
        reason = ""
    if reason and stopped == "time limit":
        reason += f"; the time limit passed after {b.size} rounds"
    return SpeedupResult(ratio=ratio, low=low, high=high, confidence=float(confidence), rounds=int(b.size),
                         half_width=float(half_width), spread=spread, tolerance=float(tolerance),
                         measurable=not reason, reason=reason, stopped=stopped, threads=int(threads),
                         batch_size=int(batch_size),
                         before=LatencyResult.from_times(b, threads=threads, batch_size=batch_size),
                         after=LatencyResult.from_times(a, threads=threads, batch_size=batch_size))


def paired_speedup(before: LatencyResult, after: LatencyResult, **options) -> SpeedupResult | None:
    """The :class:`SpeedupResult` of two latencies timed together in one interleaved call, else None.

    ``before`` and ``after`` pair when they carry per-round times (``round_ms``) of the
    same timing session (``session``, set by :func:`prunekit.measure.compare_latency`)
    and as many of them; two separate measurements do not pair: their ratio would
    measure the machine between them. ``options``: as in :func:`speedup_from_times`.
    The returned ``before``/``after`` are the given results themselves.
    """
    if not (before.session and before.session == after.session and before.round_ms
            and len(before.round_ms) == len(after.round_ms)):
        return None
    r = speedup_from_times([t / 1000.0 for t in before.round_ms], [t / 1000.0 for t in after.round_ms],
                           threads=before.threads, batch_size=before.batch_size, **options)
    return dataclasses.replace(r, before=before, after=after)


#: with ``until_tight``, the interval is recomputed every this many rounds after the first ``rounds``
CHECK_EVERY = _interleave.CHECK_EVERY


@dataclass
class SpeedConfig:
    """How :func:`compare_speed` times two models (keys of ``speed:`` sections and ``--set``-style options).

    Attributes:
        rounds: interleaved rounds to time (one run of each model per round); with
            ``until_tight``, the rounds timed before the interval is first looked at.
        warmup: untimed runs of each model first.
        threads: torch intra-op threads (None: the current count).
        confidence: the interval's probability.
        tolerance: largest relative half-width of the interval counted as measurable (0.10: +-10%).
        until_tight: keep timing rounds (checking every 10) until the interval's half-width is
            within ``tolerance`` or ``max_time_s`` has passed.
        max_time_s: the time limit of ``until_tight`` (warm-up included); at least 5 rounds are
            timed whatever the limit.
        resamples, seed: of the bootstrap interval.
        warm_calls: untimed calls at the start of every model's turn, so each timed call finds
            that model's weights in the caches whatever ran before it (see
            :mod:`prunekit.measure.interleave`).
        min_turn_s: a turn repeats its call until it lasts this long (small models at batch 1
            take less than the timer's noise); the round's time is the mean per call.
    """

    rounds: int = 50
    warmup: int = 10
    threads: Optional[int] = None
    confidence: float = DEFAULT_CONFIDENCE
    tolerance: float = DEFAULT_TOLERANCE
    until_tight: bool = False
    max_time_s: float = 60.0
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    warm_calls: int = 1
    min_turn_s: float = 0.005

    def __post_init__(self):
        from prunekit.measure.threads import check_threads
        from prunekit.validate import check_bool, check_int, check_number

        check_int("rounds", self.rounds, error=PrunekitError)
        check_int("warmup", self.warmup, minimum=0, error=PrunekitError)
        check_threads(self.threads)
        _check_options(self.confidence, self.tolerance, self.resamples, self.seed)
        check_bool("until_tight", self.until_tight, error=PrunekitError)
        check_number("max_time_s", self.max_time_s, minimum=0.0, low_open=True, error=PrunekitError)
        check_int("warm_calls", self.warm_calls, minimum=0, error=PrunekitError)
        check_number("min_turn_s", self.min_turn_s, minimum=0.0, error=PrunekitError)


def compare_speed(before, after, example_input, config: SpeedConfig | None = None, *, progress: bool = False,
                  **options) -> SpeedupResult:
    """Time ``before`` and ``after`` interleaved in rounds and return their paired latency ratio with an interval.

    Each round runs both models once on ``example_input`` (in alternating order),
    after ``warmup`` untimed runs of each, with eval mode, ``torch.inference_mode()``,
    a fixed thread count and the garbage collector paused, as
    :func:`prunekit.measure.measure_latency` does. See this module's docstring for the
    ratio, the interval and the verdict.

    Args:
        before, after: the two ``nn.Module`` s (e.g. dense and pruned).
        example_input: a tensor, tuple of positional inputs or dict of keyword inputs, given to both.
        config: a :class:`SpeedConfig`; ``options`` override its fields by name
            (``compare_speed(a, b, x, rounds=20, threads=1)``).
        progress: a tqdm bar over the first ``rounds`` rounds.

    Example:
        >>> import torch, torch.nn as nn
        >>> r = compare_speed(nn.Linear(64, 64), nn.Linear(64, 8), torch.zeros(1, 64), rounds=10, warmup=1,
        ...                   threads=1)
        >>> r.rounds, len(r.before.round_ms), r.low <= r.ratio <= r.high
        (10, 10, True)
        >>> print(r.describe())                   # doctest: +SKIP
        0.61x latency [0.55, 0.66] (95% CI, 10 rounds, batch 1, 1 thread)
    """
    cfg = _config(config, options)
    res, stopped = time_interleaved({"before": before, "after": after}, example_input, cfg, progress=progress)
    return paired_speedup(res["before"], res["after"], stopped=stopped, **_stats(cfg))


def _config(config, options: dict) -> SpeedConfig:
    cfg = config if config is not None else SpeedConfig()
    if not isinstance(cfg, SpeedConfig):
        raise PrunekitError(f"config must be a SpeedConfig, got {type(cfg).__name__}")
    known = {f.name for f in fields(SpeedConfig)}
    for key in options:
        if key not in known:
            raise PrunekitError(f"compare_speed: unknown option {key!r} (known: {', '.join(sorted(known))})")
    return dataclasses.replace(cfg, **options)  # __post_init__ checks the new values


def _stats(cfg: SpeedConfig) -> dict:
    return {"confidence": cfg.confidence, "tolerance": cfg.tolerance, "resamples": cfg.resamples, "seed": cfg.seed}


def time_interleaved(models: Mapping[str, object], example_input, config: SpeedConfig,
                     progress: bool = False) -> tuple[dict, str]:
    """Time several models interleaved by ``config``'s rules; returns ``({name: LatencyResult}, stopped)``.

    The results share one session, so any two of them pair (:func:`paired_speedup`).
    With ``config.until_tight`` the rounds go on until the interval of every model
    against the first one is within ``config.tolerance`` (``stopped == "tight"``) or
    ``config.max_time_s`` has passed (``"time limit"``); otherwise exactly
    ``config.rounds`` rounds are timed (``"rounds"``). Used by :func:`compare_speed` and
    :func:`prunekit.measure.profile_many` (``speed=``).
    """
    from prunekit.measure.latency import time_rounds

    if not isinstance(config, SpeedConfig):
        raise PrunekitError(f"config must be a SpeedConfig, got {type(config).__name__}")
    if not isinstance(models, Mapping) or not models:
        raise PrunekitError("time_interleaved needs a non-empty dict {name: model}")
    names = list(models)
    stats = _stats(config)

    def tight(times: dict) -> bool:
        return all(speedup_from_times(times[names[0]], times[n], 1, 1, **stats).measurable for n in names[1:])

    done, stopped = _interleave.stop_rule(config.rounds, is_tight=tight if config.until_tight else None,
                                          max_time_s=config.max_time_s, start=time.perf_counter())
    res = time_rounds(models, example_input, warmup=config.warmup, threads=config.threads, done=done,
                      progress_total=config.rounds if progress else None, warm_calls=config.warm_calls,
                      min_turn_s=config.min_turn_s)
    return res, stopped[0]
