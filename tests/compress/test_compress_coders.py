"""Entropy coders: exact code tables, round trips over the registry, corruption detected."""
import numpy as np
import pytest

from prunekit.compress import huffman, rans
from prunekit.compress.bitio import Reader, StreamFormatError, write_varints
from prunekit.compress.codec import CODERS, entropy_bits


def test_varints_round_trip_and_truncation():
    vals = [0, 1, 127, 128, 300, 2 ** 40]
    r = Reader(write_varints(vals))
    assert [r.varint() for _ in vals] == vals
    with pytest.raises(StreamFormatError, match="truncated"):
        Reader(b"\x80").varint()


def test_huffman_code_lengths_exact():
    assert huffman.code_lengths([5, 1, 1, 0]).tolist() == [1, 2, 2, 0]
    assert huffman.code_lengths([1, 1, 1, 1]).tolist() == [2, 2, 2, 2]
    assert huffman.code_lengths([0, 7, 0]).tolist() == [0, 1, 0]
    assert huffman.code_lengths([0, 0]).tolist() == [0, 0]


def test_huffman_canonical_codes_exact():
    # lengths 2,1,3,3 -> canonical: b=0, a=10, c=110, d=111
    assert huffman.canonical_codes([2, 1, 3, 3]).tolist() == [0b10, 0b0, 0b110, 0b111]


def test_huffman_length_limit_keeps_a_complete_code():
    counts = [2 ** i for i in range(30)]            # unlimited Huffman would need 29-bit codes
    lengths = huffman.code_lengths(counts).astype(np.int64)
    assert lengths.max() == huffman.MAX_LEN
    assert sum(2.0 ** -lengths) == 1.0              # Kraft equality: complete prefix code
    assert np.all(np.diff(lengths[::-1]) >= 0)      # more frequent symbols never get longer codes


def test_huffman_bits_match_hand_computation():
    s = np.array([0, 0, 0, 0, 0, 1, 2])
    assert huffman.coded_bits(np.bincount(s)) == 5 * 1 + 2 + 2


def test_rans_frequencies_sum_and_floor():
    f = rans.quantize_frequencies([1000000, 1, 0, 3], prec=12)
    assert int(f.sum()) == 4096 and f[1] >= 1 and f[2] == 0 and f[3] >= 1


def test_entropy_bits_exact():
    assert entropy_bits([2, 2]) == 4.0
    assert entropy_bits([8]) == 0.0
    assert entropy_bits([1, 1, 2]) == pytest.approx(6.0)


CASES = [(0, 4), (1, 1), (1, 5), (7, 3), (4096, 2), (4097, 2), (10000, 1), (20000, 32), (9000, 256)]


@pytest.mark.parametrize("coder", CODERS.names())
@pytest.mark.parametrize("n,alphabet", CASES)
def test_round_trip(coder, n, alphabet):
    c = CODERS.get(coder)
    rng = np.random.default_rng(n * 31 + alphabet)
    p = rng.dirichlet(np.full(alphabet, 0.3))
    s = rng.choice(alphabet, size=n, p=p)
    for lane_len in (1, 100, 4096):
        if lane_len == 1 and n > 5000:
            continue
        blob = c.encode(s, alphabet, lane_len=lane_len)
        out = c.decode_many([c.parse(blob)])[0]
        assert out.dtype == np.int64 and np.array_equal(out, s)


@pytest.mark.parametrize("coder", CODERS.names())
def test_decode_many_mixes_streams_of_every_size(coder):
    c = CODERS.get(coder)
    rng = np.random.default_rng(1)
    streams = [rng.integers(0, a, size=n) for n, a in [(0, 3), (3, 2), (5000, 17), (9000, 4), (1, 9), (123, 200)]]
    parsed = [c.parse(c.encode(s, max(1, int(s.max(initial=0)) + 1), lane_len=1000)) for s in streams]
    for got, want in zip(c.decode_many(parsed), streams):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("coder", CODERS.names())
def test_close_to_entropy_on_a_big_skewed_stream(coder):
    c = CODERS.get(coder)
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.full(32, 0.5))
    s = rng.choice(32, size=200000, p=p)
    bound = entropy_bits(np.bincount(s, minlength=32))
    size = 8 * len(c.encode(s, 32))
    assert bound < size < bound * (1.01 if coder == "rans" else 1.06)


@pytest.mark.parametrize("coder", CODERS.names())
def test_corrupt_streams_raise(coder):
    c = CODERS.get(coder)
    rng = np.random.default_rng(3)
    s = rng.integers(0, 16, size=3000)
    blob = c.encode(s, 16, lane_len=500)
    with pytest.raises(StreamFormatError):
        c.parse(blob[:-3])                                   # truncated data
    with pytest.raises(StreamFormatError):
        c.parse(blob + b"\x00\x00")                          # trailing garbage
    with pytest.raises(StreamFormatError):
        c.parse(blob[:2])                                    # truncated table
    # Flip bits in the data part: either decoding fails or the symbols change; the file's
    # CRC and checksum catch the latter (tested in test_compress_file.py).
    bad = bytearray(blob)
    bad[-10] ^= 0xFF
    try:
        out = c.decode_many([c.parse(bytes(bad))])[0]
    except StreamFormatError:
        return
    assert not np.array_equal(out, s)


def test_symbols_out_of_range_rejected():
    for c in (huffman, rans):
        with pytest.raises(ValueError):
            c.encode(np.array([0, 5]), 4)
