"""Handlers for shape ops: reshape family, permutes, indexing, cat/split/chunk, pooling."""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from prunekit.graph.analysis import Sz
from prunekit.graph.capture import AttrTag
from prunekit.graph.frozen import node_origin
from prunekit.graph.labels import (
    Labels, broadcast_unify, index_along, match_chunks, permute, project, reshape, shift, squeeze_block_dims,
)
from prunekit.graph.ops import NotHandled, dims_arg, existing, handles, int_of, need_labels, op_name, out_shape


def size_rep(blk, d: int) -> np.ndarray:
    """One id per index of ``d`` from a ``(dims, ids)`` block."""
    dims, ids = blk
    axis = dims.index(d)
    return np.moveaxis(ids, axis, 0).reshape(ids.shape[axis], -1)[:, 0]


def isolate(ctx, lab: Labels, d: int) -> tuple[Labels, np.ndarray | None]:
    """``lab`` with dim ``d`` in a block of its own (other dims of its block tied), plus its ids."""
    ids = project(lab, d, ctx.sink)
    if ids is None:
        return lab, None
    # the other dims of d's block become rigid: project() tied their ids to d's
    blocks = [(dims, a) for dims, a in lab.blocks if d not in dims]
    blocks.append(((d,), ids))
    return Labels(lab.shape, blocks), ids


# ----------------------------------------------------------------------------- reshape family


def _sizes_from(args, kwargs):
    rest = list(args[1:])
    if not rest:
        rest = [kwargs.get("shape", kwargs.get("size"))]
    if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        return list(rest[0])
    return rest


def export_attr_tags(ctx, value: int) -> list[AttrTag]:
    """Module attributes a constant reshape size of a torch.export graph stands for.

    torch.export specialises every size to a constant, so ``reshape(B, N, 3,
    self.num_heads, self.head_dim)`` arrives as ``reshape(1, 16, 3, 12, 64)``.
    The ``int`` attributes of the module whose ``forward`` holds the node (from
    the module stack export records) that equal the constant are taken as what
    the code wrote: the size then follows pruning like a traced attribute (see
    :mod:`prunekit.graph.capture`), bound at every site, and the surgery
    updates the attribute. A value equal to several attributes binds all of
    them (they are then tied; different widths keep them whole). Only used on
    export graphs, where nothing else tells which sizes follow.
    """
    if ctx.kind != "export" or value <= 1 or ctx.current_node is None:
        return []
    module = node_origin(ctx.current_node)[0]
    mod = ctx.modules.get(module)
    if mod is None:
        return []
    from prunekit.graph.ops_matmul import is_transposed_linear

    # HF Conv1D's nx/nf: the surgery resets them from the weight, nothing to bind
    managed = ("nx", "nf") if is_transposed_linear(mod) else ()
    tags = []
    for k, v in vars(mod).items():
        if type(v) is int and v == value and not k.startswith("_") and k not in managed:
            tags.append(ctx.tags.setdefault((module, k), AttrTag(module, k, v)))
    return tags


def export_weight_sized(ctx, value: int) -> bool:
    """Is a torch.export constant the ``nx``/``nf`` of the HF ``Conv1D`` whose forward holds the node?

    ``Conv1D.forward`` reshapes with ``x.size(-1)`` and ``self.nf``; the surgery
    keeps both equal to the sliced weight, so such a size follows pruning.
    """
    from prunekit.graph.ops_matmul import is_transposed_linear

    if ctx.kind != "export" or ctx.current_node is None:
        return False
    mod = ctx.modules.get(node_origin(ctx.current_node)[0])
    return mod is not None and is_transposed_linear(mod) and value in (mod.nx, mod.nf)


def export_merged_dims(ctx, lab: Labels, shape, sizes, free: set) -> set:
    """Output dims of a torch.export reshape that merge several input dims into one: taken to follow.

    In the Python code such a size is nearly always computed from the merged
    tensor's own shape (``reshape(B, kv_heads * n_rep, S, D)`` in HF's
    ``repeat_kv``) or written ``-1``; export only shows the constant. Only
    reshapes without ``-1`` qualify: their other sizes are constants, so a size
    that did not follow would make the pruned model's reshape fail loudly,
    never reinterpret its data.
    """
    if ctx.kind != "export" or any(s.value == -1 for s in sizes):
        return set()
    out = set()
    for ci, cj in match_chunks(lab.shape, shape):
        big_in = [d for d in ci if lab.shape[d] > 1]
        big_out = [j for j in cj if shape[j] > 1]
        if len(big_in) > 1 and len(big_out) == 1 and big_out[0] not in free:
            out.add(big_out[0])
    return out


def reshape_with_sizes(ctx, lab: Labels, shape, sizes) -> Labels:
    """Reshape where ``sizes[j]`` says how output dim ``j`` was written (see :func:`labels.reshape`)."""
    if len(sizes) != len(shape):
        raise NotHandled
    free, bind, inferred = set(), {}, {}
    # a constant that occurs twice in one reshape (NesT's ``reshape(B, T, N, 3, heads, C // heads)``
    # with 3 heads, under torch.export) cannot say which occurrence is the attribute: neither is inferred
    # (counted among the output dims made from labelled input dims: a batch or token size
    # equal to a head width is no ambiguity)
    labelled = {d for dims, _ in lab.blocks for d in dims}
    try:
        chunks = match_chunks(lab.shape, tuple(int(x) for x in shape))
    except Exception:  # noqa: BLE001 - shapes that do not factor: every dim counts
        chunks = [(list(range(lab.ndim)), list(range(len(shape))))]
    out_dims = {j for ci, cj in chunks if labelled & set(ci) for j in cj}
    plain = [int(sizes[j].value) for j in out_dims if j < len(sizes) and isinstance(sizes[j], Sz)
             and sizes[j].tag is None and sizes[j].src is None]
    repeated = {v for v in plain if plain.count(v) > 1}
    for j, s in enumerate(sizes):
        if not isinstance(s, Sz):
            raise NotHandled
        if s.value == -1:
            free.add(j)
        elif (s.tag is not None and not s.tag.misused) or s.src is not None:
            free.add(j)
            bind[j] = []
        elif s.tag is not None:  # an attribute also used in arithmetic cannot follow: a constant here
            s.tag.misuse("reshape after other use")
        elif int(s.value) in repeated:
            continue
        elif export_weight_sized(ctx, s.value):
            free.add(j)
        else:
            tags = export_attr_tags(ctx, s.value)
            if tags:
                free.add(j)
                bind[j] = []
                inferred[j] = tags
    for j in list(inferred):
        # a head count matched under torch.export whose per-head width is a constant no
        # attribute holds: the model computes that width at run time (NesT's ``C // num_heads``),
        # so changing the head count alone would break its reshape; neither is inferred
        k = j + 1
        if k < len(sizes) and k not in free and int(sizes[k].value) > 1:
            del inferred[j], bind[j]
            free.discard(j)
    free |= export_merged_dims(ctx, lab, shape, sizes, free)
    out = reshape(lab, shape, free, ctx.sink, bindings=bind)
    for j, tags in inferred.items():
        # a matched constant that sizes no labelled dim says nothing about the attribute
        sites = bind.pop(j)
        if sites:
            for tag in tags:
                ctx.bind(tag, sites[0][0], sites[0][1])
    for j, sites in bind.items():
        s = sizes[j]
        if not sites:
            if s.src is not None:
                ctx.fix(s)
            if s.tag is not None:
                ctx.bind(s.tag, np.zeros(0, dtype=np.int64), False)
            continue
        rep, is_free = sites[0]
        if s.tag is not None:
            ctx.bind(s.tag, rep, is_free)
        if s.src is not None:
            if is_free:
                ctx.add_size_constraint((s.src, rep))
            else:
                ctx.fix(s)
    return out


@handles("view", "reshape", torch.reshape, sizes=True)
def view(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    return reshape_with_sizes(ctx, lab, out_shape(ctx, node), _sizes_from(args, kwargs))


@handles(torch.flatten, torch.squeeze, torch.unsqueeze, "flatten", "squeeze", "unsqueeze", "squeeze_",
         "unsqueeze_", "ravel")
def free_reshape(ctx, node, args, kwargs):
    """Reshapes that only merge dims or add/remove size-1 dims (flatten, squeeze, unsqueeze)."""
    lab = need_labels(args[0])
    shape = out_shape(ctx, node)
    ctx.fix_sizes([args[1:], kwargs])
    return reshape(lab, shape, set(range(len(shape))), ctx.sink)


@handles("unflatten", torch.unflatten, sizes=True)
def unflatten(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    shape = out_shape(ctx, node)
    d = int_of(args[1] if len(args) > 1 else kwargs["dim"]) % lab.ndim
    inner = args[2] if len(args) > 2 else kwargs["sizes"]
    inner = list(inner)
    sizes = [Sz(-1) if k != d else None for k in range(lab.ndim)]
    sizes = [Sz(-1)] * d + inner + [Sz(-1)] * (lab.ndim - d - 1)
    # only the unflattened dims are constrained; the others keep their size anyway
    return reshape_with_sizes(ctx, lab, shape, sizes)


@handles("permute", torch.permute)
def permute_m(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    perm = _sizes_from(args, kwargs) if len(args) > 1 else list(kwargs["dims"])
    return permute(lab, [int_of(p) for p in perm], out_shape(ctx, node))


@handles("transpose", "swapaxes", "swapdims", torch.transpose, torch.swapaxes, torch.swapdims)
def transpose_m(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    d0 = int_of(args[1] if len(args) > 1 else kwargs["dim0"]) % lab.ndim
    d1 = int_of(args[2] if len(args) > 2 else kwargs["dim1"]) % lab.ndim
    perm = list(range(lab.ndim))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return permute(lab, perm, out_shape(ctx, node))


@handles("t", torch.t)
def t_m(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    return permute(lab, list(range(lab.ndim))[::-1], out_shape(ctx, node))


@handles("movedim", "moveaxis", torch.movedim, torch.moveaxis)
def movedim_m(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    src = dims_arg(args[1], lab.ndim)
    dst = dims_arg(args[2], lab.ndim)
    if len(src) != 1 or len(dst) != 1:
        raise NotHandled
    perm = [d for d in range(lab.ndim) if d != src[0]]
    perm.insert(dst[0], src[0])
    return permute(lab, perm, out_shape(ctx, node))


@handles("expand", sizes=True)
def expand_m(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    shape = out_shape(ctx, node)
    sizes = _sizes_from(args, kwargs)
    off = len(shape) - lab.ndim
    blocks = []
    for dims, ids in lab.blocks:
        ok = True
        for d in dims:
            s = sizes[d + off]
            if not isinstance(s, Sz):
                raise NotHandled
            if s.value == -1:
                continue
            if ctx.kind == "export" and s.value == lab.shape[d] and s.src is None and s.tag is None:
                # torch.export shows only the constant; written -1 or read from this
                # tensor in the code (HF's repeat_kv), and a literal that did not
                # follow would fail loudly in the pruned model's expand
                continue
            if s.src is not None:
                ctx.add_size_constraint((s.src, np.moveaxis(ids, dims.index(d), 0).reshape(ids.shape[dims.index(d)], -1)[:, 0]))
                continue
            ok = False
        if ok:
            blocks.append((tuple(d + off for d in dims), ids))
        else:
            ctx.sink.fix(ids)
    labelled = {d for dims, _ in blocks for d in dims}
    for j, s in enumerate(sizes):
        if isinstance(s, Sz) and s.src is not None and j not in labelled:
            in_d = j - off
            if in_d < 0 or lab.shape[in_d] == 1:
                blocks.append(((j,), s.src))  # broadcast to a size that follows a channel group
            else:
                ctx.fix(s)
        elif isinstance(s, Sz) and s.tag is not None:
            s.tag.misuse("expand size")
    return Labels(tuple(shape), blocks)


@handles("expand_as")
def expand_as_m(ctx, node, args, kwargs):
    a, b = need_labels(args[0]), need_labels(args[1])
    return broadcast_unify([a, b], out_shape(ctx, node), ctx.sink)


@handles("view_as", "reshape_as", sizes=True)
def view_as_m(ctx, node, args, kwargs):
    a, b = need_labels(args[0]), need_labels(args[1])
    shape = out_shape(ctx, node)
    if a.shape == tuple(shape):
        return broadcast_unify([a, b], shape, ctx.sink)
    from prunekit.graph.ops_values import size_of

    return reshape_with_sizes(ctx, a, shape, [size_of(ctx, b, d) for d in range(b.ndim)])


def keep_same_size_dims(ctx, lab: Labels, shape) -> Labels:
    """Labels of an output of ``shape`` (rank of ``lab``): a dim keeps its channels where it keeps its size.

    Used by ops that change some dims' sizes but never mix channels of a dim whose size stays (repeat/tile,
    pooling, interpolation, padding): a block whose dims all keep their size passes through, any other block
    is fixed since its channels are repeated, pooled or padded into positions that no longer match one-to-one.
    """
    blocks = []
    for dims, ids in lab.blocks:
        if all(shape[d] == lab.shape[d] for d in dims):
            blocks.append((dims, ids))
        else:
            ctx.sink.fix(ids)
    return Labels(tuple(shape), blocks)


@handles("repeat", "tile")
def repeat_m(ctx, node, args, kwargs):
    """``repeat``/``tile``: more repeat counts than dims add leading dims (XCiT's position grid), as torch does."""
    lab = need_labels(args[0])
    shape = out_shape(ctx, node)
    if len(shape) < lab.ndim:
        raise NotHandled
    if len(shape) > lab.ndim:
        extra = len(shape) - lab.ndim
        lab = shift(lab, (1,) * extra + tuple(lab.shape), extra)
    return keep_same_size_dims(ctx, lab, shape)


@handles("repeat_interleave", torch.repeat_interleave)
def repeat_interleave_m(ctx, node, args, kwargs):
    """``x.repeat_interleave(r, dim)`` with an int ``r``: each index of ``dim`` becomes ``r`` copies in a row.

    A channel's copies carry its id, so removing it removes all of them and the
    pruned tensor still repeats every kept channel ``r`` times (GCViT repeats a
    global query over the batch of windows, where the dim carries no channel).
    """
    lab = need_labels(args[0])
    reps = args[1] if len(args) > 1 else kwargs.get("repeats")
    dim = args[2] if len(args) > 2 else kwargs.get("dim")
    if dim is None or not isinstance(reps, (Sz, int)) or isinstance(reps, bool):
        raise NotHandled  # flattening form, or per-index counts from a tensor
    r, d = int_of(reps), int_of(dim) % lab.ndim
    blocks = [(dims, np.repeat(ids, r, axis=dims.index(d)) if d in dims else ids) for dims, ids in lab.blocks]
    return Labels(tuple(out_shape(ctx, node)), blocks)


@handles("unfold")
def unfold_m(ctx, node, args, kwargs):
    """``x.unfold(dim, size, step)``: sliding windows along ``dim``, the window as a new last dim.

    The other dims keep their positions, so their channels pass through (HaloNet
    unfolds the spatial dims of its keys and values); channels on ``dim`` itself
    are kept unless the windows are the identity (size 1, step 1).
    """
    lab = need_labels(args[0])
    shape = out_shape(ctx, node)
    if len(shape) != lab.ndim + 1:
        raise NotHandled
    kept = keep_same_size_dims(ctx, lab, shape[:-1])
    return Labels(tuple(shape), kept.blocks)


def im2col_labels(ctx, node, lab: Labels) -> Labels:
    """``F.unfold`` / ``nn.Unfold`` (im2col): ``(N, C, H, W)`` -> ``(N, C*k, L)``, channel-major.

    Channel ``c`` becomes the ``k`` rows ``c*k .. c*k+k-1`` (its kernel
    positions), so those rows carry its id and go with it (VOLO's outlook
    attention unfolds its values); the spatial positions are mixed into
    windows, so channels on them are kept.
    """
    shape = out_shape(ctx, node)
    d = lab.ndim - 3  # 1 batched, 0 unbatched
    if d not in (0, 1) or len(shape) != d + 2:
        raise NotHandled
    lab2, ids = isolate(ctx, lab, d)
    for dims, other in lab2.blocks:
        if d not in dims:
            ctx.sink.fix(other)
    if ids is None:
        return Labels(tuple(shape), [])
    return Labels(tuple(shape), [((d,), np.repeat(ids, shape[d] // lab.shape[d]))])


@handles(F.unfold)
def unfold_fn(ctx, node, args, kwargs):
    return im2col_labels(ctx, node, need_labels(args[0] if args else kwargs["input"]))


# ----------------------------------------------------------------------------- cat / stack / split


@handles(torch.cat, torch.concat, getattr(torch, "concatenate", None))
def cat_fn(ctx, node, args, kwargs):
    tensors = list(args[0] if args else kwargs["tensors"])
    dim = kwargs.get("dim", kwargs.get("axis", args[1] if len(args) > 1 else Sz(0)))
    if not tensors or not all(isinstance(t, Labels) for t in tensors):
        raise NotHandled
    # torch.cat skips 1-D empty tensors whatever the rank of the others (the
    # legacy "empty" that KV caches start from): they contribute nothing
    tensors = [t for t in tensors if t.shape != (0,)] or tensors
    shape = out_shape(ctx, node)
    d = int_of(dim) % len(shape)
    parts, others = [], []
    for t in tensors:
        if t.ndim != len(shape):
            raise NotHandled
        t2, ids = isolate(ctx, t, d)
        parts.append(ids)
        sh = list(t.shape)
        sh[d] = 1
        others.append(Labels(tuple(sh), [(dims, a) for dims, a in t2.blocks if d not in dims]))
    rest_shape = list(shape)
    rest_shape[d] = 1
    merged = broadcast_unify(others, tuple(rest_shape), ctx.sink)
    blocks = list(merged.blocks)
    if any(p is not None for p in parts):
        filled = []
        for t, p in zip(tensors, parts):
            if p is None:  # a rigid input: its slice of the output keeps its size
                p = ctx.sink.new_ids(t.shape[d])
                ctx.sink.fix(p)
            filled.append(p)
        blocks.append(((d,), np.concatenate(filled)))
    return Labels(tuple(shape), blocks)


@handles(torch.stack)
def stack_fn(ctx, node, args, kwargs):
    tensors = list(args[0] if args else kwargs["tensors"])
    dim = kwargs.get("dim", args[1] if len(args) > 1 else Sz(0))
    if not tensors or not all(isinstance(t, Labels) for t in tensors):
        raise NotHandled
    shape = out_shape(ctx, node)
    d = int_of(dim) % len(shape)
    merged = broadcast_unify(tensors, tensors[0].shape, ctx.sink)
    blocks = [(tuple(x + 1 if x >= d else x for x in dims), ids) for dims, ids in merged.blocks]
    return Labels(tuple(shape), blocks)


def _pieces(ctx, node, lab: Labels, d: int, equal_ok: bool, size_arg=None, independent: bool = False):
    metas = ctx.meta.get(node)
    if not isinstance(metas, (list, tuple)) or not all(isinstance(m, tuple) and m[0] == "tensor" for m in metas):
        raise NotHandled
    shapes = [m[1] for m in metas]
    sizes = [s[d] for s in shapes]
    lab2, ids = isolate(ctx, lab, d)
    out = []
    if ids is not None:
        k, s = len(sizes), sizes[0]
        if equal_ok and k > 1 and all(x == s for x in sizes) and k * s == lab.shape[d]:
            arr = ids.reshape(k, s)
            ctx.sink.unify(arr[:1], arr)  # piece i keeps the same channels as piece 0
            if size_arg is not None and isinstance(size_arg, Sz) and size_arg.src is not None:
                ctx.add_size_constraint((size_arg.src, arr[0]))
        elif k > 1 and not independent:
            ctx.sink.fix(ids)
    start = 0
    for sh, n in zip(shapes, sizes):
        out.append(index_along(lab2, d, np.arange(start, start + n), tuple(sh), ctx.sink, drop=False))
        start += n
    return tuple(out)


@handles(torch.chunk, "chunk", sizes=True)
def chunk_fn(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    dim = kwargs.get("dim", args[2] if len(args) > 2 else Sz(0))
    n = args[1] if len(args) > 1 else kwargs["chunks"]
    if isinstance(n, Sz) and (n.src is not None):
        ctx.fix(n)
    if isinstance(n, Sz) and n.tag is not None:
        n.tag.misuse("chunk count")
    return _pieces(ctx, node, lab, int_of(dim) % lab.ndim, True)


@handles(torch.split, "split", sizes=True)
def split_fn(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    spec = args[1] if len(args) > 1 else kwargs.get("split_size_or_sections", kwargs.get("split_size"))
    dim = kwargs.get("dim", args[2] if len(args) > 2 else Sz(0))
    d = int_of(dim) % lab.ndim
    if isinstance(spec, Sz):
        # split(c // 2) tracks the channel count; a constant split size does not,
        # unless it is a module attribute the plan updates (GPT-2's
        # ``split(self.split_size, dim=2)``): equal pieces then lose the same channels
        tags = [spec.tag] if spec.tag is not None and not spec.tag.misused else []
        if spec.tag is None and spec.src is None:
            tags = export_attr_tags(ctx, spec.value)
        dynamic = spec.src is not None or bool(tags)
        res = _pieces(ctx, node, lab, d, dynamic, spec)
        blk = res[0].block_of(d) if res and isinstance(res[0], Labels) else None
        if tags and blk is not None and len(res) > 1 and len({r.shape[d] for r in res}) == 1:
            for tag in tags:
                ctx.bind(tag, size_rep(blk, d), True)
        elif spec.tag is not None:
            spec.tag.misuse("split size")
        if not dynamic:
            blk = lab.block_of(d)
            if blk is not None and len(res) > 1:
                ctx.sink.fix(blk[1])
        return res
    tags = [getattr(s, "tag", None) for s in spec] if isinstance(spec, (list, tuple)) else []
    if tags and all(isinstance(s, Sz) and s.src is None and s.tag is not None and not s.tag.misused
                    for s in spec):
        # sizes from a module's list attribute (``split(x, self.splits, 1)``): each piece
        # prunes on its own and its element of the list follows it
        res = _pieces(ctx, node, lab, d, False, independent=True)
        blocks = [r.block_of(d) if isinstance(r, Labels) else None for r in res]
        if len(res) == len(tags) and all(b is not None for b in blocks):
            for tag, blk in zip(tags, blocks):
                ctx.bind(tag, size_rep(blk, d), True)
            return res
        for tag in tags:
            tag.misuse("split size")
    ctx.fix_sizes(spec)
    blk = lab.block_of(d)
    res = _pieces(ctx, node, lab, d, False)
    if blk is not None and len(res) > 1:
        ctx.sink.fix(blk[1])
        ctx.freeze(op_name(ctx, node), "splits into sizes that do not follow pruning (constants, or values "
                                       "also used otherwise); the split dimension is kept")
    return res


def pick_along(ctx, lab: Labels, d: int) -> None:
    """Prepare picking single indices of ``d``: a multi-dim block is tied along ``d``, a 1-D one fixed."""
    blk = lab.block_of(d)
    if blk is None:
        return
    dims, ids = blk
    if len(dims) == 1:
        ctx.sink.fix(ids)  # the number of indices of d must not change
        return
    axis = dims.index(d)
    moved = np.moveaxis(ids, axis, 0)
    ctx.sink.unify(moved[:1], moved)  # index i of d keeps the same channels for every i


@handles(torch.unbind, "unbind")
def unbind_fn(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    dim = kwargs.get("dim", args[1] if len(args) > 1 else Sz(0))
    d = int_of(dim) % lab.ndim
    pick_along(ctx, lab, d)
    metas = ctx.meta.get(node)
    outs = []
    for i, m in enumerate(metas):
        outs.append(squeeze_block_dims(index_along(lab, d, i, m[1], ctx.sink, drop=True), ctx.sink))
    return tuple(outs)


@handles(torch.narrow, "narrow", sizes=True)
def narrow_fn(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    d = int_of(args[1]) % lab.ndim
    start, length = int_of(args[2]), int_of(args[3])
    blk = lab.block_of(d)
    if start == 0 and length == lab.shape[d]:
        ln = args[3]
        if isinstance(ln, Sz) and ln.src is not None and blk is not None:
            ctx.add_size_constraint((ln.src, size_rep(blk, d)))  # narrow(1, 0, x.size(1)) stays full
        else:
            ctx.fix_sizes(args[3])
        ctx.fix_sizes(args[2])
        return lab
    ctx.fix_sizes(args[2:])
    if blk is not None:
        ctx.sink.fix(blk[1])
    sh = list(lab.shape)
    sh[d] = length
    return index_along(lab, d, np.arange(start, start + length), tuple(sh), ctx.sink, drop=False)


@handles(torch.select, "select")
def select_fn(ctx, node, args, kwargs):
    lab = need_labels(args[0])
    d = int_of(args[1]) % lab.ndim
    i = int_of(args[2])
    pick_along(ctx, lab, d)
    return squeeze_block_dims(index_along(lab, d, i % lab.shape[d], tuple(out_shape(ctx, node)), ctx.sink,
                                          drop=True), ctx.sink)


# ----------------------------------------------------------------------------- channel-wise


# Functional pooling, resizing and padding: spatial dims change, channel i stays channel i.
_CHANNELWISE = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
                "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
                "adaptive_max_pool2d", "adaptive_max_pool3d", "lp_pool1d", "lp_pool2d", "interpolate", "upsample",
                "upsample_nearest", "upsample_bilinear", "pad", "max_pool1d_with_indices", "max_pool2d_with_indices",
                "max_pool3d_with_indices"]


@handles(*existing(_CHANNELWISE, F, torch))
def channelwise(ctx, node, args, kwargs):
    """Pooling, interpolation, padding: dims whose size is unchanged keep their channels."""
    lab = need_labels(args[0])
    shape = out_shape(ctx, node)
    meta = ctx.meta.get(node)
    if len(shape) != lab.ndim:
        raise NotHandled
    out = keep_same_size_dims(ctx, lab, shape)
    if isinstance(meta, tuple) and len(meta) == 2 and not (meta and meta[0] == "tensor"):
        return (out, Labels(out.shape, list(out.blocks)))  # max_pool with return_indices
    return out


@handles(torch.roll, torch.flip, "roll", "flip")
def roll_flip(ctx, node, args, kwargs):
    """``roll``/``flip``: permute positions along some dims; channels survive on the other dims."""
    lab = need_labels(args[0])
    name = getattr(node.target, "__name__", str(node.target))
    dims = kwargs.get("dims", args[2] if name == "roll" and len(args) > 2 else (args[1] if len(args) > 1 else None))
    if dims is None:
        raise NotHandled  # roll over the flattened tensor mixes everything
    ds = set(dims_arg(dims, lab.ndim))
    blocks = []
    for bd, ids in lab.blocks:
        if ds & set(bd):
            ctx.sink.fix(ids)
        else:
            blocks.append((bd, ids))
    return Labels(lab.shape, blocks)

