import json
import subprocess
import sys

import pytest

from prunekit.errors import ConfigError
from prunekit.recipe import Recipe, run_recipe

BASE = {"out": "OUT", "data": "mnist5k", "model": {"name": "lenet5"}}


def recipe(tmp_path, steps, **kw):
    return Recipe.from_dict({**BASE, "out": str(tmp_path / "run"), "steps": steps, **kw})


@pytest.mark.parametrize("steps,msg", [
    ([], "'steps' must be a non-empty list"),
    ([{"trian": {}}], "unknown step 'trian'"),
    ([{"train": {"epoch": 3}}], r"unknown key steps\[0\]\.train\.epoch"),
    ([{"train": {"epochs": "3"}}], r"steps\[0\]\.train\.epochs: expected an integer"),
    ([{"prune": {"macs": "half"}}], r"steps\[0\]\.prune\.macs"),
    ([{"train": {}, "eval": {}}], r"steps\[0\] must be a mapping with one step name"),
])
def test_bad_steps_are_named(tmp_path, steps, msg):
    with pytest.raises(ConfigError, match=msg):
        recipe(tmp_path, steps)


def test_bad_top_level(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        Recipe.from_dict({**BASE, "steps": ["eval"], "outdir": "x"})
    with pytest.raises(ConfigError, match="missing required key 'data'"):
        Recipe.from_dict({"out": "x", "model": {"name": "lenet5"}, "steps": ["eval"]})
    with pytest.raises(ConfigError, match="exactly one of 'checkpoint' or 'name'"):
        Recipe.from_dict({**BASE, "model": {}, "steps": ["eval"]})


def test_round_trip(tmp_path):
    r = recipe(tmp_path, [{"train": {"epochs": 2}}, "eval", {"prune": {"macs": 0.5}}])
    again = Recipe.from_dict(r.to_dict())
    assert again.to_dict() == r.to_dict()
    assert [n for n, _ in again.steps] == ["train", "eval", "prune"]


def test_train_prune_finetune_compress_end_to_end(tmp_path):
    r = recipe(tmp_path, [
        {"train": {"epochs": 2, "batch_size": 64, "progress": False}},
        "eval",
        {"prune": {"criterion": "l1", "macs": 0.5, "tolerance": 0.03}},
        {"finetune": {"epochs": 1, "lr": 0.01, "batch_size": 64, "progress": False}},
        "eval",
        {"compress": {"bits_conv": 8, "bits_fc": 5}},
        "eval",
        {"profile": {"latency": False}},
    ])
    state = run_recipe(r, progress=False)
    steps = [rec["step"] for rec in state.records]
    assert steps == ["train", "eval", "prune", "finetune", "eval", "compress", "eval", "profile"]
    evals = [rec for rec in state.records if rec["step"] == "eval"]
    assert evals[0]["top1"] > 90 and evals[1]["top1"] > 90
    prune = state.records[2]
    assert abs(prune["macs_kept"] - 0.5) <= 0.03
    out = tmp_path / "run"
    for name in ("model.pt", "model.pkz", "plan0.json", "report.json", "report.md", "recipe.json", "profile0.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert [rec["step"] for rec in report["records"]] == steps
    # a second run into the same directory is refused
    with pytest.raises(ConfigError, match="already holds files"):
        run_recipe(r, progress=False)
    # the final checkpoint reloads as the pruned, compressed model
    from prunekit import checkpoint
    from prunekit.measure import count_params
    from prunekit.train import evaluate

    ck = checkpoint.load(out / "model.pt")
    assert count_params(ck.model) == count_params(state.model)
    assert evaluate(ck.model, state.data.test_x, state.data.test_y)["top1"] == pytest.approx(evals[-1]["top1"])


def test_cli_check_and_error(tmp_path, cli_env):
    good = tmp_path / "r.yaml"
    good.write_text(f"out: {tmp_path / 'run'}\ndata: digits\nmodel: {{name: lenet300_100}}\nsteps:\n  - eval\n")
    out = subprocess.run([sys.executable, "-m", "prunekit", "run", str(good), "--check"],
                         capture_output=True, text=True, env=cli_env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["steps"] == [{"eval": {"batch_size": 512}}]
    bad = tmp_path / "bad.yaml"
    bad.write_text("out: x\ndata: digits\nmodel: {name: lenet5}\nsteps:\n  - train: {epohcs: 1}\n")
    out = subprocess.run([sys.executable, "-m", "prunekit", "run", str(bad)], capture_output=True, text=True,
                         env=cli_env)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("prunekit: error:") and "epohcs" in out.stderr
    assert "Traceback" not in out.stderr


def test_binarize_step_writes_packed_model(tmp_path):
    from prunekit import checkpoint

    r = recipe(tmp_path, [
        {"train": {"epochs": 1, "progress": False}},
        {"binarize": {"mode": "bwn", "finetune": {"epochs": 1, "progress": False}}},
        "eval",
    ])
    state = run_recipe(r, progress=False)
    assert [rec["step"] for rec in state.records] == ["train", "binarize", "eval"]
    out = tmp_path / "run"
    assert (out / "model.pkb").is_file()
    reloaded = checkpoint.load(out / "model.pt")
    assert reloaded.spec.transforms[-1]["kind"] == "binarize"
    import torch

    x = state.data.test_x[:8]
    assert torch.equal(reloaded.model(x), state.model.eval()(x))


def test_sparsify_then_finetune_keeps_masks(tmp_path):
    r = recipe(tmp_path, [
        {"train": {"epochs": 1, "progress": False}},
        {"sparsify": {"method": "magnitude", "config": {"sparsity": 0.8, "finetune": {"epochs": 1}}}},
        {"finetune": {"epochs": 1, "lr": 0.01, "progress": False}},
        "eval",
    ])
    state = run_recipe(r, progress=False)
    sp = state.records[1]
    assert sp["step"] == "sparsify" and sp["sparsity"] == pytest.approx(0.8, abs=0.01)
    # after fine-tuning, every masked weight is still exactly zero
    params = dict(state.model.named_parameters())
    for name, mask in state.masks.items():
        assert torch_all_zero(params[name].detach()[~mask]), name


def torch_all_zero(t):
    return bool((t == 0).all())


def test_sparsify_bad_method_config(tmp_path):
    with pytest.raises(ConfigError, match="sparsify.config"):
        recipe(tmp_path, [{"sparsify": {"method": "magnitude", "config": {"sparsty": 0.8}}}])
    with pytest.raises(Exception, match="unknown pruning method 'magnitud'"):
        recipe(tmp_path, [{"sparsify": {"method": "magnitud"}}])


def test_structured_method_step(tmp_path):
    r = Recipe.from_dict({"out": str(tmp_path / "run"), "data": "digits",
                          "model": {"name": "convnet3"},
                          "steps": [{"train": {"epochs": 2, "progress": False}},
                                    {"structured": {"method": "fpgm",
                                                    "config": {"macs": 0.5, "finetune": {"epochs": 1}}}},
                                    "eval"]})
    state = run_recipe(r, progress=False)
    rec = state.records[1]
    assert rec["step"] == "structured" and rec["method"] == "fpgm"
    assert rec["macs_kept"] == pytest.approx(0.5, abs=0.1)
    assert (tmp_path / "run" / "structured" / "pruned.pt").is_file()
    with pytest.raises(ConfigError, match="macz"):
        recipe(tmp_path, [{"structured": {"method": "l1", "config": {"macz": 0.5}}}])


def test_structured_admm_step_makes_the_model_smaller_and_reloads(tmp_path):
    import torch

    from prunekit import checkpoint

    r = Recipe.from_dict({"out": str(tmp_path / "run"), "data": "digits",
                          "model": {"name": "resnet20", "kwargs": {"widths": [4, 8, 8]}},
                          "steps": [{"sparsify": {"method": "admm", "config": {
                              "sparsity": 0.5, "granularity": "filter", "admm": {"epochs": 1, "progress": False},
                              "finetune": {"epochs": 1, "progress": False}}}}, "eval"]})
    state = run_recipe(r, progress=False)
    rec = state.records[0]
    assert rec["plan"] == "sparsify_plan0.json" and (tmp_path / "run" / rec["plan"]).is_file()
    assert 0.2 < rec["macs_kept"] < 0.5 and state.masks is None
    assert state.model.conv1.out_channels == 2
    reloaded = checkpoint.load(tmp_path / "run" / "model.pt").model.eval()
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(reloaded(x), state.model.eval()(x))


def test_step_names_is_the_public_list_of_steps():
    from prunekit.recipe import step_names

    assert step_names() == ["binarize", "compress", "dynamic", "eval", "finetune", "profile", "prune", "sparsify",
                            "structured", "train"]


@pytest.mark.parametrize("extra, match", [
    ({"seed": True}, r"^recipe: seed must be an integer, got True$"),
    ({"threads": 0}, r"^recipe: threads must be an integer >= 1, got 0$"),
])
def test_recipe_seed_and_threads_are_checked(extra, match):
    raw = {"out": "runs/x", "data": "digits", "model": {"name": "lenet5"}, "steps": ["eval"], **extra}
    with pytest.raises(ConfigError, match=match):
        Recipe.from_dict(raw)
    assert Recipe.from_dict({**raw, "seed": -3, "threads": None}).seed == -3
