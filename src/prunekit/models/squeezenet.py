"""SqueezeNet 1.1 (Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters
and <0.5MB model size", arXiv:1602.07360, 2016; v1.1 from the authors' repository).

Fire modules squeeze with a 1x1 conv, then expand with parallel 1x1 and 3x3
convs whose outputs are concatenated. There is no fully connected layer: a
final 1x1 conv produces one map per class, averaged globally. At 1000 classes
it has 1,235,496 parameters, like the common reference implementation.
Max pools use ``ceil_mode=True`` (as in the original Caffe model), which also
keeps 28x28 inputs valid.
"""
from __future__ import annotations

import torch
from torch import nn

from prunekit.models._common import option, reject_unknown
from prunekit.validate import check_fraction
from prunekit.models.registry import register_model


class Fire(nn.Module):
    """Fire module: ``squeeze`` 1x1 conv + ReLU, then ``expand1x1`` and ``expand3x3`` (+ ReLU) concatenated.

    Args:
        in_ch: input channels.
        squeeze: squeeze-layer channels (s1x1).
        expand1x1: channels of the 1x1 expand conv (e1x1).
        expand3x3: channels of the 3x3 expand conv (e3x3); output has ``e1x1 + e3x3`` channels.
    """

    def __init__(self, in_ch: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_ch, squeeze, 1)
        self.squeeze_relu = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_relu = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_relu = nn.ReLU()

    def forward(self, x):
        x = self.squeeze_relu(self.squeeze(x))
        return torch.cat([self.expand1x1_relu(self.expand1x1(x)), self.expand3x3_relu(self.expand3x3(x))], dim=1)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1: conv3x3/2, 8 Fire modules with 3 max pools, dropout, 1x1 conv classifier, global pool.

    Args:
        num_classes: number of output maps / classes.
        in_channels: input image channels.
        dropout: dropout probability before the classifier conv (0.5 in the paper).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=2),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(128, 32, 128, 128),
            Fire(256, 32, 128, 128),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(512, num_classes, 1)
        self.classifier_relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # The class-map conv starts small (as in the paper's release) so early
                # logits are near zero; the others use He initialisation.
                if m is self.classifier:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.classifier_relu(self.classifier(self.dropout(self.features(x))))
        return self.avgpool(x).flatten(1)


@register_model("squeezenet1_1", input_size=(224, 224), min_input_size=(28, 28),
                paper="Iandola et al., SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and "
                      "<0.5MB model size, arXiv:1602.07360, 2016",
                tags=("imagenet", "mobile"))
def squeezenet1_1(num_classes=10, in_channels=3, *, dropout=0.5, **opts):
    """SqueezeNet 1.1 (1,235,496 parameters at 1000 classes).

    Args:
        dropout: dropout probability before the classifier conv.
    """
    reject_unknown("squeezenet1_1", opts, ["dropout"])
    return SqueezeNet(num_classes, in_channels, check_fraction(option("squeezenet1_1", "dropout"), dropout))
