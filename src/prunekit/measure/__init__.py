"""Measure what pruning changes: parameters, non-zeros, MACs, latency, memory and file size.

Every figure is documented in ``docs/measure.md``. In short:

* :func:`count_params` / :func:`count_nonzero_params`: parameter elements (all / non-zero).
* :func:`count_macs`: multiply-accumulates of one forward pass, per layer, from
  ``torch.utils.flop_counter`` (MACs = FLOPs / 2); custom layers report their own
  op kinds through :func:`register_op_counter`.
* :func:`measure_latency` / :func:`compare_latency`: median wall-clock time of a
  forward pass at a fixed thread count after warm-up; several models interleaved.
* :func:`compare_speed` -> :class:`SpeedupResult`: the latency ratio after/before of two
  models timed interleaved in rounds, with a bootstrap confidence interval and a
  verdict whether it is measurable on this machine now (:func:`paired_speedup` for
  two results of one :func:`compare_latency` call).
* :func:`peak_memory`, :func:`size_on_disk`: peak extra memory of a forward pass, bytes on disk.
* :func:`profile` / :func:`profile_many` -> :class:`ProfileReport` (JSON, Markdown,
  terminal table) and :func:`compare` for before/after tables.

Example:
    >>> import torch.nn as nn
    >>> from prunekit import measure
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    >>> rep = measure.profile(net, (1, 8, 8), batch_sizes=(1,), latency=False)
    >>> rep.macs.total                     # 4*1*9*36 + 144*10
    2736
"""
from prunekit.measure.compare import ProfileComparison, compare
from prunekit.measure.latency import LatencyResult, compare_latency, measure_latency
from prunekit.measure.macs import OP_COUNTERS, MacsReport, count_macs, register_op_counter
from prunekit.measure.memory import peak_memory, size_on_disk
from prunekit.measure.params import count_nonzero_params, count_params, nonzero_per_param, sparsity
from prunekit.measure.profiling import profile, profile_many
from prunekit.measure.report import ProfileReport
from prunekit.measure.speedup import SpeedConfig, SpeedupResult, compare_speed, paired_speedup, speedup_from_times

__all__ = [
    "LatencyResult", "MacsReport", "OP_COUNTERS", "ProfileComparison", "ProfileReport", "compare",
    "compare_latency", "count_macs", "count_nonzero_params", "count_params", "measure_latency",
    "nonzero_per_param", "paired_speedup", "peak_memory", "profile", "profile_many", "register_op_counter",
    "size_on_disk", "sparsity", "SpeedConfig", "SpeedupResult", "compare_speed", "speedup_from_times",
]
