"""Latency lookup table and the ``prunekit search`` command end to end (with resume)."""
import json
import subprocess
import sys

import pytest
import torch

from prunekit import checkpoint, models
from prunekit.cli import main
from prunekit.data import load_dataset
from prunekit.search import LatencyTable


def test_latency_table_full_network_is_exact_by_construction(tiny):
    m, x, space = tiny
    lut = LatencyTable.build(m, x, space, repeats=3)
    assert [l.name for l in lut.layers] == [n for n, mod in m.named_modules()
                                            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    full = lut.layer_sum(space.full) + lut.constant_ms
    assert lut.predict(space.full) == pytest.approx(full + lut.per_activation_ms * lut.activations(space.full))
    assert lut.activations(space.smallest) < lut.activations(space.full) and lut.per_activation_ms >= 0
    n = lut.fill(space)
    # every layer's (cin, cout) pairs of the grid, deduplicated by signature
    assert n == len(lut.entries) and n <= sum(4 for _ in lut.layers)
    again = LatencyTable.from_dict(json.loads(json.dumps(lut.to_dict())))
    assert again.predict(space.smallest) == lut.predict(space.smallest)  # no re-measurement after load


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    data = load_dataset("digits")
    torch.manual_seed(0)
    m = models.create("convnet3", num_classes=data.num_classes, in_channels=1, input_size=data.image_size)
    path = tmp_path_factory.mktemp("ck") / "net.pt"
    checkpoint.save(path, m)
    return path


@pytest.mark.parametrize("method", ["autoslim", "metapruning"])
def test_cli_search_end_to_end_and_resume(ckpt, tmp_path, capsys, method):
    out = tmp_path / "run"
    argv = ["search", str(ckpt), "--method", method, "--macs", "0.5", "--data", "digits", "--out", str(out),
            "--epochs", "1", "--finetune-epochs", "1", "--iterations", "2", "--population", "6",
            "--ratios", "0.25,0.5,0.75,1.0", "--no-progress", "--json", "--workers", "1"]
    assert main(argv) == 0
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["macs_fraction"] <= 0.5
    for name in ("search_log.json", "population.png", "widths.png", "plan.json", "pruned.pt", "report.json"):
        assert (out / name).exists(), name
    small = checkpoint.load(out / "pruned.pt").model
    from prunekit.measure import count_macs

    assert count_macs(small, torch.zeros(1, 1, 8, 8)).total == rep["macs"]
    log = json.loads((out / "search_log.json").read_text())
    assert all({"encoding", "macs", "accuracy", "iteration"} <= set(r) for r in log["records"])
    if method == "metapruning":  # the budget floor (default 0.9): every candidate uses 90-100% of the MACs budget
        top = log["header"]["limits"]["macs_max"]
        assert log["header"]["limits"]["budget_floor"] == 0.9
        assert all(0.9 * top <= r["macs"] <= top for r in log["records"]) and len(log["records"]) > 2
    # a second run refuses to clobber, --resume replays the log and gives the same answer
    assert main(argv) == 2
    assert "already holds a search" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    rep2 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep2["encoding"] == rep["encoding"]
    assert json.loads((out / "search_log.json").read_text())["records"] == log["records"]


@pytest.mark.filterwarnings("ignore:search. no encoding of the width grid")
def test_cli_search_reuses_a_trained_supernet_for_another_budget(ckpt, tmp_path, capsys):
    base = ["search", str(ckpt), "--method", "metapruning", "--data", "digits", "--epochs", "1",
            "--finetune-epochs", "0", "--iterations", "1", "--population", "4", "--ratios", "0.5,1.0",
            "--no-progress", "--json", "--workers", "1"]
    with pytest.warns(UserWarning, match="upper bound alone"):  # this coarse grid has nothing at 54-60% MACs
        assert main(base + ["--macs", "0.6", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "a" / "search_log.json").read_text())["header"]["limits"]["budget_floor"] == 0
    trained = tmp_path / "a" / "supernet.pt"
    assert json.loads((tmp_path / "a" / "supernet.json").read_text())["method"] == "metapruning"
    assert main(base + ["--macs", "0.4", "--out", str(tmp_path / "b"), "--supernet", str(trained)]) == 0
    capsys.readouterr()
    a, b = (torch.load(tmp_path / d / "supernet.pt", weights_only=True) for d in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # loaded, not retrained
    # a super-network trained for another seed (another split) or grid is refused, naming the difference
    assert main(base + ["--macs", "0.4", "--out", str(tmp_path / "c"), "--supernet", str(trained), "--seed", "1"]) == 2
    assert "different 'seed'" in capsys.readouterr().err
    assert main(base[:-6] + ["--ratios", "0.25,1.0", "--no-progress", "--workers", "1", "--macs", "0.4", "--out",
                             str(tmp_path / "d"), "--supernet", str(trained)]) == 2
    assert "different 'ratios'" in capsys.readouterr().err
    assert main(base + ["--macs", "0.4", "--out", str(tmp_path / "e"), "--supernet", str(tmp_path / "nope.pt")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_cli_search_needs_a_budget(ckpt, tmp_path, capsys):
    assert main(["search", str(ckpt), "--data", "digits", "--out", str(tmp_path / "x")]) == 2
    assert "budget" in capsys.readouterr().err


def test_cli_search_help_subprocess(cli_env):
    r = subprocess.run([sys.executable, "-m", "prunekit", "search", "--help"], capture_output=True, text=True,
                       env=cli_env, timeout=60)
    assert r.returncode == 0 and "--method" in r.stdout and "--resume" in r.stdout


def test_cli_warning_is_one_plain_line(ckpt, tmp_path, cli_env):
    # this grid cannot reach 90% of a 60% MACs budget: the search warns and goes on under the upper bound
    r = subprocess.run([sys.executable, "-m", "prunekit", "search", str(ckpt), "--method", "metapruning", "--macs",
                        "0.6", "--ratios", "0.5,1.0", "--data", "digits", "--out", str(tmp_path / "w"), "--epochs", "0",
                        "--finetune-epochs", "0", "--iterations", "1", "--population", "2", "--workers", "1",
                        "--no-progress"], capture_output=True, text=True, env=cli_env, timeout=300)
    assert r.returncode == 0, r.stderr
    warn = [line for line in r.stderr.splitlines() if "width grid" in line]
    assert warn and warn[0].startswith("prunekit: warning: search: no encoding of the width grid")
    assert "UserWarning" not in r.stderr and "res = search(" not in r.stderr


def test_latency_table_onnxruntime_backend(tiny):
    pytest.importorskip("onnxruntime")
    m, x, space = tiny
    lut = LatencyTable.build(m, x, space, backend="onnxruntime", repeats=3)
    assert lut.backend == "onnxruntime" and lut.predict(space.full) > 0


def test_latency_table_unknown_backend(tiny):
    from prunekit.errors import PrunekitError

    m, x, space = tiny
    with pytest.raises(PrunekitError, match="backend"):
        LatencyTable.build(m, x, space, backend="tvm")


def test_cli_search_on_local_ray(ckpt, tmp_path, capsys):
    pytest.importorskip("ray", reason="ray is an optional extra (pip install 'prunekit[ray]'); CI installs dev only")
    argv = ["search", str(ckpt), "--method", "autoslim", "--macs", "0.5", "--data", "digits", "--epochs", "1",
            "--finetune-epochs", "0", "--ratios", "0.5,1.0", "--no-progress", "--json"]
    assert main(argv + ["--out", str(tmp_path / "serial"), "--workers", "1"]) == 0
    serial = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(argv + ["--out", str(tmp_path / "ray"), "--ray", "local"]) == 0
    on_ray = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert on_ray["encoding"] == serial["encoding"] and on_ray["search_score"] == serial["search_score"]


def test_resume_with_another_generator_shape_is_refused_by_name(ckpt, tmp_path):
    from prunekit.errors import PrunekitError
    from prunekit.search import SearchConfig, search

    model, data = checkpoint.load(ckpt).model, load_dataset("digits")
    cfg = dict(method="metapruning", macs=0.6, ratios=[0.5, 1.0], budget_floor=0.0, workers=1, rank=8,
               supernet={"epochs": 1}, finetune={"epochs": 0}, evolution={"iterations": 1, "population": 2})
    search(model, data, SearchConfig(**cfg), tmp_path / "r", progress=False)
    with pytest.raises(PrunekitError, match=r"cannot resume: .* different 'rank' \(8, this search has 4\)"):
        search(model, data, SearchConfig(**{**cfg, "rank": 4}), tmp_path / "r", resume=True, progress=False)
