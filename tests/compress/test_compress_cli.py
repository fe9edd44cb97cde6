"""prunekit compress / decompress as subprocesses."""
import json
import subprocess
import sys

import pytest
import torch

# Runs prunekit's real main(); registers the two commands if the lead has not wired them in yet.
_MAIN = ("import sys; from prunekit import cli\n"
         "missing = tuple(c for c in ('compress', 'decompress') if c not in cli.COMMANDS)\n"
         "cli.COMMANDS = cli.COMMANDS + missing\n"
         "sys.exit(cli.main(sys.argv[1:]))")


def _cli(args, env):
    return subprocess.run([sys.executable, "-c", _MAIN, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from prunekit import checkpoint, models

    torch.manual_seed(0)
    net = models.create("lenet5", in_channels=1, input_size=(28, 28))
    p = tmp_path_factory.mktemp("cli") / "lenet5.pt"
    checkpoint.save(p, net)
    return p, net


def test_compress_then_decompress(ckpt, tmp_path, cli_env):
    src, net = ckpt
    out = tmp_path / "model.pkz"
    r = _cli(["compress", src, "--bits-conv", "6", "--bits-fc", "4", "--prune-sparsity", "0.8", "--coder", "rans",
              "--codebook-dtype", "float16", "-o", out], cli_env)
    assert r.returncode == 0, r.stderr
    assert "| **total** |" in r.stdout and "wrote" in r.stdout
    assert out.is_file() and (tmp_path / "model.pkz.report.json").is_file()
    rep = json.loads((tmp_path / "model.pkz.report.json").read_text())
    assert rep["coder"] == "rans" and {r["bits"] for r in rep["layers"]} == {6, 4}
    # refuses to overwrite
    r = _cli(["compress", src, "-o", out], cli_env)
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
    # decompress into an ordinary checkpoint with exactly the compressed weights
    pt = tmp_path / "model.pt"
    r = _cli(["decompress", out, "-o", pt, "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    from prunekit import checkpoint, compress

    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(checkpoint.load(pt).model(x), compress.load(out)(x))
    assert json.loads(r.stdout)["output"] == str(pt)


def test_cli_errors_are_one_line(ckpt, tmp_path, cli_env):
    src, _ = ckpt
    bad = tmp_path / "bad.pkz"
    bad.write_bytes(b"hello world, not a model")
    r = _cli(["decompress", bad, "-o", tmp_path / "x.pt"], cli_env)
    assert r.returncode == 2 and "not a prunekit .pkz" in r.stderr and "Traceback" not in r.stderr
    r = _cli(["compress", src, "--finetune-epochs", "1", "-o", tmp_path / "y.pkz"], cli_env)
    assert r.returncode == 2 and "need training data" in r.stderr
    r = _cli(["compress", src, "--bits-fc", "40", "-o", tmp_path / "z.pkz"], cli_env)
    assert r.returncode == 2 and "bits_fc" in r.stderr
