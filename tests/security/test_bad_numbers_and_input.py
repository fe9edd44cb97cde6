"""Bad numbers and bad input (issue 15): non-finite weights and losses stop with a clear error; argument errors are
one line; a closed pipe is not a traceback; the same train command gives the same model."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from prunekit import checkpoint, models
from prunekit.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _cli(args, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_diverging_training_stops_with_an_error(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = _cli(["train", "--model", "lenet300_100", "--data", "digits", "--epochs", "2", "--lr", "1",
                       "--momentum", "5", "--no-augment", "--out", str(out)], capsys)
    assert rc == 2 and "training diverged: the training loss became nan in epoch 1" in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (out / "best.pt").exists() and not (out / "last.pt").exists()


@pytest.fixture
def nan_ckpt(tmp_path):
    torch.manual_seed(0)
    net = models.create("lenet300_100", num_classes=10, in_channels=1, input_size=(8, 8))
    with torch.no_grad():
        net.features[0].weight[3, 5] = float("nan")
    return checkpoint.save(tmp_path / "nan.pt", net, meta={"data": "digits"})


@pytest.mark.parametrize("command", ["sparsify", "compress", "prune"])
def test_non_finite_checkpoints_are_refused(nan_ckpt, tmp_path, capsys, command):
    args = {"sparsify": ["sparsify", str(nan_ckpt), "--method", "magnitude", "--sparsity", "0.5", "--data", "digits",
                         "--out", str(tmp_path / "sp")],
            "compress": ["compress", str(nan_ckpt), "-o", str(tmp_path / "c.pkz")],
            "prune": ["prune", str(nan_ckpt), "--ratio", "0.5", "--out", str(tmp_path / "p.pt")]}[command]
    rc, _, err = _cli(args, capsys)
    assert rc == 2 and "features.0.weight holds 1 non-finite value(s) (NaN or infinity)" in err, err
    assert not (tmp_path / "c.pkz").exists() and not (tmp_path / "p.pt").exists()


@pytest.mark.parametrize("argv", [["eval"], ["eval", "x.pt", "--bogus"], ["prune", "x.pt", "--macs", "abc"],
                                  ["evl"], ["train", "--model", "lenet5", "--data", "digits", "--epochs", "x"]])
def test_argument_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prunekit: error: ") and "--help" in lines[0], err


def test_closed_pipe_is_not_a_traceback(cli_env):
    env = dict(cli_env, PYTHONPATH=str(ROOT / "src") + os.pathsep + cli_env.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-m", "prunekit.cli", "models", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    p.stdout.close()   # like `| head` exiting before prunekit writes
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert p.returncode == 141


def test_same_train_command_same_model(tmp_path, capsys):
    states = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        rc, _, err = _cli(["train", "--model", "lenet300_100", "--data", "digits", "--epochs", "1", "--seed", "0",
                           "--no-augment", "--threads", "1", "--out", str(out)], capsys)
        assert rc == 0, err
        torch.manual_seed(1234 + i)   # whatever the process did before must not matter
        states.append(checkpoint.load(out / "last.pt").model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_zero_epochs_names_no_checkpoint_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "z"
    rc, stdout, err = _cli(["train", "--model", "lenet300_100", "--data", "digits", "--epochs", "0", "--out", str(out)],
                           capsys)
    assert rc == 0, err
    assert not (out / "last.pt").exists() and "last.pt" not in stdout and "nothing to train" in stdout
    rc, stdout, err = _cli(["train", "--model", "lenet300_100", "--data", "digits", "--epochs", "0", "--out",
                            str(tmp_path / "z2"), "--json"], capsys)
    assert rc == 0 and json.loads(stdout)["paths"]["last"] is None


def test_profile_bad_inputs_are_one_line(tmp_path, capsys):
    from prunekit.spec import ModelSpec

    net = models.create("lenet5", num_classes=10, in_channels=1)
    good = checkpoint.save(tmp_path / "l5.pt", net)
    rc, _, err = _cli(["profile", str(good), "--batch-sizes", "1000000000"], capsys)
    assert rc == 2 and "--batch-sizes: 1000000000 is more than 65536 samples per batch" in err, err
    bad = checkpoint.save(tmp_path / "shape.pt", net, spec=ModelSpec(arch=net.prunekit_spec.arch,
                                                                     input_shape=[3, 28, 28]))
    rc, _, err = _cli(["profile", str(bad), "--no-latency"], capsys)
    assert rc == 2 and "does not accept inputs of its stored shape [3, 28, 28]" in err
    assert len(err.strip().splitlines()) == 1


def test_recipe_typos_and_broken_yaml_are_located(tmp_path, capsys):
    typo = tmp_path / "typo.yaml"
    typo.write_text("out: o\ndata: digits\nmodel: {name: lenet5}\nstep:\n  - eval: {}\n")
    rc, _, err = _cli(["run", str(typo), "--check"], capsys)
    assert rc == 2 and "recipe: unknown key(s) step;" in err, err
    broken = tmp_path / "broken.yaml"
    broken.write_text("out: o\ndata: digits\nmodel: {name: lenet5\nsteps:\n  - eval: {}\n")
    rc, _, err = _cli(["run", str(broken), "--check"], capsys)
    assert rc == 2 and "not valid YAML (line 4, column 6)" in err, err


def test_method_recipe_broken_yaml_is_located(tmp_path):
    from prunekit.cli.prune_methods import load_recipe
    from prunekit.errors import ConfigError

    broken = tmp_path / "m.yaml"
    broken.write_text("method: l1\nconfig: {macs: 0.5\ndata: digits\n")
    with pytest.raises(ConfigError, match=r"m.yaml: not valid YAML \(line 3, column 5\)"):
        load_recipe(broken)
    with pytest.raises(ConfigError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")
    listed = tmp_path / "l.yaml"
    listed.write_text("- method: l1\n")
    with pytest.raises(ConfigError, match="a recipe must be a mapping with keys"):
        load_recipe(listed)


@pytest.mark.parametrize("ratios", ["", " , "])
def test_search_empty_ratios_is_an_error(tmp_path, capsys, ratios):
    net = models.create("lenet300_100", num_classes=10, in_channels=1, input_size=(8, 8))
    ck = checkpoint.save(tmp_path / "n.pt", net)
    rc, _, err = _cli(["search", str(ck), "--method", "autoslim", "--macs", "0.5", "--data", "digits", "--ratios",
                       ratios, "--out", str(tmp_path / "s")], capsys)
    assert rc == 2 and "--ratios must name at least one width ratio" in err, err


@pytest.mark.parametrize("criterion", ["fpgm", "l1"])
def test_plan_refuses_nan_weights(criterion):
    import prunekit
    from prunekit.errors import PrunekitError

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    with torch.no_grad():
        net[0].weight[5, 0, 1, 1] = float("nan")   # FPGM used to remove channels 0-3 silently
    with pytest.raises(PrunekitError, match="0.weight holds NaN or infinite values"):
        prunekit.plan(net, torch.randn(1, 1, 8, 8), criterion=criterion, ratio=0.5)


class Clipped(torch.nn.Module):
    """timm's clipped linear (Gemma-4 ViT): clamp bounds are buffers that default to -inf/+inf (a no-op clamp)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)
        self.register_buffer("lo", torch.tensor(-float("inf")))
        self.register_buffer("hi", torch.tensor(float("inf")))

    def forward(self, x):
        return self.b(torch.clamp(torch.relu(self.a(x)), self.lo, self.hi))


def test_plan_accepts_infinite_buffers_but_not_nan_ones():
    import prunekit
    from prunekit.errors import PrunekitError
    from prunekit.validate import find_invalid_values

    net = Clipped()
    assert find_invalid_values(net) is None
    plan = prunekit.plan(net, torch.randn(2, 4), ratio=0.5)
    assert [(g.size, len(g.removed)) for g in plan.groups] == [(8, 4)]
    net.lo.fill_(float("nan"))
    assert find_invalid_values(net) == ("lo", 1)
    with pytest.raises(PrunekitError, match="lo holds NaN or infinite values"):
        prunekit.plan(net, torch.randn(2, 4), ratio=0.5)


EVIL = 'criterion=!!python/object/apply:os.system ["echo hi"]'


@pytest.mark.parametrize("extra", [[], ["--method", "l1", "--data", "digits", "--out", "m"]])
def test_prune_set_with_a_python_tag_is_one_line(tmp_path, capsys, extra):
    net = models.create("lenet300_100", num_classes=10, in_channels=1, input_size=(8, 8))
    ckpt = checkpoint.save(tmp_path / "m.pt", net)
    out = [] if extra else ["--out", str(tmp_path / "p.pt")]
    rc, stdout, err = _cli(["prune", str(ckpt), "--ratio", "0.5", "--set", EVIL, *out, *extra], capsys)
    assert rc == 2 and err.startswith("prunekit: error: --set criterion: "), err
    assert "is not a plain YAML value (could not determine a constructor for the tag" in err
    assert len(err.strip().splitlines()) == 1 and "hi" not in stdout


@pytest.mark.parametrize("item, message", [("ratio", "--set expects KEY=VALUE, got 'ratio'"),
                                           ("=1", "--set expects KEY=VALUE, got '=1' (empty key)"),
                                           ("ratio=[0.5", "--set ratio: '[0.5' is not a plain YAML value")])
def test_parse_assignment_errors(item, message):
    from prunekit.config import parse_assignment
    from prunekit.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_assignment(item)
    assert str(e.value).startswith(message), str(e.value)
    assert parse_assignment(" seed = 3") == ("seed", 3)


def test_recipe_out_that_is_a_file_is_one_line(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"out: {taken}\ndata: digits\nmodel: {{name: lenet300_100}}\nsteps:\n  - eval: {{}}\n")
    rc, _, err = _cli(["run", str(recipe), "--no-progress"], capsys)
    assert rc == 2 and err.strip() == f"prunekit: error: {taken} exists and is not a directory", err
    assert taken.read_text() == "mine"


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_run_check_refuses_non_finite_budgets(tmp_path, capsys, value):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"out: o\ndata: digits\nmodel: {{name: lenet300_100}}\nsteps:\n  - prune: {{macs: {value}}}\n")
    rc, _, err = _cli(["run", str(recipe), "--check"], capsys)
    assert rc == 2 and "steps[0].prune: macs must be a finite number" in err, err
    assert len(err.strip().splitlines()) == 1
