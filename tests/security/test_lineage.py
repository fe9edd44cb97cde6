"""Every checkpoint derived from another keeps its provenance (issue 15): ``prunekit eval`` on it needs no --data,
and ``meta['parent']`` names the source file and its SHA-256."""
import hashlib
import json
import warnings

import pytest

from prunekit import checkpoint
from prunekit.cli import main


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(argv, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "r"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", "--model", "lenet300_100", "--data", "digits", "--epochs", "1", "--no-augment",
                     "--json", "--out", str(out)]) == 0
    return out / "best.pt"


def _evaluates_without_data(path, parent, capsys, dataset="digits"):
    meta = checkpoint.load(path).meta
    assert meta["data"] == dataset
    assert meta["parent"]["path"] == str(parent) and meta["parent"]["sha256"] == _sha(parent)
    assert meta["parent"]["dataset"] == dataset and meta["parent"]["input_shape"] == [1, 8, 8]
    rep = json.loads(_cli(["eval", path, "--json"], capsys).strip().splitlines()[-1])
    assert rep["data"] == dataset and rep["n"] > 0


def test_prune_file_mode(trained, tmp_path, capsys):
    _cli(["prune", trained, "--ratio", "0.5", "--out", tmp_path / "p.pt"], capsys)
    _evaluates_without_data(tmp_path / "p.pt", trained, capsys)


def test_prune_method(trained, tmp_path, capsys):
    _cli(["prune", trained, "--method", "l1", "--data", "digits", "--ratio", "0.5", "--finetune-epochs", "0",
          "--out", tmp_path / "m", "--json"], capsys)
    _evaluates_without_data(tmp_path / "m" / "pruned.pt", trained, capsys)


def test_sparsify_outputs(trained, tmp_path, capsys):
    _cli(["sparsify", trained, "--method", "magnitude", "--sparsity", "0.5", "--data", "digits",
          "--finetune-epochs", "0", "--out", tmp_path / "s", "--json"], capsys)
    _evaluates_without_data(tmp_path / "s" / "model.pt", trained, capsys)
    from prunekit.sparse import load_sparse

    meta = load_sparse(tmp_path / "s" / "model.sparse.pt").meta   # not an eval input: the record only
    assert meta["data"] == "digits" and meta["parent"]["sha256"] == _sha(trained)


def test_sparsify_structural_output(trained, tmp_path, capsys):
    cfg = tmp_path / "admm.yaml"
    cfg.write_text("admm: {epochs: 1}\n")
    _cli(["sparsify", trained, "--method", "admm", "--granularity", "filter", "--sparsity", "0.5", "--data",
          "digits", "--config", cfg, "--finetune-epochs", "0", "--out", tmp_path / "s", "--json"], capsys)
    _evaluates_without_data(tmp_path / "s" / "model.structural.pt", trained, capsys)


def test_compress_then_decompress(trained, tmp_path, capsys):
    pkz = tmp_path / "m.pkz"
    _cli(["compress", trained, "-o", pkz, "--no-progress", "--json"], capsys)
    from prunekit import compress

    header = compress.read(pkz).meta
    assert header["data"] == "digits" and header["parent"]["sha256"] == _sha(trained)
    _cli(["decompress", pkz, "-o", tmp_path / "back.pt", "--json"], capsys)
    _evaluates_without_data(tmp_path / "back.pt", pkz, capsys)
    assert checkpoint.load(tmp_path / "back.pt").meta["compressed_from"]["sha256"] == _sha(trained)


def test_binarize(trained, tmp_path, capsys):
    _cli(["binarize", trained, "--mode", "bwn", "--data", "digits", "--finetune-epochs", "0",
          "--out", tmp_path / "b", "--json"], capsys)
    _evaluates_without_data(tmp_path / "b" / "model.pt", trained, capsys)


def test_search(trained, tmp_path, capsys):
    _cli(["search", trained, "--method", "autoslim", "--macs", "0.6", "--data", "digits", "--out", tmp_path / "x",
          "--epochs", "1", "--finetune-epochs", "0", "--iterations", "1", "--population", "4",
          "--ratios", "0.5,1.0", "--no-progress", "--json", "--workers", "1"], capsys)
    _evaluates_without_data(tmp_path / "x" / "pruned.pt", trained, capsys)


def test_recipe(trained, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"out: {tmp_path / 'run'}\ndata: digits\nmodel: {{checkpoint: {trained}}}\n"
                      "steps:\n  - prune: {ratio: 0.5}\n")
    _cli(["run", recipe, "--no-progress", "--json"], capsys)
    _evaluates_without_data(tmp_path / "run" / "model.pt", trained, capsys)


def test_train_fine_tuning_a_checkpoint(trained, tmp_path, capsys):
    _cli(["train", "--model", trained, "--data", "digits", "--epochs", "1", "--no-augment", "--json",
          "--out", tmp_path / "ft"], capsys)
    _evaluates_without_data(tmp_path / "ft" / "best.pt", trained, capsys)


def test_lineage_prefers_the_commands_dataset():
    from prunekit.runs import lineage

    assert lineage(None, {"dataset": "digits"}) == {"parent": None, "data": "digits"}
    assert lineage(None, {"data": "digits"}, dataset="mnist5k")["data"] == "mnist5k"
    assert lineage(None, {}) == {"parent": None}
