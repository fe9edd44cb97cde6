"""Pure tensor math of Binary Weight Networks and XNOR-Net (Rastegari et al., ECCV 2016).

Nothing here touches modules; :mod:`prunekit.binary.layers` builds on it.

* ``sign``: the binarization used everywhere in prunekit, ``+1`` for ``x >= 0`` and
  ``-1`` otherwise. ``sign(0) = +1`` (``torch.sign`` would give 0, which a bit cannot
  hold); the packed path (:mod:`prunekit.binary.packing`) uses the same rule, bit 1 <=> +1.
* :class:`SignSTE`: ``sign`` with the straight-through estimator of Hubara/Courbariaux
  et al. (2016) used by XNOR-Net: the gradient passes unchanged where ``|x| <= 1`` and is
  zero elsewhere.
* :func:`weight_alpha`: the optimal scale of ``W ~ alpha * sign(W)``, ``alpha = ||W||_1 / n``
  per output channel (seed 004, BWN derivation).
* :func:`activation_scale_map`: XNOR-Net's ``K = A * k``: ``A`` is the per-position sum of
  ``|I|`` over channels and ``k`` a ``kh x kw`` filter of ``1 / (c kh kw)``, so ``K[i, j]`` is
  the mean ``|I|`` of the patch under the filter (``beta`` of the paper), computed once
  for all filters.
* :func:`bwn_conv2d`, :func:`xnor_conv2d`, :func:`bwn_linear`, :func:`xnor_linear`: the
  float reference layers. Their integer part (``conv(sign(x), sign(W))``) is computed in
  float32 and is exact while ``n = c kh kw < 2**24``; :func:`scale_output` then applies the
  scales in one fixed order, which the packed path reuses so both give identical floats.

Example:
    >>> import torch
    >>> sign(torch.tensor([-2.0, -0.0, 0.0, 0.5]))
    tensor([-1.,  1.,  1.,  1.])
    >>> weight_alpha(torch.tensor([[1.0, -3.0], [0.5, 0.5]]))
    tensor([2.0000, 0.5000])
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: Largest ``n`` (elements summed per output) for which float32 sums of +-1 are exact.
EXACT_FLOAT32_LIMIT = 2 ** 24


def sign(x: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``x >= 0``, ``-1`` elsewhere (NaN gives -1), in ``x``'s dtype; no gradient."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class SignSTE(torch.autograd.Function):
    """``sign`` forward, straight-through gradient clipped to ``|x| <= 1`` backward.

    ``d sign(x) / dx`` is taken as ``1{|x| <= 1}`` (Hubara et al., "Binarized Neural
    Networks", NeurIPS 2016; used for both weights and activations by XNOR-Net).

    Example:
        >>> x = torch.tensor([-1.5, -1.0, 0.0, 0.3, 2.0], requires_grad=True)
        >>> SignSTE.apply(x).sum().backward()
        >>> x.grad
        tensor([0., 1., 1., 1., 0.])
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out * (x.abs() <= 1).to(grad_out.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """:class:`SignSTE` applied to ``x`` (plain :func:`sign` when no gradient is needed)."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return sign(x)
    return SignSTE.apply(x)


def weight_alpha(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scale ``alpha = ||W_o||_1 / n`` minimising ``||W_o - alpha B_o||^2``.

    ``weight`` has the output channel first (``(O, C, kh, kw)`` or ``(O, F)``); returns ``(O,)``.
    Differentiable: autograd sees ``alpha`` as the function of ``W`` it is.
    """
    return weight.abs().flatten(1).mean(dim=1)


def activation_scale_map(x: torch.Tensor, kernel_size, stride=1, padding=0, dilation=1) -> torch.Tensor:
    """XNOR-Net's ``K = A * k``: mean ``|x|`` of every patch a convolution would see.

    Args:
        x: input ``(N, C, H, W)``.
        kernel_size, stride, padding, dilation: those of the convolution (int or pair).

    Returns:
        ``(N, 1, Ho, Wo)``; padded positions count as ``|0|`` and the divisor is always
        ``C * kh * kw`` (the paper's ``k_ij = 1 / (c w h)``).
    """
    kh, kw = _pair(kernel_size)
    c = x.shape[1]
    a = x.abs().sum(dim=1, keepdim=True)  # A(i, j) = sum_c |I(c, i, j)|
    k = torch.full((1, 1, kh, kw), 1.0 / (c * kh * kw), dtype=x.dtype, device=x.device)
    return F.conv2d(a, k, None, _pair(stride), _pair(padding), _pair(dilation))


def activation_scale_rows(x: torch.Tensor) -> torch.Tensor:
    """``beta`` of a fully connected XNOR layer: mean ``|x|`` of each row, shape ``(N, 1)``."""
    return x.abs().mean(dim=1, keepdim=True)


def scale_output(y: torch.Tensor, alpha: torch.Tensor, k: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """``y * alpha [* K] [+ bias]`` with ``alpha``/``bias`` per channel (dim 1), in this fixed order.

    Shared by the float layers and the packed path so that, given the same integer
    ``y``, both produce bit-identical outputs.
    """
    shape = (1, -1) + (1,) * (y.dim() - 2)
    out = y * alpha.view(shape)
    if k is not None:
        out = out * k
    if bias is not None:
        out = out + bias.view(shape)
    return out


def bwn_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Binary-Weight-Network convolution: ``conv(x, sign(W)) * alpha + bias``.

    The forward and backward passes use the binary weights; the gradient reaches the
    real-valued ``weight`` through the STE of ``sign`` and through ``alpha``.
    """
    y = F.conv2d(x, sign_ste(weight), None, stride, padding, dilation, groups)
    return scale_output(y, weight_alpha(weight), None, bias)


def xnor_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """XNOR-Net convolution: ``conv(sign(x), sign(W)) * alpha * K + bias`` (zero padding).

    The integer ``conv(sign(x), sign(W))`` is what the packed xor/popcount path computes;
    padded positions contribute 0 here, and the packed path corrects for them exactly.
    """
    k = activation_scale_map(x, weight.shape[-2:], stride, padding, dilation)
    y = F.conv2d(sign_ste(x), sign_ste(weight), None, stride, padding, dilation)
    return scale_output(y, weight_alpha(weight), k, bias)


def bwn_linear(x, weight, bias=None):
    """Binary-Weight-Network fully connected layer: ``(x @ sign(W).T) * alpha + bias``."""
    return scale_output(F.linear(x, sign_ste(weight)), weight_alpha(weight), None, bias)


def xnor_linear(x, weight, bias=None):
    """XNOR fully connected layer: ``(sign(x) @ sign(W).T) * alpha * beta + bias``."""
    beta = activation_scale_rows(x)
    return scale_output(F.linear(sign_ste(x), sign_ste(weight)), weight_alpha(weight), beta, bias)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    return v if len(v) == 2 else (v[0], v[0])
