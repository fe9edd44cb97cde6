"""k-means for weight sharing: exact values on tiny inputs."""
import pytest
import torch

from prunekit.compress.kmeans import INITS, assign, kmeans_1d


def test_linear_init_is_evenly_spaced_over_min_max():
    sv = torch.tensor([-2.0, -1.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    assert INITS.get("linear")(sv, 5).tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]


def test_density_init_takes_quantiles():
    sv = torch.arange(10, dtype=torch.float64)
    assert INITS.get("density")(sv, 2).tolist() == [2.0, 7.0]


def test_random_init_is_seeded_and_picks_existing_values():
    sv = torch.arange(100, dtype=torch.float64)
    a = INITS.get("random")(sv, 8, torch.Generator().manual_seed(3))
    b = INITS.get("random")(sv, 8, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert set(a.tolist()) <= set(sv.tolist()) and len(set(a.tolist())) == 8


def test_kmeans_exact_two_clusters():
    w = torch.tensor([0.0, 0.1, 0.2, 1.0, 1.1, 1.2])
    c, a = kmeans_1d(w, 2, init="linear")
    assert torch.allclose(c, torch.tensor([0.1, 1.1], dtype=torch.float64))
    assert a.tolist() == [0, 0, 0, 1, 1, 1]


def test_kmeans_keeps_shape_and_converges_to_fixed_point():
    torch.manual_seed(0)
    w = torch.randn(7, 5, 3)
    c, a = kmeans_1d(w, 8)
    assert a.shape == w.shape and c.shape == (8,)
    assert torch.all(c[1:] >= c[:-1])
    # Lloyd fixed point: every non-empty centroid is the mean of its members, members are nearest.
    for j in range(8):
        members = w.reshape(-1)[a.reshape(-1) == j].double()
        if len(members):
            assert torch.isclose(members.mean(), c[j], atol=1e-12)
    assert torch.equal(assign(w, c), a)


@pytest.mark.parametrize("init", INITS.names())
def test_every_init_gives_k_sorted_centroids(init):
    w = torch.linspace(-1, 1, 50)
    c, a = kmeans_1d(w, 4, init=init, seed=1)
    assert c.shape == (4,) and a.min() >= 0 and a.max() < 4
    err = (c[a] - w.double()).abs().max()
    assert err < 0.5


def test_explicit_init_tensor():
    w = torch.tensor([0.0, 1.0, 10.0, 11.0])
    c, a = kmeans_1d(w, 2, init=torch.tensor([5.0, 0.0]), max_iter=1)
    assert c.tolist() == [0.5, 10.5] and a.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="explicit init"):
        kmeans_1d(w, 3, init=torch.tensor([0.0, 1.0]))


def test_fewer_values_than_clusters_and_constant_values():
    c, a = kmeans_1d(torch.tensor([3.0, 3.0]), 4)
    assert torch.all(c[a] == 3.0)
    c, a = kmeans_1d(torch.tensor([1.0]), 1)
    assert c.tolist() == [1.0] and a.tolist() == [0]
