"""Indexing: ``x[...]`` with ints, slices, ``None``, ``...`` and one index tensor.

Split from :mod:`prunekit.graph.ops_shape` because indexing has its own rules:
a constant partial slice of channels would select different channels after
pruning (kept), a full slice whose bound is read from another tensor must shrink
with it (a size constraint), and an index tensor points into its dim (kept).
"""
from __future__ import annotations

import operator

import numpy as np

from prunekit.graph.analysis import Sz
from prunekit.graph.labels import Labels, index_along, squeeze_block_dims
from prunekit.graph.ops import NotHandled, handles, int_of, out_shape
from prunekit.graph.ops_shape import pick_along, size_rep


def getitem_tensor(ctx, node, lab: Labels, index):
    if not isinstance(index, tuple):
        index = (index,)
    n_real = sum(1 for i in index if i is not None and i is not Ellipsis)
    if any(isinstance(i, Labels) for i in index):
        return _gather_one_dim(ctx, node, lab, index)
    if n_real > lab.ndim:
        raise NotHandled
    expanded = []
    for i in index:
        if i is Ellipsis:
            expanded.extend([slice(None)] * (lab.ndim - n_real))
        else:
            expanded.append(i)
    expanded.extend([slice(None)] * (lab.ndim - sum(1 for i in expanded if i is not None)))
    cur = lab
    d = 0  # position in the current (partially indexed) labels
    shape_now = list(lab.shape)
    for i in expanded:
        if i is None:
            shape_now.insert(d, 1)
            cur = Labels(tuple(shape_now), [(tuple(x + 1 if x >= d else x for x in dims), ids) for dims, ids in cur.blocks])
            d += 1
            continue
        size = shape_now[d]
        blk = cur.block_of(d)
        if isinstance(i, Sz):
            pick_along(ctx, cur, d)
            ctx.fix(i)
            del shape_now[d]
            cur = index_along(cur, d, i.value % size, tuple(shape_now), ctx.sink, drop=True)
            continue
        if isinstance(i, slice):
            start, stop, step = (int_of(i.start, None), int_of(i.stop, None), int_of(i.step, None))
            rng = range(*slice(start, stop, step).indices(size))
            full = len(rng) == size and (step in (None, 1)) and (start in (None, 0))
            if full:
                # x[:, :n] with n >= size stays full when channels are removed; a bound read
                # from another tensor must shrink with this dim (checked at the end)
                if isinstance(i.stop, Sz) and i.stop.src is not None and blk is not None:
                    ctx.add_size_constraint((i.stop.src, size_rep(blk, d)))
                elif isinstance(i.stop, Sz) and i.stop.src is not None:
                    ctx.fix(i.stop)
                if isinstance(i.start, Sz):
                    ctx.fix(i.start)
                d += 1
                continue
            for part in (i.start, i.stop, i.step):
                if isinstance(part, Sz) and (part.src is not None or part.tag is not None):
                    ctx.fix(part)
            if blk is not None:
                ctx.sink.fix(blk[1])  # a constant partial slice of channels would shift after pruning
            shape_now[d] = len(rng)
            cur = index_along(cur, d, np.asarray(rng, dtype=np.int64), tuple(shape_now), ctx.sink, drop=False)
            d += 1
            continue
        raise NotHandled
    expect = tuple(out_shape(ctx, node))
    if tuple(shape_now) != expect:
        raise NotHandled
    return squeeze_block_dims(Labels(expect, cur.blocks), ctx.sink)


def _gather_one_dim(ctx, node, lab: Labels, index):
    """``x[..., idx, ...]`` with one index tensor and full slices elsewhere (advanced indexing on one dim).

    The common case is a table lookup: timm's relative position bias
    ``table[index.view(-1)]`` (BEiT, Swin), LeViT's ``biases[:, idxs]``. The
    output holds ``idx.shape`` in place of the indexed dim; the other dims keep
    their channels, which is what lets attention heads of such a table be pruned.
    The indexed dim itself cannot lose channels (the index values point into it).
    """
    if sum(1 for i in index if isinstance(i, Labels)) != 1 or any(i is None for i in index):
        raise NotHandled
    if index.count(Ellipsis) > 1:
        raise NotHandled
    if Ellipsis in index:
        e = index.index(Ellipsis)
        index = index[:e] + (slice(None),) * (lab.ndim - len(index) + 1) + index[e + 1:]
    index = tuple(index) + (slice(None),) * (lab.ndim - len(index))
    if len(index) != lab.ndim:
        raise NotHandled
    k = next(n for n, i in enumerate(index) if isinstance(i, Labels))
    for n, i in enumerate(index):
        if n != k and not (isinstance(i, slice) and i.start is None and i.stop is None and i.step is None):
            raise NotHandled
    idx = index[k]
    ctx.fix(idx)  # the index values are positions, not channels
    expect = tuple(out_shape(ctx, node))
    if expect != lab.shape[:k] + idx.shape + lab.shape[k + 1:]:
        raise NotHandled
    shift_by = idx.ndim - 1
    blocks = []
    for dims, ids in lab.blocks:
        if k in dims:
            ctx.sink.fix(ids)
        else:
            blocks.append((tuple(d if d < k else d + shift_by for d in dims), ids))
    return Labels(expect, blocks)


@handles(operator.getitem, sizes=True)
def getitem_fn(ctx, node, args, kwargs):
    obj, index = args[0], args[1]
    if isinstance(obj, Labels):
        return getitem_tensor(ctx, node, obj, index)
    if isinstance(obj, (list, tuple)):
        if isinstance(index, Sz):
            return obj[index.value]
        if isinstance(index, slice):
            return obj[slice(int_of(index.start, None), int_of(index.stop, None), int_of(index.step, None))]
    if obj is None:
        return None
    raise NotHandled
