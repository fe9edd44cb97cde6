"""The packed binary GEMM: ``out[i, j] = k - 2 * popcount(a[i] ^ b[j])``, i.e. ``sign(a_i) . sign(b_j)``.

XNOR-Net (Rastegari et al., ECCV 2016) computes a dot product of two {-1,+1} vectors of
length ``k`` as ``2c - k`` with ``c = popcount(xnor(a, b))`` (seed 004). prunekit uses the
equivalent ``k - 2 * popcount(a ^ b)``: one fewer instruction, and the zero tail bits of
both operands cancel (see :mod:`prunekit.binary.packing`).

Kernels, chosen by :func:`binary_gemm` (``kernel="auto"`` takes the first available):

* ``"avx512"``: C, AVX-512 VPOPCNTDQ, 4x4 register tiles, L1 blocking, POSIX threads;
* ``"popcnt"``: C, scalar x86 POPCNT instruction;
* ``"portable"``: C, ``__builtin_popcountll`` for any CPU;
* ``"numpy"``: pure NumPy (``np.bitwise_count``), used when the C extension
  ``prunekit.binary._popcount`` was not built. It needs no compiler and gives the same
  integers, at roughly the speed of a float32 GEMM.

The C extension is built by ``pip install -e .`` (``setup.py``); the CPU features are
checked at run time, so one build runs on any x86-64 or other CPU.

Example:
    >>> import numpy as np
    >>> from prunekit.binary.packing import pack_signs
    >>> a = pack_signs(np.array([[1.0, -1, 1], [1, 1, 1]]))
    >>> b = pack_signs(np.array([[1.0, 1, 1]]))
    >>> binary_gemm(a, b, 3, kernel="numpy")
    array([[1],
           [3]], dtype=int32)
"""
from __future__ import annotations

import functools
import importlib

import numpy as np

from prunekit.errors import PrunekitError

_C_KERNEL_IDS = {"auto": 0, "portable": 1, "popcnt": 2, "avx512": 3}
_PREFERENCE = ("avx512", "popcnt", "portable", "numpy")
# Elements of the (rows x n x words) temporary the NumPy kernel materialises per chunk.
_NUMPY_CHUNK_ELEMS = 1 << 22


@functools.lru_cache(maxsize=1)
def _extension():
    """The compiled ``_popcount`` module, or None when it was not built."""
    try:
        return importlib.import_module("prunekit.binary._popcount")
    except ImportError:
        return None


def extension_available() -> bool:
    """True when the compiled xor/popcount extension can be imported."""
    return _extension() is not None


def available_kernels() -> list[str]:
    """Kernels usable on this machine, fastest first; ``"numpy"`` is always last."""
    ext = _extension()
    c_kernels = set(ext.kernels()) if ext is not None else set()
    return [k for k in _PREFERENCE if k in c_kernels or k == "numpy"]


def best_kernel() -> str:
    """The kernel ``kernel="auto"`` resolves to."""
    return available_kernels()[0]


def binary_gemm(a: np.ndarray, b: np.ndarray, k: int, *, kernel: str = "auto",
                threads: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Dot products of packed sign vectors: ``(M, W) x (N, W) -> (M, N)`` int32.

    Args:
        a: packed rows, ``uint64`` of shape ``(M, W)`` (see :func:`~prunekit.binary.packing.pack_signs`).
        b: packed rows, ``uint64`` of shape ``(N, W)``.
        k: number of real elements per row (``<= 64 * W``); tail bits must be 0 in both.
        kernel: ``"auto"``, ``"avx512"``, ``"popcnt"``, ``"portable"`` or ``"numpy"``.
        threads: worker threads of the C kernels (default ``torch.get_num_threads()``).
        out: optional C-contiguous ``int32`` array ``(M, N)`` to write into.

    Returns:
        ``out[i, j] = sum_t sign_a[i, t] * sign_b[j, t]`` exactly.
    """
    a = _check_words("a", a)
    b = _check_words("b", b)
    if a.shape[1] != b.shape[1]:
        raise PrunekitError(f"binary_gemm: a has {a.shape[1]} words per row, b has {b.shape[1]}")
    words = a.shape[1]
    k = int(k)
    if not 0 <= k <= 64 * words:
        raise PrunekitError(f"binary_gemm: k={k} does not fit in {words} words of 64 bits")
    m, n = a.shape[0], b.shape[0]
    if out is None:
        out = np.empty((m, n), dtype=np.int32)
    elif out.shape != (m, n) or out.dtype != np.int32 or not out.flags.c_contiguous:
        raise PrunekitError(f"binary_gemm: out must be a C-contiguous int32 array of shape {(m, n)}")
    if kernel == "auto":
        kernel = best_kernel()
    if kernel == "numpy":
        return _numpy_gemm(a, b, k, out)
    if kernel not in _C_KERNEL_IDS:
        raise PrunekitError(f"binary_gemm: unknown kernel {kernel!r}; known: auto, {', '.join(_PREFERENCE)}")
    ext = _extension()
    if ext is None or kernel not in ext.kernels():
        raise PrunekitError(f"binary_gemm: kernel {kernel!r} is not available here "
                            f"(available: {', '.join(available_kernels())})")
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    ext.xor_gemm(a, b, out, m, n, words, k, _C_KERNEL_IDS[kernel], max(1, int(threads)))
    return out


def _check_words(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise PrunekitError(f"binary_gemm: {name} must be 2-D (rows, words), got shape {x.shape}")
    if x.dtype != np.uint64:
        raise PrunekitError(f"binary_gemm: {name} must hold uint64 words, got {x.dtype}")
    return np.ascontiguousarray(x)


def _popcount_u64(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.uint8)


def _numpy_gemm(a: np.ndarray, b: np.ndarray, k: int, out: np.ndarray) -> np.ndarray:
    m, words = a.shape
    n = b.shape[0]
    rows = max(1, _NUMPY_CHUNK_ELEMS // max(1, n * words))
    for i in range(0, m, rows):
        x = a[i:i + rows, None, :] ^ b[None, :, :]
        mismatches = _popcount_u64(x).sum(axis=-1, dtype=np.int64)
        out[i:i + rows] = k - 2 * mismatches
    return out
