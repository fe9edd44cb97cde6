"""MetaPruning's PruningNet (Liu et al., ICCV 2019, "MetaPruning: Meta Learning for Automatic
Neural Network Channel Pruning", Sec. 3.2-3.3).

For every convolution/linear weight of the model a small meta network (a PruningNet
block: FC-ReLU-FC) maps the *network encoding* -- the kept fraction of the layer's
output group and of its input group -- to the full weight tensor. Training samples
a random encoding per batch (stochastic structure sampling), generates the weights,
zeroes the channels the encoding removes (the paper crops them; masking the
trailing channels is the same computation) and runs the model functionally with
them, so back-propagation reaches the meta networks. Other parameters (biases,
BatchNorm affine) are shared across encodings and trained as usual.

**Low-rank second layer (deviation from the paper, off with ``rank=hidden``).** A
block computes ``W(c) = B + A h(c)`` with ``h(c) = relu(W1 c + b1)`` (``hidden``
units), ``B`` the second FC's bias and ``A`` its ``numel x hidden`` weight. The
paper trains ``A`` densely, so a block costs ``hidden`` times its layer's weights
(MobileNet v2, hidden 32: ~70M parameters read, differentiated and updated by the
optimizer every step, ~2x the full model's training time). Here ``A = U V`` with
``U`` (``numel x rank``, the ``fc2`` weight) and ``V`` (``rank x hidden``, ``proj``):
still one FC-ReLU-FC block mapping the encoding to the weight, with its last weight
constrained to rank ``rank``; the generated weights keep depending on the encoding
only through the meta network, and the cost falls to ``rank`` times the layer's
weights. The default ``rank=8`` keeps MobileNet v2's PruningNet training within
1.3x of the full model's (``docs/bench/search.md``); ``rank >= hidden`` gives the
paper's dense block exactly (no ``proj``).

The meta network's last bias starts at the checkpoint's weight and its last
weight near zero, so a PruningNet built from a trained model starts from that
model's weights for every encoding.

Example:
    >>> pnet = PruningNet(model, space, hidden=32, rank=8)  # doctest: +SKIP
    >>> prunekit.train.fit(pnet, data, config)              # doctest: +SKIP
    >>> sub = pnet.subnet(space.uniform(0.5))               # full-size model with generated weights
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.search.evolution import random_encoding
from prunekit.validate import check_int


class _Meta(nn.Module):
    """One PruningNet block: FC(2->hidden)-ReLU-FC(hidden->numel), the last weight of rank <= ``rank``.

    ``forward(code) = fc2.bias + fc2.weight @ proj.weight @ relu(fc1(code))``
    (without ``proj`` when ``rank >= hidden``: the paper's dense block).
    """

    def __init__(self, init_weight: torch.Tensor, hidden: int, rank: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, hidden)
        rank = min(rank, hidden)
        self.proj = nn.Linear(hidden, rank, bias=False) if rank < hidden else None
        self.fc2 = nn.Linear(rank, init_weight.numel())
        with torch.no_grad():
            self.fc2.weight.mul_(1e-2)  # start at the checkpoint's weight, with a small code-dependent part
            self.fc2.bias.copy_(init_weight.reshape(-1))
        self.shape = tuple(init_weight.shape)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(code))
        if self.proj is not None:
            h = self.proj(h)
        return torch.addmv(self.fc2.bias, self.fc2.weight, h).view(self.shape)


class PruningNet(nn.Module):
    """Weights of every sub-network of ``space`` generated from its encoding (MetaPruning).

    Args:
        model: the network to prune (its conv/linear weights initialise the generators; it is not modified).
        space: the :class:`~prunekit.search.space.SearchSpace` built on ``model``.
        hidden: width of each meta network's hidden layer (the paper uses 32).
        rank: rank of each meta network's last weight (``numel x hidden``, factorised as
            ``numel x rank`` times ``rank x hidden``); ``rank >= hidden`` is the paper's dense block.
        seed: seeds the per-batch encoding sampling.

    In training mode every forward samples a random encoding; in eval mode it
    uses :attr:`encoding` (default: the full width).
    """

    def __init__(self, model, space, hidden: int = 32, seed: int = 0, rank: int = 8) -> None:
        super().__init__()
        hidden = check_int("PruningNet: hidden", hidden, error=PrunekitError)
        rank = check_int("PruningNet: rank", rank, error=PrunekitError)
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
            self.meta[key] = _Meta(w.detach(), hidden, rank)
            self._generated.append((name, key, gout, gin))
            w.requires_grad_(False)
        if not self._generated:
            raise PrunekitError("PruningNet: no prunable convolution or linear weight to generate")
        # per masked parameter and dim: [(group index, member indices, member channels)]
        self._mask_members: dict = {}
        for gi, g in enumerate(space.groups):
            for m in g.members:
                if m.param in params:
                    self._mask_members.setdefault(m.param, {}).setdefault(m.dim, []).append(
                        (gi, torch.as_tensor(m.indices, dtype=torch.long), np.asarray(m.channels)))
        self._mask_cache: dict = {}

    def _codes(self, encoding) -> torch.Tensor:
        frac = self.space.normalized(encoding)
        rows = [[frac[go] if go is not None else 1.0, frac[gi] if gi is not None else 1.0]
                for _, _, go, gi in self._generated]
        return torch.tensor(rows, dtype=torch.float32, device=next(self.parameters()).device)

    def _dim_mask(self, name: str, t: torch.Tensor, dim: int, members, encoding):
        """0/1 vector along ``dim`` of ``name`` shaped to broadcast over ``t``; None when nothing is removed.

        The product over dims equals :meth:`SearchSpace.masks` (each member zeroes whole slices along its dim).
        """
        kept = tuple(int(encoding[gi]) for gi, _, _ in members)
        key = (name, dim, kept, t.device)
        if key not in self._mask_cache:
            vec = None
            for (gi, idx, ch), k in zip(members, kept):
                sel = idx[torch.as_tensor(ch >= k)]
                if sel.numel():
                    if vec is None:
                        vec = torch.ones(t.shape[dim], dtype=t.dtype, device=t.device)
                    vec[sel.to(t.device)] = 0.0
            if vec is not None:
                vec = vec.view([-1 if d == dim else 1 for d in range(t.dim())])
            self._mask_cache[key] = vec
        return self._mask_cache[key]

    def generate(self, encoding) -> dict:
        """``{param name: generated weight (masked to the encoding)}`` for every generated layer."""
        codes = self._codes(encoding)
        tensors = dict(self.net.named_parameters())
        for i, (name, key, _, _) in enumerate(self._generated):
            tensors[name] = self.meta[key](codes[i])
        for name, dims in self._mask_members.items():
            t = tensors[name]
            for dim, members in dims.items():
                vec = self._dim_mask(name, t, dim, members, encoding)
                if vec is not None:
                    t = t * vec
            tensors[name] = t
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
