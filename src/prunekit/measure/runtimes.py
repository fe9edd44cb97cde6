"""Latency on the runtimes people deploy with: eager torch, ``torch.compile`` and ONNX Runtime.

:func:`compare_runtimes` times a model before and after pruning on each runtime
at each batch size, **interleaved** (round ``r`` runs both models back to back,
the order alternating between rounds, so a slow spell of a shared machine hits
both alike), and reports per runtime and batch size the median of the per-round
ratios ``t_after / t_before`` with a seeded percentile-bootstrap 95% interval
over the rounds (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993,
ch. 13), plus each model's median time. The thread count is stated in every row:
torch runs under ``torch.set_num_threads(threads)``, ONNX Runtime sessions get
``intra_op_num_threads = threads``.

* ``eager``: the module itself under ``torch.inference_mode()``;
* ``compile``: ``torch.compile(module)`` (inductor; compiled once per batch size
  before timing, so compilation never counts);
* ``onnxruntime``: exported with ``torch.onnx.export(..., dynamo=True)`` to a
  temporary file per batch size and run by an ``onnxruntime.InferenceSession`` on
  the CPU execution provider (needs the ``onnx`` extra:
  ``pip install 'prunekit[onnx]'``).

:func:`time_runtimes` times one model the same way (``prunekit profile --runtimes``).
The engine's latency budget (``prunekit.plan(model, x, latency=0.5)``) measures its
result with :func:`paired_ratio` on the eager runtime.

Example:
    >>> import torch.nn as nn
    >>> rows = compare_runtimes(nn.Linear(64, 64), nn.Linear(64, 8), (64,), runtimes=("eager",),
    ...                         batch_sizes=(1,), threads=1, rounds=5)
    >>> (rows[0].runtime, rows[0].batch_size, rows[0].threads, rows[0].rounds)
    ('eager', 1, 1, 5)
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from prunekit.errors import PrunekitError
from prunekit.measure.threads import check_threads, num_threads
from prunekit.validate import check_choice, check_int, check_number

__all__ = ["RUNTIMES", "RuntimeSpeed", "compare_runtimes", "interleaved_times", "paired_ratio", "paired_times",
           "parse_runtimes", "ratio_interval", "runner", "time_runtimes", "within_interval"]

RUNTIMES = ("eager", "compile", "onnxruntime")
ONNX_HINT = "install the onnx extra: pip install 'prunekit[onnx]' (onnx, onnxruntime, onnxscript)"


@dataclass(frozen=True)
class RuntimeSpeed:
    """One runtime at one batch size: both models' median times and the paired ratio with its interval.

    Attributes:
        runtime: ``"eager"``, ``"compile"`` or ``"onnxruntime"``.
        batch_size: leading dimension of the input.
        threads: intra-op threads of the runs.
        before_ms, after_ms: each model's median time per forward pass over the rounds.
        ratio: median over rounds of ``t_after / t_before`` (0.5: twice as fast).
        low, high: its 95% bootstrap interval.
        rounds: interleaved rounds timed.
    """

    runtime: str
    batch_size: int
    threads: int
    before_ms: float
    after_ms: float
    ratio: float
    low: float
    high: float
    rounds: int

    def to_dict(self) -> dict:
        """JSON-able form."""
        return asdict(self)

    def describe(self) -> str:
        """One line, e.g. ``onnxruntime bs=32, 2 threads: 12.1 -> 6.3 ms, ratio 0.52 [0.50, 0.55] (95% CI, 20 rounds)``."""
        return (f"{self.runtime} bs={self.batch_size}, {self.threads} thread{'s' if self.threads != 1 else ''}: "
                f"{self.before_ms:.2f} -> {self.after_ms:.2f} ms, ratio {self.ratio:.2f} "
                f"[{self.low:.2f}, {self.high:.2f}] (95% CI, {self.rounds} rounds)")


def parse_runtimes(text) -> tuple[str, ...]:
    """``"eager,compile"`` (or a sequence) -> ``("eager", "compile")``; an unknown name raises naming it."""
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    if not names or not all(names):
        raise PrunekitError(f"runtimes must be a comma list of {', '.join(RUNTIMES)}, got {text!r}")
    for n in names:
        check_choice("runtime", n, RUNTIMES, error=PrunekitError)
    return tuple(dict.fromkeys(names))


def ratio_interval(before: Sequence[float], after: Sequence[float], confidence: float = 0.95,
                   resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Median of the per-round ratios ``after[i] / before[i]`` and its percentile-bootstrap interval. Pure.

    Example:
        >>> ratio_interval([2.0, 4.0, 2.0], [1.0, 2.0, 1.0])
        (0.5, 0.5, 0.5)
    """
    from prunekit.measure.speedup import bootstrap_median_interval

    if len(before) != len(after) or not before:
        raise PrunekitError("ratio_interval needs as many before as after times (at least one)")
    ratios = [a / b for a, b in zip(after, before)]
    # the one bootstrap of prunekit.measure (speedup.py), so runtimes and reports agree on an interval
    low, high = bootstrap_median_interval(ratios, confidence, resamples, seed)
    return float(statistics.median(ratios)), low, high


def within_interval(before, after, within: float) -> bool:
    """True when the 95% interval of ``after``'s ratio to ``before`` has a half-width of at most ``within`` of it.

    Example:
        >>> within_interval([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], 0.025)
        True
    """
    ratio, low, high = ratio_interval(before, after)
    return ratio > 0 and (high - low) / 2 <= within * ratio


def paired_times(run_before: Callable, run_after: Callable, rounds: int, warmup: int = 2,
                 min_round_s: float = 0.005, warm_calls: int = 1):
    """Time two zero-argument callables interleaved: ``rounds`` rounds, the order alternating between rounds.

    ``(before_s, after_s)``: per-round time of one call, in seconds. See :func:`interleaved_times`.
    """
    before, after = interleaved_times([run_before, run_after], rounds, warmup, min_round_s, warm_calls)
    return before, after


def interleaved_times(fns: Sequence[Callable], rounds: int, warmup: int = 2, min_round_s: float = 0.005,
                      warm_calls: int = 1):
    """Time zero-argument callables interleaved for ``rounds`` rounds; one list of per-call seconds each.

    :func:`prunekit.measure.interleave.interleave` with a fixed number of rounds: the order
    rotates between rounds, a turn repeats its call until it lasts ``min_round_s``, and
    starts with ``warm_calls`` untimed calls (why: see :mod:`prunekit.measure.interleave`).
    """
    from prunekit.measure.interleave import interleave, stop_rule

    return interleave(fns, stop_rule(rounds)[0], warmup=max(1, warmup), warm_calls=warm_calls,
                      min_turn_s=min_round_s)


def paired_ratio(before, after, example_input, *, threads: int | None = None, rounds: int = 20,
                 runtime: str = "eager", until_within: float | None = None, max_time_s: float = 60.0,
                 after_first: bool = False) -> RuntimeSpeed:
    """``after``'s latency relative to ``before``'s on ``example_input`` (a tensor), timed interleaved on ``runtime``.

    ``until_within``: keep timing past ``rounds`` (checked every 10 rounds) until the 95%
    interval's relative half-width is at most this (e.g. 0.025: +-2.5%) or ``max_time_s``
    seconds have passed; None times exactly ``rounds`` rounds. ``after_first``: warm up and
    time ``after`` first in round 0 (the order still alternates; :mod:`prunekit.measure.sessions`
    alternates it between sessions).
    """
    from prunekit.measure.interleave import interleave, stop_rule

    check_choice("runtime", runtime, RUNTIMES, error=PrunekitError)
    check_threads(threads)
    if until_within is not None:
        check_number("until_within", until_within, minimum=0.0, low_open=True, error=PrunekitError)

    b, a = (1, 0) if after_first else (0, 1)  # positions of before and after in the timed list

    def tight(times) -> bool:
        return within_interval(times[b], times[a], until_within)

    done, _ = stop_rule(rounds, is_tight=tight if until_within is not None else None, max_time_s=max_time_s,
                        start=time.perf_counter())
    with num_threads(threads) as used, contextlib.ExitStack() as stack:
        fb = stack.enter_context(runner(before, example_input, runtime, used))
        fa = stack.enter_context(runner(after, example_input, runtime, used))
        fns = [fa, fb] if after_first else [fb, fa]
        times = interleave(fns, done, warmup=2, warm_calls=1, min_turn_s=0.005)
        tb, ta = times[b], times[a]
    ratio, low, high = ratio_interval(tb, ta)
    return RuntimeSpeed(runtime, int(example_input.shape[0]), int(used), 1000 * statistics.median(tb),
                        1000 * statistics.median(ta), ratio, low, high, len(tb))


@contextlib.contextmanager
def runner(model, example_input, runtime: str, threads: int):
    """A zero-argument callable running ``model`` on ``example_input`` on ``runtime`` (a context: it cleans up).

    The model is put in eval mode for the block (flags restored afterwards).
    """
    import torch

    check_choice("runtime", runtime, RUNTIMES, error=PrunekitError)
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        if runtime == "onnxruntime":
            with _ort_runner(model, example_input, threads) as fn:
                yield fn
            return
        fn_model = model
        if runtime == "compile":
            fn_model = torch.compile(model)

        def call():
            with torch.inference_mode():
                return fn_model(example_input)

        call()  # compile (or warm) before any timing
        yield call
    finally:
        for m, t in flags.items():
            m.training = t


@contextlib.contextmanager
def _ort_runner(model, example_input, threads: int):
    import tempfile
    from pathlib import Path

    try:
        import onnxruntime as ort
    except ImportError:
        raise PrunekitError(f"the onnxruntime runtime needs onnxruntime: {ONNX_HINT}") from None
    import torch

    with tempfile.TemporaryDirectory(prefix="prunekit-ort-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with torch.no_grad(), contextlib.redirect_stdout(None):
                torch.onnx.export(model, (example_input,), str(path), dynamo=True, verbose=False)
        except ImportError as e:
            raise PrunekitError(f"exporting to ONNX needs onnx and onnxscript ({e}): {ONNX_HINT}") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: example_input.detach().cpu().numpy()}
        sess.run(None, feed)
        yield lambda: sess.run(None, feed)


def _inputs(input_shape, batch_sizes, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return {bs: torch.randn(bs, *input_shape, generator=gen) for bs in batch_sizes}


def compare_runtimes(before, after, input_shape, runtimes=("eager",), batch_sizes=(1, 32), threads: int | None = None,
                     rounds: int = 20, seed: int = 0) -> list[RuntimeSpeed]:
    """Time ``before`` and ``after`` interleaved on every runtime at every batch size; one row each.

    Args:
        before, after: the dense and the pruned ``nn.Module`` (one tensor input).
        input_shape: one sample's shape, e.g. ``(3, 224, 224)``.
        runtimes: names from :data:`RUNTIMES` (or a comma string).
        batch_sizes: batch sizes to time.
        threads: intra-op threads (None: torch's current count), stated in every row.
        rounds: interleaved rounds per runtime and batch size.
        seed: seed of the random inputs.

    Raises:
        PrunekitError: an unknown runtime, or onnxruntime without the ``onnx`` extra.
    """
    names = parse_runtimes(runtimes)
    for bs in batch_sizes:
        check_int("batch size", bs, error=PrunekitError)
    xs = _inputs(tuple(input_shape), batch_sizes, seed)
    return [paired_ratio(before, after, xs[bs], threads=threads, rounds=rounds, runtime=rt)
            for rt in names for bs in batch_sizes]


def time_runtimes(model, input_shape, runtimes=("eager",), batch_sizes=(1, 32), threads: int | None = None,
                  rounds: int = 20, seed: int = 0) -> list[dict]:
    """One model's median latency on every runtime at every batch size.

    Returns rows ``{"runtime", "batch_size", "threads", "median_ms", "p10_ms", "p90_ms", "rounds"}``.
    """
    import numpy as np

    names = parse_runtimes(runtimes)
    check_threads(threads)
    xs = _inputs(tuple(input_shape), batch_sizes, seed)
    rows = []
    for rt in names:
        for bs in batch_sizes:
            with num_threads(threads) as used, runner(model, xs[bs], rt, used) as fn:
                times, _ = paired_times(fn, lambda: None, rounds, min_round_s=0.0)
            t = np.asarray(times) * 1000.0
            p10, med, p90 = np.percentile(t, [10, 50, 90])
            rows.append({"runtime": rt, "batch_size": bs, "threads": int(used), "median_ms": float(med),
                         "p10_ms": float(p10), "p90_ms": float(p90), "rounds": rounds})
    return rows
