"""A model class of a user's own, outside prunekit and its zoo (imported by path in the export tests)."""
import torch
import torch.nn as nn


class UserNet(nn.Module):
    """Conv-BN-ReLU twice, global pooling, a classifier: constructor arguments stored in the spec."""

    def __init__(self, width=8, num_classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


class FixedBatchNet(nn.Module):
    """A model whose code depends on the batch size (so it cannot export with a dynamic batch)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[0] == 2:
            return self.fc(x) * 2
        return self.fc(x)
