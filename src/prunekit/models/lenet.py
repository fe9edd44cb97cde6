"""Small MNIST networks: LeNet-300-100, LeNet-5 and the seeds' 3-conv ConvNet.

* ``lenet300_100``: the fully connected net of LeCun et al. (1998) used by
  Han et al. (Deep Compression, ICLR 2016) for weight pruning.
* ``lenet5``: LeCun et al., "Gradient-based learning applied to document
  recognition" (Proc. IEEE 1998), with ReLU and max pooling.
* ``convnet3``: the 3-conv MNIST ConvNet of seed 001 (32-64-64 filters pruned
  to 8-16-32), the example of the flatten-to-Linear coupling.

Their first Linear layer depends on the input size, so their constructors take
``input_size`` (``prunekit.models.create`` passes it).
"""
from __future__ import annotations

from torch import nn

from prunekit.errors import ConfigError
from prunekit.models._common import check_input_size, conv_out_size, init_weights, option, reject_unknown
from prunekit.validate import check_int_sequence
from prunekit.models.registry import register_model

_MNIST = (28, 28)


class MLP(nn.Module):
    """Flatten the input, then Linear+ReLU hidden layers and a Linear classifier.

    Args:
        in_features: size of the flattened input (channels * height * width).
        hidden: widths of the hidden layers, e.g. ``(300, 100)``.
        num_classes: classifier outputs.
    """

    def __init__(self, in_features: int, hidden: list[int], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x.flatten(1)))


@register_model("lenet300_100", input_size=_MNIST, min_input_size=_MNIST,
                paper="LeCun et al. 1998; Han et al., Learning both Weights and Connections, NeurIPS 2015",
                tags=("mnist", "mlp"))
def lenet300_100(num_classes=10, in_channels=3, input_size=_MNIST, *, hidden=(300, 100), **opts):
    """LeNet-300-100: a 784-300-100-10 MLP on the flattened image.

    Args:
        input_size: (height, width) of the input; the first Linear has
            ``in_channels * height * width`` inputs.
        hidden: hidden layer widths; seed 001's MLP is ``hidden=(200, 200)``.

    Example:
        >>> from prunekit import models
        >>> models.create("lenet300_100", in_channels=1).features[0].in_features
        784
    """
    reject_unknown("lenet300_100", opts, ["input_size", "hidden"])
    h, w = check_input_size("lenet300_100", input_size)
    hidden = check_int_sequence(option("lenet300_100", "hidden"), hidden)
    return MLP(in_channels * h * w, hidden, num_classes)


class LeNet5(nn.Module):
    """LeNet-5: conv5x5(6) - pool - conv5x5(16) - pool - fc120 - fc84 - classifier.

    The first convolution pads by 2, so a 28x28 MNIST digit is treated like the
    32x32 padded field of the original paper (16x5x5 features before the first
    fully connected layer). Other input sizes change only that layer's width.
    """

    def __init__(self, num_classes: int, in_channels: int, input_size: tuple[int, int],
                 cfg: list[int]) -> None:
        super().__init__()
        c1, c2, f1, f2 = cfg
        self.conv1 = nn.Conv2d(in_channels, c1, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        h, w = (conv_out_size(conv_out_size(conv_out_size(conv_out_size(s, 5, padding=2), 2, 2), 5), 2, 2)
                for s in input_size)
        if h < 1 or w < 1:
            raise ConfigError(f"lenet5: input_size {tuple(input_size)} is too small (needs at least 12x12)")
        self.fc1 = nn.Linear(c2 * h * w, f1)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(f1, f2)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(f2, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(x.flatten(1)))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


@register_model("lenet5", input_size=_MNIST, min_input_size=_MNIST,
                paper="LeCun et al., Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 1998",
                tags=("mnist", "cnn"))
def lenet5(num_classes=10, in_channels=3, input_size=_MNIST, *, cfg=(6, 16, 120, 84), **opts):
    """LeNet-5 (works on 28x28 and 32x32 inputs).

    Args:
        input_size: (height, width); sets the first Linear's width
            (16*5*5 at 28x28, 16*6*6 at 32x32).
        cfg: ``[conv1, conv2, fc1, fc2]`` widths, e.g. a pruned ``[3, 8, 60, 42]``.
    """
    reject_unknown("lenet5", opts, ["input_size", "cfg"])
    size = check_input_size("lenet5", input_size)
    cfg = check_int_sequence(option("lenet5", "cfg"), cfg, length=4)
    return LeNet5(num_classes, in_channels, size, cfg)


class ConvNet3(nn.Module):
    """Seed 001's MNIST ConvNet: three 3x3 convs (32-64-64) with two max pools, then one Linear.

    Module names follow the seed (``conv1``, ``relu1``, ``maxpool1``, ..., ``linear1``).
    The Linear layer reads ``cfg[2] * (H/4) * (W/4)`` features, so pruning a
    filter of ``conv3`` removes a block of ``(H/4)*(W/4)`` Linear inputs.
    """

    def __init__(self, num_classes: int, in_channels: int, input_size: tuple[int, int],
                 cfg: list[int]) -> None:
        super().__init__()
        c1, c2, c3 = cfg
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.maxpool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.maxpool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.relu3 = nn.ReLU()
        h, w = (conv_out_size(conv_out_size(s, 2, 2), 2, 2) for s in input_size)
        if h < 1 or w < 1:
            raise ConfigError(f"convnet3: input_size {tuple(input_size)} is too small (needs at least 4x4)")
        self.linear1 = nn.Linear(c3 * h * w, num_classes)
        init_weights(self)

    def forward(self, x):
        x = self.maxpool1(self.relu1(self.conv1(x)))
        x = self.maxpool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.conv3(x))
        return self.linear1(x.flatten(1))


@register_model("convnet3", input_size=_MNIST, min_input_size=_MNIST,
                paper="Li et al., Pruning Filters for Efficient ConvNets, ICLR 2017 (seed 001's MNIST example)",
                tags=("mnist", "cnn"))
def convnet3(num_classes=10, in_channels=3, input_size=_MNIST, *, cfg=(32, 64, 64), **opts):
    """The 3-conv MNIST ConvNet of seed 001 (Linear of 3136 inputs at 28x28).

    Args:
        input_size: (height, width) of the input.
        cfg: filters of the three convs; the seed prunes ``[32, 64, 64]`` to ``[8, 16, 32]``.

    Example:
        >>> from prunekit import models
        >>> models.create("convnet3", in_channels=1, cfg=[8, 16, 32]).linear1.in_features
        1568
    """
    reject_unknown("convnet3", opts, ["input_size", "cfg"])
    size = check_input_size("convnet3", input_size)
    cfg = check_int_sequence(option("convnet3", "cfg"), cfg, length=3)
    return ConvNet3(num_classes, in_channels, size, cfg)
