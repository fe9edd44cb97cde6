"""Small helpers shared by the zoo's architectures.

Option checks go through :mod:`prunekit.validate` with the option named as
``option(arch, key)`` (``"resnet20: option 'widths'"``), and unknown options are
rejected, so a typo in ``create(..., widht_mult=0.5)`` fails loudly instead of
being ignored.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.validate import check_int_sequence


# --------------------------------------------------------------------------- pure helpers
def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never dropping more than 10%.

    This is the channel rounding of the MobileNetV2 paper's reference
    implementation (Sandler et al., CVPR 2018); it keeps width-scaled layers
    hardware-friendly.

    Example:
        >>> make_divisible(32 * 0.75)
        24
        >>> make_divisible(10, 8)
        16
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:  # rounding down must not remove more than 10% of the channels
        rounded += divisor
    return int(rounded)


def conv_out_size(size: int, kernel: int, stride: int = 1, padding: int = 0, ceil_mode: bool = False) -> int:
    """Spatial output size of a convolution or pooling window (PyTorch's formula).

    Example:
        >>> conv_out_size(28, 5, padding=2), conv_out_size(7, 2, 2, ceil_mode=True)
        (28, 4)
    """
    num = size + 2 * padding - kernel
    if ceil_mode:
        return -(-num // stride) + 1
    return num // stride + 1


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups (ShuffleNet, Zhang et al., CVPR 2018).

    Implemented as view -> transpose -> view so that ``torch.fx`` records the
    permutation as plain tensor ops (the pruning engine reads it from the graph).

    Example:
        >>> x = torch.arange(6.).view(1, 6, 1, 1)
        >>> channel_shuffle(x, 2).flatten().tolist()
        [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    """
    b, c, h, w = x.shape
    # ``groups`` is used only as a reshape size (-1 infers c // groups), which lets a
    # graph engine that tracks reshapes read the group structure directly.
    x = x.view(b, groups, -1, h, w)
    x = x.transpose(1, 2).contiguous()
    return x.view(b, c, h, w)


# --------------------------------------------------------------------------- option checks
def reject_unknown(arch: str, opts: dict, accepted: Iterable[str]) -> None:
    """Raise ConfigError if ``opts`` holds options the architecture does not know."""
    if opts:
        names = ", ".join(sorted(opts))
        known = ", ".join(sorted(accepted)) or "(none)"
        raise ConfigError(f"{arch}: unknown option(s) {names}; accepted: num_classes, in_channels, {known}")


def option(arch: str, key: str) -> str:
    """How an architecture option is named in error messages: ``"resnet20: option 'widths'"``."""
    return f"{arch}: option {key!r}"


def check_input_size(arch: str, value) -> tuple[int, int]:
    """``value`` (an int or a (height, width) pair of positive ints) as a pair, else ConfigError."""
    h, w = check_int_sequence(option(arch, "input_size"), value, length=2, allow_scalar=True)
    return h, w


# --------------------------------------------------------------------------- module helpers
def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 relu6: bool = False, act: bool = True) -> nn.Sequential:
    """Conv2d (no bias, "same" padding) -> BatchNorm2d -> ReLU/ReLU6 as an ``nn.Sequential``."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        # Not in-place: activation-recording hooks (e.g. channel-pruning reconstruction)
        # must not see their captured BN outputs overwritten.
        layers.append(nn.ReLU6() if relu6 else nn.ReLU())
    return nn.Sequential(*layers)


def init_weights(model: nn.Module, linear_std: float | None = None) -> nn.Module:
    """Standard initialisation: He-normal convs (fan-out), BN weight 1 / bias 0, zero biases.

    He et al. (ICCV 2015) initialisation keeps ReLU networks trainable from
    scratch. Linear layers keep PyTorch's default unless ``linear_std`` is given
    (then N(0, linear_std), bias 0, as in the MobileNet reference models).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model
