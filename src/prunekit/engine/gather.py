"""What a criterion sees of a coupling group, and the gradients gradient criteria need.

:func:`gather_group` turns a group of the analysis into a
:class:`~prunekit.criteria.GroupTensors`: per member a ``(G, k)`` channel-major
matrix, built only when the criterion reads it.
"""
from __future__ import annotations

import numpy as np

from prunekit.errors import PrunekitError

__all__ = ["LazyRows", "channel_rows", "gather_group", "gradients"]


class LazyRows(list):
    """A list whose items are computed on first access (criteria read only the members they use)."""

    def __init__(self, makers):
        super().__init__([None] * len(makers))
        self._makers = makers
        self._done = [False] * len(makers)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if not self._done[k]:
            super().__setitem__(k, self._makers[k]())
            self._done[k] = True
        return super().__getitem__(k)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def channel_rows(src, m, size: int):
    """``(size, k)`` matrix: row ``c`` holds every slice of ``src`` along ``m.dim`` mapped to channel ``c``."""
    import torch

    n = m.indices.size
    contiguous = n and m.indices[-1] - m.indices[0] == n - 1 and (np.diff(m.indices) == 1).all()
    if contiguous and (m.channels == np.arange(n)).all():
        rows = src.narrow(m.dim, int(m.indices[0]), n).movedim(m.dim, 0).reshape(n, -1)
        return rows.float()
    order = np.argsort(m.channels, kind="stable")
    idx = torch.as_tensor(m.indices[order], dtype=torch.long)
    rows = src.movedim(m.dim, 0).index_select(0, idx).reshape(n, -1).float()
    counts = np.bincount(m.channels, minlength=size)
    if (counts == counts[0]).all() and counts[0] > 0:
        return rows.reshape(size, -1)
    out = torch.zeros(size, int(counts.max()) * rows.shape[1])
    start = 0
    for c in range(size):
        k = int(counts[c])
        out[c, : k * rows.shape[1]] = rows[start:start + k].reshape(-1)
        start += k
    return out


def gather_group(tensors: dict, group, grads: dict | None):
    """The criterion's view of a group: per member a (G, k) channel-major matrix, built lazily."""
    from prunekit.criteria import GroupTensors

    def maker(src, m):
        return lambda: channel_rows(src, m, group.size)

    W, Gs = [], []
    for m in group.members:
        W.append(maker(tensors[m.param].detach(), m))
        g = grads.get(m.param) if grads else None
        Gs.append(maker(g, m) if g is not None else (lambda: None))
    return GroupTensors(LazyRows(W), LazyRows(Gs), [m.role for m in group.members],
                        [m.param for m in group.members], seed=group.id)


def gradients(model, data, loss_fn) -> dict:
    """Accumulated gradients of ``loss_fn`` over ``data`` batches, on a copy of the model."""
    import copy

    import torch

    if data is None:
        raise PrunekitError("criterion 'taylor' needs calibration batches: pass data=[(x, y), ...]")
    net = copy.deepcopy(model)
    net.train()
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    net.zero_grad(set_to_none=True)
    n = 0
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise PrunekitError("data for the taylor criterion must yield (inputs, targets) pairs")
        x, y = batch
        out = net(*x) if isinstance(x, (tuple, list)) else net(x)
        loss_fn(out, y).backward()
        n += 1
    if n == 0:
        raise PrunekitError("data for the taylor criterion is empty")
    return {name: p.grad.detach() / n for name, p in net.named_parameters(remove_duplicate=False) if p.grad is not None}
