"""Weight masks at coarser granularities than single weights: kernels, kernel patterns, N:M groups.

Mao et al., *Exploring the Granularity of Sparsity in Convolutional Neural
Networks* (CVPR Workshops 2017) compare pruning single weights (fine-grained)
with pruning whole kernels (2-D, one ``k x k`` slice per input/output channel
pair) and whole filters; coarser units are easier to exploit in hardware but
cost more accuracy at the same sparsity. Two further regular forms are covered
here:

* **pattern** pruning (Niu et al., *PatDNN*, ASPLOS 2020): every kernel keeps
  the same number ``k`` of entries, laid out as one pattern out of a small
  library (PatDNN: 4 of the 9 entries of a 3x3 kernel, 6-12 patterns). The
  library is distilled from the layer itself: the most frequent top-``k``
  supports of its kernels; each kernel then takes the library pattern that
  keeps the most of its squared magnitude.
* **N:M** semi-structured sparsity (NVIDIA Ampere's 2:4; Zhou et al., *Learning
  N:M Fine-grained Structured Sparse Neural Networks From Scratch*, ICLR 2021):
  at most ``N`` non-zeros in every group of ``M`` consecutive weights along the
  reduction (input) dimension of the layer's matrix product.

All functions are pure: they read weights and return ``{name: BoolTensor}``
masks (True = kept) like :func:`prunekit.sparse.magnitude_masks`.

Example:
    >>> import torch
    >>> w = {"fc.weight": torch.tensor([[0.1, -0.5, 2.0, 0.3]])}
    >>> granular_masks(w, granularity="nm", nm="2:4")["fc.weight"]
    tensor([[False,  True,  True, False]])
"""
from __future__ import annotations

from typing import Iterable, Mapping

from prunekit.errors import PrunekitError
from prunekit.sparse.masks import check_masks, select_params
from prunekit.validate import check_fraction, check_int

#: the granularities :func:`granular_masks` accepts (``element`` is :func:`prunekit.sparse.magnitude_masks`)
GRANULARITIES = ("element", "kernel", "pattern", "nm")


def parse_nm(text) -> tuple[int, int]:
    """``"2:4"`` -> ``(2, 4)``; raises PrunekitError unless ``0 < N <= M``.

    Example:
        >>> parse_nm("2:4")
        (2, 4)
    """
    if isinstance(text, (tuple, list)) and len(text) == 2:
        n, m = text
    else:
        parts = str(text).split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            hint = (" (in YAML quote it, nm: \"2:4\": unquoted 2:4 is read as the base-60 number 124)"
                    if isinstance(text, int) else "")
            raise PrunekitError(f"N:M sparsity must look like '2:4', got {text!r}{hint}")
        n, m = (int(p) for p in parts)
    if not (isinstance(n, int) and isinstance(m, int) and 0 < n <= m):
        raise PrunekitError(f"N:M sparsity needs 0 < N <= M, got {n}:{m}")
    return n, m


def _keep_count(n: int, sparsity: float) -> int:
    # round half up, as magnitude_masks does, so counts are predictable
    import math

    return n - min(n, int(math.floor(sparsity * n + 0.5)))


def _reduction_rows(w):
    """``(out, R)`` view of a weight in GEMM order: Linear as is, Conv as ``(out, kh, kw, ..., in)``.

    This is the NHWC implicit-GEMM order of cuDNN/cuSPARSELt: the input channel is
    innermost, so for ``in % M == 0`` each group of M lies at one kernel position
    across M input channels (NVIDIA's 2:4 layout for convolutions).
    """
    if w.dim() <= 2:
        return w.reshape(w.shape[0], -1)
    return w.movedim(1, -1).reshape(w.shape[0], -1)


def _from_reduction_rows(rows, shape):
    """Inverse of :func:`_reduction_rows`."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    moved = (shape[0], *shape[2:], shape[1])
    return rows.reshape(moved).movedim(-1, 1)


def nm_mask(w, n: int, m: int):
    """N:M mask of one tensor: the ``n`` largest magnitudes of every ``m`` consecutive reduction weights.

    Groups run along the reduction dimension in GEMM order (see
    :func:`_reduction_rows`). A row whose length is not a multiple of ``m`` is
    thought of as zero-padded: its last, short group of ``r`` weights keeps
    ``min(n, r)``. Ties: the earlier position wins. 1-D tensors are left dense.
    """
    import torch

    if w.dim() < 2:
        return torch.ones(w.shape, dtype=torch.bool, device=w.device)
    rows = _reduction_rows(w.detach()).abs().to(torch.float64)
    out_n, r = rows.shape
    pad = (-r) % m
    # padded slots score -1 so they are dropped first; their places count against N like zeros would
    padded = torch.cat([rows, rows.new_full((out_n, pad), -1.0)], dim=1).reshape(out_n, -1, m)
    order = torch.sort(padded, dim=2, descending=True, stable=True).indices
    keep = torch.zeros_like(padded, dtype=torch.bool)
    keep.scatter_(2, order[..., :n], True)
    keep &= padded >= 0
    keep = keep.reshape(out_n, -1)[:, :r]
    return _from_reduction_rows(keep, tuple(w.shape)).contiguous()


def kernel_norms(w):
    """L2 norm of every kernel ``w[o, i]`` of a convolution weight, shape ``(out, in)``.

    A Linear weight (or a 1x1 convolution) has 1-element kernels: the norms are ``|w|``.
    """
    import torch

    return w.detach().reshape(w.shape[0], w.shape[1], -1).to(torch.float64).norm(dim=2)


def kernel_mask(w, sparsity: float):
    """Mask removing whole kernels (Mao et al. 2017): the ``round(sparsity * out*in)`` of smallest L2 norm.

    Ties: the earlier kernel (row-major over ``(out, in)``) is removed first.
    A tensor of fewer than 2 dimensions is left dense.
    """
    import torch

    if w.dim() < 2:
        return torch.ones(w.shape, dtype=torch.bool, device=w.device)
    norms = kernel_norms(w).flatten()
    keep = torch.zeros_like(norms, dtype=torch.bool)
    k = _keep_count(norms.numel(), sparsity)
    keep[torch.sort(norms, descending=True, stable=True).indices[:k]] = True
    shape = (w.shape[0], w.shape[1]) + (1,) * (w.dim() - 2)
    return keep.view(shape).expand(w.shape).clone()


def pattern_library(w, k: int, num_patterns: int):
    """The ``num_patterns`` most frequent top-``k`` supports of the kernels of ``w`` (PatDNN's distilled set).

    Returns a ``(P, kh*kw)`` bool tensor (``P <= num_patterns``; fewer when the
    kernels show fewer distinct supports), most frequent first; ties in
    frequency: the pattern seen first (row-major kernel order) comes first.
    """
    import torch

    flat = w.detach().reshape(w.shape[0] * w.shape[1], -1).abs().to(torch.float64)
    top = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :k]
    supports = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, top, True)
    uniq, inverse, counts = torch.unique(supports, dim=0, return_inverse=True, return_counts=True)
    first = torch.full((uniq.shape[0],), flat.shape[0], dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(flat.shape[0]), reduce="amin")
    # sort by count (descending), then by first appearance (ascending)
    order = sorted(range(uniq.shape[0]), key=lambda j: (-int(counts[j]), int(first[j])))
    return uniq[order[:num_patterns]]


def pattern_mask(w, sparsity: float, num_patterns: int = 8):
    """Pattern mask (Niu et al., PatDNN, ASPLOS 2020): every kernel keeps one of ``num_patterns`` k-entry shapes.

    ``k = kh*kw - round(sparsity * kh*kw)`` entries (at least 1) are kept in every
    kernel. The pattern library is :func:`pattern_library` of the layer; each
    kernel takes the library pattern with the largest retained sum of squares
    (ties: the more frequent pattern). Tensors with 1-element kernels (Linear,
    1x1 convolutions) have no kernel shape to choose: they fall back to the
    per-layer magnitude mask at ``sparsity``.
    """
    import torch

    from prunekit.sparse.masks import magnitude_masks

    if w.dim() < 3 or w[0, 0].numel() == 1:
        if w.dim() < 2:
            return torch.ones(w.shape, dtype=torch.bool, device=w.device)
        return magnitude_masks({"w": w}, sparsity)["w"]
    check_int("num_patterns", num_patterns, error=PrunekitError)
    ksize = w[0, 0].numel()
    k = max(1, _keep_count(ksize, sparsity))
    lib = pattern_library(w, k, num_patterns)
    sq = w.detach().reshape(w.shape[0] * w.shape[1], -1).to(torch.float64).pow(2)
    retained = sq @ lib.to(torch.float64).T          # (kernels, P)
    best = torch.argmax(retained, dim=1)             # argmax returns the first maximum: the more frequent pattern
    return lib[best].reshape(w.shape).to(w.device)


def granular_masks(model_or_params, sparsity: float = 0.5, granularity: str = "element", *,
                   nm: str | tuple = "2:4", num_patterns: int = 8, layers: Iterable[str] | None = None,
                   existing: Mapping | None = None) -> dict:
    """Per-layer magnitude masks at ``granularity``: ``element``, ``kernel``, ``pattern`` or ``nm``.

    Args:
        model_or_params: module, ``{name: tensor}`` mapping or ``(name, tensor)`` pairs.
        sparsity: the fraction of every layer to prune (``element``/``kernel``/``pattern``;
            ``pattern`` rounds it to whole entries per kernel). Not used by ``nm``,
            whose sparsity is ``1 - N/M``.
        granularity: ``element`` (Han et al. 2015), ``kernel`` (Mao et al. 2017),
            ``pattern`` (PatDNN, Niu et al. 2020) or ``nm`` (Zhou et al. 2021).
        nm: ``"N:M"`` for ``granularity="nm"``.
        num_patterns: size of the pattern library of ``pattern``.
        layers: which tensors to prune (see :func:`prunekit.sparse.select_params`).
        existing: masks already in force; what they prune stays pruned (the new mask is ANDed in).

    Returns:
        ``{name: BoolTensor}`` for every selected tensor.

    Example:
        >>> import torch
        >>> w = {"c.weight": torch.tensor([[[[3.]], [[0.5]]], [[[1.]], [[-2.]]]])}   # (2, 2, 1, 1)
        >>> granular_masks(w, 0.5, "kernel")["c.weight"].flatten().tolist()
        [True, False, False, True]
    """
    from prunekit.sparse.masks import magnitude_masks
    from prunekit.validate import check_choice

    check_choice("granularity", granularity, GRANULARITIES, error=PrunekitError)
    params = select_params(model_or_params, layers)
    existing = {k: v for k, v in dict(existing or {}).items() if k in params}
    check_masks(params, existing)
    if granularity == "element":
        return magnitude_masks(params, sparsity, scope="layer", existing=existing or None)
    p = check_fraction("sparsity", sparsity, allow_one=True, error=PrunekitError)
    n, m = parse_nm(nm) if granularity == "nm" else (0, 0)
    masks = {}
    for name, t in params.items():
        # pruned weights are scored as zero so a unit holding them ranks low, and they stay pruned
        w = t.detach() if name not in existing else t.detach().masked_fill(~existing[name].to(t.device), 0.0)
        if granularity == "kernel":
            mask = kernel_mask(w, p)
        elif granularity == "pattern":
            mask = pattern_mask(w, p, num_patterns)
        else:
            mask = nm_mask(w, n, m)
        masks[name] = mask & existing[name].to(mask.device) if name in existing else mask
    return masks


__all__ = ["GRANULARITIES", "granular_masks", "kernel_mask", "kernel_norms", "nm_mask", "parse_nm",
           "pattern_library", "pattern_mask"]
