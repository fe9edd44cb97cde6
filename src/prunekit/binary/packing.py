"""Bit packing of {-1, +1} tensors: 64 signs per ``uint64`` word (XNOR-Net's "binary" storage).

Layout (the same for weights and activations, so xor/popcount compares like with like):

* element ``j`` of a row lands in bit ``j % 64`` of word ``j // 64``;
* bit 1 means ``+1`` (the element was ``>= 0``), bit 0 means ``-1`` (seed 004's
  ``sign = array[i] >= 0``);
* a row of ``k`` elements takes ``ceil(k / 64)`` words and the unused tail bits are 0.
  Zero tail bits in both operands xor to 0, so they never count as mismatches and
  ``dot = k - 2 * popcount(a ^ b)`` holds for any ``k``.

Bits are formed with ``np.packbits(bitorder="little")`` and the bytes are read as
little-endian words, so the packed files are the same on every machine.

Example:
    >>> import numpy as np
    >>> w = pack_signs(np.array([[1.0, -2.0, 0.0]]))
    >>> w.dtype, w.shape, int(w[0, 0])          # bits 0 and 2 set
    (dtype('uint64'), (1, 1), 5)
    >>> unpack_signs(w, 3)
    array([[ 1., -1.,  1.]], dtype=float32)
"""
from __future__ import annotations

import numpy as np

WORD_BITS = 64
_LE_U64 = np.dtype("<u8")


def words_for(k: int) -> int:
    """Number of 64-bit words holding ``k`` signs."""
    if k < 0:
        raise ValueError(f"number of bits must be >= 0, got {k}")
    return (k + WORD_BITS - 1) // WORD_BITS


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean array along its last axis into ``uint64`` words (tail bits 0)."""
    bits = np.asarray(bits, dtype=bool)
    k = bits.shape[-1]
    nbytes = words_for(k) * 8
    packed = np.packbits(bits, axis=-1, bitorder="little")
    if packed.shape[-1] != nbytes:
        pad = [(0, 0)] * (packed.ndim - 1) + [(0, nbytes - packed.shape[-1])]
        packed = np.pad(packed, pad)
    packed = np.ascontiguousarray(packed)
    return packed.view(_LE_U64).astype(np.uint64, copy=False).reshape(*bits.shape[:-1], nbytes // 8)


def pack_signs(x) -> np.ndarray:
    """Pack the signs of ``x`` (array or torch tensor) along its last axis: bit = ``x >= 0``."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return pack_bits(np.asarray(x) >= 0)


def unpack_bits(words: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: boolean array with last axis ``k``."""
    words = np.ascontiguousarray(np.asarray(words).astype(_LE_U64, copy=False))
    if words.shape[-1] * WORD_BITS < k:
        raise ValueError(f"{words.shape[-1]} words hold at most {words.shape[-1] * WORD_BITS} bits, not {k}")
    as_bytes = words.view(np.uint8).reshape(*words.shape[:-1], words.shape[-1] * 8)
    return np.unpackbits(as_bytes, axis=-1, count=k, bitorder="little").astype(bool)


def unpack_signs(words: np.ndarray, k: int, dtype=np.float32) -> np.ndarray:
    """Inverse of :func:`pack_signs`: ``+1``/``-1`` array with last axis ``k``."""
    return np.where(unpack_bits(words, k), 1, -1).astype(dtype)


def words_to_int64(words: np.ndarray) -> np.ndarray:
    """Reinterpret ``uint64`` words as ``int64`` (same bits) for storage in a torch tensor."""
    return np.ascontiguousarray(words, dtype=np.uint64).view(np.int64)


def int64_to_words(a) -> np.ndarray:
    """Inverse of :func:`words_to_int64`; accepts a torch tensor or an array."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(a, dtype=np.int64).view(np.uint64)
