"""File formats: IDX, CIFAR pickles, image folders; exact round trips and bad-file errors."""
from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch
from data_file_writers import (make_cifar100_dir, make_idx_dir, make_image_tree, write_idx,
                               write_pickle)

from prunekit.data import load_dataset
from prunekit.data.idx import read_idx
from prunekit.errors import DataError


def _as_float(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float32) / 255


# --------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_idx_round_trip(tmp_path, gz):
    arrays = make_idx_dir(tmp_path, gz=gz)
    s = load_dataset(f"mnist-idx:{tmp_path}", normalize=False)
    assert torch.equal(s.train_x, _as_float(arrays["train_x"][:, None]))
    assert torch.equal(s.test_x, _as_float(arrays["test_x"][:, None]))
    assert s.train_y.tolist() == arrays["train_y"].tolist() and s.test_y.tolist() == arrays["test_y"].tolist()
    assert (s.num_classes, s.in_channels, s.image_size, s.domain) == (3, 1, (4, 5), "digits")
    n = load_dataset("mnist-idx", root=str(tmp_path))  # root= is the same as the ':DIR' suffix
    assert n.mean[0] == pytest.approx(s.train_x.double().mean().item(), abs=1e-9)
    assert torch.allclose(n.denormalize(n.train_x), s.train_x, atol=1e-6)


def test_idx_finds_dotted_names_in_raw_subfolder(tmp_path):
    arrays = make_idx_dir(tmp_path / "raw")
    for f in (tmp_path / "raw").iterdir():
        f.rename(f.with_name(f.name.replace("-idx", ".idx")))
    s = load_dataset(f"mnist-idx:{tmp_path}", normalize=False, num_classes=10)
    assert s.num_classes == 10 and torch.equal(s.test_x, _as_float(arrays["test_x"][:, None]))


@pytest.mark.parametrize("fixture, kind, name", [("idx_dir", "mnist-idx", "t10k-labels-idx1-ubyte"),
                                                  ("cifar10_dir", "cifar10", "data_batch_3")])
def test_missing_file_is_named(request, fixture, kind, name):
    root, _ = request.getfixturevalue(fixture)
    os.remove(root / name)
    with pytest.raises(DataError, match=rf"{name}: missing file"):
        load_dataset(f"{kind}:{root}")


def test_idx_wrong_magic(idx_dir):
    root, arrays = idx_dir
    write_idx(root / "train-images-idx3-ubyte", arrays["train_x"], 2049)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: wrong magic number 2049 \(expected 2051"):
        load_dataset(f"mnist-idx:{root}")


@pytest.mark.parametrize("keep,match", [
    (-7, r"truncated: header declares shape \(12, 4, 5\) \(240 bytes\) but only 233 bytes follow"),
    (13, "truncated: header needs 16 bytes, file has 13"),
    (2, "truncated: 2 bytes, too short for an IDX header"),
], ids=["body", "header", "magic"])
def test_idx_truncated(idx_dir, keep, match):
    root, _ = idx_dir
    path = root / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(DataError, match=f"train-images-idx3-ubyte: {match}"):
        load_dataset(f"mnist-idx:{root}")


def test_idx_truncated_gzip_and_trailing_bytes(tmp_path):
    make_idx_dir(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        load_dataset(f"mnist-idx:{tmp_path}")
    extra = tmp_path / "extra"
    write_idx(extra, np.zeros(3, np.uint8), 2049)
    extra.write_bytes(extra.read_bytes() + b"\0\0")
    with pytest.raises(DataError, match="extra: 2 unexpected bytes"):
        read_idx(extra, 2049)


def test_idx_count_mismatch(idx_dir):
    root, arrays = idx_dir
    write_idx(root / "train-labels-idx1-ubyte", arrays["train_y"][:-1], 2049)
    with pytest.raises(DataError, match=r"holds 12 images but .*train-labels-idx1-ubyte holds 11 labels"):
        load_dataset(f"mnist-idx:{root}")


def test_read_idx_exact_values(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = write_idx(tmp_path / "a", a, 2051, gz=True)
    assert np.array_equal(read_idx(p, 2051), a)


# --------------------------------------------------------------------------- CIFAR

def test_cifar10_round_trip_via_archive_folder(cifar10_dir):
    root, (tx, ty, vx, vy) = cifar10_dir
    s = load_dataset(f"cifar10:{root.parent}", normalize=False)  # finds cifar-10-batches-py/
    assert s.train_x.shape == (15, 3, 32, 32) and s.test_x.shape == (4, 3, 32, 32)
    assert torch.equal(s.train_x, _as_float(tx.reshape(-1, 3, 32, 32)))
    assert torch.equal(s.test_x, _as_float(vx.reshape(-1, 3, 32, 32)))
    assert s.train_y.tolist() == ty.tolist() and s.test_y.tolist() == vy.tolist()
    # Channel planes: the first 1024 bytes of a row are the red plane, row-major.
    assert s.train_x[0, 0, 0, 1].item() == pytest.approx(tx[0, 1] / 255) and s.train_x[0, 1, 0, 0] * 255 == float(tx[0, 1024])
    assert s.class_names[0] == "airplane" and s.num_classes == 10 and s.domain == "natural"
    n = load_dataset(f"cifar10:{root}")
    raw = s.train_x.double()
    assert n.mean == pytest.approx(tuple(raw.mean(dim=(0, 2, 3)).tolist()), abs=1e-9)
    assert n.std == pytest.approx(tuple(raw.std(dim=(0, 2, 3), unbiased=False).tolist()), abs=1e-9)


@pytest.mark.parametrize("labels,num", [("fine", 100), ("coarse", 20)])
def test_cifar100_round_trip(tmp_path, labels, num):
    (trx, trf, trc), (tex, tef, tec) = make_cifar100_dir(tmp_path)
    s = load_dataset(f"cifar100:{tmp_path}", labels=labels, normalize=False)
    assert s.num_classes == num and torch.equal(s.train_x, _as_float(trx.reshape(-1, 3, 32, 32)))
    assert s.train_y.tolist() == (trf if labels == "fine" else trc).tolist()
    assert s.test_y.tolist() == (tef if labels == "fine" else tec).tolist()


def test_cifar_garbage_and_truncated_pickle(cifar10_dir):
    root, _ = cifar10_dir
    (root / "data_batch_2").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match=r"data_batch_2: not a readable CIFAR pickle"):
        load_dataset(f"cifar10:{root}")
    good = (root / "data_batch_1").read_bytes()
    (root / "data_batch_2").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"data_batch_2: not a readable CIFAR pickle"):
        load_dataset(f"cifar10:{root}")


@pytest.mark.parametrize("obj,match", [
    ([1, 2], "expected a pickled dict, got list"),
    ({b"labels": [0]}, "missing key.s. data"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "missing key.s. labels"),
    ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"'data' must be a uint8 array of shape \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "'data' must be a uint8"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "'labels' must be 2 integers"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"'labels' has values outside \[0, 10\)"),
], ids=["list", "no-data", "no-labels", "short-rows", "float", "count", "range"])
def test_cifar_wrong_layout(cifar10_dir, obj, match):
    root, _ = cifar10_dir
    write_pickle(root / "test_batch", obj)
    with pytest.raises(DataError, match=f"test_batch: {match}"):
        load_dataset(f"cifar10:{root}")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar_refuses_pickles_that_run_code(cifar10_dir):
    root, _ = cifar10_dir
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _Evil()}))
    with pytest.raises(DataError, match=r"test_batch: not a readable CIFAR pickle .*refusing to load"):
        load_dataset(f"cifar10:{root}")


class _WritesMarker:
    """Unpickling this would call ``builtins.open(marker, "w")``: the file appears only if code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("where", ["test_batch", "batches.meta", "data_batch_3"])
def test_cifar_malicious_global_runs_no_code(cifar10_dir, tmp_path, where):
    root, _ = cifar10_dir
    marker = tmp_path / "pwned"
    payload = {b"data": _WritesMarker(marker), b"labels": [0], b"label_names": [b"x"] * 10}
    (root / where).write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match=f"{where}: not a readable CIFAR pickle .*refusing to load "
                                        r"(builtins|io)\.open"):
        load_dataset(f"cifar10:{root}")
    assert not marker.exists()


def test_cifar_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="nowhere: not a directory"):
        load_dataset(f"cifar100:{tmp_path / 'nowhere'}")


# --------------------------------------------------------------------------- image folders

def test_imagefolder_train_test_round_trip_rgb(tmp_path):
    train = make_image_tree(tmp_path / "train", per_class=3, seed=1)
    test = make_image_tree(tmp_path / "test", per_class=2, seed=2)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("ignored")
    s = load_dataset(f"imagefolder:{tmp_path}", normalize=False, progress=False)
    assert s.class_names == ("cat", "dog") and s.image_size == (6, 7) and s.in_channels == 3
    expect = np.stack(train["cat"] + train["dog"]).transpose(0, 3, 1, 2)
    assert torch.equal(s.train_x, _as_float(expect)) and s.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    expect = np.stack(test["cat"] + test["dog"]).transpose(0, 3, 1, 2)
    assert torch.equal(s.test_x, _as_float(expect)) and s.test_y.tolist() == [0, 0, 1, 1]


def test_imagefolder_single_tree_grayscale_split(tmp_path):
    tree = make_image_tree(tmp_path, classes=("a", "b", "c"), per_class=5, mode="L")
    s = load_dataset(f"imagefolder:{tmp_path}", grayscale=True, test_fraction=0.2, seed=0,
                     normalize=False, progress=False)
    assert s.train_x.shape == (12, 1, 6, 7) and s.test_x.shape == (3, 1, 6, 7)
    assert sorted(s.test_y.tolist()) == [0, 1, 2]
    everything = {tuple(a.ravel()) for c in tree.values() for a in c}
    got = {tuple((x[0] * 255).round().to(torch.uint8).numpy().ravel()) for x in torch.cat([s.train_x, s.test_x])}
    assert got == everything  # every image once, values exact


def test_imagefolder_resize_and_rgb_from_gray(tmp_path):
    make_image_tree(tmp_path, per_class=2, size=(10, 12), mode="L")
    s = load_dataset(f"imagefolder:{tmp_path}", image_size=(4, 6), progress=False, test_fraction=2)
    assert s.train_x.shape == (2, 3, 4, 6) and s.test_x.shape == (2, 3, 4, 6)


def test_imagefolder_broken_and_truncated_images(tmp_path):
    make_image_tree(tmp_path, per_class=3)
    (tmp_path / "dog" / "01.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"dog/01.png: unreadable image"):
        load_dataset(f"imagefolder:{tmp_path}", progress=False)
    good = (tmp_path / "cat" / "00.png").read_bytes()
    (tmp_path / "dog" / "01.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"dog/01.png: unreadable image"):
        load_dataset(f"imagefolder:{tmp_path}", progress=False)


def test_imagefolder_layout_errors(tmp_path):
    make_image_tree(tmp_path / "train", per_class=2)
    with pytest.raises(DataError, match="neither .*test nor .*val"):
        load_dataset(f"imagefolder:{tmp_path}", progress=False)
    make_image_tree(tmp_path / "val", classes=("cat", "emu"), per_class=1)
    with pytest.raises(DataError, match=r"val: class folder\(s\) emu have no counterpart"):
        load_dataset(f"imagefolder:{tmp_path}", progress=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x").mkdir()
    with pytest.raises(DataError, match=r"empty/x: class folder holds no image files"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}", progress=False)


def test_imagefolder_mixed_sizes_need_image_size(tmp_path):
    make_image_tree(tmp_path, classes=("a",), per_class=2, size=(4, 4))
    make_image_tree(tmp_path, classes=("b",), per_class=2, size=(5, 4))
    with pytest.raises(DataError, match=r"b/00.png: image is 5x4 .* pass image_size"):
        load_dataset(f"imagefolder:{tmp_path}", progress=False, test_fraction=2)
    s = load_dataset(f"imagefolder:{tmp_path}", progress=False, test_fraction=2, image_size=4)
    assert s.image_size == (4, 4)


def test_gzip_helper_is_really_gzip(tmp_path):
    p = write_idx(tmp_path / "x", np.zeros(2, np.uint8), 2049, gz=True)
    assert gzip.decompress(p.read_bytes())[:4] == b"\x00\x00\x08\x01"
