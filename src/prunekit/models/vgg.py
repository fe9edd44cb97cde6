"""CIFAR-style VGG with BatchNorm, built from a channel ``cfg`` list.

The variant of Network Slimming (Liu et al., ICCV 2017) and "Rethinking the
Value of Network Pruning" (Liu et al., ICLR 2019), after Simonyan & Zisserman
(ICLR 2015): 3x3 conv + BN + ReLU stages separated by 2x2 max pools, global
average pooling and a single Linear classifier. A pruned network is described
by its surviving channel counts, so ``create("vgg16", cfg=[...])`` rebuilds it.

Two choices keep every input from 28x28 upwards valid: max pools use
``ceil_mode=True`` (28 -> 14 -> 7 -> 4 -> 2, never 0) and an
``AdaptiveAvgPool2d(1)`` precedes the classifier (identical to the papers'
``AvgPool2d(2)`` at 32x32).
"""
from __future__ import annotations

from torch import nn

from prunekit.errors import ConfigError
from prunekit.models._common import init_weights, reject_unknown
from prunekit.validate import check_int
from prunekit.models.registry import register_model

#: Default channel configurations ('M' = 2x2 max pool), as in Network Slimming.
VGG_CFGS: dict[str, tuple] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512),
}

_PAPER = ("Simonyan & Zisserman, ICLR 2015; CIFAR variant of Liu et al., Learning Efficient "
          "Convolutional Networks through Network Slimming, ICCV 2017")


def check_vgg_cfg(arch: str, cfg) -> list:
    """Validate a VGG cfg (positive ints and 'M'), returning it as a list; ConfigError otherwise."""
    if isinstance(cfg, (str, bytes)) or not isinstance(cfg, (list, tuple)):
        raise ConfigError(f"{arch}: option 'cfg' must be a list of channel counts and 'M', got {cfg!r}")
    out = []
    for i, v in enumerate(cfg):
        if v == "M":
            out.append(v)
            continue
        try:
            out.append(check_int(f"{arch}: option 'cfg'[{i}]", v))
        except ConfigError:  # the same check, with the message saying 'M' is allowed too
            raise ConfigError(f"{arch}: option 'cfg'[{i}] must be a positive integer or 'M', got {v!r}") from None
    if not any(v != "M" for v in out):
        raise ConfigError(f"{arch}: option 'cfg' has no convolution (only 'M' entries)")
    return out


class VGG(nn.Module):
    """VGG built from ``cfg``: ``features`` (conv/BN/ReLU/pool), global pool, Linear ``classifier``.

    Args:
        cfg: channel counts of the 3x3 convs in order, ``'M'`` for a max pool.
        num_classes: classifier outputs.
        in_channels: input image channels.

    Example:
        >>> net = VGG([16, "M", 32], num_classes=10, in_channels=1)
        >>> [m.out_channels for m in net.features if isinstance(m, nn.Conv2d)]
        [16, 32]
    """

    def __init__(self, cfg: list, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(ch, v, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
                ch = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def _make(arch: str):
    default = VGG_CFGS[arch]

    def build(num_classes=10, in_channels=3, *, cfg=None, **opts):
        reject_unknown(arch, opts, ["cfg"])
        return VGG(check_vgg_cfg(arch, default if cfg is None else cfg), num_classes, in_channels)

    build.__name__ = arch
    build.__qualname__ = arch
    build.__doc__ = (
        f"CIFAR-style {arch.upper()} with BatchNorm (Network Slimming variant).\n\n"
        f"    Args:\n"
        f"        cfg: channel list, numbers and 'M' (max pool); default\n"
        f"            ``{list(default)}``. Pass a pruned list to rebuild a pruned network.\n")
    return build


vgg11 = register_model("vgg11", input_size=(32, 32), min_input_size=(28, 28), paper=_PAPER,
                       tags=("cifar", "vgg"))(_make("vgg11"))
vgg16 = register_model("vgg16", input_size=(32, 32), min_input_size=(28, 28), paper=_PAPER,
                       tags=("cifar", "vgg"))(_make("vgg16"))
vgg19 = register_model("vgg19", input_size=(32, 32), min_input_size=(28, 28), paper=_PAPER,
                       tags=("cifar", "vgg"))(_make("vgg19"))
