"""The packed XNOR convolution / linear product equal conv2d/linear of the signs exactly."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prunekit.binary import gemm, packed_ops
from prunekit.binary.functional import sign

CASES = [  # (N, C, H, W, O, k, stride, padding, dilation)
    (1, 1, 5, 5, 2, 3, 1, 0, 1),
    (2, 3, 7, 6, 4, 3, 1, 1, 1),
    (1, 65, 6, 5, 3, 3, 2, 1, 1),       # C not a multiple of 64
    (2, 130, 5, 5, 5, 1, 1, 0, 1),
    (1, 6, 9, 9, 7, (5, 3), (2, 1), (2, 1), 1),
    (1, 4, 9, 8, 3, 3, 1, 2, 2),        # dilation, padding wider than the kernel reach
    (3, 64, 4, 4, 8, 3, 1, 1, 1),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kernel", ["numpy", "auto"])
def test_xnor_conv_int_equals_float_reference(case, kernel):
    n, c, h, w, o, k, s, p, d = case
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    torch.manual_seed(sum(pair(k)) + c)
    x, wt = torch.randn(n, c, h, w), torch.randn(o, c, *pair(k))
    ref = F.conv2d(sign(x), sign(wt), stride=pair(s), padding=pair(p), dilation=pair(d))
    got = packed_ops.xnor_conv2d_int(x, packed_ops.pack_conv_weight_taps(wt), wt, pair(s), pair(p), pair(d),
                                     kernel=kernel)
    assert got.dtype == np.int32
    assert torch.equal(torch.from_numpy(got).float(), ref)


def test_padding_correction_is_needed_and_exact():
    # all-negative input: every valid tap is -1, padded taps count 0 in the reference
    x = -torch.ones(1, 2, 3, 3)
    wt = torch.ones(1, 2, 3, 3)
    corr = packed_ops.padding_correction(wt, (3, 3), (1, 1), (1, 1), (1, 1))
    # corner outputs see 5 padded taps x 2 channels, edges 3 x 2, the centre none
    assert corr.reshape(3, 3).tolist() == [[10, 6, 10], [6, 0, 6], [10, 6, 10]]
    got = packed_ops.xnor_conv2d_int(x, packed_ops.pack_conv_weight_taps(wt), wt, (1, 1), (1, 1), (1, 1))
    assert got[0, 0].tolist() == [[-8, -12, -8], [-12, -18, -12], [-8, -12, -8]]


def test_im2col_layout_matches_weight_taps():
    x = torch.randn(1, 70, 4, 4)
    cols = packed_ops.im2col_words(packed_ops.pack_nhwc(x), (3, 3), (1, 1), (0, 0), (1, 1))
    assert cols.shape == (4, 3 * 3 * 2)
    taps = packed_ops.pack_conv_weight_taps(x[:, :, :3, :3].clone())
    assert np.array_equal(cols[0], taps[0])  # the first patch is the top-left 3x3 window


@pytest.mark.parametrize("f", [1, 63, 64, 100, 257])
def test_xnor_linear_int_equals_float_reference(f):
    torch.manual_seed(f)
    x, wt = torch.randn(5, f), torch.randn(3, f)
    words = packed_ops.pack_bits((wt >= 0).numpy())
    for kernel in gemm.available_kernels():
        got = packed_ops.xnor_linear_int(x, words, f, kernel=kernel)
        assert torch.equal(torch.from_numpy(got).float(), F.linear(sign(x), sign(wt)))


def test_shape_mismatch_raises():
    wt = torch.randn(2, 3, 3, 3)
    with pytest.raises(ValueError, match="channels"):
        packed_ops.xnor_conv2d_int(torch.randn(1, 4, 5, 5), packed_ops.pack_conv_weight_taps(wt), wt)
    with pytest.raises(ValueError, match="features"):
        packed_ops.xnor_linear_int(torch.randn(1, 4), np.zeros((2, 1), np.uint64), 5)
