"""The .pkz file: exact round trips, and every malformed file gives a clear error."""
import struct

import pytest
import torch

from prunekit import compress, models
from prunekit.compress import fileformat
from prunekit.compress.fileformat import PkzError
from prunekit.errors import CheckpointError, PrunekitError


def _quantized(name, coder="huffman", **kw):
    torch.manual_seed(0)
    net = models.create(name, **kw)
    # prune some weights so both layouts and filler zeros occur
    with torch.no_grad():
        for n, p in net.named_parameters():
            if p.dim() > 1:
                p[p.abs() < p.abs().flatten().kthvalue(max(1, int(0.9 * p.numel()))).values] = 0
    result = compress.compress_model(net, {"coder": coder, "codebook_dtype": "float16"}, progress=False)
    return net, result


@pytest.fixture(scope="module")
def lenet5_file(tmp_path_factory):
    net, result = _quantized("lenet5", in_channels=1, input_size=(28, 28))
    path = tmp_path_factory.mktemp("pkz") / "lenet5.pkz"
    result.save(path)
    return path, result


@pytest.mark.parametrize("name,kw", [("lenet300_100", {"in_channels": 1, "input_size": (28, 28)}),
                                     ("lenet5", {"in_channels": 1, "input_size": (28, 28)}),
                                     ("resnet20", {"in_channels": 3})])
@pytest.mark.parametrize("coder", ["huffman", "rans"])
def test_load_equals_quantized_model_exactly(tmp_path, name, kw, coder):
    net, result = _quantized(name, coder, **kw)
    path = tmp_path / "m.pkz"
    result.save(path)
    loaded = compress.load(path)
    assert not loaded.training
    ref_state = result.model.state_dict()
    for k, v in loaded.state_dict().items():
        assert v.dtype == ref_state[k].dtype and torch.equal(v, ref_state[k]), k
    x = torch.randn(3, *net.prunekit_spec.input_shape)
    assert torch.equal(loaded(x), result.model.eval()(x))
    # shared weights really are shared: at most 2**bits distinct values per layer
    for st in result.shared.values():
        w = ref_state[st.name]
        assert len(torch.unique(w)) <= 2 ** st.bits
    assert path.stat().st_size == len(result.data) == result.report.file_bytes


def test_structure_and_metadata(lenet5_file):
    path, result = lenet5_file
    contents = compress.read(path)
    assert contents.spec.arch["model"] == "lenet5"
    assert contents.meta["compress_config"]["codebook_dtype"] == "float16"
    recs = {r["name"]: r for r in contents.header["tensors"]}
    assert recs["conv1.weight"]["enc"] == "shared" and recs["conv1.weight"]["bits"] == 8
    assert recs["fc1.weight"]["bits"] == 5 and recs["fc1.weight"]["layout"] == "sparse"
    assert recs["fc1.bias"]["enc"] == "raw" and recs["fc1.bias"]["dtype"] == "float32"
    assert bytes(path.read_bytes()[:8]) == fileformat.MAGIC
    # 90% pruning with 5-bit gaps overflows somewhere: filler zeros are exercised
    assert any(r.fillers > 0 for r in result.report.layers)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_forced_layouts_round_trip(tmp_path, layout):
    from prunekit import models

    torch.manual_seed(0)
    net = models.create("lenet5", in_channels=1, input_size=(28, 28))
    result = compress.compress_model(net, {"prune_sparsity": 0.5, "layout": layout, "index_bits_fc": 2,
                                           "index_bits_conv": 2}, progress=False)
    assert {st.layout for st in result.shared.values()} == {layout}
    assert all(st.zero_code is not None for st in result.shared.values())   # pruned dense / overflowing gaps
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(compress.loads(result.data)(x), result.model(x))


def test_save_refuses_to_overwrite(tmp_path):
    net, result = _quantized("lenet300_100", in_channels=1, input_size=(28, 28))
    p = tmp_path / "a.pkz"
    compress.save(p, result.model, result.shared)
    with pytest.raises(PrunekitError, match="already exists"):
        compress.save(p, result.model, result.shared)
    with pytest.raises(PrunekitError, match="already exists"):
        result.save(p)
    compress.save(p, result.model, result.shared, overwrite=True)
    assert compress.load(p) is not None


def _expect(data, tmp_path, match):
    p = tmp_path / "bad.pkz"
    p.write_bytes(bytes(data))
    with pytest.raises(PkzError, match=match) as e:
        compress.load(p)
    assert str(p) in str(e.value)
    assert isinstance(e.value, CheckpointError) and isinstance(e.value, PrunekitError)


def test_truncated(lenet5_file, tmp_path):
    data = lenet5_file[0].read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 30, 20):
        _expect(data[:cut], tmp_path, "truncated")
    _expect(data[:5], tmp_path, "not a prunekit .pkz")
    _expect(b"", tmp_path, "not a prunekit .pkz")


@pytest.mark.parametrize("where", [24, 100, "mid", -40, -1])
def test_one_flipped_byte(lenet5_file, tmp_path, where):
    data = bytearray(lenet5_file[0].read_bytes())
    i = len(data) // 2 if where == "mid" else where
    data[i] ^= 0x01
    _expect(data, tmp_path, "checksum mismatch")


def test_wrong_magic_unknown_version_random_bytes(lenet5_file, tmp_path):
    data = bytearray(lenet5_file[0].read_bytes())
    bad = bytearray(data)
    bad[1] = ord("X")
    _expect(bad, tmp_path, "wrong magic")
    bad = bytearray(data)
    struct.pack_into("<H", bad, 8, 99)
    _expect(bad, tmp_path, "version 99 is not supported")
    _expect(torch.randint(0, 256, (5000,), generator=torch.Generator().manual_seed(0)).to(torch.uint8).numpy().tobytes(),
            tmp_path, "not a prunekit .pkz")
    _expect(b"PK\x03\x04 a zip, e.g. a torch checkpoint", tmp_path, "not a prunekit .pkz")
    _expect(data + b"\x00", tmp_path, "unexpected bytes")


def test_missing_file(tmp_path):
    with pytest.raises(PkzError, match="no such"):
        compress.load(tmp_path / "nope.pkz")


def test_valid_checksum_but_inconsistent_records_still_caught(lenet5_file, tmp_path):
    # A writer bug (not corruption): records that do not match the payload must not load silently.
    header, payload = fileformat.unpack(lenet5_file[0].read_bytes())
    for mutate, match in [
        (lambda h: h["tensors"][0].__setitem__("shape", [999]), "weights do not fit|positions|indices"),
        (lambda h: h["tensors"][0]["values"].__setitem__("crc", 1), "wrong checksum"),
        (lambda h: h["tensors"][0]["values"].__setitem__("at", [10 ** 9, 5]), "outside the payload"),
        (lambda h: h["tensors"][0].__setitem__("enc", "zip"), "unknown encoding"),
        (lambda h: h["spec"].__setitem__("arch", {"model": "no_such_net", "kwargs": {}}), "no_such_net"),
    ]:
        import copy
        h = copy.deepcopy(header)
        mutate(h)
        _expect(fileformat.pack(h, bytes(payload)), tmp_path, match)


def test_model_without_spec_is_refused():
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    shared = compress.share_weights(net)
    with pytest.raises(PkzError, match="prunekit_spec"):
        compress.encode_model(net, shared)


def test_model_must_hold_its_shared_weights():
    from prunekit import models

    net = models.create("lenet300_100", in_channels=1, input_size=(28, 28))
    shared = compress.share_weights(net)
    with pytest.raises(PkzError, match="apply_shared"):
        compress.encode_model(net, shared)
    compress.apply_shared(net, shared)
    data, report = compress.encode_model(net, shared)
    assert report.file_bytes == len(data)
