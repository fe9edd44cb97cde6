""".pt checkpoints (issue 15): weights are checksummed, malformed fields and foreign files give one-line errors."""
import warnings

import pytest
import torch

from prunekit import checkpoint, models
from prunekit.cli import main
from prunekit.errors import CheckpointError


def _lenet(tmp_path, name="m.pt"):
    torch.manual_seed(0)
    net = models.create("lenet5", num_classes=10, in_channels=1)
    with torch.no_grad():
        net.conv1.weight.fill_(0.123456789)   # a byte pattern easy to find in the file
    return checkpoint.save(tmp_path / name, net, meta={"data": "mnist5k"}), net


def test_flipped_byte_inside_a_weight_is_refused(tmp_path):
    path, net = _lenet(tmp_path)
    data = bytearray(path.read_bytes())
    pattern = net.conv1.weight.detach().numpy().tobytes()
    at = data.find(pattern)
    assert at > 0
    data[at + len(pattern) // 2] ^= 0x01        # torch does not check the zip CRC: this used to load silently
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="weights checksum mismatch: the file was altered or corrupted"):
        checkpoint.load(path)


def test_checkpoints_without_a_checksum_still_load(tmp_path):
    path, net = _lenet(tmp_path)
    payload = torch.load(path, weights_only=True)
    assert "weights_sha256" in payload
    del payload["weights_sha256"]                 # as written before the checksum existed
    torch.save(payload, path)
    loaded = checkpoint.load(path).model
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))


def _edit(path, fn):
    payload = torch.load(path, weights_only=True)
    fn(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("edit,match", [
    (lambda p: p["spec"]["arch"]["kwargs"].update(num_classes=0), "num_classes must be an integer"),
    (lambda p: p["spec"]["arch"]["kwargs"].update(num_classes="ten"), "num_classes must be an integer"),
    (lambda p: p.update(state_dict=[1, 2]), "'state_dict' must map names to tensors, got list"),
    (lambda p: p.update(state_dict={"conv1.weight": "x"}), "'state_dict' must map names to tensors"),
    (lambda p: p.update(meta=[1]), "'meta' must be a mapping, got list"),
    (lambda p: p.update(spec="lenet5"), "'spec' must be a mapping, got str"),
    (lambda p: p["spec"].update(transforms=["x"]), "malformed transform 'x'"),
    (lambda p: p["spec"].update(transforms=[{"kind": "prune_plan", "plan": 3}]), "prune_plan"),
    (lambda p: p["spec"]["arch"].update(model=["lenet5"]), "unknown zoo model"),
    (lambda p: p["spec"]["arch"].update(kwargs=[1]), "'kwargs' must be a mapping"),
    (lambda p: p["spec"].update(input_shape=[1, 1 << 30, 1 << 30]), "malformed model spec: input_shape"),
    (lambda p: p.update(train_state=5), "'train_state' must be a mapping"),
])
def test_malformed_fields_are_one_line_errors(tmp_path, capsys, edit, match):
    path, _ = _lenet(tmp_path)
    _edit(path, edit)
    with pytest.raises(CheckpointError, match=match):
        checkpoint.load(path)
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err, err


def test_whole_model_pickle_says_what_it_is(tmp_path, capsys):
    net = models.create("lenet5", num_classes=10, in_channels=1)
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path)
    msg = str(e.value)
    assert "\x1b" not in msg and "corrupt" not in msg
    assert "a pickled Python object (e.g. a whole model written by torch.save(model))" in msg
    assert "torch.load(path, weights_only=False)" in msg and "prunekit.checkpoint.save('model.pt', model)" in msg
    assert main(["profile", str(path)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and len(err.strip().splitlines()) == 1


def test_huge_zoo_architecture_is_refused_before_allocation(tmp_path):
    path, _ = _lenet(tmp_path)
    _edit(path, lambda p: p["spec"]["arch"].update(model="vgg11", kwargs={"cfg": [100000, "M", 100000]}))
    with pytest.raises(CheckpointError, match="refusing to allocate"):
        checkpoint.load(path)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished tiny AutoSlim search on digits: (checkpoint, its out dir)."""
    d = tmp_path_factory.mktemp("search")
    torch.manual_seed(0)
    net = models.create("lenet300_100", num_classes=10, in_channels=1, input_size=(8, 8))
    ck = checkpoint.save(d / "net.pt", net, meta={"data": "digits"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["search", str(ck), "--method", "autoslim", "--macs", "0.7", "--data", "digits", "--out",
                     str(d / "run"), "--json"]) == 0
    return ck, d / "run"


@pytest.mark.parametrize("content", ["garbage", "whole-model", "list", "other-net"])
def test_search_supernet_that_is_not_weights(searched, tmp_path, capsys, content):
    ck, run = searched
    capsys.readouterr()
    sup = tmp_path / "supernet.pt"
    (tmp_path / "supernet.json").write_text((run / "supernet.json").read_text())
    if content == "garbage":
        sup.write_bytes(b"\x00garbage" * 50)
    elif content == "whole-model":
        torch.save(models.create("lenet5", in_channels=1), sup)
    elif content == "list":
        torch.save([torch.zeros(3)], sup)
    else:
        torch.save(models.create("lenet5", in_channels=1).state_dict(), sup)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["search", str(ck), "--method", "autoslim", "--macs", "0.5", "--data", "digits", "--out",
                   str(tmp_path / "again"), "--supernet", str(sup)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "supernet" in err, err


def test_search_supernet_record_that_is_not_json(searched, tmp_path, capsys):
    ck, run = searched
    capsys.readouterr()
    (tmp_path / "supernet.pt").write_bytes((run / "supernet.pt").read_bytes())
    (tmp_path / "supernet.json").write_text("{not json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["search", str(ck), "--method", "autoslim", "--macs", "0.5", "--data", "digits", "--out",
                   str(tmp_path / "again"), "--supernet", str(tmp_path / "supernet.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and "not a readable supernet record" in err and len(err.strip().splitlines()) == 1, err
