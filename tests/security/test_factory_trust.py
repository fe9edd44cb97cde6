"""A file may only build zoo models or factories the caller trusts (issue 15, "opening a file runs code").

Every entry point that loads a model file is given a crafted file naming a factory
that writes a marker file: without trust it must not run (one-line error naming the
factory and the flag); with the factory trusted the same file loads.
"""
import textwrap
import warnings

import pytest
import torch

from prunekit import checkpoint, compress
from prunekit.cli import main
from prunekit.errors import CheckpointError
from prunekit.spec import ModelSpec, attach_spec
from tests.security import evil


def _model(marker):
    torch.manual_seed(0)
    spec = ModelSpec(arch={"factory": evil.NAME, "kwargs": {"marker": str(marker)}}, input_shape=[1, 8, 8])
    return attach_spec(evil.build(str(marker)), spec)


@pytest.fixture
def crafted(tmp_path):
    """(checkpoint path, .pkz path, marker path): files naming the marker-writing factory; the marker is absent."""
    marker = tmp_path / "marker.txt"
    net = _model(marker).eval()
    ck = checkpoint.save(tmp_path / "evil.pt", net, meta={"data": "digits"})
    pkz = tmp_path / "evil.pkz"
    compress.save(pkz, net, {}, meta={"data": "digits"})
    marker.unlink()
    return ck, pkz, marker


def _untrusted(e) -> bool:
    msg = str(e)
    return f"model factory '{evil.NAME}' is not trusted" in msg and f"--trust-factory {evil.NAME}" in msg


def test_api_checkpoint_load_refuses_then_loads_when_trusted(crafted):
    ck, _, marker = crafted
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(ck)
    assert _untrusted(e.value) and str(ck) in str(e.value) and not marker.exists()
    for trust in ([evil.NAME], [evil.build], evil.NAME):   # a name, a callable, or one bare name
        model = checkpoint.load(ck, trusted_factories=trust).model
        assert model[0].out_channels == 4
    assert marker.read_text().count("factory ran") == 3
    with pytest.raises(CheckpointError):   # trusting another factory does not trust this one
        checkpoint.load(ck, trusted_factories=["tests.security.evil:other"])


def test_api_compress_load_refuses_then_loads_when_trusted(crafted):
    _, pkz, marker = crafted
    for call in (lambda **k: compress.load(pkz, **k), lambda **k: compress.loads(pkz.read_bytes(), **k),
                 lambda **k: compress.read(pkz).build_model(**k)):
        with pytest.raises(CheckpointError) as e:
            call()
        assert _untrusted(e.value) and not marker.exists()
    x = torch.randn(2, 1, 8, 8)
    ref = checkpoint.load(crafted[0], trusted_factories=[evil.NAME]).model
    assert torch.equal(compress.load(pkz, trusted_factories=[evil.NAME])(x), ref(x))


def test_api_sparse_and_masked_loaders(crafted, tmp_path):
    from prunekit import sparse

    ck, _, marker = crafted
    net = checkpoint.load(ck, trusted_factories=[evil.NAME]).model
    marker.unlink()
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in net.named_parameters() if p.dim() > 1}
    sp = sparse.save_sparse(tmp_path / "m.sparse.pt", net, masks)
    for load in (lambda **k: sparse.load_sparse(sp, **k), lambda **k: sparse.load_with_masks(ck, **k)):
        with pytest.raises(CheckpointError) as e:
            load()
        assert _untrusted(e.value) and not marker.exists()
        load(trusted_factories=[evil.NAME])
        assert marker.exists()
        marker.unlink()


def test_os_system_named_by_a_file_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = {"format": "prunekit.checkpoint", "version": 1, "state_dict": {}, "meta": {},
               "spec": {"arch": {"factory": "os:system", "kwargs": {"command": f"touch {marker}"}},
                        "input_shape": [1, 8, 8]}}
    torch.save(payload, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="model factory 'os:system' is not trusted"):
        checkpoint.load(tmp_path / "x.pt")
    assert not marker.exists()


def _cli(args, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(args)
    out = capsys.readouterr()
    return rc, out.err


def _commands(ck, pkz, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(f"""
        out: {tmp_path / 'recipe_out'}
        data: digits
        model: {{checkpoint: {ck}}}
        steps:
          - eval: {{}}
    """))
    return {
        "eval": ["eval", str(ck)],
        "profile": ["profile", str(ck)],
        "prune": ["prune", str(ck), "--ratio", "0.5", "--dry-run"],
        # only flags that are stable: the fine-tuning flags are being renamed elsewhere
        "prune --method": ["prune", str(ck), "--method", "l1", "--ratio", "0.5", "--data", "digits",
                           "--out", str(tmp_path / "pm")],
        "sparsify": ["sparsify", str(ck), "--method", "magnitude", "--sparsity", "0.5", "--data", "digits",
                     "--out", str(tmp_path / "sp")],
        "compress": ["compress", str(ck), "-o", str(tmp_path / "c.pkz")],
        "decompress": ["decompress", str(pkz), "-o", str(tmp_path / "d.pt")],
        "binarize": ["binarize", str(ck), "--mode", "bwn", "--data", "digits", "--epochs", "1", "--out",
                     str(tmp_path / "bin")],
        "train": ["train", "--model", str(ck), "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "tr")],
        "search": ["search", str(ck), "--method", "autoslim", "--macs", "0.7", "--data", "digits",
                   "--out", str(tmp_path / "se")],
        "run": ["run", str(recipe)],
    }


@pytest.mark.parametrize("command", ["eval", "profile", "prune", "prune --method", "sparsify", "compress",
                                     "decompress", "binarize", "train", "search", "run"])
def test_cli_entry_point_refuses_untrusted_factory(command, crafted, tmp_path, capsys):
    ck, pkz, marker = crafted
    args = _commands(ck, pkz, tmp_path)[command]
    rc, err = _cli([*args, "--no-progress"] if command in ("binarize", "run") else args, capsys)
    assert rc == 2 and _untrusted(err) and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()
    rc, err = _cli([*args, "--trust-factory", evil.NAME, "--json"], capsys)
    assert marker.exists(), err        # the trusted factory built the model
    assert "not trusted" not in err
    if command in ("eval", "profile", "prune", "decompress", "compress", "run"):
        assert rc == 0, err


def test_cli_flag_checks_its_value(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "x.pt", "--trust-factory", "os.system"])
    assert e.value.code == 2 and "named 'module:function'" in capsys.readouterr().err
