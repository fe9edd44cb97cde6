"""MobileNet v1 and v2.

* ``mobilenet_v1``: Howard et al., "MobileNets: Efficient Convolutional Neural
  Networks for Mobile Vision Applications" (2017): a 3x3 stem and 13
  depthwise-separable blocks (3x3 depthwise conv + 1x1 pointwise conv, each
  with BN and ReLU), global pool, Linear.
* ``mobilenet_v2``: Sandler et al., "MobileNetV2: Inverted Residuals and Linear
  Bottlenecks" (CVPR 2018): inverted residual blocks (1x1 expand, 3x3
  depthwise, 1x1 linear projection, ReLU6), 1280-channel head. At
  ``width_mult=1`` and 1000 classes it has 3,504,872 parameters, like the
  common reference implementation.

Both take ``width_mult`` (channels rounded to multiples of 8) and
``small_input=True``, which removes the early downsampling meant for 224x224
images (the usual CIFAR adaptation) so 28/32-pixel inputs keep spatial detail.
"""
from __future__ import annotations

from torch import nn

from prunekit.errors import ConfigError
from prunekit.models._common import conv_bn_relu, init_weights, make_divisible, option, reject_unknown
from prunekit.validate import check_bool, check_fraction, check_int_sequence, check_positive
from prunekit.models.registry import register_model

#: MobileNet v1 body: (output channels, stride) of the 13 depthwise-separable blocks.
V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
#: MobileNet v2 body: (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv/BN/ReLU (``dw``) followed by 1x1 pointwise conv/BN/ReLU (``pw``)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.dw = conv_bn_relu(in_ch, in_ch, 3, stride=stride, groups=in_ch)
        self.pw = conv_bn_relu(in_ch, out_ch, 1)

    def forward(self, x):
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    """MobileNet v1 from a list of 14 widths (stem + 13 pointwise convs).

    Args:
        widths: output channels of the stem and of each block's pointwise conv.
        num_classes: classifier outputs.
        in_channels: input image channels.
        small_input: stem stride 1 instead of 2.
    """

    def __init__(self, widths: list[int], num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False) -> None:
        super().__init__()
        self.stem = conv_bn_relu(in_channels, widths[0], 3, stride=1 if small_input else 2)
        blocks = [DepthwiseSeparable(widths[i], widths[i + 1], stride) for i, (_, stride) in enumerate(V1_BLOCKS)]
        self.features = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.features(self.stem(x))
        return self.classifier(self.avgpool(x).flatten(1))


@register_model("mobilenet_v1", input_size=(224, 224), min_input_size=(28, 28),
                paper="Howard et al., MobileNets: Efficient Convolutional Neural Networks for Mobile Vision "
                      "Applications, arXiv:1704.04861, 2017",
                tags=("imagenet", "mobile"))
def mobilenet_v1(num_classes=10, in_channels=3, *, width_mult=1.0, small_input=False, cfg=None, **opts):
    """MobileNet v1 (4,231,976 parameters at 1000 classes and ``width_mult=1``).

    Args:
        width_mult: the paper's width multiplier alpha (channels rounded to multiples of 8).
        small_input: stem stride 1 (for 28/32-pixel images).
        cfg: explicit 14 widths (stem + 13 blocks), e.g. a searched or pruned
            configuration; excludes ``width_mult``.
    """
    reject_unknown("mobilenet_v1", opts, ["width_mult", "small_input", "cfg"])
    width_mult = check_positive(option("mobilenet_v1", "width_mult"), width_mult)
    small_input = check_bool(option("mobilenet_v1", "small_input"), small_input)
    if cfg is None:
        widths = [make_divisible(c * width_mult, 8) for c in (32, *(c for c, _ in V1_BLOCKS))]
    else:
        if width_mult != 1.0:
            raise ConfigError("mobilenet_v1: give either 'cfg' or 'width_mult', not both")
        widths = check_int_sequence(option("mobilenet_v1", "cfg"), cfg, length=1 + len(V1_BLOCKS))
    return MobileNetV1(widths, num_classes, in_channels, small_input)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (``expand``, absent when t=1), 3x3 depthwise (``dw``), 1x1 linear ``project``.

    The residual connection is used when the stride is 1 and the channel count
    is unchanged (decided at construction, so fx tracing sees no branch).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.expand = conv_bn_relu(in_ch, hidden, 1, relu6=True) if expand_ratio != 1 else None
        self.dw = conv_bn_relu(hidden, hidden, 3, stride=stride, groups=hidden, relu6=True)
        self.project = conv_bn_relu(hidden, out_ch, 1, act=False)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x):
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.dw(out))
        if self.use_residual:
            return x + out
        return out


class MobileNetV2(nn.Module):
    """MobileNet v2: stem, 17 inverted residual blocks, 1x1 head conv, global pool, dropout, Linear.

    Args:
        num_classes: classifier outputs.
        in_channels: input image channels.
        width_mult: channel multiplier (multiples of 8; the head keeps 1280 for multipliers below 1).
        small_input: stem and second stage with stride 1 (overall stride 8 instead of 32).
        dropout: dropout probability before the classifier.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                 small_input: bool = False, dropout: float = 0.2) -> None:
        super().__init__()
        ch = make_divisible(32 * width_mult, 8)
        last = make_divisible(1280 * max(1.0, width_mult), 8)
        self.stem = conv_bn_relu(in_channels, ch, 3, stride=1 if small_input else 2, relu6=True)
        blocks: list[nn.Module] = []
        for stage, (t, c, n, s) in enumerate(V2_SETTINGS):
            out = make_divisible(c * width_mult, 8)
            if small_input and stage == 1:
                s = 1  # keep 32x32 inputs at 32x32 through the first two stages
            for i in range(n):
                blocks.append(InvertedResidual(ch, out, s if i == 0 else 1, t))
                ch = out
        self.features = nn.Sequential(*blocks)
        self.head = conv_bn_relu(ch, last, 1, relu6=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, num_classes)
        init_weights(self, linear_std=0.01)

    def forward(self, x):
        x = self.head(self.features(self.stem(x)))
        return self.classifier(self.dropout(self.avgpool(x).flatten(1)))


@register_model("mobilenet_v2", input_size=(224, 224), min_input_size=(28, 28),
                paper="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018",
                tags=("imagenet", "mobile"))
def mobilenet_v2(num_classes=10, in_channels=3, *, width_mult=1.0, small_input=False, dropout=0.2, **opts):
    """MobileNet v2 (3,504,872 parameters at 1000 classes and ``width_mult=1``).

    Args:
        width_mult: channel multiplier.
        small_input: CIFAR-style strides (stem and second stage stride 1).
        dropout: dropout probability before the classifier (0.2 as in the paper's training).
    """
    reject_unknown("mobilenet_v2", opts, ["width_mult", "small_input", "dropout"])
    width_mult = check_positive(option("mobilenet_v2", "width_mult"), width_mult)
    small_input = check_bool(option("mobilenet_v2", "small_input"), small_input)
    dropout = check_fraction(option("mobilenet_v2", "dropout"), dropout)
    return MobileNetV2(num_classes, in_channels, width_mult, small_input, dropout)
