"""Relative-index sparse storage (Deep Compression, section 2, figure 2).

A pruned layer stores only its surviving weights, each with the distance to the
previous one in a fixed number of bits (8 for conv layers, 5 for fully connected
ones in the paper). When a run of pruned weights is longer than the field can
express, a *filler zero* is stored: an entry at a pruned position, whose value
decodes to 0, that restarts the count.

Convention used here: the stored gap is the number of pruned positions skipped
since the previous entry (``position - previous - 1``, the first entry counted
from position -1), so a ``b``-bit field covers skips of ``0 .. 2**b - 1`` and a
filler is inserted after every ``2**b - 1`` skipped zeros. Zeros after the last
entry need nothing: the decoder knows the tensor's size.

Example (3-bit gaps as in the paper's figure, kept positions 1, 4 and 15):
    >>> import numpy as np
    >>> mask = np.zeros(16, bool); mask[[1, 4, 15]] = True
    >>> gaps, filler = encode_positions(mask, 3)
    >>> gaps.tolist(), filler.tolist()
    ([1, 2, 7, 2], [False, False, True, False])
    >>> decode_positions(gaps).tolist()
    [1, 4, 12, 15]
"""
from __future__ import annotations

import numpy as np


def encode_positions(mask, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaps of the entries needed to store the True positions of a flat boolean ``mask``.

    Returns:
        ``(gaps, is_filler)``: int64 gaps in ``[0, 2**index_bits)`` and a boolean
        array marking the filler entries (in stored order).
    """
    if index_bits < 1:
        raise ValueError(f"index_bits must be >= 1, got {index_bits}")
    pos = np.flatnonzero(np.asarray(mask).reshape(-1))
    if len(pos) == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    max_gap = (1 << index_bits) - 1
    prev = np.concatenate(([-1], pos[:-1]))
    skip = pos - prev - 1
    # Each filler skips max_gap zeros and occupies one more pruned position itself.
    n_fill = skip // (max_gap + 1)
    rem = skip - n_fill * (max_gap + 1)
    total = len(pos) + int(n_fill.sum())
    gaps = np.full(total, max_gap, dtype=np.int64)
    real = np.cumsum(n_fill + 1) - 1
    gaps[real] = rem
    is_filler = np.ones(total, dtype=bool)
    is_filler[real] = False
    return gaps, is_filler


def decode_positions(gaps) -> np.ndarray:
    """Flat positions of the stored entries (fillers included) from their gaps."""
    g = np.asarray(gaps, dtype=np.int64)
    return np.cumsum(g + 1) - 1


def count_fillers(mask, index_bits: int) -> int:
    """How many filler zeros :func:`encode_positions` would insert (cheap: no arrays of entries)."""
    pos = np.flatnonzero(np.asarray(mask).reshape(-1))
    if len(pos) == 0:
        return 0
    skip = pos - np.concatenate(([-1], pos[:-1])) - 1
    return int((skip // (1 << index_bits)).sum())
