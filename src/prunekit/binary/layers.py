"""Trainable binary layers: BWN and XNOR-Net convolutions and fully connected layers.

Rastegari et al., "XNOR-Net: ImageNet Classification Using Binary Convolutional Neural
Networks", ECCV 2016 (seed 004):

* ``mode="bwn"`` (Binary-Weight-Network): ``W ~ alpha * sign(W)`` with one ``alpha`` per
  output channel; the input stays real-valued.
* ``mode="xnor"``: inputs are binarized as well, scaled by ``K`` (conv) or ``beta``
  (linear). An XNOR layer runs the block ``BN -> BinActiv -> BinConv``: ``input_norm``
  (a BatchNorm over the layer's input, giving the zero-mean input the seed asks for)
  then ``sign`` + ``K`` (BinActiv) then the binary product. Pooling belongs after the
  layer, never between BinActiv and BinConv; :func:`prunekit.binary.binarize` arranges it.

Training follows the paper: forward and backward use the binary weights (through the
straight-through estimator), the optimizer updates the real-valued ``weight`` that the
layer keeps. The layers subclass ``nn.Conv2d``/``nn.Linear`` and keep their parameter
names, so full-precision weights load into them directly.

Example:
    >>> import torch
    >>> layer = BinaryConv2d(3, 8, 3, padding=1, mode="xnor")
    >>> layer(torch.randn(2, 3, 5, 5)).shape
    torch.Size([2, 8, 5, 5])
"""
from __future__ import annotations

import torch
from torch import nn

from prunekit.binary import functional as BF
from prunekit.errors import ConfigError
from prunekit.measure.macs import register_op_counter
from prunekit.validate import check_choice

MODES = ("bwn", "xnor")


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is ``"bwn"`` or ``"xnor"``; raise ConfigError otherwise."""
    return check_choice("binarization mode", mode, MODES)


class BinaryConv2d(nn.Conv2d):
    """``nn.Conv2d`` with binary weights (``"bwn"``) or binary weights and inputs (``"xnor"``).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias:
            as ``nn.Conv2d`` (zero padding only; ``"xnor"`` needs ``groups=1``).
        mode: ``"bwn"`` or ``"xnor"``.
        input_norm: ``"xnor"`` only: put a ``BatchNorm2d(in_channels)`` in front of the
            binarization (default True). :func:`~prunekit.binary.binarize` may move the
            preceding layer's BatchNorm here instead of creating a new one.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, *, mode: str = "bwn", input_norm: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.mode = check_mode(mode)
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ConfigError("BinaryConv2d supports explicit zero padding only")
        if mode == "xnor" and groups != 1:
            raise ConfigError(f"BinaryConv2d(mode='xnor') needs groups=1, got groups={groups}")
        self.input_norm = nn.BatchNorm2d(in_channels) if (mode == "xnor" and input_norm) else None

    @classmethod
    def from_float(cls, conv: nn.Conv2d, mode: str, input_norm: bool = True) -> "BinaryConv2d":
        """A binary copy of ``conv`` sharing nothing with it (its real weights become the latent weights)."""
        if type(conv) is not nn.Conv2d:
            raise ConfigError(f"from_float needs a plain nn.Conv2d, got {type(conv).__name__}")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                  conv.dilation, conv.groups, conv.bias is not None, mode=mode, input_norm=input_norm)
        return _take_params(new, conv)

    @property
    def fan_in(self) -> int:
        """Elements per filter, ``n = c kh kw`` (the ``k`` of the packed GEMM)."""
        return self.weight[0].numel()

    def forward(self, x):
        if self.mode == "bwn":
            return BF.bwn_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.input_norm is not None:
            x = self.input_norm(x)
        return BF.xnor_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode}"


def _take_params(new: nn.Module, float_layer: nn.Module) -> nn.Module:
    """Move ``new`` to ``float_layer``'s device and dtype and copy its weight (and bias) in; returns ``new``.

    Copies rather than shares, so training the binary layer's latent weights never touches the float model.
    """
    new.to(device=float_layer.weight.device, dtype=float_layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(float_layer.weight)
        if float_layer.bias is not None:
            new.bias.copy_(float_layer.bias)
    return new


class BinaryLinear(nn.Linear):
    """``nn.Linear`` with binary weights (``"bwn"``) or binary weights and inputs (``"xnor"``).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        mode: ``"bwn"`` or ``"xnor"``.
        input_norm: ``"xnor"`` only: a ``BatchNorm1d(in_features)`` before the binarization.
    """

    def __init__(self, in_features, out_features, bias=True, *, mode: str = "bwn", input_norm: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.mode = check_mode(mode)
        self.input_norm = nn.BatchNorm1d(in_features) if (mode == "xnor" and input_norm) else None

    @classmethod
    def from_float(cls, linear: nn.Linear, mode: str, input_norm: bool = True) -> "BinaryLinear":
        """A binary copy of ``linear`` (its real weights become the latent weights)."""
        if type(linear) is not nn.Linear:
            raise ConfigError(f"from_float needs a plain nn.Linear, got {type(linear).__name__}")
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, mode=mode, input_norm=input_norm)
        return _take_params(new, linear)

    @property
    def fan_in(self) -> int:
        """Elements per output neuron (``in_features``)."""
        return self.in_features

    def forward(self, x):
        if x.dim() != 2:
            raise ValueError(f"BinaryLinear expects (batch, features) input, got shape {tuple(x.shape)}")
        if self.mode == "bwn":
            return BF.bwn_linear(x, self.weight, self.bias)
        if self.input_norm is not None:
            x = self.input_norm(x)
        return BF.xnor_linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode}"


BINARY_LAYERS = (BinaryConv2d, BinaryLinear)


# ---- op counting for prunekit.measure / `prunekit profile` ----------------------------------------


def layer_op_counts(module, inputs, output) -> dict[str, int]:
    """Ops of one forward of a binary layer, by kind (for :func:`prunekit.measure.count_macs`).

    * ``binary_ops`` (XNOR): xnor+popcount multiply-accumulates of single bits,
      ``outputs x n`` (what XNOR-Net counts; 64 of them fit one 64-bit popcount);
    * ``bwn_adds`` (BWN): additions/subtractions replacing the multiply-accumulates,
      ``outputs x n / groups``;
    * ``macs``: the float multiply-accumulates left: the ``K``/``beta`` map of XNOR layers
      (``|x|`` summed over the input's channels, counted as one MAC per input element,
      then a ``kh x kw`` filter per output position), and the per-output scaling
      (one multiply by ``alpha``, one more by ``K`` in XNOR). BatchNorm is not counted,
      as for every other layer.
    """
    outputs = output.numel()
    n = module.fan_in
    if hasattr(module, "kernel_size"):  # a convolution (float or packed form)
        n_per_out = n  # weight[0] already spans in_channels / groups
        positions = outputs // module.out_channels  # N * Ho * Wo
        if module.mode == "bwn":
            return {"macs": outputs, "bwn_adds": outputs * n_per_out}
        kh, kw = module.kernel_size
        k_map = inputs[0].numel() + positions * kh * kw
        return {"macs": k_map + 2 * outputs, "binary_ops": outputs * n_per_out}
    rows = outputs // module.out_features
    if module.mode == "bwn":
        return {"macs": outputs, "bwn_adds": outputs * n}
    return {"macs": rows * n + 2 * outputs, "binary_ops": outputs * n}


def _count(module, inputs, output):
    return layer_op_counts(module, inputs, output)


register_op_counter(BinaryConv2d, _count)
register_op_counter(BinaryLinear, _count)
