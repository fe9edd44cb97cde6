"""Residual networks (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

* ``resnet20`` / ``resnet56`` / ``resnet110``: the CIFAR ResNets of the paper's
  section 4.2 (3 stages of 16-32-64 channels, 6n+2 layers, BasicBlocks).
  Where the shape changes the shortcut is a 1x1 conv + BN projection (the
  paper's option B) rather than zero padding, so every channel of the residual
  stream belongs to a real layer and a graph-based engine can prune it.
* ``resnet18`` / ``resnet50``: the ImageNet ResNets (7x7 stem + max pool,
  BasicBlock / Bottleneck with the stride on the 3x3 conv, projection
  shortcuts). With ``width_mult=1`` they have exactly the parameters of the
  common reference implementation (11,689,512 and 25,557,032 at 1000 classes).
  Adaptive average pooling lets them run from 28x28 up; ``small_input=True``
  replaces the stem by a 3x3 stride-1 conv without max pool for 28/32-pixel data.
"""
from __future__ import annotations

from torch import nn

from prunekit.models._common import init_weights, make_divisible, option, reject_unknown
from prunekit.validate import check_bool, check_int_sequence, check_positive
from prunekit.models.registry import register_model


def _projection(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    """1x1 conv + BN shortcut when the shape changes, else None (identity)."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 conv/BN layers plus a shortcut: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Args:
        in_ch: input channels.
        mid_ch: channels between the two convs (the ones Li et al. 2017 prune in ResNet-56).
        out_ch: output channels (the residual stream).
        stride: stride of the first conv and of the projection shortcut.
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, mid_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(mid_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = _projection(in_ch, out_ch, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand, each with BN, plus a shortcut ("ResNet v1.5" stride placement).

    Args:
        in_ch: input channels.
        mid1, mid2: outputs of the first (1x1) and second (3x3) convs.
        out_ch: output channels (the residual stream).
        stride: stride of the 3x3 conv and of the projection shortcut.
    """

    def __init__(self, in_ch: int, mid1: int, mid2: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, mid1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(mid1, mid2, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid2)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(mid2, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample = _projection(in_ch, out_ch, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2): 3x3 stem, three stages of n BasicBlocks, global pool, Linear.

    Args:
        depth: 6n+2 (20, 32, 44, 56, 110, ...).
        num_classes: classifier outputs.
        in_channels: input image channels.
        widths: channels of the three stages (the stem has ``widths[0]``).
        cfg: optional per-block inner widths (``3n`` entries, the conv1 outputs of
            each block); ``None`` means equal to the stage width.
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3,
                 widths: tuple[int, int, int] = (16, 32, 64), cfg: list[int] | None = None) -> None:
        super().__init__()
        n = (depth - 2) // 6
        mids = list(cfg) if cfg is not None else [w for w in widths for _ in range(n)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        ch = widths[0]
        for s, width in enumerate(widths):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(BasicBlock(ch, mids[s * n + b], width, stride))
                ch = width
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def _cifar_resnet(depth: int):
    arch = f"resnet{depth}"
    n = (depth - 2) // 6

    def build(num_classes=10, in_channels=3, *, widths=(16, 32, 64), cfg=None, **opts):
        reject_unknown(arch, opts, ["widths", "cfg"])
        widths = check_int_sequence(option(arch, "widths"), widths, length=3)
        if cfg is not None:
            cfg = check_int_sequence(option(arch, "cfg"), cfg, length=3 * n)
        return CifarResNet(depth, num_classes, in_channels, tuple(widths), cfg)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = (
        f"CIFAR ResNet-{depth} ({n} BasicBlocks per stage, 1x1 conv+BN projection shortcuts).\n\n"
        f"    Args:\n"
        f"        widths: stage widths, default (16, 32, 64).\n"
        f"        cfg: {3 * n} per-block inner widths (conv1 outputs), e.g. from a pruning run.\n")
    return build


_CIFAR_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (CIFAR-10 models)"
resnet20 = register_model("resnet20", input_size=(32, 32), min_input_size=(28, 28), paper=_CIFAR_PAPER,
                          tags=("cifar", "resnet"))(_cifar_resnet(20))
resnet56 = register_model("resnet56", input_size=(32, 32), min_input_size=(28, 28), paper=_CIFAR_PAPER,
                          tags=("cifar", "resnet"))(_cifar_resnet(56))
resnet110 = register_model("resnet110", input_size=(32, 32), min_input_size=(28, 28), paper=_CIFAR_PAPER,
                           tags=("cifar", "resnet"))(_cifar_resnet(110))


class ResNet(nn.Module):
    """ImageNet ResNet: stem, four stages (stride 1, 2, 2, 2), global pool, Linear.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101/152).
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)``.
        num_classes: classifier outputs.
        in_channels: input image channels.
        width_mult: scales every channel count (rounded to a multiple of 8).
        small_input: use a 3x3 stride-1 stem without max pool (for 28-32 pixel images).
    """

    def __init__(self, block: str, layers: tuple[int, ...], num_classes: int = 1000, in_channels: int = 3,
                 width_mult: float = 1.0, small_input: bool = False) -> None:
        super().__init__()
        stem = make_divisible(64 * width_mult, 8)
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        # Identity keeps the module tree (and fx graph) the same shape for both stems.
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, padding=1)
        ch = stem
        for s, n_blocks in enumerate(layers):
            planes = make_divisible(64 * 2 ** s * width_mult, 8)
            blocks: list[nn.Module] = []
            for b in range(n_blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                if block == "basic":
                    blocks.append(BasicBlock(ch, planes, planes, stride))
                    ch = planes
                else:
                    blocks.append(Bottleneck(ch, planes, planes, planes * 4, stride))
                    ch = planes * 4
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _imagenet_resnet(arch: str, block: str, layers: tuple[int, ...]):
    def build(num_classes=10, in_channels=3, *, width_mult=1.0, small_input=False, **opts):
        reject_unknown(arch, opts, ["width_mult", "small_input"])
        width_mult = check_positive(option(arch, "width_mult"), width_mult)
        small_input = check_bool(option(arch, "small_input"), small_input)
        return ResNet(block, layers, num_classes, in_channels, width_mult, small_input)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = (
        f"ImageNet {arch} ({block} blocks {list(layers)}).\n\n"
        f"    Args:\n"
        f"        width_mult: channel multiplier (1.0 = the paper's widths).\n"
        f"        small_input: 3x3 stride-1 stem without max pool, for 28/32-pixel images.\n")
    return build


_IN_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
resnet18 = register_model("resnet18", input_size=(224, 224), min_input_size=(28, 28), paper=_IN_PAPER,
                          tags=("imagenet", "resnet"))(_imagenet_resnet("resnet18", "basic", (2, 2, 2, 2)))
resnet50 = register_model("resnet50", input_size=(224, 224), min_input_size=(28, 28), paper=_IN_PAPER,
                          tags=("imagenet", "resnet"))(_imagenet_resnet("resnet50", "bottleneck", (3, 4, 6, 3)))
