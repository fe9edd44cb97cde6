"""L1 filter pruning with sensitivity analysis (Li et al., ICLR 2017)."""
import pytest
import torch

from prunekit.methods.structured import choose_ratios, ratios_for_macs, sensitivity_analysis
from prunekit.methods.structured.l1 import L1Config, l1_plan, plot_sensitivity


def test_choose_ratios_from_hand_made_table():
    table = {"__baseline__": 90.0,
             "a": {0.1: 90.0, 0.3: 89.6, 0.5: 89.0, 0.7: 85.0},
             "b": {0.1: 88.5, 0.3: 89.5},        # the first ratio already too costly -> 0
             "c": {0.1: 90.2, 0.3: 80.0, 0.5: 89.9}}  # stops at the first failure
    assert choose_ratios(table, 1.0) == {"a": 0.5, "b": 0.0, "c": 0.1}
    assert choose_ratios(table, 0.0) == {"a": 0.1, "b": 0.0, "c": 0.1}
    assert choose_ratios(table, 100.0) == {"a": 0.7, "b": 0.3, "c": 0.5}


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()


def test_sensitivity_masks_equal_removal():
    from prunekit.train import evaluate

    net = _net()
    x = torch.randn(40, 1, 8, 8)
    y = net(x).argmax(1)
    table = sensitivity_analysis(net, x, y, x[:1], ratios=(0.5,), progress=False)
    assert table["__baseline__"] == 100.0
    assert set(table) == {"__baseline__", "0", "3"}
    for layer in ("0", "3"):
        small = l1_plan(net, x[:1], {layer: 0.5}).apply(net)
        assert table[layer][0.5] == pytest.approx(evaluate(small, x, y)["top1"])


def test_ratios_for_macs_meets_target_and_plot(tmp_path):
    net = _net()
    table = {"__baseline__": 100.0, "0": {0.25: 100.0, 0.5: 90.0, 0.75: 50.0},
             "3": {0.25: 100.0, 0.5: 99.0, 0.75: 95.0}}
    ratios, tol = ratios_for_macs(net, torch.randn(1, 1, 8, 8), table, 0.5, rel_tol=0.05)
    p = l1_plan(net, torch.randn(1, 1, 8, 8), ratios)
    assert p.info["macs_after"] / p.info["macs_before"] <= 0.55
    # between the ratios of the tolerance below and of the returned one (interpolated, see the next test)
    lo_r, hi_r = choose_ratios(table, 0.0), choose_ratios(table, tol)
    assert all(lo_r[k] <= ratios[k] <= hi_r[k] for k in ratios)
    plot_sensitivity(table, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratios_for_macs_interpolates_between_grid_tolerances():
    # 8 channels per layer. Tolerance 1 gives {0: 0.25, 3: 0.5} (41.7% of the MACs kept), tolerance 5 gives
    # {0: 0.25, 3: 0.75} (25%): neither is near a 40% target. Between them, layer 3 losing 5 of its 8
    # channels (layer 0 unchanged at 2 of 8) is the least pruning that keeps at most 40%.
    from prunekit.errors import PrunekitError

    net, x = _net(), torch.randn(1, 1, 8, 8)
    table = {"__baseline__": 100.0, "0": {0.25: 100.0, 0.5: 90.0, 0.75: 50.0},
             "3": {0.25: 100.0, 0.5: 99.0, 0.75: 95.0}}
    kept = lambda r: l1_plan(net, x, r).info["macs_after"] / l1_plan(net, x, r).info["macs_before"]  # noqa: E731
    assert kept(choose_ratios(table, 1.0)) > 0.4 > kept(choose_ratios(table, 5.0))
    ratios, tol = ratios_for_macs(net, x, table, 0.4, rel_tol=0.0)
    assert tol == 5.0
    assert ratios["0"] == 0.25
    assert 0.5 < ratios["3"] < 0.75
    p = l1_plan(net, x, ratios)
    assert [len(g.removed) for g in p.groups if g.removed] == [2, 5]
    assert kept(ratios) <= 0.4
    # 41%: layer 3 losing 4 channels keeps 41.7% (0.7 point above, within rel_tol), losing 5 keeps 33.3%
    # (7.7 points below): the nearer one is taken
    near, _ = ratios_for_macs(net, x, table, 0.41, rel_tol=0.05)
    assert [len(g.removed) for g in l1_plan(net, x, near).groups if g.removed] == [2, 4]
    assert [len(g.removed) for g in l1_plan(net, x, ratios_for_macs(net, x, table, 0.41, rel_tol=0.0)[0]).groups
            if g.removed] == [2, 5]
    # beyond the largest tolerance: accepted within rel_tol, else an error
    assert ratios_for_macs(net, x, table, 0.05, rel_tol=0.05)[0] == choose_ratios(table, 50.0)
    with pytest.raises(PrunekitError, match="out of reach"):
        ratios_for_macs(net, x, table, 0.05, rel_tol=0.0)


def test_l1_config_checks():
    from prunekit.errors import ConfigError

    with pytest.raises(ConfigError, match="sensitivity_ratios"):
        L1Config(sensitivity_ratios=[1.5]).check()
