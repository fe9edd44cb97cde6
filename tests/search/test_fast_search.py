"""Cheap candidate evaluation: BN recalibration, the fixed evaluation subset, the candidate cache, ETA bars."""
import json

import pytest
import torch
from torch import nn

from prunekit import models
from prunekit.search import CandidateCache, SearchConfig, SearchSpace, greedy_slim, recalibrate_bn, search
from prunekit.search.evaluate import fixed_subset
from prunekit.search.phases import PhaseTimer, TrainProgress, greedy_steps_estimate


def test_recalibrating_on_one_batch_gives_its_batch_statistics():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, momentum=0.3)
    net = nn.Sequential(conv, bn).eval()
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(7.0)
    x = torch.randn(4, 2, 3, 3)
    assert recalibrate_bn(net, [x]) == 1
    with torch.no_grad():
        h = conv(x)
    n = h.numel() // 3
    mean = h.sum((0, 2, 3)) / n
    var = ((h - mean.view(1, 3, 1, 1)) ** 2).sum((0, 2, 3)) / (n - 1)  # running_var is the unbiased estimate
    assert torch.allclose(bn.running_mean, mean, atol=1e-6)
    assert torch.allclose(bn.running_var, var, atol=1e-5)
    assert bn.num_batches_tracked.item() == 1 and bn.momentum == 0.3 and not net.training


def test_candidate_cache_answers_repeats_without_evaluating():
    calls = []

    def score_many(encs):
        calls.append(list(encs))
        return [{"score": 10.0 * e[0] + e[1], "accuracy": float(e[1])} for e in encs]

    cache = CandidateCache(score_many)
    first = cache([(1, 2), (3, 4)])
    again = cache([(3, 4), [1, 2], (5, 6), (5, 6)])
    assert first == [{"score": 12.0, "accuracy": 2.0}, {"score": 34.0, "accuracy": 4.0}]
    assert again == [first[1], first[0], {"score": 56.0, "accuracy": 6.0}, {"score": 56.0, "accuracy": 6.0}]
    assert calls == [[(1, 2), (3, 4)], [(5, 6)]]
    assert (cache.evaluated, cache.hits, len(cache)) == (3, 3, 3)
    again[0]["score"] = -1.0  # callers get copies: the cache keeps its answer
    assert cache([(3, 4)]) == [first[1]] and len(calls) == 2


def test_fixed_subset_is_stratified_seeded_and_all_when_not_smaller():
    x, y = torch.arange(40.0), torch.arange(40) % 4
    a, ay = fixed_subset(x, y, 8, seed=3)
    b, by = fixed_subset(x, y, 8, seed=3)
    assert torch.equal(a, b) and torch.equal(ay, by)
    assert sorted(ay.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert fixed_subset(x, y, 0)[0] is x and fixed_subset(x, y, 40)[0] is x


class _Recorder:
    """A stand-in for prunekit.utils.progress.progress_bar recording each bar's total and final count."""

    def __init__(self):
        self.bars = []

    def __call__(self, iterable=None, *, total=None, desc=None, initial=0, **_):
        rec = self

        class Bar:
            disable = False

            def __init__(self):
                self.total, self.n, self.desc = total, initial, desc
                rec.bars.append(self)

            def update(self, n=1):
                self.n += n

            def refresh(self):
                pass

            def set_postfix(self, *a, **k):
                pass

            def close(self):
                pass

        return Bar()


def test_progress_bars_are_given_totals(monkeypatch, digits):
    from prunekit.train import TrainConfig, Trainer

    rec = _Recorder()
    monkeypatch.setattr("prunekit.utils.progress.progress_bar", rec)
    torch.manual_seed(0)
    m = models.create("convnet3", num_classes=10, in_channels=1, input_size=digits.image_size)
    cfg = TrainConfig(epochs=2, batch_size=256, eval_every=0, augment=False, progress=False)
    trainer = Trainer(m, digits.holdout(0.2), cfg, callbacks=[TrainProgress("super-network")])
    trainer.fit()
    [bar] = [b for b in rec.bars if b.desc == "super-network"]  # (the trainer's own bars are off)
    assert bar.total == 2 * trainer.steps_per_epoch and bar.n == bar.total

    space = SearchSpace.build(m, digits.train_x[:1], ratios=(0.25, 0.5, 0.75, 1.0))
    budget = 0.5 * space.macs(space.full)
    ok = lambda e: space.macs(e) <= budget  # noqa: E731
    greedy_slim(space, lambda encs: [{"score": float(sum(e))} for e in encs], ok, progress=True)
    [bar] = [b for b in rec.bars if b.desc == "greedy slimming"]
    assert bar.total == greedy_steps_estimate(space, ok) and bar.n >= 1


def test_greedy_steps_estimate_counts_the_uniform_notches():
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    space = SearchSpace.build(net, torch.randn(1, 1, 9, 9), ratios=(0.25, 0.5, 0.75, 1.0))
    assert space.candidates == [(2, 4, 6, 8), (1, 2, 3, 4)]
    # the first uniform encoding passing is 0.5 -> (4, 2): two notches down in each group
    ok = lambda e: e[0] <= 4  # noqa: E731
    assert greedy_steps_estimate(space, ok) == 4 and greedy_steps_estimate(space, ok, moves=3) == 2


def test_phase_timer_sums_repeated_phases():
    t = PhaseTimer()
    with t.phase("a"):
        pass
    with t.phase("a"):
        pass
    d = t.as_dict()
    assert set(d) == {"a", "total"} and 0 <= d["a"] <= d["total"]


@pytest.mark.parametrize("method", ["metapruning", "autoslim"])
def test_every_candidate_is_scored_on_one_fixed_subset(method, digits, tmp_path, monkeypatch):
    import prunekit.search.evaluate as ev

    seen = []
    real = ev.score_model

    def spy(model, calib_x, val_x, val_y, calib_batches=4, batch_size=128):
        seen.append((calib_x, val_x, val_y, calib_batches, batch_size))
        return real(model, calib_x, val_x, val_y, calib_batches, batch_size)

    monkeypatch.setattr(ev, "score_model", spy)
    import prunekit.search.slimmable as sl

    moves = []
    real_greedy = sl.greedy_slim
    monkeypatch.setattr(sl, "greedy_slim", lambda *a, **k: moves.append(k["moves"]) or real_greedy(*a, **k))
    torch.manual_seed(0)
    m = models.create("convnet3", num_classes=10, in_channels=1, input_size=digits.image_size)
    cfg = SearchConfig(method=method, macs=0.5, ratios=[0.25, 0.5, 0.75, 1.0], workers=1, eval_samples=60,
                       calib_batches=2, calib_batch_size=32, supernet={"epochs": 1}, supernet_samples=200,
                       finetune={"epochs": 0}, evolution={"population": 4, "iterations": 2})
    res = search(m, digits, cfg, tmp_path / "s", progress=False)
    assert len(seen) == res.report["candidates_evaluated"] > 2
    calib_x, val_x, val_y, nb, bs = seen[0]
    assert len(val_y) == 60 and len(calib_x) == 64 and (nb, bs) == (2, 32)
    assert all(s[0] is calib_x and s[1] is val_x and s[2] is val_y for s in seen)
    log = json.loads((tmp_path / "s" / "search_log.json").read_text())
    assert len(log["records"]) == res.report["candidates_evaluated"]
    assert log["header"]["evaluation"] == {"calib_batches": 2, "calib_batch_size": 32, "eval_samples": 60}
    rep = res.report
    assert rep["preset"] == "fast" and rep["config"]["eval_samples"] == 60
    assert {"space", "supernet", "search", "finetune", "total"} <= set(rep["seconds"])
    # the fast preset's greedy_moves 0 shrinks half the groups (rounded up) per step: convnet3 has 3 groups
    assert rep["config"]["greedy_moves"] == 0 and moves == ([2] if method == "autoslim" else [])


def test_cli_preset_is_recorded_and_explicit_flags_win(digits, tmp_path, capsys):
    from prunekit import checkpoint
    from prunekit.cli import main

    torch.manual_seed(0)
    m = models.create("convnet3", num_classes=10, in_channels=1, input_size=digits.image_size)
    ckpt = tmp_path / "net.pt"
    checkpoint.save(ckpt, m)
    out = tmp_path / "run"
    assert main(["search", str(ckpt), "--method", "autoslim", "--macs", "0.6", "--data", "digits", "--out", str(out),
                 "--preset", "thorough", "--epochs", "0", "--finetune-epochs", "0", "--ratios", "0.5,0.75,1.0",
                 "--eval-samples", "50", "--calib-batches", "1", "--greedy-moves", "2", "--no-progress",
                 "--workers", "1"]) == 0
    text = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    rep = rep.get("result", rep)
    cfg = rep["config"]
    assert rep["preset"] == "thorough" and cfg["preset"] == "thorough"
    # the preset's values where no flag was given, the flags' where one was
    assert (cfg["calib_batch_size"], cfg["num_random"], cfg["supernet_samples"]) == (128, 2, 0)
    assert (cfg["eval_samples"], cfg["calib_batches"], cfg["greedy_moves"]) == (50, 1, 2)
    assert cfg["evolution"]["population"] == 50 and cfg["supernet"]["epochs"] == 0
    assert f"preset thorough: {rep['candidates_evaluated']} candidates evaluated" in text


def test_a_combined_greedy_step_stops_once_the_budget_is_met():
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 2, 3))
    space = SearchSpace.build(net, torch.randn(1, 1, 9, 9), ratios=(0.5, 1.0))
    assert space.candidates == [(4, 8), (4, 8)]
    # group 1 shrinking scores best; shrinking it alone meets the budget, so group 0 stays
    score = lambda encs: [{"score": float(-e[1])} for e in encs]  # noqa: E731
    best = greedy_slim(space, score, lambda e: e[1] <= 4, progress=False, moves=2)
    assert best["encoding"] == [8, 4] and best["score"] == -4.0
    best = greedy_slim(space, score, lambda e: sum(e) <= 8, progress=False, moves=2)
    assert best["encoding"] == [4, 4] and best["combined_moves"] == 2
