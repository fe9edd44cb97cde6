"""Miniature versions of architectures users bring from public model zoos.

Written from the papers' block descriptions, in the coding style of common
zoos (timm / torchvision-like forwards), at toy widths so tests stay fast.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.graph.arch_models import cbr


class ResNeXtBlock(nn.Module):
    """Aggregated residual transform (Xie et al. 2017): 1x1, grouped 3x3 (cardinality 4), 1x1."""

    def __init__(self, c_in, width, c_out, stride=1, card=4):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, groups=card, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + idt)


class ResNeXt(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = cbr(3, 16)
        self.layers = nn.Sequential(ResNeXtBlock(16, 16, 32), ResNeXtBlock(32, 16, 32), ResNeXtBlock(32, 32, 64, 2))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class DenseLayer(nn.Module):
    def __init__(self, c_in, growth):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, 2 * growth, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(2 * growth), nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, feats):
        x = torch.cat(feats, 1)
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class DenseNet(nn.Module):
    """DenseNet-BC (Huang et al. 2017): every layer reads the concatenation of all earlier ones."""

    def __init__(self, growth=4, num_classes=5):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.layers = nn.ModuleList([DenseLayer(8 + i * growth, growth) for i in range(3)])
        c = 8 + 3 * growth
        self.trans = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2))
        self.norm = nn.BatchNorm2d(c // 2)
        self.fc = nn.Linear(c // 2, num_classes)

    def forward(self, x):
        feats = [self.stem(x)]
        for layer in self.layers:
            feats.append(layer(feats))
        x = self.norm(self.trans(torch.cat(feats, 1)))
        return self.fc(F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, max(1, c // r), 1), nn.Conv2d(max(1, c // r), c, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.expand(F.silu(self.reduce(s))).sigmoid()


class MBConv(nn.Module):
    """EfficientNet MBConv (Tan & Le 2019): expand, depthwise, SE, project, residual."""

    def __init__(self, c_in, c_out, expand=4, stride=1):
        super().__init__()
        mid = c_in * expand
        self.expand = cbr(c_in, mid, 1)
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.SiLU())
        self.se = SqueezeExcite(mid)
        self.project = nn.Sequential(nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.use_res = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.use_res else y


class EfficientNet(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = cbr(3, 8)
        self.blocks = nn.Sequential(MBConv(8, 8), MBConv(8, 12, stride=2), MBConv(12, 12))
        self.head = cbr(12, 24, 1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(24, num_classes))

    def forward(self, x):
        return self.classifier(self.head(self.blocks(self.stem(x))).mean((2, 3)))


class RegNetBlock(nn.Module):
    """RegNetY block (Radosavovic et al. 2020): group width 4, SE, residual."""

    def __init__(self, c_in, c_out, stride=1, gw=4):
        super().__init__()
        self.a = cbr(c_in, c_out, 1)
        self.b = cbr(c_out, c_out, 3, stride, g=c_out // gw)
        self.se = SqueezeExcite(c_out)
        self.c = nn.Sequential(nn.Conv2d(c_out, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.proj = None if (stride == 1 and c_in == c_out) else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        sc = x if self.proj is None else self.proj(x)
        return F.relu(self.c(self.se(self.b(self.a(x)))) + sc)


class RegNet(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = cbr(3, 8, s=2)
        self.s1 = nn.Sequential(RegNetBlock(8, 16), RegNetBlock(16, 16))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(self.s1(self.stem(x)).mean((2, 3)))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al. 2022): 7x7 depthwise, channels-last LayerNorm + MLP, layer scale."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-1 * torch.ones(dim))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, 4)
        self.blocks = nn.Sequential(ConvNeXtBlock(16), ConvNeXtBlock(16))
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.stem(x)).mean([-2, -1])))


class InceptionBlock(nn.Module):
    """Inception module (Szegedy et al. 2015): 1x1, 3x3, double 3x3 and pool branches, concatenated."""

    def __init__(self, c_in):
        super().__init__()
        self.b1 = cbr(c_in, 6, 1)
        self.b3 = nn.Sequential(cbr(c_in, 4, 1), cbr(4, 6))
        self.b33 = nn.Sequential(cbr(c_in, 4, 1), cbr(4, 6), cbr(6, 6))
        self.bp = cbr(c_in, 4, 1)

    def forward(self, x):
        p = F.avg_pool2d(x, 3, 1, 1)
        return torch.cat([self.b1(x), self.b3(x), self.b33(x), self.bp(p)], 1)


class Inception(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = cbr(3, 12)
        self.inc1, self.inc2 = InceptionBlock(12), InceptionBlock(22)
        self.fc = nn.Linear(22, num_classes)

    def forward(self, x):
        x = F.max_pool2d(self.inc1(self.stem(x)), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.inc2(x), (1, 1)), 1))


class GhostModule(nn.Module):
    """Ghost module (Han et al. 2020): a primary conv plus cheap depthwise 'ghost' features, sliced to oup."""

    def __init__(self, inp, oup, ratio=2, relu=True):
        super().__init__()
        self.oup = oup
        init = -(-oup // ratio)
        self.primary = nn.Sequential(nn.Conv2d(inp, init, 1, bias=False), nn.BatchNorm2d(init),
                                     nn.ReLU() if relu else nn.Identity())
        self.cheap = nn.Sequential(nn.Conv2d(init, init * (ratio - 1), 3, 1, 1, groups=init, bias=False),
                                   nn.BatchNorm2d(init * (ratio - 1)), nn.ReLU() if relu else nn.Identity())

    def forward(self, x):
        x1 = self.primary(x)
        x2 = self.cheap(x1)
        out = torch.cat([x1, x2], dim=1)
        return out[:, :self.oup, :, :]


class GhostNet(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = cbr(3, 8)
        self.g1 = GhostModule(8, 16)
        self.g2 = GhostModule(16, 8, relu=False)
        self.g3 = GhostModule(8, 12)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.g2(self.g1(x))
        return self.fc(self.g3(x).mean((2, 3)))


class Attention(nn.Module):
    """timm-style attention: fused qkv, reshape by num_heads/head_dim, scaled dot product, proj."""

    def __init__(self, dim, num_heads=4, fused=False, stale_c=False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused = fused
        self.stale_c = stale_c
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        x = x.transpose(1, 2)
        x = x.reshape(B, N, C) if self.stale_c else x.reshape(B, N, -1)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, fused=False, stale_c=False):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, fused, stale_c)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, dim * 2)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al. 2021) with a class token and learned positions."""

    def __init__(self, dim=32, depth=2, heads=4, patch=4, img=16, num_classes=5, fused=False, stale_c=False):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        n = (img // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, fused, stale_c) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


class TorchTransformer(nn.Module):
    """Token classifier on torch.nn.MultiheadAttention (batch_first), with an embedding and MLP."""

    def __init__(self, vocab=20, dim=16, heads=4, num_classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 32)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, tokens):
        x = self.emb(tokens)
        a, _ = self.attn(x, x, x)
        x = self.norm(x + a)
        x = x + self.mlp(x)
        return self.head(x.mean(1))


def _vit_stale_no_norm():
    return _vit_no_norm(stale_c=True)


def _vit_no_norm(**kw):
    """ViT with identity norms: masking equals removal, so heads and widths are checked exactly."""
    net = ViT(**kw)
    for name, m in list(net.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(m, child_name, nn.Identity())
    return net


def _make_divisible(v, divisor=8, min_value=None):
    """torchvision's channel rounding helper."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class TVSqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation as written there (avgpool, fc1, act, fc2, scale activation)."""

    def __init__(self, c, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = nn.ReLU(), nn.Hardsigmoid()

    def _scale(self, x):
        return self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))

    def forward(self, x):
        scale = self._scale(x)
        return scale * x


class MobileNetV3(nn.Module):
    """MobileNetV3-style inverted residuals with hardswish and torchvision's SE (Howard et al. 2019)."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        mid = 48
        self.block = nn.Sequential(
            nn.Conv2d(16, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.Hardswish(),
            nn.Conv2d(mid, mid, 5, 1, 2, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.Hardswish(),
            TVSqueezeExcitation(mid, _make_divisible(mid // 4)),
            nn.Conv2d(mid, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.classifier = nn.Sequential(nn.Linear(16, 32), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


class LayerNorm2d(nn.Module):
    """The official ConvNeXt channels_first LayerNorm, written out with mean/pow/sqrt."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def window_partition(x, ws):
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, C)


def window_reverse(windows, ws, H, W):
    C = windows.shape[-1]
    x = windows.view(-1, H // ws, W // ws, ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, H, W, C)


class SwinBlock(nn.Module):
    """Swin-style shifted-window attention (Liu et al. 2021): roll, window partition, attention, reverse."""

    def __init__(self, dim=16, heads=2, ws=4, shift=2):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1 = LayerNorm2d(dim)
        self.attn = Attention(dim, heads)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x):
        B, C, H, W = x.shape
        y = self.norm1(x).permute(0, 2, 3, 1)
        y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        w = window_partition(y, self.ws).view(-1, self.ws * self.ws, C)
        w = self.attn(w).view(-1, self.ws, self.ws, C)
        y = torch.roll(window_reverse(w, self.ws, H, W), shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.permute(0, 3, 1, 2)
        return x + self.mlp(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Swin(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 2, 2)
        self.block = SwinBlock()
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean((2, 3)))


def _mha_no_norm():
    net = TorchTransformer()
    net.norm = nn.Identity()
    return net


def _vit_fused():
    return ViT(fused=True)


def _vit_stale():
    return ViT(stale_c=True)


# name -> (factory, input shapes (or ("tokens", shape)), mask_exact)
BREADTH = {
    "resnext": (ResNeXt, [(3, 16, 16)], True),
    "densenet": (DenseNet, [(3, 16, 16)], True),
    "efficientnet": (EfficientNet, [(3, 16, 16)], True),
    "regnet": (RegNet, [(3, 16, 16)], True),
    "convnext": (ConvNeXt, [(3, 16, 16)], False),
    "inception": (Inception, [(3, 16, 16)], True),
    "ghostnet": (GhostNet, [(3, 16, 16)], True),
    "vit": (ViT, [(3, 16, 16)], False),
    "vit_no_norm": (_vit_no_norm, [(3, 16, 16)], True),
    "vit_sdpa": (_vit_fused, [(3, 16, 16)], False),
    "vit_stale_c": (_vit_stale, [(3, 16, 16)], False),
    "vit_stale_c_no_norm": (_vit_stale_no_norm, [(3, 16, 16)], True),
    "torch_mha": (TorchTransformer, [("tokens", (6,))], False),
    "mobilenet_v3": (MobileNetV3, [(3, 16, 16)], True),
    "swin": (Swin, [(3, 16, 16)], False),
    "torch_mha_no_norm": (_mha_no_norm, [("tokens", (6,))], True),
}
