"""One-dimensional k-means for weight sharing (Deep Compression, section 3.1-3.2).

Han et al. cluster the surviving weights of each layer into ``k = 2**bits``
shared values. The paper compares three initialisations of the centroids and
finds *linear* (evenly spaced over ``[min, max]``) best, because it keeps
centroids near the few large weights that matter most, where density-based and
random initialisation put almost all centroids in the dense middle:

* ``"linear"``: ``linspace(min, max, k)``;
* ``"density"``: evenly spaced in the CDF, i.e. the ``(i + 0.5) / k`` quantiles;
* ``"random"``: ``k`` distinct weights drawn at random (Forgy), seeded.

Because the data are scalars, Lloyd's algorithm runs on the *sorted* weights:
the cluster of centroid ``j`` is the contiguous run between the midpoints to its
neighbours, found with a binary search, and its mean comes from a prefix sum.
Each iteration costs ``O(k log n)``, so even 25M weights cluster in milliseconds
once sorted. Empty clusters keep their centroid (it is simply never used).

Example:
    >>> import torch
    >>> w = torch.tensor([-1.0, -0.9, 0.1, 0.2, 1.0])
    >>> c, a = kmeans_1d(w, 3, init="linear")
    >>> [round(v, 2) for v in c.tolist()], a.tolist()
    ([-0.95, 0.15, 1.0], [0, 0, 1, 1, 2])
"""
from __future__ import annotations

import torch

from prunekit.registry import Registry

INITS: Registry = Registry("k-means initialisation")


@INITS.register("linear")
def init_linear(sorted_values: torch.Tensor, k: int, generator=None) -> torch.Tensor:
    """``k`` centroids evenly spaced over ``[min, max]`` (the paper's best choice)."""
    lo, hi = sorted_values[0].item(), sorted_values[-1].item()
    return torch.linspace(lo, hi, k, dtype=torch.float64)


@INITS.register("density")
def init_density(sorted_values: torch.Tensor, k: int, generator=None) -> torch.Tensor:
    """``k`` centroids at evenly spaced quantiles of the weights (density-based initialisation)."""
    n = len(sorted_values)
    idx = ((torch.arange(k, dtype=torch.float64) + 0.5) * n / k).long().clamp_(0, n - 1)
    return sorted_values[idx].to(torch.float64)


@INITS.register("random")
def init_random(sorted_values: torch.Tensor, k: int, generator=None) -> torch.Tensor:
    """``k`` weights drawn without replacement (Forgy initialisation); repeats if fewer than ``k`` weights."""
    n = len(sorted_values)
    if n >= k:
        idx = torch.randperm(n, generator=generator)[:k]
    else:
        idx = torch.randint(0, n, (k,), generator=generator)
    return sorted_values[idx].to(torch.float64).sort().values


def _boundaries(centroids: torch.Tensor) -> torch.Tensor:
    return (centroids[1:] + centroids[:-1]) / 2


def assign(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid for every value (centroids sorted ascending); int64, same shape."""
    b = _boundaries(centroids.to(torch.float64))
    return torch.bucketize(values.to(torch.float64), b, right=True)


def kmeans_1d(values: torch.Tensor, k: int, *, init: str | torch.Tensor = "linear", max_iter: int = 100,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster scalar ``values`` into ``k`` shared values with Lloyd's algorithm.

    Args:
        values: any-shaped float tensor (flattened internally).
        k: number of clusters.
        init: ``"linear"``, ``"density"``, ``"random"`` (see :data:`INITS`) or an explicit
            tensor of ``k`` starting centroids.
        max_iter: iteration cap; stops earlier when no centroid moves.
        seed: for ``"random"`` initialisation.

    Returns:
        ``(centroids, assignments)``: float64 centroids sorted ascending (shape ``(k,)``)
        and the int64 cluster of every value (shape of ``values``).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    flat = values.detach().reshape(-1).to(torch.float64)
    if flat.numel() == 0:
        return torch.zeros(k, dtype=torch.float64), torch.zeros(values.shape, dtype=torch.int64)
    sv = flat.sort().values
    if isinstance(init, torch.Tensor):
        if init.numel() != k:
            raise ValueError(f"explicit init has {init.numel()} centroids, k={k}")
        c = init.detach().reshape(-1).to(torch.float64).sort().values
    else:
        gen = torch.Generator().manual_seed(seed)
        c = INITS.get(init)(sv, k, gen)
    prefix = torch.cat([torch.zeros(1, dtype=torch.float64), sv.cumsum(0)])
    for _ in range(max_iter):
        # Cluster j holds sorted values [lo_j, hi_j): split at the midpoints between centroids.
        cut = torch.searchsorted(sv, _boundaries(c), right=False)
        lo = torch.cat([torch.zeros(1, dtype=torch.long), cut])
        hi = torch.cat([cut, torch.tensor([len(sv)])])
        cnt = (hi - lo).to(torch.float64)
        sums = prefix[hi] - prefix[lo]
        new = torch.where(cnt > 0, sums / cnt.clamp(min=1), c)
        new = new.sort().values
        if torch.equal(new, c):
            break
        c = new
    return c, assign(values.detach(), c).reshape(values.shape)
