"""The search's latency lookup table: :mod:`prunekit.measure.latency_table`, re-exported.

The table (MetaPruning's per-layer latency lookup, Liu et al., ICCV 2019, Sec. 3.4)
lives in :mod:`prunekit.measure` because the engine's latency budget
(``prunekit.plan(model, x, latency=0.5)``) builds on it too, and the engine may
not import the search package (which imports the engine). This module keeps the
search's old import path working.
"""
from prunekit.measure.latency_table import (BACKENDS, FASTEST_PAUSE_S, FASTEST_ROUNDS, MODES, LatencyTable,
                                            record_layers, timing_rounds)

__all__ = ["BACKENDS", "FASTEST_PAUSE_S", "FASTEST_ROUNDS", "MODES", "LatencyTable", "record_layers",
           "timing_rounds"]
