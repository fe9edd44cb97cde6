"""Structured ADMM over the engine's coupling groups: exact projections, and coupled ResNet layers end to end."""

import pytest
import torch

from prunekit import models
from prunekit.errors import ConfigError
from prunekit.graph import analyze
from prunekit.methods import admm as A
from prunekit.methods import admm_groups as G
from prunekit.engine import PruningPlan

T = torch.tensor


def _group(size, keep, penalised, members=None):
    def entry(p, d, idx, ch):
        return (p, d, T(idx), T(ch))
    pen = tuple(entry(*e) for e in penalised)
    mem = tuple(entry(*e) for e in members) if members else pen
    return G.ChannelGroup(0, "g", size, keep, pen, mem)


def test_scores_sum_over_coupled_layers_exact():
    # two layers write the same 3 channels (a residual addition): channel scores add up
    a = T([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])          # squared filter norms 1, 4, 2
    b = T([[3.0], [0.0], [1.0]])                           # 9, 0, 1
    g = _group(3, 2, [("a", 0, [0, 1, 2], [0, 1, 2]), ("b", 0, [0, 1, 2], [0, 1, 2])])
    assert G.group_scores({"a": a, "b": b}, g).tolist() == [10.0, 4.0, 3.0]
    assert G.group_keep({"a": a, "b": b}, g) == [0, 1]
    z = G.project_groups({"a": a, "b": b}, [g])
    assert z["a"].tolist() == [[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]  # channel 2 zeroed in *both* layers
    assert z["b"].tolist() == [[3.0], [0.0], [0.0]]
    assert a[2].tolist() == [1.0, 1.0]  # inputs untouched


def test_scores_follow_the_index_mapping_and_input_slices():
    # a reader whose input index j belongs to channel ch[j] (a concat at offset 1): dim-1 slices
    w = T([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])
    g = _group(2, 1, [("w", 1, [1, 2], [0, 1])])
    assert G.group_scores({"w": w}, g).tolist() == [50.0, 2.0]
    assert G.project_groups({"w": w}, [g])["w"].tolist() == [[0.0, 5.0, 0.0], [0.0, 5.0, 0.0]]
    # ties: the earlier channel wins
    assert G.group_keep({"w": torch.ones(2, 3)}, _group(2, 1, [("w", 1, [1, 2], [0, 1])])) == [0]


def test_masks_cover_every_member():
    g = _group(3, 1, [("w", 0, [0, 1, 2], [0, 1, 2])],
               [("w", 0, [0, 1, 2], [0, 1, 2]), ("bn", 0, [0, 1, 2], [0, 1, 2]), ("next", 1, [0, 1, 2], [0, 1, 2])])
    m = G.group_masks({"w": (3, 2), "bn": (3,), "next": (2, 3)}, [g], {0: [1]})
    assert m["w"].tolist() == [[False, False], [True, True], [False, False]]
    assert m["bn"].tolist() == [False, True, False]
    assert m["next"].tolist() == [[False, True, False], [False, True, False]]


def _tiny_resnet():
    torch.manual_seed(0)
    return models.create("resnet20", num_classes=10, in_channels=1, input_size=(8, 8), widths=[4, 8, 8])


def test_channel_groups_of_a_resnet_couple_the_residual_stream():
    net = _tiny_resnet()
    an = analyze(net, torch.randn(1, 1, 8, 8))
    groups = G.channel_groups(net, an, "filter", 0.5)
    stream = max(groups, key=lambda g: len(g.penalised))
    layers = {p.rpartition(".")[0] for p, *_ in stream.penalised}
    assert {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"} <= layers  # one code for the stage
    assert all(g.keep == g.size - g.size // 2 for g in groups)
    over = G.channel_groups(net, an, "filter", 0.5, layer_sparsity={"layer1.0.conv1": 0.75})
    assert next(g for g in over if g.name == "layer1.0.conv1").keep == 1
    with pytest.raises(ConfigError, match="layer_sparsity: 'fc'"):
        G.channel_groups(net, an, "filter", 0.5, layer_sparsity={"fc": 0.5})
    only = G.channel_groups(net, an, "channel", 0.5, layers=["layer2.0.conv1"])
    assert [g.name for g in only] == ["layer2.0.conv1"]
    assert {p for p, *_ in only[0].penalised} == {"layer2.0.conv2.weight"}  # channel-wise: the reader's slices


@pytest.fixture(scope="module")
def digits(digits_slice):
    return digits_slice(300, 100)


@pytest.mark.parametrize("granularity", ["filter", "channel"])
def test_resnet_structured_admm_gives_a_plan_equal_to_the_masked_model(digits, granularity):
    net = _tiny_resnet()
    cfg = A.ADMMConfig(sparsity=0.5, granularity=granularity, admm={"epochs": 2, "batch_size": 64},
                       finetune={"epochs": 1, "batch_size": 64})
    res = A.admm_prune(net, digits, cfg, progress=False)
    key = "removed_filters" if granularity == "filter" else "removed_channels"
    assert all(len(v) == (g["size"] // 2) for v, g in zip(res.extra[key].values(), res.extra["groups"]))
    plan = PruningPlan.from_dict(res.extra["plan"])
    assert {g.id: g.removed for g in plan.groups if g.removed} == {
        g["id"]: res.extra[key][g["name"]] for g in res.extra["groups"]}
    small = plan.apply(net)
    assert small.conv1.out_channels == 2 and small.fc.in_features == 4  # the residual stream of stage 3 halved
    x = digits.test_x[:16]
    with torch.no_grad():
        assert torch.allclose(small.eval()(x), net.eval()(x), atol=1e-4)  # masked == physically removed
    assert [r["rho"] for r in res.records if r["stage"] == "admm"] == pytest.approx([0.075, 0.1125])


def test_callback_with_groups_projects_jointly_exact():
    net = torch.nn.Sequential(torch.nn.Linear(1, 3, bias=False), torch.nn.Linear(1, 3, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(T([[1.0], [0.0], [1.0]]))
        net[1].weight.copy_(T([[3.0], [0.0], [0.5]]))
    g = G.ChannelGroup(0, "0", 3, 1, tuple(("%d.weight" % i, 0, T([0, 1, 2]), T([0, 1, 2])) for i in (0, 1)), ())
    cb = A.ADMMCallback({}, "filter", rho=0.5, groups=[g])
    trainer = type("T", (), {"model": net})()
    cb.on_train_begin(trainer)
    assert set(cb.keep) == {"0.weight", "1.weight"}
    assert cb.Z["0.weight"].flatten().tolist() == [1.0, 0.0, 0.0] and cb.Z["1.weight"].flatten().tolist() == [3.0, 0, 0]
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    cb.on_after_backward(trainer)  # grad += rho (W - Z + U)
    assert net[1].weight.grad.flatten().tolist() == [0.0, 0.0, 0.25]
    with torch.no_grad():
        net[0].weight.copy_(T([[0.0], [0.0], [2.0]]))
    cb.on_epoch_end(trainer, 0, {})
    assert cb.Z["0.weight"].flatten().tolist() == [0.0, 0.0, 0.0]   # channel 0 (0 + 9) beats channel 2 (4 + .25)
    assert cb.U["1.weight"].flatten().tolist() == [0.0, 0.0, 0.5]
