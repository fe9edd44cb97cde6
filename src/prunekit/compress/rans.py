"""Static range-variant ANS (rANS) coding with lane-parallel NumPy encoder and decoder.

Huffman spends a whole number of bits per symbol, which costs the most when one
symbol dominates (a 5-bit cluster index whose commonest value has p = 0.5 still
costs one bit). Asymmetric numeral systems (Duda, "Asymmetric numeral systems",
arXiv:0902.0271, 2009; 2013) code within a fraction of a percent of the Shannon
entropy at Huffman-like speed. prunekit offers it as the closer coder beside the
paper's Huffman code.

The variant: 32-bit state kept in ``[2**16, 2**32)``, 16-bit words, symbol
frequencies quantised to sum to ``2**p`` (every occurring symbol gets at least
one slot), at most one word written per symbol. The precision ``p <= 16`` is
chosen per stream to minimise table plus data: a layer with a few hundred
kept weights would otherwise spend more on its frequency table than on its data. As for Huffman, a stream is cut
into *lanes* of ``lane_len`` symbols, each with its own state and words, so one
NumPy step codes one symbol of every lane (interleaved rANS, Giesen,
"Interleaved entropy coders", arXiv:1402.3392). After decoding its last
symbol a lane's state must be back at the initial ``2**16``: a free integrity
check.

Why hand-written rather than a library: the ``constriction`` package (Rust,
well kept) is faster per symbol, but it derives its fixed-point model from float
probabilities by an internal rule; a file format should not depend on another
project's rounding staying the same across versions. Here the frequencies are
stored as integers and the whole format is specified in this file.
``bench/compress_codec.py`` measures both.

Blob layout (integers are LEB128 varints)::

    n_symbols, alphabet_size, precision p, freq[alphabet_size], lane_len,
    per lane: final state (varint), number of words (varint);
    then the words of every lane in lane order, little-endian uint16

Example:
    >>> import numpy as np
    >>> s = np.array([0, 1, 1, 2, 1, 1], dtype=np.int64)
    >>> np.array_equal(decode(encode(s, 3)), s)
    True
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prunekit.compress.bitio import (
    StreamFormatError, lane_layout, lockstep_order, lockstep_too_large, read_lane_len, read_stream_head,
    split_lanes, symbol_stream, write_varints,
)

MAX_PREC = 16             # frequencies sum to 2**p, p <= MAX_PREC
_L = 1 << 16              # lower bound of the state; words are 16 bits (L must be a multiple of 2**p)
DEFAULT_LANE_LEN = 4096


def quantize_frequencies(counts, prec: int = MAX_PREC) -> np.ndarray:
    """Integer frequencies summing to ``2**prec``, proportional to ``counts``, >= 1 for every occurring symbol.

    Example:
        >>> int(quantize_frequencies([3, 1, 0]).sum())
        65536
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    m = 1 << prec
    if total <= 0:
        raise ValueError("cannot build frequencies for an empty stream")
    used = counts > 0
    if int(used.sum()) > m:
        raise ValueError(f"at most {m} distinct symbols at precision {prec}")
    freq = np.where(used, np.maximum(1, np.floor(counts * (m / total) + 0.5).astype(np.int64)), 0)
    diff = m - int(freq.sum())
    # Fix rounding on the biggest symbols, where a slot more or less costs the least.
    order = np.argsort(-counts, kind="stable")
    i = 0
    while diff != 0:
        s = order[i % int(used.sum())]
        if diff > 0:
            freq[s] += 1
            diff -= 1
        elif freq[s] > 1:
            freq[s] -= 1
            diff += 1
        i += 1
    return freq


def _varint_len(v: np.ndarray) -> int:
    bits = np.maximum(1, np.ceil(np.log2(v.astype(np.float64) + 1)))
    return int(np.sum(np.ceil(bits / 7)))


def choose_precision(counts) -> tuple[int, np.ndarray]:
    """The precision (and its frequencies) minimising frequency table + coded data, estimated in bits."""
    counts = np.asarray(counts, dtype=np.int64)
    used = int((counts > 0).sum())
    best = None
    for prec in range(max(1, int(np.ceil(np.log2(used)))), MAX_PREC + 1):
        freq = quantize_frequencies(counts, prec)
        nz = counts > 0
        data_bits = float(np.sum(counts[nz] * (prec - np.log2(freq[nz]))))
        cost = data_bits + 8 * _varint_len(freq[:int(np.flatnonzero(freq)[-1]) + 1])
        if best is None or cost < best[0]:
            best = (cost, prec, freq)
    return best[1], best[2]


def encode(symbols, alphabet_size: int, *, lane_len: int = DEFAULT_LANE_LEN, counts=None) -> bytes:
    """rANS-code a stream of integers in ``[0, alphabet_size)`` into a self-contained blob."""
    sym, counts = symbol_stream(symbols, alphabet_size, counts)
    n = len(sym)
    if n == 0:
        return write_varints([0, 0])
    prec, freq = choose_precision(counts)
    size = int(np.flatnonzero(freq)[-1]) + 1
    freq = freq[:size]
    cum = np.concatenate(([0], np.cumsum(freq)[:-1]))
    starts, lens = lane_layout(n, lane_len)
    n_lanes = len(starts)
    steps = int(lens[0])
    x = np.full(n_lanes, _L, dtype=np.int64)
    # Lanes are sorted by length already (only the last may be shorter): active lanes are a prefix.
    active = n_lanes - np.searchsorted(lens[::-1], np.arange(steps), side="right")
    emitted_lane, emitted_step, emitted_word = [], [], []
    for t in range(steps - 1, -1, -1):     # rANS is a stack: encode backwards, decode forwards
        k = int(active[t])
        s = sym[starts[:k] + t]
        f = freq[s]
        xs = x[:k]
        out = np.flatnonzero(xs >= (f << (32 - prec)))
        if len(out):
            emitted_lane.append(out)
            emitted_step.append(np.full(len(out), t, dtype=np.int64))
            emitted_word.append(xs[out] & 0xFFFF)
            xs[out] >>= 16
        x[:k] = ((xs // f) << prec) + (xs % f) + cum[s]
    if emitted_lane:
        lane_ids = np.concatenate(emitted_lane)
        step_ids = np.concatenate(emitted_step)
        words = np.concatenate(emitted_word)
        order = np.lexsort((step_ids, lane_ids))     # per lane, in the order the decoder reads them
        words = words[order].astype("<u2")
        n_words = np.bincount(lane_ids, minlength=n_lanes)
    else:
        words = np.zeros(0, dtype="<u2")
        n_words = np.zeros(n_lanes, dtype=np.int64)
    lane_info = np.stack([x, n_words], axis=1).ravel()
    head = write_varints([n, size, prec]) + write_varints(freq) + write_varints([lane_len]) + write_varints(lane_info)
    return head + words.tobytes()


@dataclass
class ParsedRans:
    """An rANS blob split into its parts, validated."""

    n_symbols: int
    prec: int               # frequencies sum to 2**prec
    freq: np.ndarray        # int64
    lane_len: int
    states: np.ndarray      # int64 initial decoder state per lane
    n_words: np.ndarray     # int64 words per lane
    words: np.ndarray       # uint16


def parse(blob, what: str = "rans stream") -> ParsedRans:
    """Read a blob written by :func:`encode`; raises :class:`StreamFormatError` if it is malformed."""
    r, n, size = read_stream_head(blob, what)
    if n == 0:
        return ParsedRans(0, MAX_PREC, np.zeros(0, np.int64), 1, np.zeros(0, np.int64), np.zeros(0, np.int64),
                          np.zeros(0, np.uint16))
    prec = r.varint()
    if not 1 <= prec <= MAX_PREC:
        raise StreamFormatError(f"{what}: precision {prec} out of range")
    freq = r.varints(size)
    if np.any(freq > (1 << prec)) or int(freq.sum()) != (1 << prec):  # the first test keeps the sum in int64
        raise StreamFormatError(f"{what}: frequencies do not sum to {1 << prec}")
    lane_len = read_lane_len(r, n)
    n_lanes = -(-n // lane_len)
    info = r.varints(2 * n_lanes).reshape(n_lanes, 2)
    states, n_words = info[:, 0], info[:, 1]
    if np.any(states < _L) or np.any(states >= (1 << 32)):
        raise StreamFormatError(f"{what}: lane state out of range")
    rest = r.rest()
    if np.any(n_words > len(rest) // 2):  # keeps the sum below in int64
        raise StreamFormatError(f"{what}: a lane has more words than the stream holds")
    if len(rest) != 2 * int(n_words.sum()):
        raise StreamFormatError(f"{what}: {len(rest)} data bytes, the lanes need {2 * int(n_words.sum())}")
    words = np.frombuffer(rest, dtype="<u2").astype(np.int64)
    return ParsedRans(n, prec, freq, lane_len, states.copy(), n_words.copy(), words)


def decode_many(streams: list[ParsedRans], what: str = "rans stream") -> list[np.ndarray]:
    """Decode several parsed streams together, one vectorised step per symbol position in a lane."""
    if lockstep_too_large(streams):
        return [decode_many([s], what)[0] for s in streams]
    results: list[np.ndarray | None] = [None] * len(streams)
    slot_tabs, freqs, cums, words = [], [], [], []
    l_state, l_ptr, l_end, l_n, l_sbase, l_fbase, l_owner, l_prec = [], [], [], [], [], [], [], []
    sbase = fbase = wbase = 0
    for i, s in enumerate(streams):
        if s.n_symbols == 0:
            results[i] = np.zeros(0, dtype=np.int64)
            continue
        slot_tabs.append(np.repeat(np.arange(len(s.freq), dtype=np.int64), s.freq))
        freqs.append(s.freq)
        cums.append(np.concatenate(([0], np.cumsum(s.freq)[:-1])))
        words.append(s.words)
        _, lens = lane_layout(s.n_symbols, s.lane_len)
        k = len(lens)
        ptr0 = wbase + np.concatenate(([0], np.cumsum(s.n_words)[:-1]))
        l_state.append(s.states)
        l_ptr.append(ptr0)
        l_end.append(ptr0 + s.n_words)
        l_n.append(lens)
        l_sbase.append(np.full(k, sbase, dtype=np.int64))
        l_fbase.append(np.full(k, fbase, dtype=np.int64))
        l_owner.append(np.full(k, i, dtype=np.int64))
        l_prec.append(np.full(k, s.prec, dtype=np.int64))
        sbase += 1 << s.prec
        fbase += len(s.freq)
        wbase += len(s.words)
    if not slot_tabs:
        return results  # type: ignore[return-value]
    slot_tab = np.concatenate(slot_tabs)
    freq = np.concatenate(freqs)
    cum = np.concatenate(cums)
    wd = np.concatenate(words + [np.zeros(1, np.int64)])  # one spare word: reads past a lane are caught below
    n_per_lane = np.concatenate(l_n)
    order, active = lockstep_order(n_per_lane)
    x = np.concatenate(l_state)[order]
    ptr = np.concatenate(l_ptr)[order]
    end = np.concatenate(l_end)[order]
    sb = np.concatenate(l_sbase)[order]
    fb = np.concatenate(l_fbase)[order]
    pr = np.concatenate(l_prec)[order]
    mk = (1 << pr) - 1
    steps = len(active)
    out = np.zeros((steps, len(order)), dtype=np.int16)
    try:
        for t in range(steps):
            k = int(active[t])
            xs = x[:k]
            slot = xs & mk[:k]
            s = slot_tab[sb[:k] + slot]
            out[t, :k] = s
            g = fb[:k] + s
            xs = freq[g] * (xs >> pr[:k]) + slot - cum[g]
            low = np.flatnonzero(xs < _L)
            if len(low):
                p = ptr[low]
                xs[low] = (xs[low] << 16) | wd[p]
                ptr[low] = p + 1
            x[:k] = xs
    except IndexError:
        raise StreamFormatError(f"{what}: words run past the end of the data") from None
    if not (np.array_equal(ptr, end) and np.all(x == _L)):
        raise StreamFormatError(f"{what}: corrupt data (a lane does not return to the initial state)")
    return split_lanes(out, order, np.concatenate(l_owner), streams, results)


def decode(blob) -> np.ndarray:
    """Decode one blob written by :func:`encode`."""
    return decode_many([parse(blob)])[0]
