"""ShuffleNet v1 (Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network
for Mobile Devices", CVPR 2018).

Each unit is a bottleneck of grouped 1x1 conv -> BN/ReLU -> channel shuffle ->
3x3 depthwise conv -> BN -> grouped 1x1 conv -> BN. Stride-1 units add the
input back; stride-2 units concatenate a 3x3 average-pooled copy of the input
instead, so the output has ``in + branch`` channels. The first pointwise conv
of the network is not grouped (its input has only 24 channels, as in the
paper). Stage widths follow the paper's Table 1 for ``groups`` in 1/2/3/4/8.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.models._common import channel_shuffle, init_weights, make_divisible, option, reject_unknown
from prunekit.validate import check_bool, check_choice, check_int, check_positive
from prunekit.models.registry import register_model

#: Output channels of stages 2-4 for each group count (paper, Table 1).
STAGE_WIDTHS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536),
}
#: Units per stage (the first of each has stride 2).
STAGE_REPEATS = (4, 8, 4)


class ShuffleUnit(nn.Module):
    """One ShuffleNet unit (see the module docstring).

    Args:
        in_ch: input channels.
        out_ch: output channels of the unit (after the add or concat).
        mid_ch: bottleneck channels (a quarter of the stage width).
        groups: groups of the pointwise convs and of the shuffle.
        stride: 1 (residual add) or 2 (concat with an average-pooled shortcut).
        group_first: whether the first pointwise conv is grouped.
    """

    def __init__(self, in_ch: int, out_ch: int, mid_ch: int, groups: int, stride: int,
                 group_first: bool = True) -> None:
        super().__init__()
        branch_out = out_ch - in_ch if stride == 2 else out_ch
        self.groups = groups
        self.shuffle = groups > 1  # decided here so forward has no branch on a number
        self.conv1 = nn.Conv2d(in_ch, mid_ch, 1, groups=groups if group_first else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(mid_ch, mid_ch, 3, stride=stride, padding=1, groups=mid_ch, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_ch)
        self.conv3 = nn.Conv2d(mid_ch, branch_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_out)
        # Same window arithmetic as conv2, so both halves of the concat always match in size.
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        if self.shuffle:
            out = channel_shuffle(out, self.groups)
        out = self.bn2(self.conv2(out))
        out = self.bn3(self.conv3(out))
        if self.shortcut is not None:
            return self.relu(torch.cat([self.shortcut(x), out], dim=1))
        return self.relu(out + x)


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1: 3x3 stem (+ max pool), stages of 4/8/4 units, global pool, Linear.

    Args:
        num_classes: classifier outputs.
        in_channels: input image channels.
        groups: 1, 2, 3, 4 or 8.
        width_mult: the paper's scale factor s (widths rounded to multiples of 4*groups).
        small_input: stem stride 1 and no max pool (for 28/32-pixel images).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, groups: int = 3,
                 width_mult: float = 1.0, small_input: bool = False) -> None:
        super().__init__()
        stem = make_divisible(24 * width_mult, groups, min_value=math.lcm(2, groups))
        widths = [make_divisible(c * width_mult, 4 * groups) for c in STAGE_WIDTHS[groups]]
        if widths[0] <= stem:
            raise ConfigError(f"shufflenet_v1: width_mult={width_mult} leaves no channels for the first stage")
        self.conv1 = nn.Conv2d(in_channels, stem, 3, stride=1 if small_input else 2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, padding=1)
        ch = stem
        for s, (width, repeats) in enumerate(zip(widths, STAGE_REPEATS)):
            units = []
            for i in range(repeats):
                units.append(ShuffleUnit(ch, width, width // 4, groups, stride=2 if i == 0 else 1,
                                         group_first=not (s == 0 and i == 0)))
                ch = width
            setattr(self, f"stage{s + 2}", nn.Sequential(*units))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(self.avgpool(x).flatten(1))


@register_model("shufflenet_v1", input_size=(224, 224), min_input_size=(28, 28),
                paper="Zhang et al., ShuffleNet: An Extremely Efficient Convolutional Neural Network for "
                      "Mobile Devices, CVPR 2018",
                tags=("imagenet", "mobile"))
def shufflenet_v1(num_classes=10, in_channels=3, *, groups=3, width_mult=1.0, small_input=False, **opts):
    """ShuffleNet 1x (g=3 by default).

    Args:
        groups: pointwise-conv groups, one of 1, 2, 3, 4, 8 (paper Table 1).
        width_mult: scale factor s (0.25, 0.5, 1, ...).
        small_input: stem stride 1 without max pool.
    """
    reject_unknown("shufflenet_v1", opts, ["groups", "width_mult", "small_input"])
    # an integer first: True == 1 would otherwise pass as one of the choices
    groups = check_choice(option("shufflenet_v1", "groups"), check_int(option("shufflenet_v1", "groups"), groups),
                          sorted(STAGE_WIDTHS))
    width_mult = check_positive(option("shufflenet_v1", "width_mult"), width_mult)
    small_input = check_bool(option("shufflenet_v1", "small_input"), small_input)
    return ShuffleNetV1(num_classes, in_channels, groups, width_mult, small_input)
