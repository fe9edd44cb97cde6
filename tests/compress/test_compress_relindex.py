"""Relative-index sparse storage with filler zeros, on hand-made cases."""
import numpy as np
import pytest

from prunekit.compress.relindex import count_fillers, decode_positions, encode_positions


def _mask(n, pos):
    m = np.zeros(n, bool)
    m[list(pos)] = True
    return m


def test_paper_figure_3bit():
    gaps, filler = encode_positions(_mask(16, [1, 4, 15]), 3)
    assert gaps.tolist() == [1, 2, 7, 2]
    assert filler.tolist() == [False, False, True, False]
    assert decode_positions(gaps).tolist() == [1, 4, 12, 15]


@pytest.mark.parametrize("pos,bits,gaps,fillers", [
    ([0], 2, [0], []),                       # first entry at position 0: nothing skipped
    ([3], 2, [3], []),                       # largest gap that fits 2 bits
    ([4], 2, [3, 0], [0]),                   # one too far: filler at position 3, then gap 0
    ([8], 2, [3, 3, 0], [0, 1]),             # two fillers back to back
    ([0, 9], 2, [0, 3, 3, 0], [1, 2]),
    ([0, 1, 2], 1, [0, 0, 0], []),
    ([5], 1, [1, 1, 1], [0, 1]),             # 1-bit gaps: filler after every skipped zero
])
def test_overflow_fillers(pos, bits, gaps, fillers):
    g, f = encode_positions(_mask(20, pos), bits)
    assert g.tolist() == gaps
    assert np.flatnonzero(f).tolist() == fillers
    assert count_fillers(_mask(20, pos), bits) == len(fillers)
    decoded = decode_positions(g)
    assert decoded[~f].tolist() == pos


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_random_masks(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(5000) < rng.uniform(0.001, 0.5)
    bits = int(rng.integers(1, 9))
    g, f = encode_positions(mask, bits)
    assert g.max(initial=0) < 2 ** bits
    pos = decode_positions(g)
    assert np.array_equal(pos[~f], np.flatnonzero(mask))
    assert not mask[pos[f]].any()          # fillers sit on pruned positions


def test_empty_mask_and_bad_bits():
    g, f = encode_positions(np.zeros(10, bool), 5)
    assert len(g) == 0 and len(f) == 0
    with pytest.raises(ValueError):
        encode_positions(np.ones(3, bool), 0)
