"""Crafted .pkz files with a valid checksum (issue 15): every one is refused with a PkzError, quickly and
without allocating what it asks for."""
import copy
import json
import os
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch

from prunekit import compress, models
from prunekit.compress import codec, fileformat, huffman, rans
from prunekit.compress.bitio import StreamFormatError, write_varints
from prunekit.compress.fileformat import PkzError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def seed():
    """(file bytes, header, payload, reference state) of a pruned, shared LeNet-5 (sparse and dense layers)."""
    torch.manual_seed(0)
    net = models.create("lenet5", num_classes=10, in_channels=1, input_size=(28, 28))
    with torch.no_grad():
        for n, p in net.named_parameters():
            if p.dim() > 1 and n != "conv1.weight":
                p[p.abs() < p.abs().flatten().kthvalue(int(0.9 * p.numel())).values] = 0
    res = compress.compress_model(net, {"bits_conv": 4, "bits_fc": 3, "codebook_dtype": "float16"}, progress=False)
    header, payload = fileformat.unpack(res.data)
    return res.data, header, bytes(payload), res.model.state_dict()


def _pack_json(text: bytes, payload: bytes) -> bytes:
    head = zlib.compress(text, 9)
    body = struct.pack("<8sHHIQ", fileformat.MAGIC, fileformat.VERSION, 0, len(head), len(payload)) + head + payload
    import hashlib

    return body + hashlib.sha256(body).digest()


def _crafted(header, payload, edit):
    h = copy.deepcopy(header)
    edit(h)
    return fileformat.pack(h, payload)


def _refused(data, match, max_seconds=5.0):
    t0 = time.perf_counter()
    with pytest.raises(PkzError, match=match):
        compress.loads(data)
    assert time.perf_counter() - t0 < max_seconds


def _rec(h, name):
    return next(r for r in h["tensors"] if r["name"] == name)


def test_seed_round_trips(seed):
    data, _, _, ref = seed
    state = compress.loads(data).state_dict()
    assert all(torch.equal(state[k], ref[k]) for k in ref)


def test_deep_json_nesting(seed):
    data, header, payload, _ = seed
    text = json.dumps(header)[:-1]
    _refused(_pack_json((text + ',"x":' + "[" * 100000 + "]" * 100000 + "}").encode(), payload),
             "unreadable .pkz header")
    _refused(_pack_json((text + ',"x":' + "[" * 200 + "]" * 200 + "}").encode(), payload), "nests deeper than 64")


def test_huge_integers_and_nan(seed):
    _, header, payload, _ = seed
    text = json.dumps(header)[:-1]
    _refused(_pack_json((text + ',"x":1' + "0" * 5000 + "}").encode(), payload), "unreadable .pkz header")
    _refused(_pack_json(json.dumps(header).replace('"n":', '"n":NaN,"m":', 1).encode(), payload),
             "NaN is not a JSON number")


def test_zlib_bomb_is_bounded(seed):
    _, header, payload, _ = seed
    bomb = json.dumps(header).encode() + b" " * (64 << 20)   # 64 MB of JSON from a 64 kB header
    data = _pack_json(bomb, payload)
    del bomb
    assert len(data) < (1 << 20)
    _refused(data, "inflates to more than")


@pytest.mark.parametrize("n", [10 ** 8, 1 << 62, 1 << 64])
def test_stream_lengths_in_records(seed, n):
    _, header, payload, _ = seed
    _refused(_crafted(header, payload, lambda h: _rec(h, "conv1.weight")["values"].update(n=n)),
             r"indices for 150 weights")
    _refused(_crafted(header, payload, lambda h: (_rec(h, "fc1.weight")["values"].update(n=n),
                                                  _rec(h, "fc1.weight")["gaps"].update(n=n))),
             "positions and values disagree or run past the tensor")


@pytest.mark.parametrize("n", [10 ** 8, 1 << 62, (1 << 64) - 1])
@pytest.mark.parametrize("coder", ["huffman", "rans"])
def test_stream_lengths_in_blobs_are_bounded_before_allocation(n, coder):
    # a blob announcing n symbols in one lane, with a few bytes of data
    if coder == "huffman":
        blob = write_varints([n, 2]) + bytes([0x11]) + write_varints([1 << 32, 8]) + b"\x00"
    else:
        blob = write_varints([n, 2, 16, 1 << 15, 1 << 15, 1 << 32, 1 << 16, 0])
    mod = huffman if coder == "huffman" else rans
    t0 = time.perf_counter()
    with pytest.raises(StreamFormatError):   # what the coders and the codec raise (compress.load: PkzError)
        parsed = mod.parse(blob)
        # a parse that succeeds must still be refused by the record check before decoding (n != the tensor's size)
        recs = [{"name": "w", "enc": "shared", "shape": [4], "dtype": "float32", "layout": "dense",
                 "codebook": {"dtype": "float32", "n": 2, "at": [0, 8]},
                 "values": {"coder": coder, "at": [8, len(blob)], "n": parsed.n_symbols, "crc": 0}}]
        codec.decode_tensors(recs, b"\x00" * 8 + blob, max_values=1 << 20)
    assert time.perf_counter() - t0 < 2


def test_shape_2_pow_40(seed):
    _, header, payload, _ = seed
    _refused(_crafted(header, payload, lambda h: _rec(h, "conv1.weight").update(shape=[1 << 40])), "bad shape")
    _refused(_crafted(header, payload, lambda h: _rec(h, "conv1.weight").update(shape=[1 << 20, 1 << 20])),
             r"indices for 1099511627776 weights")

    def both(h):
        r = _rec(h, "conv1.weight")
        r["shape"] = [1 << 20, 1 << 20]
        r["values"]["n"] = 1 << 40
    _refused(_crafted(header, payload, both), "more than the .* this file's size allows")
    _refused(_crafted(header, payload, lambda h: _rec(h, "conv1.bias").update(shape=[1 << 20, 1 << 20])),
             "bytes for 1099511627776 values")
    _refused(_crafted(header, payload, lambda h: _rec(h, "conv1.bias").update(shape=[1 << 31, 1 << 31, 1 << 31])),
             "bytes for")


@pytest.mark.parametrize("dtype", [["float32"], "float64", None, 3, {"a": 1}])
def test_wrong_codebook_dtypes(seed, dtype):
    _, header, payload, _ = seed
    _refused(_crafted(header, payload, lambda h: _rec(h, "conv1.weight")["codebook"].update(dtype=dtype)),
             "malformed codebook")


@pytest.mark.parametrize("field,value", [("n", "16"), ("n", 1.5), ("n", True), ("n", 0)])
def test_wrong_codebook_sizes(seed, field, value):
    _, header, payload, _ = seed
    _refused(_crafted(header, payload, lambda h: _rec(h, "conv1.weight")["codebook"].update({field: value})),
             "malformed codebook")


def test_raw_dtype_unhashable_and_coder_unhashable(seed):
    _, header, payload, _ = seed
    _refused(_crafted(header, payload, lambda h: _rec(h, "conv1.bias").update(dtype=["float32"])), "unsupported dtype")
    _refused(_crafted(header, payload, lambda h: _rec(h, "conv1.weight")["values"].update(coder=["huffman"])),
             "missing or unknown coder")


@pytest.mark.parametrize("kwargs,match", [({"num_classes": 0}, "num_classes must be an integer"),
                                          ({"num_classes": "ten"}, "num_classes must be an integer"),
                                          ({"wings": 2}, "unknown option"),
                                          ({"cfg": [1 << 20, 1 << 20]}, "refusing to allocate|cfg"),
                                          ({"cfg": list(range(1, 5000))}, "more than 1024 entries")])
def test_bad_zoo_options(seed, kwargs, match):
    _, header, payload, _ = seed
    _refused(_crafted(header, payload, lambda h: h["spec"]["arch"]["kwargs"].update(kwargs)), match)


def test_huge_cfg_widths_refused_before_allocation(seed):
    _, header, payload, _ = seed

    def vgg(h):
        h["spec"]["arch"] = {"model": "vgg11", "kwargs": {"cfg": [100000, "M", 100000], "in_channels": 1}}
    t0 = time.perf_counter()
    _refused(_crafted(header, payload, vgg), "refusing to allocate")
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("transforms,match", [(["x"], "malformed transform"),
                                              ([{"kind": "teleport"}], "unknown checkpoint transform 'teleport'"),
                                              ([{"kind": "prune_plan", "plan": "garbage"}], "prune_plan"),
                                              ([{"kind": "binarize", "mode": ["x"]}], "binarize"),
                                              ("xy", "malformed transform")])
def test_bad_transforms(seed, transforms, match):
    _, header, payload, _ = seed
    _refused(_crafted(header, payload, lambda h: h["spec"].update(transforms=transforms)), match)


@pytest.mark.parametrize("shape", [[1 << 40], [], [0, 28, 28], [1, 28, "x"]])
def test_bad_input_shapes(seed, shape):
    _, header, payload, _ = seed
    _refused(_crafted(header, payload, lambda h: h["spec"].update(input_shape=shape)), "malformed model spec")


def test_overlapping_and_gapped_references(seed):
    _, header, payload, _ = seed

    def alias(h):   # conv2.bias reads conv1.bias's bytes (same length: 6 vs 16 floats do not fit, so use a copy)
        a, b = _rec(h, "conv1.bias"), _rec(h, "fc3.bias")
        b["at"] = list(a["at"])
        b["shape"] = list(a["shape"])
    _refused(_crafted(header, payload, alias), "overlap or leave a gap")
    _refused(fileformat.pack(header, payload + b"\x00" * 8), "cover .* of the payload")

    def twice(h):
        h["tensors"].append(copy.deepcopy(_rec(h, "conv1.bias")))
    _refused(_crafted(header, payload, twice), "stored twice")


def test_multi_gb_file_is_not_read_before_the_magic(tmp_path):
    big = tmp_path / "big.pkz"
    with open(big, "wb") as f:   # sparse file: 6 GB of apparent size, no real disk use
        f.write(b"not a pkz")
        f.truncate(6 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(PkzError, match="wrong magic bytes"):
        compress.read(big)
    assert time.perf_counter() - t0 < 2
    # a real magic whose lengths disagree with the file size: refused from the 24 fixed bytes alone
    with open(big, "r+b") as f:
        f.write(struct.pack("<8sHHIQ", fileformat.MAGIC, 1, 0, 10, 10))
    with pytest.raises(PkzError, match="unexpected bytes after the end"):
        compress.read(big)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024   # KB: nothing read whole


def _fuzz(count, seed):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz_files.py"), "--count", str(count), "--seed",
                        str(seed), "--seconds", "10", "--max-mb", "1024"],
                       capture_output=True, text=True, env=env, timeout=600)
    summary = json.loads(p.stdout)
    c = summary["counts"]
    assert (c["other-exception"], c["silent-wrong"], c["hang"]) == (0, 0, 0), summary["bugs"]
    assert p.returncode == 0 and summary["mutants"] == count and c["error"] > count // 2
    assert summary["worst_seconds"] < 10
    return summary


def test_fuzz_reader_bounded():
    """A few hundred seeded mutants: a PkzError or the same weights, never another exception, a hang, or more
    than 1 GB of address space (the script caps it)."""
    _fuzz(300, 0)


@pytest.mark.slow
def test_fuzz_reader_thousands():
    _fuzz(3000, 1)
