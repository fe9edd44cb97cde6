"""Pruning at initialisation: weight level (snip/grasp/synflow in METHODS) and channel level (criteria, method pai)."""
import pytest
import torch

from prunekit import models
from prunekit.data import load_dataset
from prunekit.errors import ConfigError
from prunekit.methods import METHODS
from prunekit.methods.pai import GraspConfig, SnipConfig, SynflowConfig, pai_masks
from prunekit.saliency import score_masks, snip_scores


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def lenet(seed=0):
    torch.manual_seed(seed)
    return models.create("lenet300_100", in_channels=1, input_size=(8, 8))


WEIGHTS = {"features.0.weight", "features.2.weight", "classifier.weight"}


@pytest.mark.parametrize("name,cfg", [("snip", SnipConfig), ("grasp", GraspConfig), ("synflow", SynflowConfig)])
def test_weight_level_exact_zero_count_after_training(digits, name, cfg):
    net = lenet()
    extra = {"rounds": 3} if name == "synflow" else {}
    res = METHODS.get(name).fn(net, digits, cfg(sparsity=0.8, finetune={"epochs": 1, "progress": False}, **extra))
    params = dict(res.model.named_parameters())
    total = sum(params[n].numel() for n in WEIGHTS)
    zeros = sum(int((params[n] == 0).sum()) for n in WEIGHTS)
    assert set(res.masks) == WEIGHTS
    assert sum(int((~m).sum()) for m in res.masks.values()) == round(0.8 * total)
    assert zeros >= round(0.8 * total)             # the masks held through training
    assert all(bool((params[n][~res.masks[n]] == 0).all()) for n in WEIGHTS)
    assert res.final["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert [r["stage"] for r in res.records[:2]] == ["init", "pruned"]
    # pruned at a fresh initialisation: the checkpoint's weights were not the start
    assert not torch.equal(lenet().classifier.weight, res.model.classifier.weight)


def test_snip_score_given_weights_masks_are_the_global_snip_ranking(digits):
    net = lenet()
    cfg = SnipConfig(sparsity=0.5, score_given_weights=True, finetune={"epochs": 0})
    masks = pai_masks(net, digits, "snip", cfg)
    from prunekit.methods.structured._common import calib_batch

    bs = cfg.finetune.batch_size
    x, y = calib_batch(digits, bs, cfg.seed + 1)
    ref = score_masks(snip_scores(net, [(x, y)], sorted(WEIGHTS)), 0.5)
    assert all(torch.equal(masks[n], ref[n]) for n in WEIGHTS)
    res = METHODS.get("snip").fn(net, digits, cfg)
    assert res.model is net and res.records[0]["stage"] == "dense"


def test_config_errors():
    with pytest.raises(ConfigError, match="sparsity"):
        SnipConfig(sparsity=1.0)
    with pytest.raises(ConfigError, match="temperature"):
        GraspConfig(temperature=0)
    with pytest.raises(ConfigError, match="rounds"):
        SynflowConfig(rounds=0)


def test_channel_criterion_snip_sums_abs_grad_weight_over_the_channel():
    import prunekit

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 4 * 4, 3))
    x = torch.randn(6, 1, 6, 6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    p = prunekit.plan(net, x[:1], criterion="snip", ratio=0.5, keep_scores=True, data=[(x, y)])
    torch.nn.functional.cross_entropy(net(x), y).backward()
    s = {n: (q.grad * q.detach()).abs() for n, q in net.named_parameters()}
    # channel c: its filter, its bias, and the 16 classifier columns that read it
    exp = s["0.weight"].sum((1, 2, 3)) + s["0.bias"] + s["3.weight"].reshape(3, 4, 16).sum((0, 2))
    g = next(g for g in p.groups if g.size == 4)
    assert torch.allclose(torch.tensor(g.scores, dtype=torch.float32), exp, rtol=1e-5)
    assert sorted(g.removed) == sorted(torch.argsort(exp)[:2].tolist())


def test_channel_criterion_synflow_is_data_free():
    import prunekit

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 6, bias=False), torch.nn.ReLU(), torch.nn.Linear(6, 2, bias=False))
    p = prunekit.plan(net, torch.randn(1, 5), criterion="synflow", ratio=0.5, keep_scores=True)
    w1, w2 = net[0].weight.detach().double().abs(), net[2].weight.detach().double().abs()
    # hidden unit i: sum_j |W1_ij| * sum_k |W2_ki| from both layers' connections
    exp = 2 * w1.sum(1) * w2.sum(0)
    assert torch.allclose(torch.tensor(p.groups[0].scores, dtype=torch.float64), exp, rtol=1e-5)


def test_structured_pai_scores_at_init_and_meets_budget(digits):
    from prunekit.measure import count_macs
    from prunekit.methods.structured import PaIChannelConfig, pai_channel_prune

    net = models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))
    for crit in ("snip", "grasp", "synflow"):
        cfg = PaIChannelConfig(criterion=crit, macs=0.5, latency=False)
        small, p = pai_channel_prune(net, digits, cfg, progress=False)
        x = digits.train_x[:1]
        kept = count_macs(small, x).total / count_macs(net, x).total
        assert abs(kept - 0.5) <= cfg.macs_tolerance + 0.02, (crit, kept)
        assert p.info["pai_criterion"] == crit and p.num_removed > 0
    with pytest.raises(ConfigError, match="criterion"):
        PaIChannelConfig(criterion="l1").check()


@pytest.mark.parametrize("cls", [SnipConfig, GraspConfig, SynflowConfig])
def test_configs_round_trip_and_recipe_step_checks_keys(cls):
    import json

    from prunekit.config import from_dict, to_dict
    from prunekit.recipe_steps import SparsifyStepConfig

    cfg = cls(sparsity=0.7, finetune={"epochs": 2})
    assert from_dict(cls, json.loads(json.dumps(to_dict(cfg)))) == cfg
    name = cls.__name__[:-len("Config")].lower()
    SparsifyStepConfig(method=name, config={"sparsity": 0.5, "score_given_weights": True})
    with pytest.raises(ConfigError, match="no_such_key"):
        SparsifyStepConfig(method=name, config={"no_such_key": 1})
