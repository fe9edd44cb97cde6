"""Random channel pruning (Li et al., CVPR 2022) and the CLI paths of the PaI methods."""
import json

import numpy as np
import pytest
import torch

from prunekit import checkpoint, models
from prunekit.data import load_dataset
from prunekit.errors import ConfigError, PrunekitError
from prunekit.measure import count_macs
from prunekit.methods.structured import RandomChannelConfig, random_channel_prune
from prunekit.methods.structured.random_widths import counts_for, sample_removal_counts


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def convnet(seed=0):
    torch.manual_seed(seed)
    return models.create("convnet3", num_classes=10, in_channels=1, input_size=(8, 8))


def test_counts_scale_and_cap():
    assert counts_for([0.5, 1.0, 0.0], [10, 4, 8], 1.0, 0.9) == [5, 3, 0]
    assert counts_for([1.0], [3], 5.0, 0.9) == [2]          # never the whole group


def test_sampler_meets_budget_on_a_linear_cost():
    sizes = [10, 20, 40]
    total = sum(sizes)

    def macs_of(c):                                        # kept fraction of channels, a stand-in cost
        return 1 - sum(c) / total

    rng = np.random.default_rng(0)
    for _ in range(20):
        c, m, _ = sample_removal_counts(macs_of, sizes, 0.5, 0.02, rng)
        assert abs(m - 0.5) <= 0.02 and m == macs_of(c)
        assert all(0 <= n < s for n, s in zip(c, sizes))
    with pytest.raises(PrunekitError, match="out of reach"):
        sample_removal_counts(macs_of, sizes, 0.05, 0.01, rng, max_ratio=0.5)


def test_candidates_meet_budget_same_seed_same_widths_best_on_validation(digits):
    net = convnet()
    cfg = RandomChannelConfig(macs=0.5, candidates=3, candidate_epochs=0, latency=False, seed=7)
    small, p, recs = random_channel_prune(net, digits, cfg, progress=False)
    x = digits.train_x[:1]
    base = count_macs(net, x).total
    assert len(recs) == 3
    for r in recs:
        assert abs(r["macs_kept"] - 0.5) <= cfg.macs_tolerance
    # the returned network is the best candidate on the held-out slice, its MACs as recorded
    best = max(recs, key=lambda r: r["val_top1"])
    assert p.info["best_candidate"] == best["candidate"]
    assert count_macs(small, x).total / base == pytest.approx(best["macs_kept"], rel=1e-6)
    # validation is a slice of train, not the test split
    hold = digits.holdout(cfg.val_fraction, seed=cfg.seed)
    from prunekit.train import evaluate

    assert best["val_top1"] == pytest.approx(float(evaluate(small, hold.test_x, hold.test_y)["top1"]))
    _, _, again = random_channel_prune(net, digits, cfg, progress=False)
    assert [r["widths"] for r in again] == [r["widths"] for r in recs]
    _, _, other = random_channel_prune(net, digits, RandomChannelConfig(macs=0.5, candidates=3, candidate_epochs=0,
                                                                        latency=False, seed=8), progress=False)
    assert [r["widths"] for r in other] != [r["widths"] for r in recs]


def test_random_needs_macs():
    with pytest.raises(ConfigError, match="macs"):
        RandomChannelConfig(macs=None, ratio=0.5).check()


def _prune_cli(*args):
    import prunekit.cli as c

    return c.main(["prune", *map(str, args)])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "dense.pt"
    checkpoint.save(path, convnet(), meta={"dataset": "digits"})
    return path


@pytest.mark.parametrize("method,sets", [("random", ["candidates=2", "candidate_epochs=1", "latency=false"]),
                                         ("pai", ["criterion=snip", "latency=false"])])
def test_prune_method_cli(ckpt, tmp_path, method, sets, capsys):
    out = tmp_path / "run"
    args = [ckpt, "--method", method, "--macs", "0.5", "--data", "digits", "--finetune-epochs", "1",
            "--out", out, "--no-progress", "--json"]
    for s in sets:
        args += ["--set", s]
    assert _prune_cli(*args) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["method"] == method
    assert abs(rep["macs"]["kept"] - 0.5) <= 0.05
    if method == "random":
        assert len(rep["extra"]["candidates"]) == 2
        assert all("widths" in c and "val_top1" in c for c in rep["extra"]["candidates"])
    else:
        assert rep["extra"]["criterion"] == "snip"
    small = checkpoint.load(out / "pruned.pt").model
    assert small(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_sparsify_snip_cli(tmp_path):
    import prunekit.cli as c

    path = tmp_path / "dense.pt"
    torch.manual_seed(0)
    checkpoint.save(path, models.create("lenet300_100", in_channels=1, input_size=(8, 8)))
    out = tmp_path / "sp"
    assert c.main(["sparsify", str(path), "--method", "snip", "--sparsity", "0.9", "--epochs", "1",
                   "--data", "digits", "--out", str(out), "--no-progress"]) == 0
    from prunekit.sparse import load_with_masks

    ck, masks = load_with_masks(out / "model.pt")
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.9 * total)
    assert ck.meta["sparsify"]["method"] == "snip"
    assert (out / "report.md").is_file() and (out / "model.sparse.pt").is_file()
    out2 = tmp_path / "sf"
    assert c.main(["sparsify", str(path), "--method", "synflow", "--sparsity", "0.5", "--rounds", "2", "--epochs", "0",
                   "--data", "digits", "--out", str(out2), "--no-progress"]) == 0
    ck2, _ = load_with_masks(out2 / "model.pt")
    assert ck2.meta["sparsify"]["config"]["rounds"] == 2
