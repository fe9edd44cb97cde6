"""Exact-value tests of the pure mask functions (prunekit.sparse.masks)."""
import pytest
import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.sparse import (
    fraction_for_target, intersect_masks, iterative_schedule, magnitude_masks, masks_sparsity, prunable_names,
    select_params, std_threshold_masks,
)

T = torch.tensor


def _params():
    return {"a.weight": T([[0.1, -0.5, 0.3], [2.0, -0.05, 0.0]]),   # |.| = .1 .5 .3 2 .05 0
            "b.weight": T([[1.0, -4.0], [0.2, 3.0]])}               # |.| = 1 4 .2 3


def test_layer_scope_exact():
    m = magnitude_masks(_params(), 0.5)
    assert m["a.weight"].tolist() == [[False, True, True], [True, False, False]]
    assert m["b.weight"].tolist() == [[False, True], [False, True]]


def test_global_scope_exact():
    # 10 weights, prune 6 globally: 0, .05, .1, .2, .3, .5 go; 1, 2, 3, 4 stay
    m = magnitude_masks(_params(), 0.6, scope="global")
    assert m["a.weight"].tolist() == [[False, False, False], [True, False, False]]
    assert m["b.weight"].tolist() == [[True, True], [False, True]]


def test_existing_masks_prune_fraction_of_survivors():
    p = {"w": T([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])}
    first = magnitude_masks(p, 0.5, layers=["w"])
    assert first["w"].tolist() == [False] * 4 + [True] * 4
    # 50% of the 4 survivors -> 2 more; values 5, 6 go. A large pruned weight is never revived:
    p2 = {"w": T([100.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])}
    second = magnitude_masks(p2, 0.5, layers=["w"], existing={"w": first["w"]})
    assert second["w"].tolist() == [False] * 6 + [True] * 2


def test_global_existing():
    p = {"x.weight": T([[1.0, 2.0]]), "y.weight": T([[3.0, 4.0]])}
    ex = {"x.weight": T([[False, True]]), "y.weight": T([[True, True]])}
    m = magnitude_masks(p, 1 / 3, scope="global", existing=ex)  # 3 survivors, prune 1: value 2
    assert m["x.weight"].tolist() == [[False, False]] and m["y.weight"].tolist() == [[True, True]]


def test_ties_are_deterministic_and_counts_exact():
    p = {"w": torch.ones(2, 5)}
    m = magnitude_masks(p, 0.3, layers=["w"])
    assert int((~m["w"]).sum()) == 3
    assert m["w"].flatten().tolist() == [False, False, False] + [True] * 7  # earlier index loses ties


def test_per_layer_dict_and_untouched_layers():
    m = magnitude_masks(_params(), {"a.weight": 0.5})
    assert int((~m["a.weight"]).sum()) == 3
    assert bool(m["b.weight"].all())


@pytest.mark.parametrize("p, n", [(0.0, 0), (1.0, 6), (0.25, 2), (0.08, 0)])  # 0.25*6=1.5 rounds up
def test_rounding(p, n):
    m = magnitude_masks({"w": torch.arange(1.0, 7.0).view(2, 3)}, p, layers=["w"])
    assert int((~m["w"]).sum()) == n


def test_default_layers_are_conv_and_linear_weights():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    assert prunable_names(net) == ["0.weight", "3.weight"]
    m = magnitude_masks(net, 0.5)
    assert set(m) == {"0.weight", "3.weight"}
    assert m["0.weight"].dtype == torch.bool and m["0.weight"].shape == (2, 1, 3, 3)
    # module names select their weight; mappings default to >=2-D "weight" tensors
    assert list(select_params(net, ["3"])) == ["3.weight"]
    assert list(select_params(net.state_dict())) == ["0.weight", "3.weight"]


@pytest.mark.parametrize("kwargs, msg", [
    ({"sparsity": 1.5}, "sparsity"),
    ({"sparsity": 0.5, "scope": "net"}, "scope"),
    ({"sparsity": 0.5, "layers": ["nope"]}, "nope"),
    ({"sparsity": {"a.weight": 0.5}, "scope": "global"}, "scope='layer'"),
    ({"sparsity": {"zzz": 0.5}}, "zzz"),
    ({"sparsity": 0.5, "existing": {"a.weight": torch.ones(3, 2, dtype=torch.bool)}}, "shape"),
    ({"sparsity": 0.5, "existing": {"a.weight": torch.ones(2, 3)}}, "bool"),
])
def test_errors_name_the_problem(kwargs, msg):
    with pytest.raises(PrunekitError, match=msg):
        magnitude_masks(_params(), **kwargs)


def test_std_threshold_exact():
    w = {"l.weight": T([[-2.0, -1.0], [1.0, 2.0]])}  # population std = sqrt(2.5) = 1.581
    assert std_threshold_masks(w, 1.0)["l.weight"].tolist() == [[True, False], [False, True]]
    assert std_threshold_masks(w, 0.5)["l.weight"].all()
    assert not std_threshold_masks(w, 1.3)["l.weight"].any()
    # unbiased std = sqrt(10/3) = 1.826 > 1.3*... check the switch matters
    assert std_threshold_masks(w, 1.2)["l.weight"].sum() == 2
    assert std_threshold_masks(w, 1.2, unbiased=True)["l.weight"].sum() == 0


def test_std_threshold_uses_survivors_and_keeps_pruned():
    w = {"l.weight": T([[10.0, 1.0, -1.0, 3.0]])}
    ex = {"l.weight": T([[False, True, True, True]])}  # survivors 1, -1, 3: mean 1, std sqrt(8/3)=1.633
    m = std_threshold_masks(w, 1.0, existing=ex)
    assert m["l.weight"].tolist() == [[False, False, False, True]]


def test_std_per_layer_quality_and_errors():
    p = _params()
    m = std_threshold_masks(p, {"b.weight": 0.0})
    assert m["a.weight"].all() and m["b.weight"].all()
    with pytest.raises(PrunekitError, match="quality"):
        std_threshold_masks(p, -1.0)


def test_schedules():
    assert iterative_schedule(0.75, 2) == [0.5, 0.75]
    s = iterative_schedule(0.99, 4)
    assert s[-1] == 0.99 and all(a < b for a, b in zip(s, s[1:]))
    assert fraction_for_target(0.5, 0.75) == 0.5
    assert fraction_for_target(0.0, 0.9) == 0.9
    with pytest.raises(PrunekitError, match="below"):
        fraction_for_target(0.8, 0.5)
    with pytest.raises(PrunekitError, match="rounds"):
        iterative_schedule(0.5, 0)


def test_sparsity_and_intersection():
    a = {"w": T([True, True, False, False])}
    b = {"w": T([True, False, True, False]), "v": T([True, False])}
    inter = intersect_masks(a, b)
    assert inter["w"].tolist() == [True, False, False, False] and inter["v"].tolist() == [True, False]
    assert masks_sparsity(inter) == pytest.approx(4 / 6)
    assert masks_sparsity({}) == 0.0
