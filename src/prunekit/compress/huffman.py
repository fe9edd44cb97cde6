"""Canonical, length-limited Huffman coding with a table-driven, lane-parallel NumPy decoder.

Deep Compression's third stage (Han et al., "Deep Compression", ICLR 2016,
section 4) Huffman-codes the cluster indices and the relative positions. This
module does that for one stream of small integer symbols (an alphabet of at
most a few hundred symbols):

* :func:`code_lengths` builds optimal Huffman code lengths from symbol counts and
  limits them to ``max_len`` bits (the bit-length-count adjustment of JPEG,
  ITU T.81 Annex K.3), so the decoder's lookup table has at most ``2**max_len``
  entries;
* :func:`canonical_codes` turns lengths into canonical codes, so a stream only
  stores one length per symbol;
* :func:`encode` writes a self-contained blob: the lengths, the stream split into
  *lanes* of ``lane_len`` consecutive symbols whose starting bit offsets are
  stored, and the bits;
* :func:`decode_many` decodes any number of blobs at once. Huffman decoding is
  sequential within a lane, but lanes are independent, so each NumPy step decodes
  one symbol of *every* lane of *every* stream through a lookup table indexed by
  the next ``max_len`` bits. A model's whole payload thus decodes in at most
  ``lane_len`` vectorised steps instead of one Python iteration per symbol.

Blob layout (all integers LEB128 varints, see :mod:`prunekit.compress.bitio`)::

    n_symbols, alphabet_size, lengths[alphabet_size] (4 bits each, high nibble first),
    lane_len, lane_bits[n_lanes], data bytes (exactly ceil(sum(lane_bits) / 8))

Example:
    >>> import numpy as np
    >>> s = np.array([0, 1, 1, 2, 1, 1], dtype=np.int64)
    >>> blob = encode(s, alphabet_size=3)
    >>> np.array_equal(decode(blob), s)
    True
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from prunekit.compress.bitio import (
    StreamFormatError, lane_layout, lockstep_order, lockstep_too_large, read_lane_len, read_stream_head,
    split_lanes, symbol_stream, write_varints,
)

MAX_LEN = 15          # longest code (fits a nibble); a stream's decoder table has 2**(its longest code) entries
DEFAULT_LANE_LEN = 4096
_BLOCK = 1 << 20      # symbols packed per vectorised encoding block (bounds temporary memory)


def code_lengths(counts, max_len: int = MAX_LEN) -> np.ndarray:
    """Huffman code length of every symbol (0 for symbols that never occur), at most ``max_len``.

    A single used symbol gets length 1. Ties are broken by symbol value, so the
    result is deterministic.

    Example:
        >>> code_lengths([5, 1, 1, 0]).tolist()
        [1, 2, 2, 0]
    """
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(len(counts), dtype=np.int64)
    used = np.flatnonzero(counts > 0)
    if len(used) == 0:
        return lengths.astype(np.uint8)
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths.astype(np.uint8)
    if len(used) > 2 ** max_len:
        raise ValueError(f"{len(used)} symbols cannot be coded with codes of at most {max_len} bits")
    # Plain Huffman: merge the two lightest subtrees; every symbol in them gets one bit deeper.
    heap = [(int(counts[s]), int(s), [int(s)]) for s in used]
    heapq.heapify(heap)
    while len(heap) > 1:
        w1, t1, s1 = heapq.heappop(heap)
        w2, t2, s2 = heapq.heappop(heap)
        for s in s1:
            lengths[s] += 1
        for s in s2:
            lengths[s] += 1
        heapq.heappush(heap, (w1 + w2, min(t1, t2), s1 + s2))
    longest = int(lengths.max())
    if longest <= max_len:
        return lengths.astype(np.uint8)
    # Too deep: move leaves up while keeping the Kraft sum at exactly 1 (JPEG Annex K.3).
    bl_count = np.bincount(lengths[used], minlength=longest + 1)
    for i in range(longest, max_len, -1):
        while bl_count[i] > 0:
            j = i - 2
            while bl_count[j] == 0:
                j -= 1
            bl_count[i] -= 2
            bl_count[i - 1] += 1
            bl_count[j + 1] += 2
            bl_count[j] -= 1
    # Shortest codes to the most frequent symbols.
    order = used[np.lexsort((used, -counts[used]))]
    new = np.repeat(np.arange(len(bl_count)), bl_count)
    lengths[order] = new
    return lengths.astype(np.uint8)


def canonical_codes(lengths) -> np.ndarray:
    """Canonical Huffman codes (as integers, most significant bit first) for the given lengths.

    Codes are assigned in order of (length, symbol), each one more than the
    previous shifted to the new length, so the lengths alone determine the code.

    Example:
        >>> canonical_codes([1, 2, 2, 0]).tolist()
        [0, 2, 3, 0]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.int64)
    used = np.flatnonzero(lengths > 0)
    order = used[np.lexsort((used, lengths[used]))]
    code = 0
    prev = 0
    for s in order:
        ln = int(lengths[s])
        code <<= ln - prev
        codes[s] = code
        code += 1
        prev = ln
    return codes


def _pack_nibbles(values: np.ndarray) -> bytes:
    v = np.asarray(values, dtype=np.uint8)
    if len(v) % 2:
        v = np.concatenate((v, np.zeros(1, np.uint8)))
    return ((v[0::2] << 4) | v[1::2]).astype(np.uint8).tobytes()


def _unpack_nibbles(data, n: int) -> np.ndarray:
    b = np.frombuffer(data, dtype=np.uint8)
    return np.stack((b >> 4, b & 15), axis=1).reshape(-1)[:n].copy()


def _check_kraft(lengths: np.ndarray, what: str) -> None:
    used = lengths[lengths > 0].astype(np.int64)
    if len(used) == 0:
        return
    if used.max() > MAX_LEN:
        raise StreamFormatError(f"{what}: code length {int(used.max())} exceeds {MAX_LEN}")
    kraft = int(np.sum(1 << (MAX_LEN - used)))
    if kraft > (1 << MAX_LEN) or (len(used) > 1 and kraft != (1 << MAX_LEN)):
        raise StreamFormatError(f"{what}: code lengths do not form a complete prefix code")


def _pack_bits(codes: np.ndarray, lens: np.ndarray) -> tuple[bytes, int]:
    """Concatenate variable-length codes (MSB first) into bytes; returns (bytes, total bits)."""
    total = int(lens.sum())
    out = np.zeros((total + 7) // 8 + 3, dtype=np.uint8)
    bit = 0
    for b0 in range(0, len(codes), _BLOCK):
        c = codes[b0:b0 + _BLOCK]
        ln = lens[b0:b0 + _BLOCK]
        offs = bit + np.concatenate(([0], np.cumsum(ln[:-1])))
        # Place each code in a 24-bit window starting at its byte: ln + (offs & 7) <= 15 + 7 bits fit.
        # The codes occupy disjoint bits, so adding the three bytes of every window equals OR-ing them.
        v = c << (24 - ln - (offs & 7))
        byte = offs >> 3
        first = int(byte[0])
        size = int(byte[-1]) - first + 3
        local = np.bincount(np.concatenate((byte - first, byte - first + 1, byte - first + 2)),
                            weights=np.concatenate(((v >> 16) & 255, (v >> 8) & 255, v & 255)).astype(np.float64),
                            minlength=size)
        out[first:first + size] |= local.astype(np.uint8)
        bit += int(ln.sum())
    return out[:(total + 7) // 8].tobytes(), total


def encode(symbols, alphabet_size: int, *, lane_len: int = DEFAULT_LANE_LEN, counts=None) -> bytes:
    """Huffman-code a stream of integers in ``[0, alphabet_size)`` into a self-contained blob.

    Args:
        symbols: 1-D integer array.
        alphabet_size: number of possible symbols (the table stores one length per symbol).
        lane_len: symbols per independently decodable lane (more lanes: faster decoding,
            a few bytes more for their offsets).
        counts: symbol histogram, if already computed.
    """
    sym, counts = symbol_stream(symbols, alphabet_size, counts)
    n = len(sym)
    if n == 0:
        return write_varints([0, 0])
    lengths = code_lengths(counts)
    # Trailing never-used symbols need no table entry.
    size = int(np.flatnonzero(lengths)[-1]) + 1
    codes = canonical_codes(lengths)
    lens = lengths.astype(np.int64)[sym]
    data, _ = _pack_bits(codes[sym], lens)
    starts, _ = lane_layout(n, lane_len)
    lane_bits = np.add.reduceat(lens, starts)
    head = write_varints([n, size]) + _pack_nibbles(lengths[:size]) + write_varints([lane_len]) + write_varints(lane_bits)
    return head + data


@dataclass
class ParsedHuffman:
    """A Huffman blob split into its parts (see the module docstring), validated."""

    n_symbols: int
    lengths: np.ndarray      # uint8, one per symbol
    lane_len: int
    lane_bits: np.ndarray    # int64, bits used by each lane
    data: bytes


def parse(blob, what: str = "huffman stream") -> ParsedHuffman:
    """Read a blob written by :func:`encode`; raises :class:`StreamFormatError` if it is malformed."""
    r, n, size = read_stream_head(blob, what)
    if n == 0:
        return ParsedHuffman(0, np.zeros(0, np.uint8), 1, np.zeros(0, np.int64), b"")
    if n > 8 * len(r.data):  # every symbol takes at least one bit: checked before any size is derived from n
        raise StreamFormatError(f"{what}: {n} symbols cannot fit in {len(r.data)} bytes")
    lengths = _unpack_nibbles(r.bytes((size + 1) // 2), size)
    _check_kraft(lengths, what)
    lane_len = read_lane_len(r, n)
    n_lanes = -(-n // lane_len)
    lane_bits = r.varints(n_lanes)
    data = bytes(r.rest())
    if len(lengths) == 0 or not lengths.any():
        raise StreamFormatError(f"{what}: {n} symbols but an empty code table")
    # each lane holds between (symbols x shortest code) and (symbols x longest code) bits; this also keeps
    # every sum below in int64
    _, lane_n = lane_layout(n, lane_len)
    used = lengths[lengths > 0]
    if np.any(lane_bits < lane_n * int(used.min())) or np.any(lane_bits > lane_n * int(used.max())):
        raise StreamFormatError(f"{what}: a lane's bit count does not fit its symbols")
    total = int(lane_bits.sum())
    if len(data) != (total + 7) // 8:
        raise StreamFormatError(f"{what}: {len(data)} data bytes, the lanes need {(total + 7) // 8}")
    return ParsedHuffman(n, lengths, lane_len, lane_bits, data)


def _decode_table(lengths: np.ndarray) -> tuple[np.ndarray, int]:
    """Lookup table indexed by the next ``tbits`` bits: entry = symbol << 5 | code length (0 = invalid)."""
    lens = lengths.astype(np.int64)
    tbits = int(lens.max())
    codes = canonical_codes(lens)
    used = np.flatnonzero(lens)
    span = 1 << (tbits - lens[used])            # table entries sharing a code's prefix
    first = codes[used] << (tbits - lens[used])
    table = np.zeros(1 << tbits, dtype=np.int64)
    idx = np.repeat(first, span) + (np.arange(int(span.sum())) - np.repeat(np.cumsum(span) - span, span))
    table[idx] = np.repeat((used << 5) | lens[used], span)
    return table, tbits


def decode_many(streams: list[ParsedHuffman], what: str = "huffman stream") -> list[np.ndarray]:
    """Decode several parsed streams together, one vectorised step per symbol position in a lane.

    Returns one int64 array per stream. Raises :class:`StreamFormatError` when a
    lane's bits do not decode to exactly its recorded length.
    """
    if lockstep_too_large(streams):
        return [decode_many([s], what)[0] for s in streams]
    results: list[np.ndarray | None] = [None] * len(streams)
    bufs, tables = [], []
    lane_pos, lane_end, lane_n, lane_sh, lane_mask, lane_tbase, lane_owner = [], [], [], [], [], [], []
    byte_base = 0
    table_base = 0
    for i, s in enumerate(streams):
        if s.n_symbols == 0:
            results[i] = np.zeros(0, dtype=np.int64)
            continue
        table, tbits = _decode_table(s.lengths)
        tables.append(table)
        starts_bits = byte_base * 8 + np.concatenate(([0], np.cumsum(s.lane_bits)[:-1]))
        _, lens = lane_layout(s.n_symbols, s.lane_len)
        k = len(lens)
        lane_pos.append(starts_bits)
        lane_end.append(starts_bits + s.lane_bits)
        lane_n.append(lens)
        lane_sh.append(np.full(k, 32 - tbits, dtype=np.int64))
        lane_mask.append(np.full(k, (1 << tbits) - 1, dtype=np.int64))
        lane_tbase.append(np.full(k, table_base, dtype=np.int64))
        lane_owner.append(np.full(k, i, dtype=np.int64))
        bufs.append(np.frombuffer(s.data, dtype=np.uint8))
        byte_base += len(s.data)
        table_base += len(table)
    if not bufs:
        return results  # type: ignore[return-value]
    buf = np.concatenate(bufs + [np.zeros(4, np.uint8)]).astype(np.int64)
    # Big-endian 32-bit word starting at every byte: the next bits at any position are one lookup away.
    w32 = (buf[:-3] << 24) | (buf[1:-2] << 16) | (buf[2:-1] << 8) | buf[3:]
    table = np.concatenate(tables)
    n_per_lane = np.concatenate(lane_n)
    order, active = lockstep_order(n_per_lane)
    pos = np.concatenate(lane_pos)[order]
    end = np.concatenate(lane_end)[order]
    sh = np.concatenate(lane_sh)[order]
    mask = np.concatenate(lane_mask)[order]
    tbase = np.concatenate(lane_tbase)[order]
    steps = len(active)
    out = np.zeros((steps, len(order)), dtype=np.int16)
    try:
        for t in range(steps):
            k = int(active[t])
            p = pos[:k]
            e = table[tbase[:k] + ((w32[p >> 3] >> (sh[:k] - (p & 7))) & mask[:k])]
            out[t, :k] = e >> 5
            pos[:k] = p + (e & 31)
    except IndexError:
        raise StreamFormatError(f"{what}: code bits run past the end of the data") from None
    if not np.array_equal(pos, end):
        raise StreamFormatError(f"{what}: corrupt data (a lane does not end where its recorded length says)")
    return split_lanes(out, order, np.concatenate(lane_owner), streams, results)


def decode(blob) -> np.ndarray:
    """Decode one blob written by :func:`encode`."""
    return decode_many([parse(blob)])[0]


def coded_bits(counts) -> int:
    """Bits the Huffman code of :func:`code_lengths` spends on a stream with this histogram (no table)."""
    counts = np.asarray(counts, dtype=np.int64)
    return int(np.sum(counts * code_lengths(counts).astype(np.int64)))
