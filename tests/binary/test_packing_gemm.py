"""Bit packing and the packed xor/popcount GEMM: every kernel gives the float reference's integers."""
import numpy as np
import pytest
import torch

from prunekit.binary import gemm
from prunekit.binary.packing import (
    int64_to_words, pack_bits, pack_signs, unpack_bits, unpack_signs, words_for, words_to_int64,
)
from prunekit.errors import PrunekitError

KERNELS = gemm.available_kernels()


def test_pack_layout_is_little_endian_bits():
    x = np.full((1, 70), -1.0)
    x[0, [0, 3, 64, 69]] = 1.0
    w = pack_signs(x)
    assert w.dtype == np.uint64 and w.shape == (1, 2)
    assert int(w[0, 0]) == 0b1001 and int(w[0, 1]) == (1 | (1 << 5))  # tail bits 6..63 stay 0


@pytest.mark.parametrize("k", [1, 7, 63, 64, 65, 130, 200])
def test_pack_unpack_round_trip(k):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((3, 2, k)).astype(np.float32)
    w = pack_signs(x)
    assert w.shape == (3, 2, words_for(k))
    assert np.array_equal(unpack_signs(w, k), np.where(x >= 0, 1, -1))
    assert np.array_equal(unpack_bits(pack_bits(x >= 0), k), x >= 0)
    assert np.array_equal(int64_to_words(torch.from_numpy(words_to_int64(w))), w)


def test_pack_signs_accepts_tensors():
    assert np.array_equal(pack_signs(torch.tensor([[-1.0, 0.0]])), np.array([[2]], dtype=np.uint64))


def _reference(x, y):
    return (np.where(x >= 0, 1, -1) @ np.where(y >= 0, 1, -1).T).astype(np.int32)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 37), (7, 9, 150), (13, 6, 570), (5, 17, 1024),
                                   (9, 4, 520), (33, 3, 4500)])
def test_all_kernels_equal_float_reference(kernel, m, n, k):
    rng = np.random.default_rng(m * 1000 + k)
    x, y = rng.standard_normal((m, k)), rng.standard_normal((n, k))
    out = gemm.binary_gemm(pack_signs(x), pack_signs(y), k, kernel=kernel, threads=2)
    assert out.dtype == np.int32 and out.shape == (m, n)
    assert np.array_equal(out, _reference(x, y))


@pytest.fixture(scope="module")
def big_operands():
    # 389 x 250 x 131 words = 12.7M word pairs: enough for the C kernels to use 3 threads
    # (they give each thread at least 4M pairs); 389 rows leave a ragged last chunk.
    rng = np.random.default_rng(7)
    a = rng.integers(0, 2 ** 63, size=(389, 131), dtype=np.uint64)
    b = rng.integers(0, 2 ** 63, size=(250, 131), dtype=np.uint64)
    return a, b, gemm.binary_gemm(a, b, 131 * 64, kernel="numpy")


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k != "numpy"])
@pytest.mark.parametrize("threads", [1, 2, 8])
def test_threads_do_not_change_the_result(kernel, threads, big_operands):
    a, b, ref = big_operands
    for _ in range(2):  # repeated calls reuse nothing stale
        assert np.array_equal(gemm.binary_gemm(a, b, 131 * 64, kernel=kernel, threads=threads), ref)
    out = np.empty_like(ref)
    ids = {"portable": 1, "popcnt": 2, "avx512": 3}
    assert gemm._extension().xor_gemm(a, b, out, 389, 250, 131, 131 * 64, ids[kernel], threads) == \
        (ids[kernel], min(threads, 3))
    assert np.array_equal(out, ref)


def test_numpy_fallback_is_always_available():
    assert KERNELS[-1] == "numpy"
    assert gemm.best_kernel() == KERNELS[0]


def test_extension_is_built_on_x86_with_the_fast_kernel():
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86 only")
    if not gemm.extension_available():
        pytest.skip("C extension not built (pip install -e . builds it)")
    assert "popcnt" in KERNELS and "portable" in KERNELS


def test_out_argument_and_empty_shapes():
    a = pack_signs(np.ones((2, 10)))
    out = np.zeros((2, 2), np.int32)
    assert gemm.binary_gemm(a, a, 10, out=out) is out and out.tolist() == [[10, 10], [10, 10]]
    empty = gemm.binary_gemm(pack_signs(np.ones((0, 10))), a, 10)
    assert empty.shape == (0, 2)


@pytest.mark.parametrize("call,match", [
    (lambda a: gemm.binary_gemm(a.astype(np.int64), a, 10), "uint64"),
    (lambda a: gemm.binary_gemm(a, a, 65), "does not fit"),
    (lambda a: gemm.binary_gemm(a, a, 10, kernel="gpu"), "unknown kernel"),
    (lambda a: gemm.binary_gemm(a[0], a, 10), "2-D"),
    (lambda a: gemm.binary_gemm(a, np.zeros((2, 2), np.uint64), 10), "words per row"),
    (lambda a: gemm.binary_gemm(a, a, 10, out=np.zeros((3, 3), np.int32)), "out must be"),
])
def test_bad_arguments_raise(call, match):
    with pytest.raises(PrunekitError, match=match):
        call(pack_signs(np.ones((2, 10))))
