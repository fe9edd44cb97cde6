"""FinetuneConfig, run_finetune and reinitialize: one fine-tuning and one from-scratch rule for every family.

The label-smoothing option shows what the refactor is for: it is one field of the
dataclass, and these tests check that it reaches the loss exactly, from the Python API
of every family, from each command's flag and from each recipe key.
"""
import argparse
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from prunekit.config import from_dict
from prunekit.errors import ConfigError
from prunekit.train import FinetuneConfig, TrainConfig, as_finetune, reinitialize, run_finetune

S = 0.2  # the label smoothing of these tests


def tiny(digits, n_train=16, n_test=8):
    return dataclasses.replace(digits, train_x=digits.train_x[:n_train], train_y=digits.train_y[:n_train],
                               test_x=digits.test_x[:n_test], test_y=digits.test_y[:n_test])


# ---- the dataclass -------------------------------------------------------------------------------


def test_finetune_config_is_a_train_config_whose_seed_is_the_holders():
    cfg = FinetuneConfig.from_dict({"epochs": 3, "lr": 0.01, "label_smoothing": 0.1})
    assert isinstance(cfg, TrainConfig) and cfg.seed is None
    assert FinetuneConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.resolve(seed=7).seed == 7 and cfg.resolve().seed == 0
    assert cfg.replace(seed=3).resolve(seed=7).seed == 3          # an explicit seed wins
    assert cfg.resolve(progress=False).progress is False
    assert set(f.name for f in dataclasses.fields(TrainConfig)) == set(f.name for f in dataclasses.fields(cfg))


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_label_smoothing_must_be_in_0_1(value):
    with pytest.raises(ConfigError, match="label_smoothing"):
        FinetuneConfig.from_dict({"label_smoothing": value})
    with pytest.raises(ConfigError, match=r"finetune\b.*label_smoothing"):
        as_finetune({"label_smoothing": value})


def test_as_finetune_keeps_the_family_defaults():
    from prunekit.methods.lottery import LotteryFinetune

    cfg = as_finetune({"epochs": 2, "label_smoothing": 0.1}, LotteryFinetune)
    assert (cfg.epochs, cfg.label_smoothing, cfg.optimizer, cfg.lr, cfg.batch_size) == (2, 0.1, "adam", 1.2e-3, 60)
    assert as_finetune(TrainConfig(epochs=4), LotteryFinetune).optimizer == "sgd"  # a whole TrainConfig counts
    with pytest.raises(ConfigError, match=r"finetune\.epoch\b"):
        as_finetune({"epoch": 2}, LotteryFinetune)


# ---- label smoothing reaches the loss: the exact value -------------------------------------------


def test_finetuning_loss_is_label_smoothed_cross_entropy(digits):
    """One full batch, one epoch: the recorded training loss is the loss of the starting weights."""
    data = tiny(digits)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        logits = net(data.train_x)
        expected = F.cross_entropy(logits, data.train_y, label_smoothing=S).item()
        # by hand: (1 - s) * NLL of the target + s * the mean NLL over the classes
        logp = logits.log_softmax(dim=1)
        by_hand = ((1 - S) * -logp.gather(1, data.train_y[:, None]).squeeze(1) - S * logp.mean(dim=1)).mean().item()
        plain = F.cross_entropy(logits, data.train_y).item()
    assert expected == pytest.approx(by_hand, rel=1e-6) and abs(expected - plain) > 1e-3
    cfg = FinetuneConfig(epochs=1, batch_size=16, label_smoothing=S, augment=False, progress=False,
                         checkpoint_every=0)
    trainer = run_finetune(net, data, cfg)
    assert trainer.config.label_smoothing == S and trainer.config.seed == 0
    assert trainer.history[0]["train_loss"] == pytest.approx(expected, rel=1e-6)


# ---- ... from every family's Python API, each command's flag and each recipe key ------------------


@pytest.fixture
def smoothing_seen(monkeypatch):
    """The label smoothing of the loss of every Trainer that run_finetune builds."""
    from prunekit.train import trainer as T

    seen = []

    class Spy(T.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.loss_fn.label_smoothing)

    monkeypatch.setattr(T, "Trainer", Spy)
    return seen


def _mlp(seed=0):
    from prunekit import models

    torch.manual_seed(seed)
    return models.create("lenet300_100", num_classes=10, in_channels=1, input_size=(8, 8), hidden=(64, 32))


def _ft(**kw):
    return {"epochs": 1, "label_smoothing": S, "progress": False, "batch_size": 64, **kw}


def test_every_family_fine_tunes_with_the_label_smoothing(digits, smoothing_seen, tmp_path):
    from prunekit import compress
    from prunekit.binary import BinarizeConfig
    from prunekit.binary.recipe import run_binarize
    from prunekit.methods import METHODS
    from prunekit.methods.structured import run_structured
    from prunekit.search import SearchConfig, search

    data = tiny(digits, 256, 64)
    runs = {
        "magnitude": {"sparsity": 0.5, "finetune": _ft()},
        "agp": {"final_sparsity": 0.5, "frequency": 1, "finetune": _ft(epochs=2)},
        "lth": {"rounds": 1, "reinit_control": False, "finetune": _ft()},
        "admm": {"sparsity": 0.5, "admm": _ft(), "finetune": _ft()},
    }
    for name, cfg in runs.items():
        info = METHODS.get(name)
        info.fn(_mlp(), data, from_dict(info.config_cls, cfg), progress=False)
    assert smoothing_seen == [S] * 6                      # admm: its ADMM phase and its fine-tuning
    run_structured(_mlp(), data, "fpgm", {"macs": 0.6, "steps": 2, "latency": False, "finetune": _ft()},
                   progress=False)
    assert smoothing_seen[6:] == [S] * 2                  # between the two steps, and after pruning
    compress.compress_model(_mlp(), {"prune_sparsity": 0.5, "retrain": _ft(), "finetune": _ft()}, data=data,
                            progress=False)
    assert smoothing_seen[8:] == [S] * 2
    search(_mlp(), data, SearchConfig(method="autoslim", macs=0.6, ratios=[0.5, 1.0], workers=1,
                                      supernet={"epochs": 0}, finetune=_ft()), tmp_path / "search", progress=False)
    assert smoothing_seen[10:] == [S]
    run_binarize(_mlp(), BinarizeConfig(mode="bwn", data="digits", finetune=_ft()), tmp_path / "bin",
                 progress=False)
    assert smoothing_seen[11:] == [S]


def _parse(argv):
    from prunekit.cli import build_parser

    return build_parser().parse_args(argv)


def test_every_command_that_fine_tunes_has_the_flag():
    from prunekit.cli import cmd_binarize, cmd_compress, cmd_search, cmd_sparsify, prune_methods
    from prunekit.search import SearchConfig

    flag = ["--finetune-label-smoothing", str(S)]
    a = _parse(["prune", "ck.pt", "--method", "lasso", "--data", "digits", *flag])
    assert prune_methods.resolve(a)[2].finetune.label_smoothing == S
    a = _parse(["prune", "ck.pt", "--method", "l1", "--data", "digits", "--set", "finetune.lr=0.1",
                "--finetune-epochs", "4"])
    ft = prune_methods.resolve(a)[2].finetune
    assert (ft.lr, ft.epochs, ft.batch_size) == (0.1, 4, 64)     # the rest: the structured defaults
    for method in ("magnitude", "agp", "lth", "admm"):
        a = _parse(["sparsify", "ck.pt", "--method", method, "--data", "digits", "--out", "o", *flag])
        assert cmd_sparsify.build_config(method, a).finetune.label_smoothing == S
    a = _parse(["search", "ck.pt", "--data", "digits", "--out", "o", "--macs", "0.5", *flag])
    assert SearchConfig.from_dict(cmd_search._config(a)).finetune.label_smoothing == S
    a = _parse(["compress", "ck.pt", "-o", "x.pkz", *flag, "--retrain-label-smoothing", "0.1"])
    cfg = cmd_compress.build_config(a)
    assert (cfg.finetune.label_smoothing, cfg.retrain.label_smoothing, cfg.finetune.lr) == (S, 0.1, 1e-4)
    a = _parse(["binarize", "lenet5", "--out", "o", *flag, "--epochs", "3"])
    cfg = cmd_binarize.build_config(a)
    assert (cfg.finetune.label_smoothing, cfg.finetune.epochs, cfg.finetune.optimizer) == (S, 3, "adam")


def test_flags_are_generated_from_the_dataclass_fields():
    from prunekit.cli.finetune_flags import add_finetune_arguments, finetune_overrides

    p = argparse.ArgumentParser()
    add_finetune_arguments(p)
    helped = [f.name for f in dataclasses.fields(FinetuneConfig) if f.metadata.get("help")]
    assert {"epochs", "lr", "batch_size", "label_smoothing", "seed", "augment"} <= set(helped)
    for name in helped:
        assert f"--finetune-{name.replace('_', '-')}" in p.format_help()
    a = p.parse_args(["--finetune-optimizer", "adam", "--no-finetune-augment", "--finetune-seed", "4"])
    assert finetune_overrides(a) == {"optimizer": "adam", "seed": 4, "augment": False}
    with pytest.raises(SystemExit):
        p.parse_args(["--finetune-optimizer", "lbfgs"])


def test_sparsify_flag_reaches_the_loss(digits, smoothing_seen, tmp_path):
    from prunekit import checkpoint
    from prunekit.cli import main

    checkpoint.save(tmp_path / "m.pt", _mlp())
    assert main(["sparsify", str(tmp_path / "m.pt"), "--method", "magnitude", "--sparsity", "0.5", "--data",
                 "digits", "--out", str(tmp_path / "out"), "--epochs", "1", "--finetune-label-smoothing", str(S),
                 "--no-progress", "--json"]) == 0
    assert smoothing_seen == [S]


def test_recipe_keys_reach_the_loss(digits, smoothing_seen, tmp_path):
    from prunekit.recipe import Recipe, run_recipe

    steps = [{"sparsify": {"method": "magnitude", "config": {"sparsity": 0.5, "finetune": _ft()}}},
             {"finetune": _ft()},
             {"compress": {"prune_sparsity": 0.6, "retrain": _ft(), "finetune": _ft()}},
             {"structured": {"method": "fpgm", "config": {"macs": 0.7, "steps": 1, "latency": False,
                                                          "finetune": _ft()}}},
             {"binarize": {"mode": "bwn", "finetune": _ft()}}]
    r = Recipe.from_dict({"out": str(tmp_path / "run"), "data": "digits",
                          "model": {"name": "lenet300_100", "kwargs": {"hidden": [64, 32]}}, "steps": steps})
    run_recipe(r, progress=False)
    assert smoothing_seen == [S] * 6


@pytest.mark.parametrize("step, new", [
    ({"structured": {"method": "l1", "config": {"finetune_epochs": 3}}}, r"finetune_epochs .* now finetune\.epochs"),
    ({"structured": {"method": "lasso", "config": {"augment": True}}}, r"augment .* now finetune\.augment"),
    ({"sparsify": {"method": "agp", "config": {"train": {"epochs": 3}}}}, r"train of AGPConfig is now finetune"),
    ({"sparsify": {"method": "lth", "config": {"train": {"epochs": 3}}}}, r"train of LotteryConfig is now finetune"),
    ({"sparsify": {"method": "admm", "config": {"retrain": {"epochs": 3}}}}, r"retrain of ADMMConfig is now finetune"),
    ({"compress": {"retrain_epochs": 2}}, r"retrain_epochs of CompressConfig is now retrain\.epochs"),
    ({"compress": {"finetune_lr": 0.001}}, r"finetune_lr of CompressConfig is now finetune\.lr"),
    ({"compress": {"train": {"augment": True}}}, r"train of CompressConfig is now keys of retrain and finetune"),
    ({"binarize": {"train": {"epochs": 3}}}, r"train of BinarizeStepConfig is now finetune"),
])
def test_an_old_spelling_names_the_new_key(step, new):
    from prunekit.recipe import Recipe

    with pytest.raises(ConfigError, match=new):
        Recipe.from_dict({"out": "o", "data": "digits", "model": {"name": "lenet5"}, "steps": [step]})


# ---- one from-scratch rule --------------------------------------------------------------------------


def test_reinitialize_is_seeded_fresh_and_leaves_the_global_rng():
    net = _mlp()
    state = torch.random.get_rng_state()
    a, b, c = reinitialize(net, 1), reinitialize(net, 1), reinitialize(net, 2)
    assert torch.equal(torch.random.get_rng_state(), state)
    wa, wb, wc, w0 = (m.features[0].weight for m in (a, b, c, net))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc) and not torch.equal(wa, w0)
    # a prunekit model is rebuilt as at construction: the architecture's own initialisation
    from prunekit.checkpoint import build, get_spec

    with torch.random.fork_rng():
        torch.manual_seed(1)
        built = build(get_spec(net))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), built.state_dict().values()))


def test_reinitialize_without_a_spec_resets_every_layer():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    with torch.no_grad():
        net[1].running_mean.fill_(5.0)
        net[1].weight.fill_(2.0)
    new = reinitialize(net, 0)
    assert torch.equal(new[1].running_mean, torch.zeros(3)) and torch.equal(new[1].weight, torch.ones(3))
    assert not torch.equal(new[0].weight, net[0].weight) and net[1].running_mean[0] == 5.0


def test_structured_from_scratch_is_reinitialize_of_the_pruned_model(digits):
    from prunekit.methods.structured import run_structured

    cfg = {"macs": 0.6, "steps": 1, "latency": False, "seed": 3, "finetune": {"epochs": 0}}
    pruned = run_structured(_mlp(), digits, "fpgm", cfg, progress=False).model
    scratch = run_structured(_mlp(), digits, "fpgm", {**cfg, "from_scratch": True}, progress=False).model
    expected = reinitialize(pruned, 3)
    assert all(torch.equal(x, y) for x, y in zip(scratch.state_dict().values(), expected.state_dict().values()))
