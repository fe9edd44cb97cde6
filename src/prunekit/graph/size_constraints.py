"""Sizes read from one tensor that shape another: tie the two so the pruned model's shapes still agree.

A forward that reads a width at run time and uses it to shape another tensor
(``B, N, C = x.shape`` then ``qkv.reshape(B, N, 3, heads, C // heads)``, or
``out.reshape(B, N, C)`` after attention) stays correct after pruning only if
the two dimensions lose channels in step. Each such use is a constraint
``(src, rep)``: the ids of the measured dimension and the ids of the dimension
the size (or a proportional size derived from it, ``C // heads``) was used for.

They *agree* when both touch the same coupled channels, every channel touching
``src`` the same multiple of times it touches ``rep`` (then the kept counts keep
the ratio of the full sizes, and ``C // heads`` recomputed from the pruned width
is the pruned per-head width). When they do not agree:

* equal lengths (``reshape(B, N, C)``): index ``i`` of one is tied to index ``i``
  of the other;
* one length a multiple ``k`` of the other (``C // heads`` with ``heads``
  constant): index ``i`` of the longer is tied to index ``i mod n`` of the
  shorter (``n`` its length), so each channel of the per-head width carries
  ``k`` channels of the measured width, in the head-major layout the reshape
  reads them in;
* otherwise, or if the constraint still fails after the ties, both dimensions
  are kept whole (a :class:`~prunekit.graph.frozen.FrozenRegion`).

Every constraint that holds in proportion (lengths differ) is recorded as a
:class:`~prunekit.graph.frozen.TiedSize`, so the plan says which widths were
tied and where.
"""
from __future__ import annotations

import numpy as np

from prunekit.graph.frozen import TiedSize, node_origin


def agree(comp: np.ndarray, src: np.ndarray, rep: np.ndarray) -> bool:
    """Do ``src`` and ``rep`` touch the same components, each in the same ratio?"""
    cs, ns = np.unique(comp[src], return_counts=True)
    cr, nr = np.unique(comp[rep], return_counts=True)
    if cs.shape != cr.shape or not (cs == cr).all() or ns.size == 0:
        return False
    return bool((ns * nr[0] == nr * ns[0]).all())


def _tie(ctx, src: np.ndarray, rep: np.ndarray) -> None:
    """Tie index ``i`` of the longer of ``src``/``rep`` to index ``i mod n`` of the shorter (length ``n``)."""
    long_, short = (src, rep) if len(src) >= len(rep) else (rep, src)
    k = len(long_) // len(short)
    ctx.sink.unify(np.asarray(long_).reshape(k, len(short)), np.asarray(short)[None, :])


def _record(ctx, src: np.ndarray, rep: np.ndarray, where) -> None:
    """Say that a dimension sized in proportion to a width read at run time keeps that proportion."""
    module, line = node_origin(where) if where is not None else ("", "")
    name = where.name if where is not None else "?"
    if len(src) > len(rep):
        k = len(src) // len(rep)
        what = (f"a {len(rep)}-wide dimension is sized from a {len(src)}-wide one read at run time "
                f"(such as C // num_heads): each of its channels is kept or removed with {k} channels of the "
                f"{len(src)}-wide one")
    else:
        k = len(rep) // len(src)
        what = (f"a {len(rep)}-wide dimension is sized from a {len(src)}-wide one read at run time "
                f"(such as C * {k}): each channel of the {len(src)}-wide one is kept or removed with {k} of its "
                "channels")
    ctx.ties.append((TiedSize(f"size argument of node {name}", module, line, what), np.asarray(rep)))


def check_size_constraints(ctx) -> None:
    """Make every recorded size constraint hold: tie what can be tied, keep the rest whole.

    Ties are made in two phases, equal lengths first (they are the layout the
    model itself implies: ``reshape(B, N, C)`` maps index ``i`` to index ``i``),
    then proportional ones for the constraints those did not settle; ties only
    merge channels, so a few rounds of each settle them. What still disagrees
    is fixed, repeated until nothing changes (fixing can upset a ratio elsewhere).
    """
    cons = ctx.size_constraints
    if not cons:
        return
    ctx.current_node = None
    comp = ctx.sink.components()  # recomputed only after a tie or a freeze changed something
    for proportional in (False, True):
        for _ in range(4):
            changed = False
            for src, rep, where in cons:
                if len(src) == 0 or len(rep) == 0 or agree(comp, src, rep):
                    continue
                lo, hi = sorted((len(src), len(rep)))
                if lo == hi or (proportional and hi % lo == 0):
                    _tie(ctx, src, rep)
                    changed = True
            if not changed:
                break
            comp = ctx.sink.components()
    for _ in range(8):
        bad = [(src, rep, where) for src, rep, where in cons
               if len(src) and len(rep) and not agree(comp, src, rep)]
        if not bad:
            break
        for src, rep, where in bad:
            name = where.name if where is not None else "?"
            ctx.freeze(f"size argument of node {name}",
                       "shapes a tensor with a size read from another tensor whose channels are pruned "
                       "differently; both are kept (write -1 there to let them be pruned)",
                       [src, rep], node=where)
        comp = ctx.sink.components()
    for src, rep, where in cons:
        if len(src) and len(rep) and len(src) != len(rep) and agree(comp, src, rep):
            _record(ctx, src, rep, where)
