"""Small byte-level helpers shared by the entropy coders: varints and a bounded reader.

Varints are LEB128 (7 bits per byte, high bit = "more follows"), the encoding
protocol buffers use; they keep per-stream tables (code lengths, frequencies,
lane sizes) to one or two bytes per entry, which matters for small layers whose
whole coded stream is a few hundred bytes.
"""
from __future__ import annotations

import numpy as np

from prunekit.errors import CheckpointError


class StreamFormatError(CheckpointError):
    """A coded stream is malformed (truncated table, impossible value, bad lane layout)."""


MAX_VARINT = 1 << 63      # every stored integer fits a signed 64-bit value
MAX_LANE_LEN = 1 << 32    # longer lanes than any encoder writes; bounds the lane arithmetic
MAX_ALPHABET = 1 << 15    # the decoders emit int16 symbols


def read_alphabet(r: "Reader") -> int:
    """A stream's alphabet size, checked against :data:`MAX_ALPHABET`."""
    size = r.varint()
    if size > MAX_ALPHABET:
        raise StreamFormatError(f"{r.what}: alphabet of {size} symbols exceeds {MAX_ALPHABET}")
    return size


def read_stream_head(blob, what: str) -> tuple["Reader", int, int]:
    """Open a coded stream: ``(reader, symbol count, alphabet size)``, both shared by the Huffman and rANS formats.

    An empty stream (0 symbols) must end right after this head, so each parser can
    return its empty form when the count is 0 without reading further.
    """
    r = Reader(blob, what)
    n = r.varint()
    size = read_alphabet(r)
    if n == 0 and r.pos != len(r.data):
        raise StreamFormatError(f"{what}: trailing bytes after an empty stream")
    return r, n, size


def lockstep_order(n_per_lane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, active)`` for decoding lanes in lockstep: lanes longest first, so that at symbol position
    ``t`` the lanes still decoding are the prefix ``order[:active[t]]`` (one slice per step, no mask)."""
    order = np.argsort(-n_per_lane, kind="stable")
    n_sorted = n_per_lane[order]
    steps = int(n_sorted[0])
    active = len(n_sorted) - np.searchsorted(n_sorted[::-1], np.arange(steps), side="right")
    return order, active


def split_lanes(out: np.ndarray, order: np.ndarray, owner: np.ndarray, streams, results: list) -> list:
    """Fill the ``None`` entries of ``results`` with each stream's symbols from the lockstep matrix ``out``.

    ``out[t, j]`` is the ``t``-th symbol of lane ``order[j]``; ``owner[l]`` is the stream of lane ``l``
    (lanes in stream order). A stream's lanes hold ``lane_len`` consecutive symbols each.
    """
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    for i, s in enumerate(streams):
        if results[i] is None:
            cols = inv[owner == i]   # this stream's lanes, in stream order
            results[i] = out[:s.lane_len, cols].T.reshape(-1)[:s.n_symbols].astype(np.int64)
    return results


def read_lane_len(r: "Reader", n_symbols: int) -> int:
    """The lane length of a stream of ``n_symbols``, checked to lie in [1, MAX_LANE_LEN]."""
    lane_len = r.varint()
    if not 1 <= lane_len <= MAX_LANE_LEN:
        raise StreamFormatError(f"{r.what}: lane length {lane_len} out of range [1, {MAX_LANE_LEN}]")
    return lane_len


def lockstep_too_large(streams) -> bool:
    """Whether decoding ``streams`` together needs a (steps x lanes) matrix much larger than their symbols.

    Lockstep decoding allocates one row per symbol position of the longest lane and
    one column per lane of every stream. Streams of one file share their lane length,
    so this is about their symbol count; a crafted mix of one long lane and many
    short ones would make it quadratic, and is then decoded one stream at a time.
    """
    live = [s for s in streams if s.n_symbols]
    if len(live) < 2:
        return False
    steps = max(min(s.lane_len, s.n_symbols) for s in live)
    lanes = sum(-(-s.n_symbols // s.lane_len) for s in live)
    return steps * lanes > 2 * sum(s.n_symbols for s in live) + (1 << 16)


def symbol_stream(symbols, alphabet_size: int, counts=None):
    """``symbols`` as a flat int64 array checked to lie in ``[0, alphabet_size)``, with its histogram.

    Shared by the entropy coders; ``counts`` is returned as given when already
    computed (and ignored for an empty stream, whose histogram is not needed).
    """
    sym = np.asarray(symbols, dtype=np.int64).ravel()
    if len(sym) and (sym.min() < 0 or sym.max() >= alphabet_size):
        raise ValueError(f"symbols must lie in [0, {alphabet_size})")
    if len(sym) and counts is None:
        counts = np.bincount(sym, minlength=alphabet_size)
    return sym, counts


def write_varints(values) -> bytes:
    """LEB128-encode non-negative integers.

    Example:
        >>> write_varints([1, 300])
        b'\\x01\\xac\\x02'
    """
    out = bytearray()
    for v in values:
        v = int(v)
        if v < 0:
            raise ValueError(f"varints are non-negative, got {v}")
        while True:
            byte = v & 0x7F
            v >>= 7
            if v:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
    return bytes(out)


class Reader:
    """Sequential reader over a byte buffer that raises :class:`StreamFormatError` instead of reading past the end."""

    def __init__(self, data: bytes | memoryview, what: str = "stream") -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise StreamFormatError(f"{self.what} is truncated (needs {n} more bytes at offset {self.pos}, "
                                    f"has {len(self.data) - self.pos})")

    def varint(self) -> int:
        """One LEB128 value; values of 2**63 and more are refused (they would overflow int64 arithmetic)."""
        shift = 0
        value = 0
        for _ in range(10):
            self._need(1)
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value >= MAX_VARINT:
                    raise StreamFormatError(f"{self.what}: value {value} at offset {self.pos} is out of range")
                return value
            shift += 7
        raise StreamFormatError(f"{self.what}: varint longer than 10 bytes at offset {self.pos}")

    def varints(self, n: int) -> np.ndarray:
        """``n`` LEB128 values as an int64 array."""
        if n < 0 or n > len(self.data) - self.pos:  # every varint takes at least one byte
            raise StreamFormatError(f"{self.what}: table of {n} entries does not fit in the stream")
        return np.array([self.varint() for _ in range(n)], dtype=np.int64)

    def bytes(self, n: int) -> memoryview:
        """The next ``n`` bytes."""
        self._need(n)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def rest(self) -> memoryview:
        """Everything not read yet."""
        out = self.data[self.pos:]
        self.pos = len(self.data)
        return out


def lane_layout(n_symbols: int, lane_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n_symbols`` into consecutive lanes of ``lane_len`` symbols (the last one shorter).

    Returns ``(starts, lengths)``. Lanes are what the lockstep decoders walk in
    parallel: one NumPy operation decodes one symbol of every lane.
    """
    if lane_len < 1:
        raise ValueError("lane_len must be >= 1")
    n_lanes = max(1, -(-n_symbols // lane_len)) if n_symbols else 0
    starts = np.arange(n_lanes, dtype=np.int64) * lane_len
    lengths = np.minimum(lane_len, n_symbols - starts).astype(np.int64)
    return starts, lengths
