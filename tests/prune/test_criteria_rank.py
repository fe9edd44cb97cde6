"""Spearman rank correlation between pruning criteria (Huang et al. 2021): exact values and the command."""
import json
import math

import pytest
import torch

from prunekit.criteria_rank import analyze_criteria, rankdata, spearman


def test_rankdata_averages_ties():
    assert rankdata([10.0, 20.0, 10.0, 5.0]).tolist() == [2.5, 4.0, 2.5, 1.0]
    assert rankdata([1.0, 1.0, 1.0]).tolist() == [2.0, 2.0, 2.0]


def test_spearman_by_hand():
    # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)); d = (0, -1, 1, 0) -> 1 - 12/60 = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # monotone transforms do not change the ranking
    assert spearman([0.1, 5.0, 2.0], [0.01, 25.0, 4.0]) == pytest.approx(1.0)
    # with ties: ranks a = (1, 2.5, 2.5, 4), b = (1, 2, 3, 4); Pearson of the ranks computed by hand:
    # mean 2.5; da = (-1.5, 0, 0, 1.5), db = (-1.5, -0.5, 0.5, 1.5); sum da*db = 4.5,
    # sum da^2 = 4.5, sum db^2 = 5 -> 4.5 / sqrt(22.5) = 0.9486833
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(6)
        self.conv2 = torch.nn.Conv2d(6, 5, 3, padding=1)
        self.fc = torch.nn.Linear(5, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


def test_analyze_scores_match_the_criteria_by_hand():
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():
        net.bn1.weight.copy_(torch.tensor([0.5, -2.0, 1.0, 0.1, 3.0, -0.7]))
    x = torch.randn(8, 1, 6, 6)
    batches = [(x, torch.randint(0, 3, (8,)))]
    r = analyze_criteria(net, x[:1], data=batches)
    assert r.criteria == ["l1", "l2", "fpgm", "bn_scale", "taylor"]
    first = next(lay for lay in r.layers if lay["name"] == "conv1")
    w = net.conv1.weight.detach().reshape(6, -1)
    assert first["scores"]["l1"] == pytest.approx(w.abs().sum(1).tolist(), rel=1e-5)
    assert first["scores"]["bn_scale"] == pytest.approx([0.5, 2.0, 1.0, 0.1, 3.0, 0.7], rel=1e-6)
    assert first["spearman"]["l1|l2"] == pytest.approx(spearman(w.abs().sum(1), w.norm(dim=1)))
    # conv2's group has no BN: bn_scale is not scored there (its l1 fallback would correlate 1 trivially)
    second = next(lay for lay in r.layers if lay["name"] == "conv2")
    assert "bn_scale" not in second["scores"] and "l1|bn_scale" not in second["spearman"]
    assert any("bn_scale left out" in n for n in r.notes)
    m = r.matrix()
    assert m.shape == (5, 5) and (m.diagonal() == 1).all() and m[0, 1] == pytest.approx(
        (first["spearman"]["l1|l2"] + second["spearman"]["l1|l2"]) / 2)
    # without calibration data taylor is left out, with a note
    r2 = analyze_criteria(net, x[:1], criteria=["l1", "taylor", "l2"])
    assert r2.criteria == ["l1", "l2"] and "no calibration batches" in r2.notes[0]


def test_analyze_criteria_command(tmp_path, capsys):
    import prunekit.cli as c
    from prunekit import checkpoint, models

    torch.manual_seed(0)
    ck = tmp_path / "r20.pt"
    checkpoint.save(ck, models.create("resnet20", num_classes=10, in_channels=1, input_size=(8, 8)))
    out = tmp_path / "crit"
    assert c.main(["analyze", "criteria", str(ck), "--data", "digits", "--out", str(out), "--batches", "1",
                   "--batch-size", "16", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["criteria"] == ["l1", "l2", "fpgm", "bn_scale", "taylor"]
    assert printed["mean_spearman"][0][0] == 1.0 and -1 <= printed["mean_spearman"][0][1] <= 1
    rep = json.loads((out / "report.json").read_text())
    assert {"report.json", "report.md", "criteria_heatmap.png"} <= set(rep["outputs"])
    assert (out / "criteria_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert "Spearman" in (out / "report.md").read_text() and len(rep["layers"]) >= 3
    assert c.main(["analyze", "criteria", str(ck), "--data", "digits", "--out", str(out)]) == 2   # no overwrite
    assert c.main(["analyze", "criteria", str(ck), "--data", "digits", "--out", str(tmp_path / "x"),
                   "--criteria", "l1,nope"]) == 2
    assert "nope" in capsys.readouterr().err
