"""``--model package.module:factory``, several inputs and ``.pt2`` programs on every command (issue 18 section 4)."""
import json
import sys
import textwrap

import pytest
import torch

from prunekit import checkpoint, measure, models
from prunekit.cli import main
from prunekit.errors import PrunekitError
from prunekit.spec import ModelSpec

MODULE = "um_userfactory"   # a name no other test imports: the module is cached in sys.modules per test

SOURCE = textwrap.dedent('''
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self, width=4, classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(1, width, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(2 * width)
            self.fc = nn.Linear(2 * width, classes)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.bn2(self.conv2(x)))
            return self.fc(x.mean((2, 3)))

    def build(width=4, classes=10):
        return Net(width, classes)

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8 + 10, 4)

        def forward(self, img, vec):
            return self.fc(torch.cat([self.conv(img).mean((2, 3)), vec], 1))

    def two():
        return Two()

    NOT_CALLABLE = 3
''')

# Net(width=4) on one 1x8x8 sample: conv1 4*1*9*64, conv2 8*4*9*64, fc 8*10 (BatchNorm and ReLU are no MACs)
NET_PARAMS = (4 * 9 + 4) + 8 + (8 * 4 * 9 + 8) + 16 + (8 * 10 + 10)
NET_MACS = 4 * 9 * 64 + 8 * 4 * 9 * 64 + 80
# Two on 3x8x8 + 10: conv 8*3*9*64, fc 18*4
TWO_MACS = 8 * 3 * 9 * 64 + 18 * 4


@pytest.fixture
def userdir(tmp_path, monkeypatch):
    """A temp directory holding the factory module, as the current directory (no PYTHONPATH needed)."""
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    yield tmp_path
    sys.modules.pop(MODULE, None)


def run_json(argv, capsys):
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_profile_factory_model_exact_counts(userdir, capsys):
    rep = run_json(["profile", "--model", f"{MODULE}:build", "--model-kwargs", '{"width": 4}', "--input-shape",
                    "1,8,8", "--no-latency", "--json"], capsys)
    assert rep["params"] == NET_PARAMS == 450
    assert rep["macs"]["total"] == NET_MACS == 20816
    assert rep["input_shape"] == [1, 8, 8] and rep["name"] == f"{MODULE}:build"


def test_profile_two_inputs_cli(userdir, capsys):
    rep = run_json(["profile", "--model", f"{MODULE}:two", "--input-shape", "3,8,8", "--input-shape", "10",
                    "--batch-sizes", "1,3", "--warmup", "1", "--repeats", "2", "--json"], capsys)
    assert rep["input_shape"] == [[3, 8, 8], [10]]
    assert rep["macs"]["total"] == TWO_MACS
    assert sorted(rep["latency"]) == ["1", "3"] and sorted(rep["peak_memory"]) == ["1", "3"]


class _Two(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 4), torch.nn.Linear(3, 4)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def test_profile_many_two_input_model():
    # before: a raw TypeError (forward() missing 'y') from profile_many on a two-input model
    reps = measure.profile_many({"a": _Two(), "b": _Two()}, [(8,), (3,)], batch_sizes=(1, 2), warmup=1, repeats=2)
    assert reps["a"].macs.total == 8 * 4 + 3 * 4 and reps["a"].input_shape == [[8], [3]]
    assert set(reps["b"].latency) == {1, 2}
    again = measure.ProfileReport.from_dict(reps["a"].to_dict())
    assert again.input_shape == [[8], [3]] and "8 + 3" in again.to_table()
    # example tensors: integer inputs keep their dtype and values, repeated to the batch size
    emb = torch.nn.Embedding(10, 4)
    rep = measure.profile(emb, torch.tensor([[1, 2, 3]]), batch_sizes=(4,), warmup=1, repeats=2)
    assert rep.input_shape == [3] and set(rep.latency) == {4}
    with pytest.raises(PrunekitError, match="several inputs takes a list of shapes"):
        measure.profile(_Two(), (8,), batch_sizes=(1,), latency=False)


def test_prune_factory_model_saves_factory_and_reloads_with_trust(userdir, capsys):
    out = userdir / "small.pt"
    rep = run_json(["prune", "--model", f"{MODULE}:build", "--model-kwargs", '{"width": 4}', "--input-shape",
                    "1,8,8", "--ratio", "0.5", "--out", str(out), "--json"], capsys)
    assert rep["out"] == str(out)
    raw = checkpoint.read_raw(out)
    assert raw["spec"]["arch"] == {"factory": f"{MODULE}:build", "kwargs": {"width": 4}}
    assert raw["spec"]["input_shape"] == [1, 8, 8]
    assert main(["profile", str(out), "--no-latency"]) == 2
    assert "--trust-factory um_userfactory:build" in capsys.readouterr().err
    after = run_json(["profile", str(out), "--trust-factory", f"{MODULE}:build", "--no-latency", "--json"], capsys)
    # half of every prunable group: conv1 4->2, conv2 8->4
    assert after["params"] == (2 * 9 + 2) + 4 + (4 * 2 * 9 + 4) + 8 + (4 * 10 + 10)


def test_prune_two_input_model_and_reload(userdir, capsys):
    out = userdir / "two.pt"
    assert main(["prune", "--model", f"{MODULE}:two", "--input-shape", "3,8,8", "--input-shape", "10", "--ratio",
                 "0.5", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    ckpt = checkpoint.load(out, trusted_factories=[f"{MODULE}:two"])
    assert ckpt.spec.input_shapes == [[3, 8, 8], [10]]
    assert ckpt.model.conv.out_channels == 4 and ckpt.model.fc.in_features == 14
    assert ckpt.model(torch.zeros(2, 3, 8, 8), torch.zeros(2, 10)).shape == (2, 4)


def test_eval_factory_model_with_weights(userdir, capsys, digits):
    torch.manual_seed(0)
    sys.path.insert(0, str(userdir))
    try:
        net = models.from_factory(f"{MODULE}:build", {"width": 4}, input_shape=(1, 8, 8))
    finally:
        sys.path.remove(str(userdir))
    torch.save(net.state_dict(), userdir / "w.pt")
    from prunekit.train import evaluate

    want = evaluate(net.eval(), digits.test_x, digits.test_y)
    got = run_json(["eval", "--model", f"{MODULE}:build", "--model-kwargs", '{"width": 4}', "--weights", "w.pt",
                    "--data", "digits", "--json"], capsys)
    assert got["top1"] == pytest.approx(want["top1"]) and got["n"] == 360
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_train_factory_model_records_factory(userdir, capsys):
    out = userdir / "run"
    rep = run_json(["train", "--model", f"{MODULE}:build", "--model-kwargs", '{"width": 4}', "--data", "digits",
                    "--epochs", "1", "--out", str(out), "--json", "--no-progress"], capsys)
    assert rep["epochs"] == 1 and rep["model"] == f"{MODULE}:build"
    ckpt = checkpoint.load(out / "last.pt", trusted_factories=[f"{MODULE}:build"])
    assert ckpt.spec.arch == {"factory": f"{MODULE}:build", "kwargs": {"width": 4}}
    got = run_json(["eval", str(out / "last.pt"), "--trust-factory", f"{MODULE}:build", "--json"], capsys)
    assert got["top1"] == pytest.approx(rep["final"]["test_top1"])


@pytest.mark.parametrize("argv, files", [
    (["sparsify", "--method", "magnitude", "--sparsity", "0.5", "--finetune-epochs", "1", "--out", "o"],
     ["o/model.pt", "o/report.json"]),
    (["compress", "-o", "o.pkz"], ["o.pkz", "o.pkz.report.json"]),
    (["binarize", "--mode", "bwn", "--epochs", "1", "--out", "o"], ["o/model.pt", "o/model.pkb"]),
    (["prune", "--method", "l1", "--macs", "0.5", "--finetune-epochs", "1", "--out", "o"], ["o/report.json"]),
    (["search", "--method", "autoslim", "--macs", "0.5", "--out", "o", "--epochs", "1", "--finetune-epochs", "1",
      "--ratios", "0.5,1.0", "--no-progress", "--workers", "1"], ["o/pruned.pt", "o/report.json"]),
], ids=["sparsify", "compress", "binarize", "prune-method", "search"])
def test_other_commands_take_factory_model(userdir, capsys, argv, files):
    full = [argv[0], "--model", f"{MODULE}:build", "--data", "digits", *argv[1:], "--json"]
    assert main(full) == 0, capsys.readouterr().err
    json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for f in files:
        assert (userdir / f).is_file(), f
    written = userdir / files[0]
    if written.suffix == ".pt":   # the written model records the factory and reloads when trusted
        assert checkpoint.read_raw(written)["spec"]["arch"]["factory"] == f"{MODULE}:build"


@pytest.mark.parametrize("extra, message", [
    (["--model", "um_userfactory"], "expected 'package.module:function'"),
    (["--model", "no_such_module_xyz:build", "--input-shape", "1,8,8"], "cannot import module 'no_such_module_xyz'"),
    (["--model", "um_userfactory:nope", "--input-shape", "1,8,8"], "has no attribute 'nope'"),
    (["--model", "um_userfactory:NOT_CALLABLE", "--input-shape", "1,8,8"], "is not callable"),
    (["--model", "um_userfactory:build", "--model-kwargs", "{width", "--input-shape", "1,8,8"],
     "--model-kwargs: not JSON"),
    (["--model", "um_userfactory:build", "--model-kwargs", "[1]", "--input-shape", "1,8,8"], "expected a JSON object"),
    (["--model", "um_userfactory:build", "--model-kwargs", '{"depth": 3}', "--input-shape", "1,8,8"],
     "unexpected keyword argument 'depth'"),
    (["--model", "um_userfactory:build", "--input-shape", "3,8,8"], "does not accept inputs of shape 3x8x8"),
    (["--model", "um_userfactory:build", "--input-shape", "1,x"], "--input-shape: expected 1 to 8 positive"),
    (["--model", "um_userfactory:build"], "needs the input shape"),
    (["--model", "um_userfactory:two", "--input-shape", "3,8,8"], "missing 1 required positional argument"),
    (["x.pt", "--model", "um_userfactory:build"], "give either a checkpoint (x.pt) or --model"),
    (["x.pt", "--input-shape", "1,8,8"], "--input-shape applies to --model"),
    ([], "no model: pass a checkpoint CKPT"),
    (["--model", "um_userfactory:build", "--example-inputs", "missing.pt"], "--example-inputs missing.pt: no such"),
    (["--model", "um_userfactory:build", "--input-shape", "1,8,8", "--weights", "missing.pt"], "no such weights"),
])
def test_bad_model_arguments_are_one_line(userdir, capsys, extra, message):
    try:
        code = main(["profile", *extra, "--no-latency"])
    except SystemExit as e:   # the CKPT/--model combination errors exit as argparse's do
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("prunekit: error: ") and err.count("\n") == 1 and message in err, err


def test_example_inputs_file(userdir, capsys):
    torch.save((torch.randn(2, 3, 8, 8), torch.randn(2, 10)), userdir / "inputs.pt")
    rep = run_json(["profile", "--model", f"{MODULE}:two", "--example-inputs", "inputs.pt", "--no-latency",
                    "--json"], capsys)
    assert rep["input_shape"] == [[3, 8, 8], [10]] and rep["macs"]["total"] == TWO_MACS


def test_weights_that_do_not_fit(userdir, capsys):
    torch.save({"conv1.weight": torch.zeros(1)}, userdir / "bad.pt")
    assert main(["profile", "--model", f"{MODULE}:build", "--input-shape", "1,8,8", "--weights", "bad.pt"]) == 2
    assert "bad.pt: the weights do not fit the model" in capsys.readouterr().err


@pytest.fixture
def program(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 64, 10)).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(net, (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
    path = tmp_path / "net.pt2"
    torch.export.save(ep, path)
    return path, net


def test_pt2_profile_and_eval(program, capsys, digits):
    path, net = program
    rep = run_json(["profile", str(path), "--batch-sizes", "1,4", "--warmup", "1", "--repeats", "2", "--json"],
                   capsys)
    assert rep["input_shape"] == [1, 8, 8]
    assert rep["macs"]["total"] == 4 * 9 * 64 + 256 * 10 and rep["params"] == 40 + 2570
    assert sorted(rep["latency"]) == ["1", "4"]
    from prunekit.train import evaluate

    want = evaluate(net, digits.test_x, digits.test_y)
    got = run_json(["eval", str(path), "--data", "digits", "--json"], capsys)
    assert got["top1"] == pytest.approx(want["top1"]) and got["checkpoint"] == str(path)


def test_pt2_cannot_be_pruned(program, capsys, tmp_path):
    path, _ = program
    assert main(["prune", str(path), "--ratio", "0.5", "--out", str(tmp_path / "p.pt")]) == 2
    err = capsys.readouterr().err
    assert "a torch.export program cannot be pruned" in err and err.count("\n") == 1
    assert main(["profile", str(path), "--input-shape", "1,8,8"]) == 2
    assert "--input-shape applies to --model" in capsys.readouterr().err


def test_pt2_with_fixed_batch_profiles_its_batch(tmp_path, capsys):
    net = torch.nn.Linear(6, 2).eval()
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(1, 6),)), path)
    rep = run_json(["profile", str(path), "--warmup", "1", "--repeats", "2", "--json"], capsys)
    assert sorted(rep["latency"]) == ["1"] and rep["macs"]["total"] == 12
    assert main(["profile", str(path), "--batch-sizes", "2", "--warmup", "1", "--repeats", "2"]) == 2
    assert "fixed batch size of 1" in capsys.readouterr().err


def test_from_factory_api_round_trip(userdir):
    sys.path.insert(0, str(userdir))
    try:
        net = models.from_factory(f"{MODULE}:two", input_shape=[(3, 8, 8), (10,)])
        assert net.prunekit_spec.input_shapes == [[3, 8, 8], [10]]
        checkpoint.save(userdir / "two.pt", net)
        back = checkpoint.load(userdir / "two.pt", trusted_factories=[f"{MODULE}:two"]).model
    finally:
        sys.path.remove(str(userdir))
    x = (torch.randn(2, 3, 8, 8), torch.randn(2, 10))
    assert torch.equal(back(*x), net.eval()(*x))
    rep = measure.profile(back, batch_sizes=(1,), latency=False)   # the shapes come from the spec
    assert rep.macs.total == TWO_MACS


def test_from_factory_refuses_unimportable_callables():
    def local():
        return torch.nn.Linear(2, 2)

    with pytest.raises(PrunekitError, match="not importable by name"):
        models.from_factory(local, input_shape=(2,))
    with pytest.raises(PrunekitError, match="JSON values"):
        models.from_factory("collections:OrderedDict", {"x": object()}, input_shape=(2,))


def test_spec_extra_input_shapes_round_trip():
    spec = ModelSpec(arch={"factory": "m:f", "kwargs": {}}, input_shape=[3, 8, 8], extra_input_shapes=[[10]])
    d = spec.to_dict()
    assert d["extra_input_shapes"] == [[10]] and ModelSpec.from_dict(d) == spec
    assert "extra_input_shapes" not in ModelSpec(arch={}, input_shape=[1]).to_dict()   # old files unchanged
    assert spec.base().input_shapes == [[3, 8, 8], [10]]
    from prunekit.errors import CheckpointError

    with pytest.raises(CheckpointError, match="input_shape"):
        ModelSpec.from_dict({**d, "extra_input_shapes": [[0]]})


def test_weights_from_safetensors(userdir, capsys):
    safetensors = pytest.importorskip("safetensors.torch")
    sys.path.insert(0, str(userdir))
    try:
        torch.manual_seed(1)
        net = models.from_factory(f"{MODULE}:build", input_shape=(1, 8, 8))
        safetensors.save_file(net.state_dict(), str(userdir / "w.safetensors"))
        torch.manual_seed(2)
        other = models.from_factory(f"{MODULE}:build", input_shape=(1, 8, 8), weights=userdir / "w.safetensors")
    finally:
        sys.path.remove(str(userdir))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(other(x), net.eval()(x))
    out = userdir / "p.pt"
    assert main(["prune", "--model", f"{MODULE}:build", "--input-shape", "1,8,8", "--weights", "w.safetensors",
                 "--ratio", "0.25", "--out", str(out)]) == 0
    capsys.readouterr()
    raw = checkpoint.read_raw(out)
    assert raw["meta"]["parent"]["path"].endswith("w.safetensors")   # the weights file is the parent on record
