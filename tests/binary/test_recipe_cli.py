"""The training recipe and ``prunekit binarize`` (subprocess, tiny runs on sklearn's 8x8 digits)."""
import json
import subprocess
import sys

import pytest
import torch

from prunekit import checkpoint
from prunekit.binary import BinarizeConfig, binary_layers, load_packed
from prunekit.errors import ConfigError

def cli(args, env):
    return subprocess.run([sys.executable, "-m", "prunekit.cli", "binarize", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_config_round_trip_and_errors(tmp_path):
    cfg = BinarizeConfig(mode="bwn", exclude=["fc1"], finetune={"epochs": 3, "lr": 0.01})
    assert BinarizeConfig.from_dict(cfg.to_dict()) == cfg
    tc = cfg.finetune
    assert (tc.epochs, tc.lr, tc.optimizer, tc.weight_decay) == (3, 0.01, "adam", 0.0)
    with pytest.raises(ConfigError, match="colour"):
        BinarizeConfig.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match="epoch"):
        BinarizeConfig.from_dict({"finetune": {"epoch": 1}})
    with pytest.raises(ConfigError, match="mode"):
        BinarizeConfig.from_dict({"mode": "ternary"})
    with pytest.raises(ConfigError, match="keep_first_last"):
        BinarizeConfig.from_dict({"keep_first_last": "yes"})
    y = tmp_path / "b.yaml"
    y.write_text("mode: xnor\nfinetune:\n  epochs: 2\n")
    assert BinarizeConfig.from_yaml(y).finetune.epochs == 2


def test_cli_from_checkpoint_end_to_end(tmp_path, cli_env):
    from prunekit import models

    torch.manual_seed(0)
    fp = models.create("lenet300_100", in_channels=1, input_size=(8, 8))
    checkpoint.save(tmp_path / "fp.pt", fp)
    (tmp_path / "cfg.yaml").write_text("finetune:\n  epochs: 1\n  batch_size: 64\n  augment: false\n")
    out = tmp_path / "run"
    r = cli([str(tmp_path / "fp.pt"), "--mode", "xnor", "--data", "digits", "--epochs", "3", "--out", str(out),
             "--config", str(tmp_path / "cfg.yaml"), "--kernel", "numpy", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["mode"] == "xnor" and rep["from_scratch"] is False
    assert rep["packed_vs_float"]["identical"] and rep["packed"]["top1"] == rep["binarized"]["top1"]
    assert rep["binarized"]["top1"] > 40  # three epochs learn something (chance is 10%)
    assert rep["full_precision"]["top1"] < 30  # the untrained start
    assert rep["binary_layers"] == ["features.2"]
    assert rep["config"]["finetune"]["batch_size"] == 64 and rep["config"]["finetune"]["epochs"] == 3  # flag > file
    assert rep["kernel"] == "numpy" and rep["ops"]["binarized"]["binary_ops"] == 300 * 100
    assert rep["storage"]["binary_ratio"] > 20
    for f in ("model.pt", "model.pkb", "report.json", "report.md"):
        assert (out / f).is_file()
    assert "identical" in (out / "report.md").read_text()
    # both files reload and agree
    model = checkpoint.load(out / "model.pt").model
    packed = load_packed(out / "model.pkb").model
    assert [n for n, _ in binary_layers(model)] == rep["binary_layers"]
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), packed(x))
    # a second run into the same folder is refused without --overwrite
    r2 = cli([str(tmp_path / "fp.pt"), "--mode", "xnor", "--data", "digits", "--out", str(out), "--epochs", "1"],
             cli_env)
    assert r2.returncode == 2 and "already exists" in r2.stderr


def test_cli_zoo_name_from_scratch_bwn(tmp_path, cli_env):
    out = tmp_path / "run"
    r = cli(["lenet300_100", "--mode", "bwn", "--data", "digits", "--epochs", "1", "--out", str(out)], cli_env)
    assert r.returncode == 0, r.stderr
    assert "trained from scratch" in r.stdout and "identical" in r.stdout
    rep = json.loads((out / "report.json").read_text())
    assert rep["from_scratch"] is True and rep["ops"]["binarized"]["bwn_adds"] > 0


@pytest.mark.parametrize("args,match", [
    (["nosuchmodel", "--data", "digits", "--out", "X"], "neither a checkpoint"),
    (["lenet300_100", "--data", "digits", "--out", "X", "--exclude", "fc9", "--epochs", "0"], "fc9"),
    (["lenet300_100", "--data", "digits", "--out", "X", "--lr", "-1"], "lr"),
])
def test_cli_user_errors_are_one_line(tmp_path, cli_env, args, match):
    args = [str(tmp_path / "X") if a == "X" else a for a in args]
    r = cli(args, cli_env)
    assert r.returncode == 2 and match in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_recipe_step_binarizes_trains_and_writes_pkb(tmp_path, mode):
    from prunekit import models
    from prunekit.binary.recipe import BinarizeStepConfig, binarize_step
    from prunekit.data import load_dataset
    from prunekit.recipe import RecipeState

    data = load_dataset("digits")
    torch.manual_seed(0)
    net = models.create("lenet300_100", in_channels=1, input_size=(8, 8), hidden=(64, 32))
    state = RecipeState(model=net, data=data, out_dir=tmp_path, extras={"progress": False})
    binarize_step(state, BinarizeStepConfig(mode=mode, finetune={"epochs": 2, "augment": False}))
    (rec,) = state.records
    assert rec["step"] == "binarize" and rec["packed_identical"] is True
    assert rec["binary_layers"] == ["features.2"] and rec["test_top1"] == rec["packed_top1"] > 30
    assert [n for n, _ in binary_layers(state.model)] == ["features.2"]
    packed = load_packed(tmp_path / "model.pkb").model
    with torch.no_grad():
        assert torch.equal(packed(data.test_x[:20]), state.model.eval()(data.test_x[:20]))
    with pytest.raises(ConfigError, match="mode"):
        BinarizeStepConfig(mode="nope")
