"""Pure tensor math of Channel Pruning (He, Zhang & Sun, ICCV 2017) and ThiNet (Luo et al., ICCV 2017).

Notation (He et al., Sec. 3.1): ``N`` sampled points, a layer with ``c`` input
channels, kernel size ``k`` (kh*kw) and ``n`` outputs. ``X`` is ``(N, c, k)``, ``W``
is ``(n, c, k)`` and ``Y = X W^T`` is ``(N, n)``. Channel ``i`` contributes
``Z_i = X_i W_i^T`` (``(N, n)``) and the channel selection solves (formula 3)::

    min_beta  1/(2 N n) || Y - sum_i beta_i Z_i ||_F^2 + alpha ||beta||_1

Everything LASSO needs is the Gram matrix ``G_ij = <Z_i, Z_j>`` and
``b_i = <Z_i, Y>``, computed here without forming ``Z`` (``N*n*c`` numbers):
``G = blocksum((X^T X) * (W^T W))`` and ``b = blocksum(W^T . (X^T Y))``.
The LASSO is solved for a whole grid of ``alpha`` at once (scikit-learn's coordinate
descent on an equivalent ``c x c`` problem, or a batched FISTA in torch), bisected until
at most ``c'`` channels remain.
"""
from __future__ import annotations

import math


def gram_stats(X, W, Y):
    """``(G, b, yy)``: Gram matrix of the channel contributions, their correlation with ``Y``, ``||Y||^2``.

    Example:
        >>> import torch
        >>> X = torch.randn(50, 3, 2, dtype=torch.float64); W = torch.randn(4, 3, 2, dtype=torch.float64)
        >>> Y = X.flatten(1) @ W.flatten(1).T
        >>> G, b, yy = gram_stats(X, W, Y)
        >>> Z = torch.einsum("nik,oik->nio", X, W)
        >>> bool(torch.allclose(G, torch.einsum("nio,njo->ij", Z, Z)))
        True
    """
    N, c, k = X.shape
    Xf = X.reshape(N, c * k).double()
    Wf = W.reshape(W.shape[0], c * k).double()
    C = Xf.T @ Xf                      # (ck, ck)
    H = Wf.T @ Wf                      # (ck, ck)
    G = (C * H).reshape(c, k, c, k).sum(dim=(1, 3))
    XtY = Xf.T @ Y.double()            # (ck, n)
    b = (XtY * Wf.T).sum(1).reshape(c, k).sum(1)
    return G, b, float((Y.double() ** 2).sum())


def lipschitz(G, iters: int = 100) -> float:
    """Largest eigenvalue of the PSD matrix ``G`` by power iteration (a few matrix-vector products).

    Cheaper and steadier than a full eigendecomposition on a busy machine; the 1% margin
    keeps FISTA's step safe when the iteration has not fully converged.
    """
    import torch

    v = torch.ones(G.shape[0], dtype=G.dtype) / math.sqrt(G.shape[0])
    lam = 0.0
    for _ in range(iters):
        w = G @ v
        lam = float(torch.linalg.vector_norm(w))
        if lam == 0.0:
            return 0.0
        v = w / lam
    return 1.01 * lam


def lasso_fista(G, b, alphas, iters: int = 300, beta0=None, scale: float = 1.0, L: float | None = None):
    """Solve ``min 1/2 beta^T Gs beta - bs^T beta + alpha |beta|_1`` for every alpha at once (FISTA).

    ``Gs = G/scale``, ``bs = b/scale`` (``scale = N*n`` gives scikit-learn's Lasso objective).

    Args:
        G: ``(c, c)`` Gram matrix; b: ``(c,)``; alphas: ``(A,)`` tensor.
        beta0: optional warm start ``(c, A)``.
        L: Lipschitz constant of the gradient (largest eigenvalue of ``G/scale``); computed if None.

    Returns:
        ``(c, A)`` tensor of solutions, one column per alpha (exact zeros from soft-thresholding).
    """
    import torch

    Gs = G / scale
    bs = (b / scale).unsqueeze(1)
    L = max(lipschitz(Gs) if L is None else float(L), 1e-30)
    thr = (alphas / L).unsqueeze(0)
    beta = torch.zeros(G.shape[0], len(alphas), dtype=G.dtype) if beta0 is None else beta0.clone()
    z, t = beta.clone(), 1.0
    for _ in range(iters):
        grad = Gs @ z - bs
        u = z - grad / L
        new = torch.sign(u) * (u.abs() - thr).clamp_min(0.0)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = new + ((t - 1.0) / t_new) * (new - beta)
        beta, t = new, t_new
    return beta


def lasso_path_cd(G, b, alphas, scale: float = 1.0):
    """The same LASSO problems solved by scikit-learn's coordinate descent (``lasso_path``).

    scikit-learn needs a design matrix; ``Z' = L^T``, ``y' = L^-1 b`` with ``G = L L^T``
    is a ``c x c`` one with the same Gram matrix and correlations, so
    ``1/(2c)||y' - Z' beta||^2 + alpha' |beta|`` has the same minimiser as ours for
    ``alpha' = alpha * scale / c``. Returns ``(c, A)`` like :func:`lasso_fista`.
    """
    import numpy as np
    import torch
    from sklearn.linear_model import lasso_path

    c = G.shape[0]
    Gn = G.double().numpy()
    jitter = 1e-10 * max(float(np.mean(np.diag(Gn))), 1e-30)
    L = np.linalg.cholesky(Gn + jitter * np.eye(c))
    yp = np.linalg.solve(L, b.double().numpy())
    a = np.asarray(alphas, dtype=np.float64) * scale / c
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # the smallest alphas of a grid (far below the budget) may stop early; they only bound the bracket
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, coefs, _ = lasso_path(L.T, yp, alphas=a, max_iter=5000, tol=1e-6)
    return torch.as_tensor(coefs, dtype=G.dtype)


def lasso_select(G, b, keep: int, *, scale: float = 1.0, n_alphas: int = 24, iters: int = 300, rounds: int = 4,
                 solver: str = "cd"):
    """Channels kept by LASSO: raise alpha until at most ``keep`` coefficients are non-zero.

    He et al. raise lambda step by step; here a geometric grid is solved at once and
    the bracket ``nnz <= keep < nnz`` is refined ``rounds`` times. If the support at
    the chosen alpha is smaller than ``keep``, it is completed by the largest
    ``|beta|`` at the neighbouring smaller alpha, so exactly ``keep`` channels remain.

    Args:
        solver: ``"cd"`` (scikit-learn's coordinate descent via :func:`lasso_path_cd`) or
            ``"fista"`` (the batched torch solver :func:`lasso_fista`).

    Returns:
        ``(kept, beta)``: sorted kept indices (list of int) and the beta at the chosen alpha.
    """
    import torch

    c = G.shape[0]
    if not 1 <= keep <= c:
        raise ValueError(f"keep must be in [1, {c}], got {keep}")
    if solver not in ("cd", "fista"):
        raise ValueError(f"solver must be 'cd' or 'fista', got {solver!r}")
    if keep == c:
        return list(range(c)), torch.ones(c, dtype=G.dtype)
    a_max = float((b / scale).abs().max()) or 1.0
    hi, lo = a_max, a_max * 1e-6           # nnz(hi) = 0 <= keep; nnz(lo) is (almost) everything
    beta_hi = torch.zeros(c, dtype=G.dtype)
    beta_lo = None
    L = lipschitz(G / scale) if solver == "fista" else None
    for _ in range(rounds):
        alphas = torch.logspace(math.log10(hi), math.log10(lo), n_alphas, dtype=G.dtype)
        if solver == "cd":
            B = lasso_path_cd(G, b, alphas, scale=scale)
        else:
            B = lasso_fista(G, b, alphas, iters=iters, scale=scale, L=L)
        nnz = (B != 0).sum(0)
        ok = (nnz <= keep).nonzero().flatten()
        if len(ok) == 0:   # a re-solve at the old bracket landed above the budget: keep the last good one
            break
        j = int(ok[-1])    # smallest alpha still within the budget
        hi, beta_hi = float(alphas[j]), B[:, j]
        if int(nnz[j]) == keep or j + 1 >= n_alphas:
            break
        lo, beta_lo = float(alphas[j + 1]), B[:, j + 1]
    kept = set((beta_hi != 0).nonzero().flatten().tolist())
    if len(kept) > keep:   # defensive: never return more than the budget
        kept = set(torch.argsort(beta_hi.abs(), descending=True, stable=True)[:keep].tolist())
    if len(kept) < keep:
        fill = beta_lo.abs() if beta_lo is not None else b.abs()
        for i in torch.argsort(fill, descending=True, stable=True).tolist():
            if len(kept) == keep:
                break
            kept.add(i)
        for i in torch.argsort(b.abs(), descending=True, stable=True).tolist():
            if len(kept) == keep:
                break
            kept.add(i)
    return sorted(kept), beta_hi


def least_squares(X, Y, ridge: float = 1e-9):
    """Formula 4 of He et al.: ``W' = argmin ||Y - X' W'^T||``, solved with ``torch.linalg.lstsq``.

    The solve runs on the normal equations ``(X^T X + eps I) W'^T = X^T Y`` (in float64):
    a ``c'k x c'k`` system instead of an SVD of the ``N x c'k`` sample matrix, which is
    two orders of magnitude faster for 10,000 points; ``eps = ridge * mean(diag)``
    only guards against rank deficiency (e.g. fewer points than unknowns).

    Args:
        X: ``(N, c', k)`` kept input patches; Y: ``(N, n)`` targets.

    Returns:
        ``(n, c', k)`` reconstructed weights.
    """
    import torch

    N, c, k = X.shape
    Xf = X.reshape(N, c * k).double()
    A = Xf.T @ Xf
    A.diagonal().add_(ridge * float(A.diagonal().mean()) + 1e-30)
    sol = torch.linalg.lstsq(A, Xf.T @ Y.double(), driver="gels").solution  # A is full rank (ridge)
    return sol.T.reshape(Y.shape[1], c, k).float()


def thinet_greedy(G, keep: int):
    """ThiNet's greedy channel selection (Luo et al. 2017, Algorithm 1) on the Gram matrix.

    Starting from nothing removed, repeatedly remove the channel whose contribution,
    added to the removed ones, has the smallest squared norm
    ``|| sum_{i in T} Z_i ||^2 = 1^T G_TT 1``, until ``keep`` channels remain.

    Returns:
        sorted kept indices.

    Example:
        >>> import torch
        >>> thinet_greedy(torch.diag(torch.tensor([5., 1., 3.])), 2)
        [0, 2]
    """
    import torch

    c = G.shape[0]
    removed: list[int] = []
    s = torch.zeros(c, dtype=G.dtype)          # s_j = sum_{r in T} G_rj
    diag = torch.diagonal(G)
    alive = torch.ones(c, dtype=torch.bool)
    for _ in range(c - keep):
        cost = 2.0 * s + diag                  # increase of the removed sum's norm when j joins T
        cost = torch.where(alive, cost, torch.full_like(cost, float("inf")))
        j = int(torch.argmin(cost))
        removed.append(j)
        alive[j] = False
        s = s + G[j]
    return sorted(set(range(c)) - set(removed))


def channel_scales(G, b, kept):
    """ThiNet's least-squares rescaling ``w = argmin ||Y - sum_{i in kept} w_i Z_i||^2 = G_KK^-1 b_K``."""
    import torch

    idx = torch.as_tensor(kept, dtype=torch.long)
    return torch.linalg.lstsq(G[idx][:, idx], b[idx].unsqueeze(1), driver="gelsd").solution.flatten()


def first_k(c: int, keep: int) -> list[int]:
    """Baseline of He et al. Fig. 4: keep the first ``keep`` channels."""
    return list(range(keep))


def max_response(W, keep: int) -> list[int]:
    """Baseline of He et al. Fig. 4: keep the channels whose filters have the largest absolute weight sum."""
    import torch

    score = W.abs().sum(dim=(0, 2))
    return sorted(torch.argsort(score, descending=True, stable=True)[:keep].tolist())


def relative_error(X, W, Y) -> float:
    """``||Y - X W^T||^2 / ||Y||^2`` (the relative reconstruction error of He et al. Fig. 4)."""
    N = X.shape[0]
    pred = X.reshape(N, -1).double() @ W.reshape(W.shape[0], -1).double().T
    return float(((Y.double() - pred) ** 2).sum() / (Y.double() ** 2).sum().clamp_min(1e-30))
