"""Every kind of model file exports: checkpoints, sparse checkpoints, .pkz (dense weights), binarized (float-emulated)."""
import json
import subprocess
import sys

import pytest
import torch

from export_helpers import run_isolated
from prunekit import checkpoint, compress, export, models, sparse
from prunekit.errors import CheckpointError, ExportError


def _lenet():
    torch.manual_seed(0)
    return models.create("lenet5", in_channels=1).eval()


def _roundtrip(loaded, fmt, tmp_path):
    r = export.export(loaded.model, loaded.example_inputs(), tmp_path / f"m.{fmt}", format=fmt)
    x = torch.randn(2, *loaded.spec.input_shape)
    r2 = export.export(loaded.model, x, tmp_path / f"m2.{fmt}", format=fmt)
    (got,) = run_isolated(fmt, r2.path, (x,), tmp_path)
    with torch.no_grad():
        assert float((got - loaded.model(x)).abs().max()) < 1e-4
    return r


def test_sparse_checkpoint_exports_dense_with_zeros(tmp_path):
    net = _lenet()
    masks = sparse.magnitude_masks(net, 0.8, scope="global")
    sparse.apply_masks(net, masks)
    sparse.save_sparse(tmp_path / "m.sparse.pt", net, masks)
    loaded = export.load_model_file(tmp_path / "m.sparse.pt")
    assert loaded.kind == "sparse" and "dense weights" in loaded.note
    r = _roundtrip(loaded, "pt2", tmp_path)
    ep = torch.export.load(str(r.path))
    w = dict(ep.state_dict)["conv1.weight"] if "conv1.weight" in ep.state_dict else None
    assert w is not None and torch.equal(w == 0, ~masks["conv1.weight"])   # the pruned weights are zeros


def test_pkz_exports_the_decoded_weights(tmp_path):
    net = models.create("lenet300_100", in_channels=1, input_size=(28, 28)).eval()
    shared = compress.share_weights(net)
    compress.apply_shared(net, shared)
    compress.save(tmp_path / "m.pkz", net, shared)
    loaded = export.load_model_file(tmp_path / "m.pkz")
    assert loaded.kind == "pkz" and "shared weights expanded" in loaded.note
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), net(x))   # exactly the compressed model
    _roundtrip(loaded, "onnx", tmp_path)


def test_binarized_checkpoint_says_what_is_exported(tmp_path):
    from prunekit.binary import binarize

    net = binarize(_lenet(), mode="xnor").eval()
    checkpoint.save(tmp_path / "b.pt", net)
    loaded = export.load_model_file(tmp_path / "b.pt")
    assert loaded.kind == "binary"
    assert "float-emulated: sign(W) * alpha" in loaded.note and "not the bit-packed" in loaded.note
    _roundtrip(loaded, "pt2", tmp_path)


def test_packed_binary_file_is_refused_with_the_alternative(tmp_path):
    (tmp_path / "m.pkb").write_bytes(b"\0" * 16)
    with pytest.raises(ExportError, match=r"\.pkb.*export the binarized checkpoint \(\.pt\)"):
        export.load_model_file(tmp_path / "m.pkb")
    with pytest.raises(CheckpointError, match="no such model file"):
        export.load_model_file(tmp_path / "missing.pt")


def test_format_constants_match_their_modules():
    from prunekit.compress import fileformat
    from prunekit.export import files
    from prunekit.sparse import export as sparse_export

    assert files.PKZ_MAGIC == fileformat.MAGIC and files.SPARSE_FORMAT == sparse_export.FILE_FORMAT


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "prunekit.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def test_cli_export_writes_the_file_and_its_report(tmp_path, cli_env):
    net = _lenet()
    checkpoint.save(tmp_path / "lenet.pt", net, meta={"data": "mnist5k"})
    out = tmp_path / "out" / "lenet.pt2"
    p = _cli("export", tmp_path / "lenet.pt", "--format", "pt2", "--dynamic-batch", "--seeds", "2", "--out", out,
             "--json", env=cli_env)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["format"] == "pt2" and data["dynamic_batch"] and data["kind"] == "checkpoint"
    assert [c["batch"] for c in data["checks"]] == [1, 1, 5, 5] and data["max_abs_diff"] <= data["tolerance"]
    report = json.loads((out.parent / "lenet.pt2.report.json").read_text())
    assert report["max_abs_diff"] == data["max_abs_diff"]
    assert sorted(report["outputs"]) == ["lenet.pt2", "lenet.pt2.report.json", "lenet.pt2.report.md"]
    assert "max abs diff" in (out.parent / "lenet.pt2.report.md").read_text()
    (got,) = run_isolated("pt2", out, (torch.ones(3, 1, 28, 28),), tmp_path)
    with torch.no_grad():
        assert float((got - net(torch.ones(3, 1, 28, 28))).abs().max()) < 1e-5
    again = _cli("export", tmp_path / "lenet.pt", "--format", "pt2", "--out", out, env=cli_env)
    assert again.returncode == 2 and "--overwrite" in again.stderr and again.stderr.count("\n") == 1
    ok = _cli("export", tmp_path / "lenet.pt", "--format", "pt2", "--out", out, "--overwrite", env=cli_env)
    assert ok.returncode == 0 and "max abs diff" in ok.stdout
    bad = _cli("export", tmp_path / "lenet.pt", "--format", "tflite", "--out", tmp_path / "x", env=cli_env)
    assert bad.returncode == 2 and "invalid choice: 'tflite'" in bad.stderr
