"""The vectorised pieces of the analysis against plain references: components and stable radix ordering."""
import numpy as np
import pytest

from prunekit.graph.groups import _stable_order
from prunekit.graph.labels import connected_components


def _reference_components(n, a, b):
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    roots = [find(x) for x in range(n)]
    # numbered by smallest member, in increasing order
    number = {r: k for k, r in enumerate(sorted(set(roots)))}
    return np.array([number[r] for r in roots])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_connected_components_equal_a_plain_union_find(seed):
    rng = np.random.default_rng(seed)
    n = 500
    a, b = rng.integers(0, n, 300), rng.integers(0, n, 300)
    got = connected_components(n, a, b)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _reference_components(n, a, b))


@pytest.mark.parametrize("bound", [7, 1 << 16, (1 << 16) + 5, 1 << 32, 1 << 40])
def test_stable_order_is_numpys_stable_argsort(bound):
    rng = np.random.default_rng(bound % 97)
    keys = rng.integers(0, bound, 5000, dtype=np.int64)
    keys[::7] = keys[0]  # ties, whose order must be kept
    np.testing.assert_array_equal(_stable_order(keys, bound), np.argsort(keys, kind="stable"))
