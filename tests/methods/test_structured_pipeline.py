"""run_structured end to end per registered method, configs, the run directory and the CLI helper."""
import json
import subprocess
import sys

import pytest
import torch

from prunekit import checkpoint, models
from prunekit.config import from_dict, to_dict
from prunekit.errors import ConfigError, PrunekitError
from prunekit.methods.structured import STRUCTURED_METHODS, run_structured

FAST = {"l1": {"sensitivity_ratios": [0.25, 0.5, 0.75], "eval_samples": 120},
        "slimming": {"sparsity_epochs": 1}, "fpgm": {"steps": 2}, "taylor": {"steps": 2, "taylor_batches": 1},
        "dcp": {"aux_finetune": {"epochs": 1}}, "autocompress": {"iterations": 4, "eval_images": 96},
        "dcff": {"fusion_epochs": 1}, "scp": {"mask_epochs": 1},
        # pai trains from a fresh initialisation: a few more epochs to pass the accuracy bar
        "pai": {"finetune": {"epochs": 4, "lr": 0.05}}, "random": {"candidates": 2, "candidate_epochs": 0}}


@pytest.fixture(scope="module")
def trained(digits):
    from prunekit.train import TrainConfig, fit

    torch.manual_seed(0)
    net = models.create("vgg11", num_classes=10, in_channels=1, input_size=(8, 8), cfg=[16, "M", 32, "M", 32, 32])
    fit(net, digits, TrainConfig(epochs=3, lr=0.05, batch_size=64, progress=False, eval_every=0,
                                 checkpoint_every=0, augment=False))
    return net


def _cfg(name, **kw):
    d = {"macs": 0.5, "macs_tolerance": 0.05, "finetune": {"epochs": 1}, "calib_images": 96, "latency": False}
    d.update(FAST.get(name, {}))
    d.update(kw)
    return d


@pytest.mark.parametrize("name", sorted(STRUCTURED_METHODS.names()))
def test_method_end_to_end(name, trained, digits, tmp_path):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    res = run_structured(trained, digits, name, _cfg(name), tmp_path / "run", progress=False)
    r = res.report
    assert r["method"] == name
    assert abs(r["macs"]["kept"] - 0.5) <= 0.05 + 1e-9
    assert r["params"]["after"] < r["params"]["before"]
    assert r["dense"]["top1"] > 80.0
    assert r["after_finetune"]["top1"] > 50.0
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"pruned.pt", "plan.json", "report.json", "report.md"} <= names
    if name == "l1":
        assert "sensitivity.png" in names
    # the input model is untouched
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    # the checkpoint reloads to the same function
    ck = checkpoint.load(tmp_path / "run" / "pruned.pt")
    x = digits.test_x[:16]
    res.model.eval()
    torch.testing.assert_close(ck.model.eval()(x), res.model(x))
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["after_finetune"]["top1"] == pytest.approx(r["after_finetune"]["top1"])
    with pytest.raises(PrunekitError, match="already holds a run"):
        run_structured(trained, digits, name, _cfg(name), tmp_path / "run", progress=False)


def test_lasso_beats_first_k_before_finetuning(trained, digits):
    accs = {}
    for sel in ("lasso", "first_k"):
        r = run_structured(trained, digits, "lasso", _cfg("lasso", selector=sel, finetune={"epochs": 0}), progress=False)
        accs[sel] = r.report["pruned"]["top1"]
    assert accs["lasso"] >= accs["first_k"]


def test_from_scratch_reinitialises(trained, digits):
    r = run_structured(trained, digits, "slimming", _cfg("slimming", from_scratch=True, finetune={"epochs": 0},
                                                        sparsity_epochs=0), progress=False)
    assert r.report["from_scratch"] and r.report["after_finetune"]["top1"] < r.report["dense"]["top1"] - 20


@pytest.mark.parametrize("name", sorted(STRUCTURED_METHODS.names()))
def test_configs_round_trip_and_reject_bad_keys(name):
    cls = STRUCTURED_METHODS.get(name).config_cls
    cfg = cls()
    assert from_dict(cls, json.loads(json.dumps(to_dict(cfg)))) == cfg
    with pytest.raises(ConfigError, match="no_such_key"):
        run_structured(None, None, name, {"no_such_key": 1})
    with pytest.raises(ConfigError, match="finetune.epochs"):
        run_structured(None, None, name, {"finetune": {"epochs": "many"}})
    with pytest.raises(ConfigError, match="macs"):
        run_structured(None, None, name, {"macs": 1.5})


def test_unknown_method():
    with pytest.raises(PrunekitError, match="nope"):
        run_structured(None, None, "nope")


def test_recipe_validation(tmp_path):
    import argparse

    from prunekit.cli.prune_methods import add_method_arguments, resolve

    p = argparse.ArgumentParser()
    p.add_argument("--macs", type=float)
    p.add_argument("--ratio", type=float)
    add_method_arguments(p)
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: lasso\ndata: digits\nepochs: 3\n")
    with pytest.raises(ConfigError, match="'epochs'"):
        resolve(p.parse_args(["--recipe", str(bad)]))
    bad.write_text("method: lasso\ndata: digits\nconfig: {points_per_image: ten}\n")
    with pytest.raises(ConfigError, match="points_per_image"):
        resolve(p.parse_args(["--recipe", str(bad)]))
    good = tmp_path / "good.yaml"
    good.write_text("method: thinet\ndata: digits\nconfig: {macs: 0.3, rescale: false}\n")
    method, data, cfg = resolve(p.parse_args(["--recipe", str(good), "--macs", "0.4", "--set", "seed=3"]))
    assert (method, data, cfg.macs, cfg.rescale, cfg.seed) == ("thinet", "digits", 0.4, False, 3)


def test_cli_helper_subprocess(trained, tmp_path, cli_env):
    ck = checkpoint.save(tmp_path / "dense.pt", trained)
    out = tmp_path / "run"
    # the one front end: ``prunekit prune --method`` (prune_methods has no parser of its own)
    cmd = [sys.executable, "-m", "prunekit.cli", "prune", str(ck), "--method", "lasso", "--macs", "0.5",
           "--finetune-epochs", "0", "--data", "digits", "--out", str(out), "--no-progress", "--json",
           "--set", "latency=false", "--set", "macs_tolerance=0.05"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["method"] == "lasso" and summary["macs"]["kept"] < 0.56
    assert (out / "report.md").read_text().startswith("# Structured pruning: lasso")
    bad = subprocess.run(cmd[:5] + ["--method", "nope", "--data", "digits", "--out", str(out)], capture_output=True,
                         text=True, env=cli_env, timeout=60)
    assert bad.returncode == 2 and "nope" in bad.stderr
