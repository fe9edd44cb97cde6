"""Budgets users can hit: ``prunekit prune CKPT --macs 0.5`` on every zoo model, --tolerance, best effort, --set."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import prunekit
from prunekit import checkpoint, models
from prunekit.cli import main
from prunekit.engine import BudgetWarning, PlanOptions
from prunekit.errors import ConfigError, PrunekitError


def _small(name):
    """The zoo model at a small input (MNIST-sized models take one channel, like the demo's LeNet-5)."""
    info = models.model_info(name)
    size = tuple(info.input_size) if max(info.input_size) <= 32 else (32, 32)
    in_ch = 1 if max(info.input_size) <= 28 else 3
    torch.manual_seed(0)
    return models.create(name, num_classes=10, in_channels=in_ch, input_size=size), (in_ch, *size)


@pytest.mark.parametrize("name", models.list_models())
def test_readme_macs_command_works_on_every_zoo_model(name, tmp_path):
    net, shape = _small(name)
    src = checkpoint.save(tmp_path / "dense.pt", net)
    out = tmp_path / "pruned.pt"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["prune", str(src), "--macs", "0.5", "--out", str(out)]) == 0
    x = torch.randn(1, *shape)
    dense = prunekit.measure.count_macs(checkpoint.load(src).model, x).total
    kept = prunekit.measure.count_macs(checkpoint.load(out).model, x).total / dense
    # whole channels: the nearest reachable budget, within a few percent even on LeNet-5's 6 and 16 filters
    assert abs(kept - 0.5) <= 0.03
    # a miss beyond the default tolerance (1%) is said (the CLI prints it as one line), not silently taken
    said = [str(w.message) for w in seen if issubclass(w.category, BudgetWarning)]
    assert bool(said) == (abs(kept - 0.5) > 0.01 + 1e-9), said


def _lenet_ckpt(tmp_path):
    torch.manual_seed(0)
    net = models.create("lenet5", num_classes=10, in_channels=1)
    return (checkpoint.save(tmp_path / "lenet5.pt", net) if tmp_path else None), net


def _tiny_ckpt(tmp_path):
    from prunekit.spec import ModelSpec, attach_spec

    torch.manual_seed(0)
    net, _ = _three_filters()
    # a factory checkpoint: the CLI rebuilds the same architecture from tests.prune.test_budgets
    spec = ModelSpec(arch={"factory": "tests.prune.test_budgets:three_filters", "kwargs": {}}, input_shape=[1, 8, 8])
    return checkpoint.save(tmp_path / "tiny.pt", attach_spec(net, spec))


def three_filters():
    """Factory of :func:`_three_filters`' network (for the checkpoint)."""
    return _three_filters()[0]


def _three_filters():
    # one prunable group of 3 channels: removing 1 keeps 2/3 of the MACs, removing 2 keeps 1/3; 0.5 is out of reach
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3)), torch.randn(1, 1, 8, 8)


def test_best_effort_takes_the_nearest_reachable_with_a_warning_and_strict_mode_refuses():
    net, x = _three_filters()
    with pytest.warns(BudgetWarning, match="macs target 0.5 cannot be met within 0.01 with whole channels: took the "
                                           "nearest reachable, 0.667"):
        p = prunekit.plan(net, x, macs=0.5)
    assert p.info["macs_after"] / p.info["macs_before"] == pytest.approx(2 / 3)
    assert p.info["macs_reached"] == pytest.approx(2 / 3) and len(p.groups[0].removed) == 1
    assert any("best_effort" in w for w in p.info["warnings"])
    with pytest.raises(PrunekitError, match="cannot be met within 1%: the nearest reachable is 0.667"):
        prunekit.plan(net, x, macs=0.5, best_effort=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a tolerance the reachable budget meets: no warning
        same = prunekit.plan(net, x, PlanOptions(macs=0.5, tolerance=0.2, best_effort=False))
    assert same.to_dict()["groups"] == p.to_dict()["groups"]


def test_lenet5_meets_half_the_macs_within_the_default_tolerance():
    # the demo's model: uniform ratios alone reached 0.513; moving single groups afterwards gets within 1%
    _, net = _lenet_ckpt(None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = prunekit.plan(net, torch.randn(1, 1, 28, 28), macs=0.5, best_effort=False)
    assert abs(p.info["macs_after"] / p.info["macs_before"] - 0.5) <= 0.01


def test_nudge_moves_single_groups_towards_the_target():
    import numpy as np

    from prunekit.engine.policy import GroupCost, allowed_counts, nudge

    # two groups of 4 channels, each channel of group g keeps w[g] of the total when removed
    w = np.array([0.2, 0.05])
    groups = [GroupCost(4, np.arange(4), [(g, np.arange(1, 5))]) for g in range(2)]

    def kept(removed):
        return 1.0 - float(w @ removed)

    counts, f = nudge(groups, np.array([1, 0]), np.array([1.0, 0.0]), kept, 0.7, 1, 1, 0.9)
    assert counts.tolist() == [1, 2] and f == pytest.approx(0.7)
    assert allowed_counts(groups[0], round_to=1, min_channels=2, max_ratio=0.9) == [0, 1, 2]


def test_unreachable_target_stays_an_error_in_best_effort_mode():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    with pytest.raises(PrunekitError, match="cannot be met: pruning as far as allowed keeps"):
        prunekit.plan(net, torch.randn(1, 3, 8, 8), macs=0.001, best_effort=True)


def _prune(args, capsys):
    """``prunekit prune ARGS`` in process: (exit status, stderr, budget warnings)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rc = main(["prune", *args, "--trust-factory", "tests.prune.test_budgets:three_filters"])
    return rc, capsys.readouterr().err, [str(w.message) for w in seen if issubclass(w.category, BudgetWarning)]


def test_cli_tolerance_best_effort_and_set(tmp_path, capsys):
    src = str(_tiny_ckpt(tmp_path))
    rc, err, said = _prune([src, "--macs", "0.5", "--dry-run"], capsys)
    assert rc == 0 and len(said) == 1 and "nearest reachable, 0.667" in said[0]
    rc, err, _ = _prune([src, "--macs", "0.5", "--dry-run", "--no-best-effort"], capsys)
    assert rc == 2 and "cannot be met within 1%" in err
    assert _prune([src, "--macs", "0.5", "--dry-run", "--no-best-effort", "--tolerance", "0.2"], capsys)[::2] == (0, [])
    # --set reaches every planner option, flag or not (without --method it used to be ignored)
    assert _prune([src, "--macs", "0.5", "--dry-run", "--set", "tolerance=0.2", "--set", "best_effort=false"],
                  capsys)[::2] == (0, [])
    rc, err, _ = _prune([src, "--macs", "0.5", "--dry-run", "--set", "tolerence=0.03"], capsys)
    assert rc == 2 and "--set tolerence: no such planner option; valid: criterion, ratio" in err and "tolerance" in err
    rc, err, _ = _prune([src, "--macs", "0.5", "--dry-run", "--set", "tolerance=-1"], capsys)
    assert rc == 2 and "tolerance must be a number in [0, inf)" in err


def test_cli_planner_flags_come_from_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--criterion", "--ratio", "--macs", "--params", "--tolerance", "--best-effort", "--no-best-effort",
                 "--global", "--round-to", "--min-channels", "--ignore"):
        assert flag in text, flag
    # the help text is the field's, word for word
    import dataclasses

    tol = next(f for f in dataclasses.fields(PlanOptions) if f.name == "tolerance")
    assert " ".join(tol.metadata["help"].split()) in text


def test_plan_options_are_checked_when_read():
    with pytest.raises(ConfigError, match="unknown key prune.method for PlanOptions"):
        PlanOptions.from_dict({"method": "l1"})
    with pytest.raises(ConfigError, match="unknown planner option tolerence; valid: criterion"):
        prunekit.plan(nn.Linear(2, 2), torch.zeros(1, 2), tolerence=0.1)
    with pytest.raises(ConfigError, match="options must be a PlanOptions"):
        prunekit.plan(nn.Linear(2, 2), torch.zeros(1, 2), "l1")
    with pytest.raises(ConfigError, match="steps must be an integer >= 1"):
        PlanOptions(steps=0)
    assert PlanOptions.from_dict(PlanOptions(macs=0.4, tolerance=0.02).to_dict()) == PlanOptions(macs=0.4,
                                                                                                  tolerance=0.02)
