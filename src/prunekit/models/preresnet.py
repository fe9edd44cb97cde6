"""Pre-activation ResNet-164 for CIFAR (He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016).

This is the PreResNet-164 that Network Slimming (Liu et al., ICCV 2017) prunes:
three stages of 18 pre-activation Bottlenecks (BN-ReLU-conv, 16/32/64 inner
channels, 4x expansion), 1x1 conv projection shortcuts (no BN: the next block's
BN normalises the sum), and a final BN-ReLU before pooling.

Seed 001's implementation needs a ``channel_selection`` layer after each
block's first BN to prune that BN's channels without touching the residual
stream. Here the blocks are plain modules; a pruning engine that reads the
graph can see that ``bn1`` feeds only ``conv1`` and handle it there.
"""
from __future__ import annotations

from torch import nn

from prunekit.models._common import init_weights, option, reject_unknown
from prunekit.validate import check_int_sequence
from prunekit.models.registry import register_model


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3 (strided), BN-ReLU-conv1x1, plus a shortcut (no final activation).

    Args:
        in_ch: input channels (the residual stream).
        mid1, mid2: outputs of conv1 and conv2.
        out_ch: output channels of conv3 (the residual stream after the block).
        stride: stride of conv2 and of the projection shortcut.
    """

    def __init__(self, in_ch: int, mid1: int, mid2: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_ch, mid1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid1)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(mid1, mid2, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid2)
        self.relu3 = nn.ReLU()
        self.conv3 = nn.Conv2d(mid2, out_ch, 1, bias=False)
        self.downsample = (nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
                           if stride != 1 or in_ch != out_ch else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv1(self.relu1(self.bn1(x)))
        out = self.conv2(self.relu2(self.bn2(out)))
        out = self.conv3(self.relu3(self.bn3(out)))
        return out + identity


class PreResNet(nn.Module):
    """Pre-activation Bottleneck ResNet-(9n+2) for CIFAR.

    Args:
        depth: 9n+2 (164 -> n = 18 blocks per stage).
        num_classes: classifier outputs.
        in_channels: input image channels.
        widths: inner widths of the three stages (outputs are 4x these).
        cfg: optional per-block inner widths, a flat list of ``2 * 3n`` numbers
            ``[conv1_out, conv2_out]`` for each block in order.
    """

    expansion = 4

    def __init__(self, depth: int = 164, num_classes: int = 10, in_channels: int = 3,
                 widths: tuple[int, int, int] = (16, 32, 64), cfg: list[int] | None = None) -> None:
        super().__init__()
        n = (depth - 2) // 9
        mids = list(cfg) if cfg is not None else [w for w in widths for _ in range(2 * n)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        ch = widths[0]
        for s, width in enumerate(widths):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                k = 2 * (s * n + b)
                blocks.append(PreActBottleneck(ch, mids[k], mids[k + 1], width * self.expansion, stride))
                ch = width * self.expansion
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.relu(self.bn(x))
        return self.fc(self.avgpool(x).flatten(1))


@register_model("preresnet164", input_size=(32, 32), min_input_size=(28, 28),
                paper="He et al., Identity Mappings in Deep Residual Networks, ECCV 2016 "
                      "(as pruned by Network Slimming, ICCV 2017)",
                tags=("cifar", "resnet"))
def preresnet164(num_classes=10, in_channels=3, *, widths=(16, 32, 64), cfg=None, **opts):
    """PreResNet-164: 3 x 18 pre-activation Bottlenecks, 1.70M parameters at 10 classes.

    Args:
        widths: stage inner widths, default (16, 32, 64); stage outputs are 4x.
        cfg: 108 per-block inner widths (``[conv1_out, conv2_out]`` per block).
    """
    reject_unknown("preresnet164", opts, ["widths", "cfg"])
    widths = check_int_sequence(option("preresnet164", "widths"), widths, length=3)
    if cfg is not None:
        cfg = check_int_sequence(option("preresnet164", "cfg"), cfg, length=2 * 3 * 18)
    return PreResNet(164, num_classes, in_channels, tuple(widths), cfg)
