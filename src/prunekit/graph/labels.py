"""Channel labels: which coupled element each index of a tensor dimension belongs to.

The analysis gives every prunable index of every parameter dimension an integer
id, and every traced tensor a :class:`Labels` value saying, for the dimensions
that can shrink, which id each index carries. Ops then *unify* ids (an add ties
channel ``i`` of both inputs together), *move* them (permute, cat, flatten,
channel shuffle) or *fix* them (tie them to id 0, the "cannot change" id).
Connected components of the unified ids are the coupled channels; see
:mod:`prunekit.graph.analysis`.

A :class:`Labels` value is a list of *blocks*. A block covers one or more
dimensions of the tensor and holds an integer array with the sizes of those
dimensions: element ``(i, j)`` of the array is the id of tensor index ``i`` on
the first dimension and ``j`` on the second. Most tensors have one block over
their channel dimension; a multi-dimension block arises when a channel dimension
is split by a reshape (heads x head_dim, groups x channels-per-group). A
dimension in no block is *rigid*: its size cannot change.

Everything here is pure numpy on small integer arrays: no torch, no modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FIXED = 0  # the id of "must not change": unifying an id with it makes it unprunable


@dataclass
class Labels:
    """Labels of one traced tensor.

    Attributes:
        shape: the tensor's shape (from shape propagation).
        blocks: list of ``(dims, ids)``; ``dims`` is a sorted tuple of dimension
            indices and ``ids`` an int64 array whose shape is those dimensions' sizes.
    """

    shape: tuple[int, ...]
    blocks: list[tuple[tuple[int, ...], np.ndarray]] = field(default_factory=list)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def block_of(self, dim: int):
        """The ``(dims, ids)`` block covering ``dim``, or None if the dimension is rigid."""
        for dims, ids in self.blocks:
            if dim in dims:
                return dims, ids
        return None

    def labelled_dims(self) -> set[int]:
        return {d for dims, _ in self.blocks for d in dims}

    def all_ids(self) -> list[np.ndarray]:
        return [ids.reshape(-1) for _, ids in self.blocks]


def rigid(shape) -> Labels:
    """Labels of a tensor none of whose dimensions may change (inputs, constants)."""
    return Labels(tuple(int(s) for s in shape), [])


class UnionSink:
    """Collects id equalities; components are computed once at the end (:func:`connected_components`)."""

    def __init__(self) -> None:
        self._a: list[np.ndarray] = []
        self._b: list[np.ndarray] = []
        self.next_id = 1  # 0 is FIXED

    def new_ids(self, shape) -> np.ndarray:
        """Fresh ids in an array of ``shape``."""
        n = int(np.prod(shape, dtype=np.int64))
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64).reshape(shape)
        self.next_id += n
        return ids

    def unify(self, a: np.ndarray, b: np.ndarray) -> None:
        """Tie ``a[i]`` to ``b[i]`` (arrays broadcast against each other)."""
        a, b = np.broadcast_arrays(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
        if a.size:
            self._a.append(a.reshape(-1).copy())
            self._b.append(b.reshape(-1).copy())

    def fix(self, ids: np.ndarray) -> None:
        """Make every id in ``ids`` unprunable."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size:
            self._a.append(ids)
            self._b.append(np.zeros_like(ids))

    def fix_labels(self, lab) -> None:
        """Fix every id carried by a Labels value (or nested tuples/lists of them)."""
        for ids in iter_ids(lab):
            self.fix(ids)

    def union_along(self, ids: np.ndarray, keep_axis: int) -> None:
        """Tie together all ids that share an index on ``keep_axis`` (the other axes become rigid)."""
        moved = np.moveaxis(ids, keep_axis, 0).reshape(ids.shape[keep_axis], -1)
        if moved.shape[1] > 1:
            self.unify(moved[:, :1], moved[:, 1:])

    def components(self) -> np.ndarray:
        """Component label of every id ``0 .. next_id-1``; component of FIXED is ``comp[0]``.

        Labels are numbered by the smallest id of each component (so FIXED's is 0),
        the same numbering as a breadth-first search started at id 0, 1, 2...
        """
        n = self.next_id
        if not self._a:
            return np.arange(n, dtype=np.int64)
        return connected_components(n, np.concatenate(self._a), np.concatenate(self._b))


def connected_components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component of each node ``0..n-1`` of the undirected graph with edges ``a[k] - b[k]``.

    Vectorised union-find (hook-and-compress): every round each root hooks onto
    the smallest root it shares an edge with, then paths are compressed to their
    roots. The number of components that still have an outside edge at least
    halves per round, so this takes O(log n) NumPy passes over the edges; a plain
    Python union-find would cost one interpreter step per edge, and there are
    millions of edges on a large model. NumPy only: no scipy dependency.
    """
    # 32-bit ids where they fit: every round is gathers over the edges, a quarter faster
    dtype = np.int32 if n < 2**31 else np.int64
    parent = np.arange(n, dtype=dtype)
    a = np.asarray(a).astype(dtype, copy=False)
    b = np.asarray(b).astype(dtype, copy=False)
    while True:
        ra, rb = parent[a], parent[b]  # roots: parent is fully compressed here
        differ = ra != rb
        if not differ.any():
            break
        ra, rb = ra[differ], rb[differ]
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        # a root only ever points to a smaller root, so no cycle can form
        np.minimum.at(parent, hi, lo)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        a, b = a[differ], b[differ]  # edges inside one component stay inside it
    # renumber roots 0..k-1 in increasing order of their smallest member
    # (a root is its component's smallest member, so rank the roots; no sort needed)
    rank = np.cumsum(parent == np.arange(n, dtype=dtype), dtype=np.int64) - 1
    return rank[parent]


def leaves(value, *, slices: bool = True):
    """Every value inside nested lists/tuples/dicts, depth first (a non-container ``value`` is its own leaf).

    Op arguments nest tensors and sizes in containers (``torch.cat([a, b])``, ``x.view(*sizes)``,
    ``x[:, :n]``); every walker over them (labels, sizes, ids to fix) goes through this one. With
    ``slices=True`` a slice's start, stop and step are leaves too (where sizes hide); otherwise a slice
    is one leaf.
    """
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from leaves(v, slices=slices)
    elif isinstance(value, dict):
        for v in value.values():
            yield from leaves(v, slices=slices)
    elif slices and isinstance(value, slice):
        yield from leaves((value.start, value.stop, value.step), slices=slices)
    else:
        yield value


def iter_ids(value):
    """Every id array inside a Labels value or a nested tuple/list/dict of them."""
    for leaf in leaves(value, slices=False):
        if isinstance(leaf, Labels):
            yield from leaf.all_ids()


# ----------------------------------------------------------------------------- block algebra


def project(lab: Labels, dim: int, sink: UnionSink) -> np.ndarray | None:
    """1-D ids of ``dim``, tying together ids that differ only on other dims of its block.

    Used by ops that treat ``dim`` as *the* channel dimension (conv input, norm):
    the other dimensions of the block must then stay whole.
    """
    blk = lab.block_of(dim)
    if blk is None:
        return None
    dims, ids = blk
    axis = dims.index(dim)
    if len(dims) > 1:
        sink.union_along(ids, axis)
        ids = np.moveaxis(ids, axis, 0).reshape(ids.shape[axis], -1)[:, 0]
    return ids


def permute(lab: Labels, perm, new_shape) -> Labels:
    """Labels after ``x.permute(*perm)``: output dim ``j`` is input dim ``perm[j]``."""
    perm = [p % lab.ndim for p in perm]
    inv = {old: new for new, old in enumerate(perm)}
    blocks = []
    for dims, ids in lab.blocks:
        new_dims = [inv[d] for d in dims]
        order = np.argsort(new_dims)
        blocks.append((tuple(sorted(new_dims)), np.transpose(ids, order)))
    return Labels(tuple(new_shape), blocks)


def shift(lab: Labels, new_shape, offset: int) -> Labels:
    """Labels with every dimension moved right by ``offset`` (broadcast or unsqueeze at the front)."""
    return Labels(tuple(new_shape), [(tuple(d + offset for d in dims), ids) for dims, ids in lab.blocks])


def broadcast_unify(labs: list[Labels], out_shape, sink: UnionSink) -> Labels:
    """Element-wise op of several tensors: tie matching channels, keep broadcast dims free.

    Right-aligns shapes as torch broadcasting does. A labelled dimension meeting a
    rigid dimension of the same size > 1 becomes fixed; a labelled dimension of
    size 1 broadcast against a larger one is fixed too (it cannot shrink).
    """
    out_shape = tuple(int(s) for s in out_shape)
    nd = len(out_shape)
    aligned = []
    for lab in labs:
        off = nd - lab.ndim
        a = shift(lab, out_shape, off)
        a.shape = (1,) * off + tuple(lab.shape)
        aligned.append(a)
    result_blocks: list[tuple[tuple[int, ...], np.ndarray]] = []
    # Process blocks dimension-set by dimension-set.
    all_dimsets = []
    for a in aligned:
        for dims, _ in a.blocks:
            if dims not in all_dimsets:
                all_dimsets.append(dims)
    # several inputs can label the same dims (x + y): channel i of each is the
    # same channel of the output, so their ids are unified index by index
    handled: set[int] = set()
    for dims in all_dimsets:
        if handled & set(dims):
            # overlapping block structures that differ: give up on these dims
            for a in aligned:
                for d2, ids in a.blocks:
                    if set(d2) & set(dims):
                        sink.fix(ids)
            continue
        full = tuple(out_shape[d] for d in dims)
        members = []
        conflict = False
        for a in aligned:
            own = [(d2, ids) for d2, ids in a.blocks if set(d2) & set(dims)]
            sizes = tuple(a.shape[d] for d in dims)
            if not own:
                if any(s == f and f > 1 for s, f in zip(sizes, full)):
                    members.append(None)  # rigid here: forces fixing
                continue
            if len(own) != 1 or own[0][0] != dims:
                conflict = True
                members.append(own)
                continue
            ids = own[0][1]
            if any(s == 1 and f > 1 for s, f in zip(sizes, full)):
                sink.fix(ids)  # a size-1 channel broadcast over many cannot be removed
                continue
            members.append(ids)
        handled |= set(dims)
        if conflict or any(m is None for m in members):
            for m in members:
                if m is None:
                    continue
                if isinstance(m, list):
                    for _, ids in m:
                        sink.fix(ids)
                else:
                    sink.fix(m)
            continue
        if not members:
            continue  # every labelled input was broadcast from size 1 and fixed above
        first = members[0]
        for m in members[1:]:
            sink.unify(first, m)
        result_blocks.append((dims, first))
    return Labels(out_shape, result_blocks)


def index_along(lab: Labels, dim: int, index, new_shape, sink: UnionSink, drop: bool) -> Labels:
    """Labels after selecting ``index`` (an int or int array) on ``dim``.

    Used for slicing, ``unbind`` and integer indexing. The caller decides
    beforehand whether the selection is legal on a labelled dimension.
    """
    blocks = []
    for dims, ids in lab.blocks:
        if dim in dims:
            axis = dims.index(dim)
            sel = np.take(ids, index, axis=axis)
            if drop:
                nd = tuple(d if d < dim else d - 1 for d in dims if d != dim)
                if nd:
                    blocks.append((nd, sel))
            else:
                blocks.append((dims, sel))
        else:
            nd = tuple(d if (d < dim or not drop) else d - 1 for d in dims)
            blocks.append((nd, ids))
    return Labels(tuple(new_shape), blocks)


def match_chunks(in_shape, out_shape):
    """Group the dims of a reshape into minimal chunks with equal element counts.

    Returns a list of ``(in_dims, out_dims)``; size-1 dimensions attach to a
    neighbouring chunk. Raises ValueError if the shapes hold different counts.
    """
    in_shape, out_shape = list(in_shape), list(out_shape)
    if int(np.prod(in_shape, dtype=np.int64)) != int(np.prod(out_shape, dtype=np.int64)):
        raise ValueError(f"cannot reshape {in_shape} to {out_shape}")
    # two-pointer walk: grow whichever side has the smaller product until both
    # sides hold the same number of elements; that is one independent chunk
    chunks = []
    i = j = 0
    while i < len(in_shape) or j < len(out_shape):
        ci, cj = [], []
        pi = pj = 1
        # take at least one dim from each side that still has dims
        if i < len(in_shape):
            ci.append(i); pi *= in_shape[i]; i += 1
        if j < len(out_shape):
            cj.append(j); pj *= out_shape[j]; j += 1
        while pi != pj:
            if pi < pj and i < len(in_shape):
                ci.append(i); pi *= in_shape[i]; i += 1
            elif j < len(out_shape):
                cj.append(j); pj *= out_shape[j]; j += 1
            else:
                ci.append(i); pi *= in_shape[i]; i += 1
        # absorb trailing size-1 dims on both sides into this chunk
        while i < len(in_shape) and in_shape[i] == 1 and (j >= len(out_shape) or out_shape[j] != 1):
            ci.append(i); i += 1
        while j < len(out_shape) and out_shape[j] == 1 and (i >= len(in_shape) or in_shape[i] != 1):
            cj.append(j); j += 1
        chunks.append((ci, cj))
    return chunks


def _merge_spanning(chunks, blocks):
    """Merge neighbouring reshape chunks until every block lies inside one chunk."""
    chunks = [(list(a), list(b)) for a, b in chunks]
    changed = True
    while changed:
        changed = False
        for dims, _ in blocks:
            owners = sorted({k for k, (ci, _) in enumerate(chunks) for d in dims if d in ci})
            if len(owners) > 1:
                lo, hi = owners[0], owners[-1]
                ci = [d for k in range(lo, hi + 1) for d in chunks[k][0]]
                cj = [d for k in range(lo, hi + 1) for d in chunks[k][1]]
                chunks[lo:hi + 1] = [(ci, cj)]
                changed = True
                break
    return chunks


def reshape(lab: Labels, out_shape, free_dims: set[int], sink: UnionSink, bindings=None) -> Labels:
    """Labels after ``x.reshape(out_shape)``.

    Args:
        lab: input labels.
        out_shape: the concrete output shape.
        free_dims: output dims whose size follows pruning (written as ``-1``, derived
            from the same tensor's size, or bound to a module attribute); every other
            output dim keeps its size in the pruned model.
        sink: where unions go.
        bindings: optional dict ``out_dim -> list``; for each bound output dim the
            per-index representative ids are appended, with whether the dim was free.

    A chunk that merges dims spreads each id over the merged elements (a channel
    becomes a block of features); a chunk that splits a labelled dim keeps the
    outermost free output dim shrinkable and ties the ids along the others, so the
    surviving elements always form a full grid that the reshape can express.
    """
    out_shape = tuple(int(s) for s in out_shape)
    chunks = _merge_spanning(match_chunks(lab.shape, out_shape), lab.blocks)
    blocks = []
    for ci, cj in chunks:
        own = [(dims, ids) for dims, ids in lab.blocks if set(dims) & set(ci)]
        if not own:
            continue
        if len(own) > 1:
            # independent channel sets mixed into one chunk (a conv weight's in, kh
            # and kw flattened together by weight standardisation): one set can
            # follow the reshape, several cannot, since each output index holds one
            # id. The outermost set is kept (removing one of its channels removes a
            # contiguous slab, a full grid for any reshape); the others stay whole
            own.sort(key=lambda b: min(b[0]))
            for _, ids in own[1:]:
                sink.fix(ids)
            own = own[:1]
        dims, ids = own[0]
        # give every element of the chunk the id of its channel, then reshape the
        # ids exactly as the tensor is reshaped: each output element knows its channel
        sizes = [lab.shape[d] for d in ci]
        view_shape = [lab.shape[d] if d in dims else 1 for d in ci]
        full = np.broadcast_to(ids.reshape(view_shape), sizes)
        arr = full.reshape([out_shape[d] for d in cj])
        keep = [k for k, d in enumerate(cj) if out_shape[d] > 1]
        if not keep:
            sink.fix(ids)  # everything collapsed to size 1: nothing left to shrink
            continue
        arr = arr.reshape([out_shape[cj[k]] for k in keep])
        out_dims = [cj[k] for k in keep]
        free = [k for k, d in enumerate(out_dims) if d in free_dims]
        if not free:
            sink.fix(arr)  # every output size is a constant: the reshape would break
            continue
        # only one output dim can shrink (the outermost free one); ids along the
        # others are tied to it so a removed channel removes a whole slice
        axis = free[0]
        sink.union_along(arr, axis)
        if bindings is not None:
            for k, d in enumerate(out_dims):
                if d in bindings:
                    rep = np.moveaxis(arr, k, 0).reshape(arr.shape[k], -1)[:, 0]
                    bindings[d].append((rep, k == axis))
        # the other output dims of the chunk keep their size: they leave the block
        # (rigid), so a later op that keeps one of them but contracts or reduces the
        # free one (q @ k^T over the per-head width, heads kept) does not tie the
        # channels of the free dim together through them; and since each channel is
        # a whole slice along them, a rigid operand broadcast along them (a rotary
        # table over head_dim) or a slice of them (``x[..., ::2]``) touches no channel
        rep = np.moveaxis(arr, axis, 0).reshape(arr.shape[axis], -1)[:, 0]
        blocks.append(((out_dims[axis],), np.ascontiguousarray(rep)))
    return Labels(out_shape, blocks)


def squeeze_block_dims(lab: Labels, sink: UnionSink) -> Labels:
    """Drop size-1 dims from blocks; a block left with no dim is fixed (a lone channel stays)."""
    blocks = []
    for dims, ids in lab.blocks:
        keep = [k for k, d in enumerate(dims) if lab.shape[d] > 1]
        if not keep:
            sink.fix(ids)
            continue
        if len(keep) != len(dims):
            ids = ids.reshape([ids.shape[k] for k in keep])
            dims = tuple(dims[k] for k in keep)
        blocks.append((dims, ids))
    return Labels(lab.shape, blocks)
