"""Integer XNOR convolution and matrix product on packed bits (pure functions, no modules).

The packed convolution (XNOR-Net's deployment path):

1. the signs of the input are packed along the channels at every pixel
   (``(N, H, W, ceil(C/64))`` words, :func:`pack_nhwc`);
2. im2col gathers, for every output position, the ``kh x kw`` words-per-pixel
   (:func:`im2col_words`), giving rows of ``kh * kw * ceil(C/64)`` words; the filters are
   packed in the same (ky, kx, channel) order (:func:`pack_conv_weight_taps`);
3. :func:`~prunekit.binary.gemm.binary_gemm` gives ``n - 2 * popcount(a ^ b)``,
   ``n = C kh kw`` (zero tail bits of each channel chunk cancel);
4. **zero padding**: a padded pixel is packed as all-zero words, i.e. as ``-1`` in every
   channel, while the float reference ``conv2d(sign(x), sign(W), padding=p)`` pads with
   0. The GEMM therefore counted ``-B[o, c, ky, kx]`` for every padded tap where the
   reference has 0; :func:`padding_correction` adds ``sum_c B[o, c, ky, kx]`` over the
   padded taps of each output position back (a small integer map, computed once per
   input size). The result equals the float reference exactly.

Example:
    >>> import torch
    >>> from prunekit.binary.functional import sign
    >>> x, w = torch.randn(1, 3, 5, 5), torch.randn(4, 3, 3, 3)
    >>> taps = pack_conv_weight_taps(w)
    >>> y = xnor_conv2d_int(x, taps, w, padding=(1, 1), kernel="numpy")
    >>> ref = torch.nn.functional.conv2d(sign(x), sign(w), padding=1)
    >>> bool((torch.from_numpy(y).float() == ref).all())
    True
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from prunekit.binary.gemm import binary_gemm
from prunekit.binary.packing import pack_bits, words_for


def pack_nhwc(x: torch.Tensor) -> np.ndarray:
    """Signs of ``x`` ``(N, C, H, W)`` packed along channels: ``(N, H, W, ceil(C/64))`` uint64."""
    xn = x.detach().cpu().numpy()
    # NumPy's compare + transposed copy of bools is ~3x cheaper than torch's for these sizes
    return pack_bits(np.ascontiguousarray((xn >= 0).transpose(0, 2, 3, 1)))


def pack_conv_weight_taps(weight: torch.Tensor) -> np.ndarray:
    """Signs of ``weight`` ``(O, C, kh, kw)`` packed per tap along channels: ``(O, kh*kw*ceil(C/64))``."""
    bits = (weight.detach() >= 0).permute(0, 2, 3, 1).contiguous().cpu().numpy()
    packed = pack_bits(bits)  # (O, kh, kw, Cw)
    return np.ascontiguousarray(packed.reshape(packed.shape[0], -1))


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution along one axis (as ``nn.Conv2d``)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col_words(xw: np.ndarray, kernel_size, stride, padding, dilation) -> np.ndarray:
    """Patches of packed pixels: ``(N, H, W, Cw)`` -> ``(N * Ho * Wo, kh * kw * Cw)``, padding with zero words."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    n = xw.shape[0]
    if ph or pw:
        xw = np.pad(xw, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(xw, (eh, ew), axis=(1, 2))
    win = win[:, ::sh, ::sw, :, ::dh, ::dw]  # (N, Ho, Wo, Cw, kh, kw)
    ho, wo = win.shape[1], win.shape[2]
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n * ho * wo, kh * kw * xw.shape[3])


def padding_correction(weight: torch.Tensor, input_hw, stride, padding, dilation) -> np.ndarray:
    """``(O, Ho * Wo)`` int32: what to add to the packed result so zero padding counts as 0, not -1.

    ``corr[o, l] = sum over padded taps t of output position l of sum_c B[o, c, t]``,
    ``B = sign(weight)`` (``weight`` may be real-valued or already +-1).
    """
    o, _, kh, kw = weight.shape
    weight_sign = (weight.detach() >= 0).to(torch.float64) * 2 - 1
    h, w = input_hw
    ones = torch.ones(1, 1, h, w, dtype=torch.float64)
    valid = F.unfold(ones, (kh, kw), dilation=dilation, padding=padding, stride=stride)[0]  # (kh*kw, L)
    tap_sums = weight_sign.sum(dim=1).reshape(o, kh * kw)  # (O, kh*kw)
    corr = tap_sums @ (1.0 - valid)  # exact: small integers in float64
    return corr.round().to(torch.int32).numpy()


def xnor_conv2d_int(x: torch.Tensor, weight_taps: np.ndarray, weight_sign: torch.Tensor, stride=(1, 1),
                    padding=(0, 0), dilation=(1, 1), *, correction: np.ndarray | None = None,
                    kernel: str = "auto", threads: int | None = None) -> np.ndarray:
    """``conv2d(sign(x), sign(W))`` with zero padding, computed with xor + popcount: ``(N, O, Ho, Wo)`` int32.

    Args:
        x: real input ``(N, C, H, W)`` (only its signs are used).
        weight_taps: :func:`pack_conv_weight_taps` of the weights.
        weight_sign: the weights (real-valued or their signs) ``(O, C, kh, kw)``, for the shape
            and the padding correction.
        correction: precomputed :func:`padding_correction` for this input size (optional).
        kernel, threads: passed to :func:`~prunekit.binary.gemm.binary_gemm`.
    """
    n, c, h, w = x.shape
    o, wc, kh, kw = weight_sign.shape
    if c != wc:
        raise ValueError(f"input has {c} channels, the filters expect {wc}")
    ho = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    cols = im2col_words(pack_nhwc(x), (kh, kw), stride, padding, dilation)
    if cols.shape[1] != weight_taps.shape[1] or weight_taps.shape[1] != kh * kw * words_for(c):
        raise ValueError("packed weights do not match the input's channels or the kernel size")
    # filters as the rows of the product: out is (O, N*L), already channel-major
    out = binary_gemm(weight_taps, cols, c * kh * kw, kernel=kernel, threads=threads).reshape(o, n, ho * wo)
    if padding[0] or padding[1]:
        if correction is None:
            correction = padding_correction(weight_sign, (h, w), stride, padding, dilation)
        out += correction.astype(np.int32, copy=False)[:, None, :]
    out = out.transpose(1, 0, 2) if n > 1 else out.reshape(1, o, ho * wo)
    return np.ascontiguousarray(out).reshape(n, o, ho, wo)


def xnor_linear_int(x: torch.Tensor, weight_words: np.ndarray, in_features: int, *, kernel: str = "auto",
                    threads: int | None = None) -> np.ndarray:
    """``sign(x) @ sign(W).T`` with xor + popcount: ``(N, O)`` int32 (``weight_words``: ``(O, ceil(F/64))``)."""
    if x.shape[1] != in_features:
        raise ValueError(f"input has {x.shape[1]} features, the layer expects {in_features}")
    xw = pack_bits((x.detach() >= 0).cpu().numpy())
    return binary_gemm(xw, weight_words, in_features, kernel=kernel, threads=threads)
