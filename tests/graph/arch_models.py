"""Small models exercising every construct the pruning engine must handle.

``CONSTRUCTS`` and ``BREADTH`` map a name to ``(factory, input shapes, mask_exact)``:
``mask_exact`` is False where a normalisation across channels (LayerNorm,
GroupNorm) makes masking and removing differ by design. The breadth models are
written in the style of public model zoos (ResNeXt, DenseNet, EfficientNet,
RegNet, ConvNeXt, Inception, GhostNet, ViT), small enough for fast tests.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def cbr(i, o, k=3, s=1, g=1):
    return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = cbr(3, 6), cbr(3, 10)
        self.c = cbr(16, 8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        return self.fc(self.c(y).mean((2, 3)))


class Split(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = cbr(3, 12)
        self.b1, self.b2 = cbr(6, 6), cbr(6, 6)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        y = self.a(x)
        p, q = torch.chunk(y, 2, dim=1)
        u, v = y.split(y.size(1) // 2, dim=1)
        z = torch.cat([self.b1(p) + u, self.b2(q) * v], 1)
        return self.fc(F.adaptive_avg_pool2d(z, 1).flatten(1))


class GroupedDepthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = cbr(3, 16)
        self.g = cbr(16, 24, g=4)
        self.dw = cbr(24, 48, g=24)  # depthwise with multiplier 2
        self.pw = nn.Conv2d(48, 8, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.pw(self.dw(self.g(self.a(x)))).amax((2, 3)))


def channel_shuffle(x, groups):
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, -1, h, w)


class Shuffle(nn.Module):
    """ShuffleNetV2-style unit: split, branch, concat, shuffle."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.branch = nn.Sequential(cbr(8, 8, 1), cbr(8, 8, 3, g=8), cbr(8, 8, 1))
        self.head = nn.Conv2d(16, 12, 1)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        x = self.stem(x)
        a, b = x.chunk(2, dim=1)
        x = channel_shuffle(torch.cat([a, self.branch(b)], 1), 2)
        return self.fc(self.head(x).mean((2, 3)))


class MultiBranch(nn.Module):
    """Residual adds, a subtraction, a division and a stack between branches; a reused module."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8)
        self.b1, self.b2, self.b3 = cbr(8, 8), cbr(8, 8), cbr(8, 8)
        self.out = nn.Conv2d(8, 6, 3, padding=1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        x = self.stem(x)
        y = self.b1(x) + x
        y = y - self.b2(y)
        y = y / (1.0 + self.b3(y).abs())
        y = torch.stack([y, self.b1(y)], dim=0).sum(0)       # stack across branches
        y = y.narrow(1, 0, y.size(1))[:, :, 1:-1, 1:-1]  # full narrow, spatial slice
        return self.fc(F.max_pool2d(self.out(y), 2).mean((2, 3)))


class FlattenLinear(nn.Module):
    """The seed's MNIST ConvNet: a conv channel becomes a block of Linear features."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 12, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(12 * 4 * 4, 20), nn.Linear(20, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(x)))


class SharedModule(nn.Module):
    """One conv called twice, a functional parameter and a PReLU."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.PReLU(8)
        self.w = nn.Parameter(torch.randn(6, 8, 1, 1) * 0.3)
        self.b = nn.Parameter(torch.randn(6) * 0.1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        x = self.stem(x)
        x = self.act(self.shared(x)) + x
        x = self.act(self.shared(x))
        x = F.conv2d(x, self.w, self.b)
        return self.fc(x.mean((2, 3)))


class MultiIO(nn.Module):
    """Two inputs, two outputs (and an output dict key order)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = cbr(3, 8), cbr(1, 8)
        self.mix = cbr(8, 10)
        self.h1, self.h2 = nn.Linear(10, 3), nn.Conv2d(10, 2, 1)

    def forward(self, x, y):
        z = self.mix(self.a(x) + self.b(y))
        return self.h1(z.mean((2, 3))), self.h2(z)


class SEGate(nn.Module):
    """Squeeze-and-excitation gate written with view/expand_as, as in the SENet code."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.fc1, self.fc2 = nn.Linear(16, 4), nn.Linear(4, 16)
        self.head = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        b, c, _, _ = x.size()
        y = F.adaptive_avg_pool2d(x, 1).view(b, c)
        y = torch.sigmoid(self.fc2(F.relu(self.fc1(y)))).view(b, c, 1, 1)
        x = x * y.expand_as(x)
        return self.fc(self.head(x).mean((2, 3)))


class TransposeUpsample(nn.Module):
    """Encoder-decoder bits: ConvTranspose, Upsample, channels-last permute, Conv1d and a Dropout."""

    def __init__(self):
        super().__init__()
        self.enc = cbr(3, 8, s=2)
        self.up = nn.ConvTranspose2d(8, 6, 2, stride=2)
        self.up2 = nn.Upsample(scale_factor=2)
        self.lin = nn.Linear(6, 6)  # channels-last Linear
        self.drop = nn.Dropout(0.1)
        self.c1 = nn.Conv1d(6, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.up(self.enc(x))
        x = self.lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.drop(self.up2(x))
        x = self.c1(x.flatten(2))
        return self.fc(x.mean(2))


class Norms(nn.Module):
    """InstanceNorm (per channel, exact) plus GroupNorm and LayerNorm over channels (not mask-exact)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.b = nn.Conv2d(8, 12, 3, padding=1)
        self.gn = nn.GroupNorm(4, 12)
        self.ln = nn.LayerNorm(12)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        x = self.gn(self.b(F.relu(self.inorm(self.a(x)))))
        return self.fc(self.ln(x.mean((2, 3))))


class DataDependent(nn.Module):
    """A submodule fx cannot trace (Python branch on tensor values): kept whole, with a warning."""

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 1)

        def forward(self, x):
            if x.sum() > 0:
                return self.conv(x)
            return x

    def __init__(self):
        super().__init__()
        self.a, self.gate, self.b = cbr(3, 8), self.Gate(), cbr(8, 8)
        self.c = cbr(8, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(self.c(self.b(self.gate(self.a(x)))).mean((2, 3)))


class TiedEmbedding(nn.Module):
    """A language-model head sharing the embedding matrix through F.linear."""

    def __init__(self, vocab=20, dim=12):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)

    def forward(self, tokens):
        h = torch.tanh(self.mix(self.emb(tokens))) + self.emb(tokens)
        return F.linear(h, self.emb.weight)


CONSTRUCTS = {
    "tied_embedding": (TiedEmbedding, [("tokens", (5,))], True),
    "concat": (Concat, [(3, 8, 8)], True),
    "split_chunk": (Split, [(3, 8, 8)], True),
    "grouped_depthwise": (GroupedDepthwise, [(3, 8, 8)], True),
    "channel_shuffle": (Shuffle, [(3, 8, 8)], True),
    "multi_branch": (MultiBranch, [(3, 8, 8)], True),
    "flatten_linear": (FlattenLinear, [(1, 16, 16)], True),
    "shared_module": (SharedModule, [(3, 8, 8)], True),
    "multi_io": (MultiIO, [(3, 8, 8), (1, 8, 8)], True),
    "se_gate": (SEGate, [(3, 8, 8)], True),
    "transpose_upsample": (TransposeUpsample, [(3, 8, 8)], True),
    "norms": (Norms, [(3, 8, 8)], False),
    "data_dependent": (DataDependent, [(3, 8, 8)], True),
}
