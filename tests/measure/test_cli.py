"""``prunekit eval`` and ``prunekit profile`` through real subprocesses."""
import json
import subprocess
import sys

import pytest

from prunekit import checkpoint, models

CLI = [sys.executable, "-m", "prunekit.cli"]


def run(args, env, timeout=120):
    return subprocess.run(CLI + args, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def lenet5_ckpt(tmp_path_factory):
    net = models.create("lenet5", num_classes=10, in_channels=1)
    return checkpoint.save(tmp_path_factory.mktemp("ck") / "lenet5.pt", net, meta={"data": "mnist5k"})


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    net = models.create("lenet300_100", num_classes=10, in_channels=1, input_size=(8, 8))
    return checkpoint.save(tmp_path_factory.mktemp("ck") / "mlp.pt", net, meta={"dataset": "digits"})


def test_profile_json(lenet5_ckpt, cli_env):
    p = run(["profile", str(lenet5_ckpt), "--batch-sizes", "1,4", "--repeats", "3", "--warmup", "1", "--json"],
            cli_env)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["params"] == 61706
    assert r["macs"]["per_layer"] == {"conv1": 6 * 25 * 28 * 28, "conv2": 16 * 6 * 25 * 10 * 10,
                                      "fc1": 400 * 120, "fc2": 120 * 84, "fc3": 84 * 10}
    assert r["macs"]["total"] == sum(r["macs"]["per_layer"].values())
    assert sorted(r["latency"]) == ["1", "4"] and r["latency"]["4"]["threads"] == 1  # from PRUNEKIT_NUM_THREADS
    assert r["file_bytes"] == lenet5_ckpt.stat().st_size and r["file"] == str(lenet5_ckpt)
    assert p.stderr == ""  # the profiler's native status lines are silenced


def test_profile_table_per_layer_without_latency(lenet5_ckpt, cli_env):
    p = run(["profile", str(lenet5_ckpt), "--no-latency", "--per-layer", "--batch-sizes", "2"], cli_env)
    assert p.returncode == 0, p.stderr
    assert "416,520" in p.stdout and "conv2" in p.stdout and "latency" not in p.stdout
    assert "peak memory bs=2" in p.stdout and "file size" in p.stdout


def test_eval_json_with_data_from_checkpoint(lenet5_ckpt, cli_env):
    p = run(["eval", str(lenet5_ckpt), "--json"], cli_env)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["n"] == 1000 and r["data"] == "mnist5k"
    assert 0 <= r["top1"] <= r["top5"] <= 100 and r["loss"] > 0


def test_eval_trainer_style_meta(digits_ckpt, cli_env):
    p = run(["eval", str(digits_ckpt), "--batch-size", "64"], cli_env)
    assert p.returncode == 0, p.stderr
    assert "on digits" in p.stdout and "top-1" in p.stdout


# Error paths run in-process through prunekit.cli.main (same code path as the console script, no
# interpreter start-up per case), checking the one-line message and exit status 2.
def cli_error(argv, capsys):
    from prunekit.cli import main

    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prunekit: error: "), lines
    return lines[0]


def test_eval_wrong_input_shape(digits_ckpt, capsys):
    err = cli_error(["eval", str(digits_ckpt), "--data", "synthetic"], capsys)
    assert "(1, 8, 8)" in err and "synthetic" in err  # named, not a shape-mismatch traceback


def test_eval_needs_a_dataset(tmp_path, capsys):
    path = checkpoint.save(tmp_path / "nodata.pt", models.create("lenet300_100", in_channels=1, input_size=(8, 8)))
    err = cli_error(["eval", str(path)], capsys)
    assert "--data" in err and "nodata.pt" in err


@pytest.mark.parametrize("command", ["eval", "profile"])
def test_bad_files(tmp_path, capsys, command):
    err = cli_error([command, str(tmp_path / "missing.pt")], capsys)
    assert "missing.pt" in err and "no such" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint" * 10)
    err = cli_error([command, str(junk)], capsys)
    assert "junk.pt" in err and "not a readable prunekit checkpoint" in err


@pytest.mark.parametrize("argv,match", [
    (["--batch-sizes", "1,x"], "--batch-sizes"),
    (["--batch-sizes", "0"], "--batch-sizes"),
    (["--threads", "0"], "threads"),
    (["--repeats", "0"], "repeats"),
])
def test_bad_profile_flags(lenet5_ckpt, capsys, argv, match):
    assert match in cli_error(["profile", str(lenet5_ckpt), "--no-latency", *argv], capsys)


def test_dataset_name_lookup():
    from prunekit.cli.cmd_eval import dataset_name

    assert dataset_name({"data": "digits"}, None, "p") == "digits"
    assert dataset_name({"dataset": "mnist5k"}, None, "p") == "mnist5k"
    assert dataset_name({"data": {"name": "synthetic"}}, None, "p") == "synthetic"
    assert dataset_name({"data": "digits"}, "mnist5k", "p") == "mnist5k"


def test_command_threads_flag_then_environment(monkeypatch):
    """One rule for --threads in every command: the flag (checked), else PRUNEKIT_NUM_THREADS, else None."""
    import pytest as _pytest

    from prunekit.errors import PrunekitError
    from prunekit.measure.threads import command_threads

    monkeypatch.delenv("PRUNEKIT_NUM_THREADS", raising=False)
    assert command_threads(None) is None
    monkeypatch.setenv("PRUNEKIT_NUM_THREADS", "3")
    assert command_threads(None) == 3 and command_threads(2) == 2
    with _pytest.raises(PrunekitError, match=r"--threads must be an integer >= 1, got 0"):
        command_threads(0)
    monkeypatch.setenv("PRUNEKIT_NUM_THREADS", "x")
    with _pytest.raises(PrunekitError, match="PRUNEKIT_NUM_THREADS must be a positive integer, got 'x'"):
        command_threads(None)


@pytest.fixture(scope="module")
def lenet5_pair(tmp_path_factory, lenet5_ckpt):
    import torch

    import prunekit

    dense = checkpoint.load(lenet5_ckpt).model
    small = prunekit.plan(dense, torch.zeros(1, 1, 28, 28), criterion="l1", macs=0.5).apply(dense)
    return lenet5_ckpt, checkpoint.save(tmp_path_factory.mktemp("ck") / "lenet5_half.pt", small)


def test_profile_compare_times_both_interleaved(lenet5_pair, cli_env):
    a, b = lenet5_pair
    p = run(["profile", str(a), "--compare", str(b), "--batch-sizes", "1,2", "--repeats", "6", "--warmup", "1",
             "--json"], cli_env)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    rows = {row["metric"]: row for row in r["comparison"]["rows"]}
    assert rows["MACs / sample"]["before"] == 416520 and r["comparison"]["labels"] == ["lenet5.pt", "lenet5_half.pt"]
    for bs in ("1", "2"):
        sp = rows[f"latency bs={bs} (median)"]["speedup"]
        assert sp["rounds"] == 6 and sp["batch_size"] == int(bs) and sp["threads"] == 1
        assert sp["before"]["session"] == sp["after"]["session"] == r["before"]["latency"][bs]["session"]
        assert len(sp["before"]["round_ms"]) == len(sp["after"]["round_ms"]) == 6  # paired round by round
        assert sp["low"] <= sp["ratio"] <= sp["high"] and isinstance(sp["measurable"], bool)
        assert rows[f"latency bs={bs} (median)"]["ratio"] == sp["ratio"]
    table = run(["profile", str(a), "--compare", str(b), "--batch-sizes", "1", "--repeats", "5", "--warmup", "0"],
                cli_env)
    assert table.returncode == 0, table.stderr
    assert "lenet5_half.pt/lenet5.pt" in table.stdout and "latency after/before: median of per-round ratios" in \
        table.stdout and "latency bs=1: " in table.stdout


def test_profile_compare_until_tight_stops_at_its_time_limit(lenet5_pair, capsys):
    from prunekit.cli import main

    a, b = lenet5_pair
    assert main(["profile", str(a), "--compare", str(b), "--batch-sizes", "1", "--repeats", "5", "--warmup", "0",
                 "--threads", "1", "--until-tight", "--max-time", "0.2", "--json"]) == 0
    sp = json.loads(capsys.readouterr().out)["comparison"]["rows"][3]["speedup"]
    assert sp["rounds"] >= 5 and sp["before"]["repeats"] == sp["rounds"]


@pytest.mark.parametrize("extra, match", [
    (["--until-tight"], "--until-tight needs --compare"),
    (["--compare", "MLP"], "cannot be timed on one input"),
    (["--compare", "LENET", "--until-tight", "--max-time", "0"], "--max-time"),
])
def test_bad_profile_compare_flags(lenet5_ckpt, digits_ckpt, capsys, extra, match):
    extra = [{"MLP": str(digits_ckpt), "LENET": str(lenet5_ckpt)}.get(x, x) for x in extra]
    assert match in cli_error(["profile", str(lenet5_ckpt), "--no-latency", *extra], capsys)
