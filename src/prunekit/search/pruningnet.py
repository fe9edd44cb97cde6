"""MetaPruning's PruningNet (Liu et al., ICCV 2019, "MetaPruning: Meta Learning for Automatic
Neural Network Channel Pruning", Sec. 3.2-3.3).

For every convolution/linear weight of the model a small meta network (FC-ReLU-FC)
maps the *network encoding* -- the kept fraction of the layer's output group and
of its input group -- to the full weight tensor. Training samples a random
encoding per batch (stochastic structure sampling), generates the weights,
zeroes the channels the encoding removes (the paper crops them; masking the
trailing channels is the same computation) and runs the model functionally with
them, so back-propagation reaches the meta networks. Other parameters (biases,
BatchNorm affine) are shared across encodings and trained as usual.

The meta network's last bias starts at the checkpoint's weight and its last
weight near zero, so a PruningNet built from a trained model starts from that
model's weights for every encoding.

Example:
    >>> pnet = PruningNet(model, space, hidden=32)        # doctest: +SKIP
    >>> prunekit.train.fit(pnet, data, config)            # doctest: +SKIP
    >>> sub = pnet.subnet(space.uniform(0.5))             # full-size model with generated weights
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.search.evolution import random_encoding


class _Meta(nn.Module):
    """FC-ReLU-FC from a 2-vector code to a flattened weight."""

    def __init__(self, init_weight: torch.Tensor, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, hidden)
        self.fc2 = nn.Linear(hidden, init_weight.numel())
        with torch.no_grad():
            self.fc2.weight.mul_(1e-2)  # start at the checkpoint's weight, with a small code-dependent part
            self.fc2.bias.copy_(init_weight.reshape(-1))
        self.shape = tuple(init_weight.shape)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(code))).reshape(self.shape)


class PruningNet(nn.Module):
    """Weights of every sub-network of ``space`` generated from its encoding (MetaPruning).

    Args:
        model: the network to prune (its conv/linear weights initialise the generators; it is not modified).
        space: the :class:`~prunekit.search.space.SearchSpace` built on ``model``.
        hidden: width of each meta network's hidden layer (the paper uses 32).
        seed: seeds the per-batch encoding sampling.

    In training mode every forward samples a random encoding; in eval mode it
    uses :attr:`encoding` (default: the full width).
    """

    def __init__(self, model, space, hidden: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.net = copy.deepcopy(model)
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.encoding = space.full
        where = {}
        for gi, g in enumerate(space.groups):
            for m in g.members:
                where[(m.param, m.dim)] = gi
        params = dict(self.net.named_parameters())
        self._generated = []  # (param name, meta key, out group index or None, in group index or None)
        self.meta = nn.ModuleDict()
        for name, _ in space.analysis.macs_terms:
            if name not in params or name in {n for n, *_ in self._generated}:
                continue
            w = params[name]
            if w.dim() < 2:
                continue
            gout, gin = where.get((name, 0)), where.get((name, 1))
            if gout is None and gin is None:
                continue
            key = name.replace(".", "__")
            self.meta[key] = _Meta(w.detach(), hidden)
            self._generated.append((name, key, gout, gin))
            w.requires_grad_(False)
        if not self._generated:
            raise PrunekitError("PruningNet: no prunable convolution or linear weight to generate")

    def _codes(self, encoding) -> torch.Tensor:
        frac = self.space.normalized(encoding)
        rows = [[frac[go] if go is not None else 1.0, frac[gi] if gi is not None else 1.0]
                for _, _, go, gi in self._generated]
        return torch.tensor(rows, dtype=torch.float32, device=next(self.parameters()).device)

    def generate(self, encoding) -> dict:
        """``{param name: generated weight (masked to the encoding)}`` for every generated layer."""
        codes = self._codes(encoding)
        out = {name: self.meta[key](codes[i]) for i, (name, key, _, _) in enumerate(self._generated)}
        tensors = dict(self.net.named_parameters())
        tensors.update(out)
        for n, m in self.space.masks(encoding, tensors).items():
            tensors[n] = tensors[n] * m
        return tensors

    def forward(self, x):
        enc = random_encoding(self.space.candidates, self.rng) if self.training else self.encoding
        args = self.generate(enc)
        for n, b in self.net.named_buffers():
            args[n] = b.clone() if self.training else b
        return torch.func.functional_call(self.net, args, (x,))

    @torch.no_grad()
    def subnet(self, encoding):
        """A standalone copy of the full-size model holding the weights generated for ``encoding``."""
        enc = self.space.check(encoding)
        gen = self.generate(enc)
        net = copy.deepcopy(self.net)
        for name, p in net.named_parameters():
            p.requires_grad_(True)
            p.copy_(gen[name])
        return net
