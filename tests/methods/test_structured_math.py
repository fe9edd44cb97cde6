"""Exact small cases of the pure math of Channel Pruning (He et al. 2017) and ThiNet (Luo et al. 2017)."""
import pytest
import torch

from prunekit.methods.structured import lasso_math as lm
from prunekit.methods.structured.reconstruct import select_and_fit


def _problem(important=(1, 5, 7), c=16, n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, c, 9, generator=g)
    W = 0.01 * torch.randn(8, c, 9, generator=g)
    important = [i for i in important if i < c]
    W[:, important] = torch.randn(8, len(important), 9, generator=g)
    return X, W, X.flatten(1) @ W.flatten(1).T


def test_gram_stats_match_explicit_contributions():
    X, W, Y = _problem(c=6, n=300)
    G, b, yy = lm.gram_stats(X, W, Y)
    Z = torch.einsum("nik,oik->nio", X.double(), W.double())
    torch.testing.assert_close(G, torch.einsum("nio,njo->ij", Z, Z))
    torch.testing.assert_close(b, torch.einsum("nio,no->i", Z, Y.double()))
    assert yy == pytest.approx(float((Y.double() ** 2).sum()))


@pytest.mark.parametrize("important", [(1, 5, 7), (0, 15), (3,)])
def test_lasso_picks_the_obviously_important_channels(important):
    X, W, Y = _problem(important)
    G, b, _ = lm.gram_stats(X, W, Y)
    kept, beta = lm.lasso_select(G, b, len(important), scale=float(Y.numel()))
    assert kept == sorted(important)
    assert int((beta != 0).sum()) == len(important)


def test_lasso_fista_zero_at_alpha_max_and_dense_at_tiny_alpha():
    X, W, Y = _problem(important=range(16))  # every channel of the same scale: well conditioned
    G, b, _ = lm.gram_stats(X, W, Y)
    s = float(Y.numel())
    a_max = float((b / s).abs().max())
    B = lm.lasso_fista(G, b, torch.tensor([a_max * 1.01, a_max * 1e-6], dtype=G.dtype), iters=1000, scale=s)
    assert int((B[:, 0] != 0).sum()) == 0
    # at a tiny alpha the solution is the least-squares one: beta = 1 on every channel
    torch.testing.assert_close(B[:, 1], torch.ones(16, dtype=G.dtype), atol=1e-3, rtol=0)


def test_lasso_returns_exactly_keep_channels():
    X, W, Y = _problem((1, 5, 7))
    G, b, _ = lm.gram_stats(X, W, Y)
    for keep in (1, 2, 5, 9, 16):
        kept, _ = lm.lasso_select(G, b, keep, scale=float(Y.numel()))
        assert len(kept) == keep and kept == sorted(set(kept))
    with pytest.raises(ValueError):
        lm.lasso_select(G, b, 0)


def test_least_squares_reproduces_outputs_exactly_when_nothing_is_removed():
    X, W, Y = _problem(c=5, n=400)
    W2 = lm.least_squares(X, Y)
    torch.testing.assert_close(W2, W, atol=1e-4, rtol=1e-4)
    assert lm.relative_error(X, W2, Y) < 1e-10


@pytest.mark.parametrize("selector", ["lasso", "first_k", "max_response", "thinet"])
def test_select_and_fit_keeping_all_is_lossless(selector):
    X, W, Y = _problem(c=4, n=300)
    kept, Wk, e_sel, e_fit = select_and_fit(X, W, Y, 4, selector)
    assert kept == [0, 1, 2, 3]
    assert e_sel < 1e-10 and e_fit < 1e-8


def test_refit_never_worse_than_plain_selection():
    X, W, Y = _problem((1, 5, 7), c=12)
    for selector in ("lasso", "first_k", "max_response", "thinet"):
        _, _, e_sel, e_fit = select_and_fit(X, W, Y, 4, selector)
        assert e_fit <= e_sel + 1e-9


def test_thinet_greedy_tiny_known_case():
    # independent channels with norms 5, 1, 3, 2: remove the smallest first
    G = torch.diag(torch.tensor([5.0, 1.0, 3.0, 2.0], dtype=torch.float64))
    assert lm.thinet_greedy(G, 2) == [0, 2]
    assert lm.thinet_greedy(G, 4) == [0, 1, 2, 3]
    # channels 0 and 1 nearly cancel: after removing 0 (smallest), removing 1 *lowers* the error,
    # so channel 2 stays although channel 1 alone is the strongest
    G = torch.tensor([[1.0, -0.9, 0.0], [-0.9, 1.2, 0.0], [0.0, 0.0, 1.1]], dtype=torch.float64)
    assert lm.thinet_greedy(G, 1) == [2]


def test_channel_scales_recover_a_scaled_channel():
    g = torch.Generator().manual_seed(1)
    Z = torch.randn(200, 3, dtype=torch.float64, generator=g)
    y = 2.0 * Z[:, 0] - 0.5 * Z[:, 2]
    G, b = Z.T @ Z, Z.T @ y
    torch.testing.assert_close(lm.channel_scales(G, b, [0, 2]), torch.tensor([2.0, -0.5], dtype=torch.float64))


def test_baselines():
    W = torch.zeros(2, 4, 1)
    W[:, 2] = 3.0
    W[:, 0] = -1.0
    assert lm.first_k(4, 2) == [0, 1]
    assert lm.max_response(W, 2) == [0, 2]


def test_cd_and_fista_solvers_agree():
    X, W, Y = _problem((2, 4, 9, 11))
    G, b, _ = lm.gram_stats(X, W, Y)
    s = float(Y.numel())
    for keep in (2, 4, 8):
        k_cd, _ = lm.lasso_select(G, b, keep, scale=s, solver="cd")
        k_fi, _ = lm.lasso_select(G, b, keep, scale=s, solver="fista")
        assert len(k_cd) == len(k_fi) == keep
        if keep == 4:
            assert k_cd == k_fi == [2, 4, 9, 11]
    with pytest.raises(ValueError, match="solver"):
        lm.lasso_select(G, b, 2, solver="newton")
