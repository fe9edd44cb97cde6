"""``prunekit train`` through a real subprocess."""
import json
import subprocess
import sys


CLI = [sys.executable, "-m", "prunekit.cli", "train"]
BASE = ["--model", "lenet300_100", "--data", "digits", "--no-augment", "--batch-size", "64", "--lr", "0.1",
        "--threads", "1"]


def run(args, env, timeout=120):
    return subprocess.run(CLI + args, capture_output=True, text=True, env=env, timeout=timeout)


def one_line_error(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("prunekit: error: "), proc.stderr
    return lines[0]


def test_train_json_refuse_resume_overwrite_finetune(tmp_path, cli_env):
    out = tmp_path / "run"
    p = run(BASE + ["--epochs", "2", "--out", str(out), "--json"], cli_env)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)  # the whole stdout is one JSON object
    assert r["epochs"] == 2 and r["world_size"] == 1 and r["data"] == "digits"
    assert r["final"]["test_top1"] > 85 and r["best"]["test_top1"] >= r["final"]["test_top1"]
    assert r["config"]["augment"] is False and r["config"]["num_threads"] == 1
    for key in ("last", "best", "history", "config"):
        assert (tmp_path / "run" / r["paths"][key].rsplit("/", 1)[-1]).is_file()

    err = one_line_error(run(BASE + ["--epochs", "2", "--out", str(out)], cli_env))
    assert "last.pt already exists" in err and "--overwrite" in err and "--resume" in err

    p = run(BASE + ["--epochs", "3", "--out", str(out), "--resume"], cli_env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].startswith("epoch 3/3") and lines[-2].startswith("trained lenet300_100 on digits for 3 epochs")
    assert "epochs (changes the lr schedule)" in p.stderr  # a longer cosine run is not the same run

    p = run(BASE + ["--epochs", "1", "--out", str(out), "--overwrite", "--json"], cli_env)
    assert p.returncode == 0 and json.loads(p.stdout)["epochs"] == 1

    p = run(["--model", str(out / "best.pt"), "--data", "digits", "--epochs", "1", "--lr", "0.01",
             "--out", str(tmp_path / "ft"), "--json"], cli_env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["final"]["test_top1"] > 80  # fine-tuning starts from the trained weights


def test_user_errors_are_one_line(tmp_path, cli_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nlearning_rate: 0.1\n")
    err = one_line_error(run(BASE + ["--config", str(bad), "--out", str(tmp_path / "a")], cli_env))
    assert "bad.yaml" in err and "learning_rate" in err
    err = one_line_error(run(["--model", "lenet6", "--data", "digits", "--out", str(tmp_path / "b")], cli_env))
    assert "unknown model 'lenet6'" in err
    err = one_line_error(run(BASE + ["--epochs", "-1", "--out", str(tmp_path / "c")], cli_env))
    assert "epochs" in err
    p = run(BASE + ["--optimizer", "rmsprop", "--out", str(tmp_path / "d")], cli_env)
    assert p.returncode == 2 and "invalid choice" in p.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
