"""Memory: peak extra memory of a forward pass, and bytes on disk.

Peak memory is "how much memory a forward pass needs on top of what is already
allocated" (activations, temporaries, the output), measured through torch's own
allocator:

* **CUDA inputs**: ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``, minus the memory allocated before the call (exact).
* **CPU inputs**: ``torch.profiler`` with ``profile_memory=True`` records every
  allocation and free of the CPU allocator in order; the peak of their running
  sum is the answer. ``tracemalloc`` cannot do this (tensor storage is not
  allocated through Python's allocator) and ``ru_maxrss`` is a process-wide
  high-water mark that never goes down. Memory that kernels take from
  elsewhere (e.g. oneDNN's internal scratch buffers, thread stacks) is not seen,
  so the CPU figure is a lower bound: treat it as best effort.

Example:
    >>> import torch, torch.nn as nn
    >>> size_on_disk(nn.Linear(100, 100)) > 100 * 101 * 4
    True
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

from prunekit.errors import PrunekitError
from prunekit.measure._utils import call_model, eval_mode, is_cuda_input

CPU_METHOD = "torch.profiler(profile_memory=True): peak of the running sum of CPU allocator events"
CUDA_METHOD = "torch.cuda.max_memory_allocated minus memory allocated before the pass"


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence fd 2 for the block: the Kineto profiler prints status lines from C++ that Python cannot catch."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_from_events(nbytes_in_order) -> int:
    """Peak of the running sum of allocation (+) / free (-) byte counts, floored at 0 (pure function).

    Example:
        >>> peak_from_events([100, 50, -100, 200, -250])
        250
    """
    current = peak = 0
    for n in nbytes_in_order:
        current += n
        peak = max(peak, current)
    return peak


def peak_cpu_memory(fn, *, python: bool = False) -> int | None:
    """Peak extra bytes allocated on the CPU while ``fn()`` runs (its result freed inside the window).

    torch's CPU allocator is followed through ``torch.profiler`` memory events (see
    the module docstring). With ``python=True``, the peak of Python and NumPy
    allocations (``tracemalloc``, which NumPy reports its array buffers to) is
    added: code such as the pruning engine's analysis keeps most of its data in
    NumPy arrays, which torch's allocator never sees. The two peaks are summed,
    an upper bound when they do not happen at the same moment. ``tracemalloc``
    slows Python down several times: never time a call measured this way.

    Args:
        fn: a callable without arguments (``lambda: model(x)``).
        python: add the traced Python/NumPy peak.

    Returns:
        Bytes, or None where this torch build cannot measure it (no Kineto profiler).

    Example:
        >>> import torch
        >>> peak_cpu_memory(lambda: torch.ones(1000, 1000).sum()) >= 4_000_000   # doctest: +SKIP
        True
    """
    import tracemalloc

    import torch
    from torch.profiler import ProfilerActivity, profile

    if not torch.profiler.kineto_available():
        return None
    started = python and not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        if python:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
        with _quiet_native_stderr():
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                out = fn()
                del out  # freeing the output is recorded too; the peak already includes it
        py_peak = max(0, tracemalloc.get_traced_memory()[1] - base) if python else 0
    finally:
        if started:
            tracemalloc.stop()
    # The raw allocator events are only reachable through the profiler's Kineto results
    # (what torch.profiler itself parses); if that layout changes, say "unknown", never guess.
    try:
        cpu = torch._C._autograd.DeviceType.CPU
        mem = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
               if e.name() == "[memory]" and e.device_type() == cpu]
    except (AttributeError, TypeError):
        return None
    mem.sort(key=lambda t: t[0])
    return peak_from_events(n for _, n in mem) + py_peak


def _cuda_peak(model, example_input) -> int:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = call_model(model, example_input)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return int(peak)


def peak_memory(model, example_input, warmup: int = 1) -> int | None:
    """Peak extra bytes allocated during one forward pass (eval mode, inference mode); see the module docstring.

    Args:
        model: an ``nn.Module``.
        example_input: a tensor, tuple of positional inputs or dict of keyword inputs.
        warmup: untimed passes first, so one-off allocations (caches, lazy init) are not counted.

    Returns:
        Bytes, or None where this torch build cannot measure it (no Kineto profiler on CPU).

    Example:
        >>> import torch, torch.nn as nn
        >>> peak_memory(nn.Linear(1000, 1000), torch.zeros(8, 1000)) >= 8 * 1000 * 4   # doctest: +SKIP
        True
    """
    import torch

    with eval_mode(model), torch.inference_mode():
        for _ in range(warmup):
            call_model(model, example_input)
        if is_cuda_input(example_input):
            return _cuda_peak(model, example_input)
        return peak_cpu_memory(lambda: call_model(model, example_input))


def peak_memory_method(example_input) -> str:
    """Which method :func:`peak_memory` uses for this input (recorded in reports)."""
    return CUDA_METHOD if is_cuda_input(example_input) else CPU_METHOD


def size_on_disk(obj) -> int:
    """Bytes on disk: of an existing file, or of ``torch.save`` of a model's ``state_dict`` (or any object).

    Args:
        obj: a path (``str``/``PathLike``) of an existing file; an ``nn.Module``
            (its ``state_dict()`` is serialised into memory, nothing is written);
            or any object ``torch.save`` accepts, e.g. a state dict.

    Raises:
        PrunekitError: the path does not exist or is not a regular file.

    Example:
        >>> import torch.nn as nn
        >>> size_on_disk(nn.Linear(100, 100)) > 100 * 101 * 4      # 4-byte floats plus zip headers
        True
    """
    import torch

    if isinstance(obj, (str, os.PathLike)):
        p = Path(obj)
        if not p.exists():
            raise PrunekitError(f"{p}: no such file")
        if not p.is_file():
            raise PrunekitError(f"{p}: not a regular file")
        return p.stat().st_size
    payload = obj.state_dict() if isinstance(obj, torch.nn.Module) else obj
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getbuffer().nbytes
