"""Named datasets with a default place: fashion-mnist (IDX files) and cifar10-jpeg (a tar.gz of JPEGs, cached)."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from data_file_writers import make_idx_dir

from prunekit.data import RandomCrop, RandomHorizontalFlip, default_augment, load_dataset
from prunekit.data import cifar_jpeg
from prunekit.data.cifar_jpeg import CIFAR10_CLASSES
from prunekit.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR
from prunekit.errors import DataError

REAL_FASHION = Path(FASHION_MNIST_DIR)
SKIP_NO_FASHION = pytest.mark.skipif(
    not (REAL_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")


# --------------------------------------------------------------------------- fashion-mnist

def test_fashion_mnist_from_a_path_is_the_idx_reader_with_class_names(tmp_path):
    arrays = make_idx_dir(tmp_path, gz=True, hw=(28, 28))
    s = load_dataset(f"fashion-mnist:{tmp_path}", normalize=False)
    assert torch.equal(s.train_x, torch.tensor(arrays["train_x"][:, None], dtype=torch.float32) / 255)
    assert s.test_y.tolist() == arrays["test_y"].tolist()
    assert (s.name, s.num_classes, s.domain) == (f"fashion-mnist:{tmp_path}", 10, "digits")
    assert s.class_names == FASHION_MNIST_CLASSES and s.class_names[9] == "Ankle boot"
    same = load_dataset(f"mnist-idx:{tmp_path}", normalize=False)
    assert torch.equal(same.train_x, s.train_x)


def test_fashion_mnist_env_var_and_missing_folder(tmp_path, monkeypatch):
    make_idx_dir(tmp_path / "fm", hw=(28, 28))
    monkeypatch.setenv("PRUNEKIT_FASHION_MNIST", str(tmp_path / "fm"))
    assert load_dataset("fashion-mnist").name == "fashion-mnist"
    monkeypatch.setenv("PRUNEKIT_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere: not a directory"):
        load_dataset("fashion-mnist")


def test_fashion_mnist_refuses_other_image_sizes(tmp_path):
    make_idx_dir(tmp_path, hw=(4, 5))
    with pytest.raises(DataError, match="Fashion-MNIST images are 28x28"):
        load_dataset(f"fashion-mnist:{tmp_path}")


@SKIP_NO_FASHION
def test_fashion_mnist_real_files(monkeypatch):
    monkeypatch.delenv("PRUNEKIT_FASHION_MNIST", raising=False)
    s = load_dataset("fashion-mnist")
    assert s.train_x.shape == (60000, 1, 28, 28) and s.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(s.train_y).tolist() == [6000] * 10
    assert torch.bincount(s.test_y).tolist() == [1000] * 10
    tune = s.holdout(0.1, seed=0)  # the validation rule of every dataset: a stratified slice of train
    assert len(tune.test_y) == 6000 and torch.bincount(tune.test_y).tolist() == [600] * 10


# --------------------------------------------------------------------------- cifar10-jpeg

def _jpeg(value, hw=(32, 32)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((*hw, 3), value, dtype=np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


# (split, class, file, constant RGB): classes written in non-CIFAR order to check the label mapping
_IMAGES = [("train", "truck", "0001.jpg", (250, 10, 10)), ("train", "airplane", "0000.jpg", (10, 200, 30)),
           ("train", "cat", "0000.jpg", (128, 128, 128)), ("train", "airplane", "0001.jpg", (0, 0, 255)),
           ("test", "dog", "0000.jpg", (60, 90, 120)), ("test", "airplane", "0000.jpg", (200, 200, 0))]


def _write_tar(path: Path, images=_IMAGES, extra=()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for split, cls, name, rgb in images:
            data = _jpeg(rgb)
            info = tarfile.TarInfo(f"{split}/{cls}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, data in extra:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def jpeg_env(tmp_path, monkeypatch):
    """A tiny archive and a private cache folder; counts the archive decodes."""
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    calls = []
    real = cifar_jpeg.decode_archive

    def counting(path, **kw):
        calls.append(Path(path))
        return real(path, **kw)

    monkeypatch.setattr(cifar_jpeg, "decode_archive", counting)
    return _write_tar(tmp_path / "cifar10-jpeg.tar.gz"), calls


def test_cifar10_jpeg_pixels_labels_and_class_order(jpeg_env):
    archive, calls = jpeg_env
    s = load_dataset(f"cifar10-jpeg:{archive}", normalize=False, progress=False)
    # sorted by (CIFAR-10 label, file name) within a split: airplane 0000, airplane 0001, cat, truck
    assert s.train_y.tolist() == [0, 0, 3, 9] and s.test_y.tolist() == [0, 5]
    assert s.class_names == CIFAR10_CLASSES and s.num_classes == 10
    expected = torch.tensor([(10, 200, 30), (0, 0, 255), (128, 128, 128), (250, 10, 10)], dtype=torch.float32)
    got = s.train_x.mean(dim=(2, 3)) * 255
    assert torch.allclose(got, expected, atol=3.0)  # a constant image survives JPEG within a few levels
    assert (s.train_x * 255).sub(expected[:, :, None, None]).abs().max() <= 8
    assert (s.name, s.domain, s.image_size, s.in_channels) == (f"cifar10-jpeg:{archive}", "natural", (32, 32), 3)
    assert len(calls) == 1


def test_cifar10_jpeg_gets_the_cifar_augmentation(jpeg_env):
    archive, _ = jpeg_env
    s = load_dataset(f"cifar10-jpeg:{archive}", progress=False)
    assert default_augment(s).to_config() == {"kind": "compose", "transforms": [
        RandomCrop(padding=4).to_config(), RandomHorizontalFlip(0.5).to_config()]}


def test_cifar10_jpeg_cache_hit_changed_archive_and_corrupt_cache(jpeg_env, tmp_path):
    archive, calls = jpeg_env
    first = load_dataset(f"cifar10-jpeg:{tmp_path}", normalize=False, progress=False)  # a folder works too
    caches = list((tmp_path / "cache").glob("cifar10-jpeg-*.npz"))
    assert len(calls) == 1 and len(caches) == 1
    again = load_dataset(f"cifar10-jpeg:{archive}", normalize=False, progress=False)
    assert len(calls) == 1  # served from the cache
    assert torch.equal(again.train_x, first.train_x) and torch.equal(again.test_y, first.test_y)
    with np.load(caches[0], allow_pickle=False) as z:
        assert z["train_x"].dtype == np.uint8 and z["train_x"].shape == (4, 3, 32, 32)

    # a changed archive (one more image) is decoded again, into a new cache file
    _write_tar(archive, _IMAGES + [("test", "ship", "0000.jpg", (5, 5, 5))])
    changed = load_dataset(f"cifar10-jpeg:{archive}", normalize=False, progress=False)
    assert len(calls) == 2 and changed.test_y.tolist() == [0, 5, 8]
    assert len(list((tmp_path / "cache").glob("cifar10-jpeg-*.npz"))) == 2

    # a corrupt cache is not trusted: decoded again and rewritten
    current = max((tmp_path / "cache").glob("cifar10-jpeg-*.npz"), key=os.path.getmtime)
    current.write_bytes(current.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="ignoring the unreadable or inconsistent cache"):
        rebuilt = load_dataset(f"cifar10-jpeg:{archive}", normalize=False, progress=False)
    assert len(calls) == 3 and torch.equal(rebuilt.test_x, changed.test_x)
    load_dataset(f"cifar10-jpeg:{archive}", progress=False)
    assert len(calls) == 3  # the rewritten cache is good


def test_cifar10_jpeg_cache_with_other_content_is_rebuilt(jpeg_env):
    archive, calls = jpeg_env
    load_dataset(f"cifar10-jpeg:{archive}", progress=False)
    (cache,) = Path(os.environ["PRUNEKIT_CACHE"]).glob("*.npz")
    with np.load(cache, allow_pickle=False) as z:
        arrays = dict(z)
    for key, bad in (("train_y", arrays["train_y"] + 10),  # labels out of range: a cache not to trust
                     ("version", np.array(["x", "y"])), ("sha256", np.array("0" * 64))):
        with open(cache, "wb") as f:
            np.savez(f, **{**arrays, key: bad})
        with pytest.warns(UserWarning):
            s = load_dataset(f"cifar10-jpeg:{archive}", progress=False)
        assert s.train_y.tolist() == [0, 0, 3, 9]
    assert len(calls) == 4


def test_cifar10_jpeg_bad_archives(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="no such archive"):
        load_dataset(f"cifar10-jpeg:{tmp_path / 'missing.tar.gz'}")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar at all" * 10)
    with pytest.raises(DataError, match="bad.tar.gz: not a readable tar archive"):
        load_dataset(f"cifar10-jpeg:{bad}", progress=False)
    unknown = _write_tar(tmp_path / "unknown.tar.gz", [("train", "unicorn", "0.jpg", (1, 2, 3))])
    with pytest.raises(DataError, match="train/unicorn/0.jpg: unknown class folder 'unicorn'"):
        load_dataset(f"cifar10-jpeg:{unknown}", progress=False)
    notjpeg = _write_tar(tmp_path / "notjpeg.tar.gz", _IMAGES[:1], extra=[("test/cat/0000.jpg", b"garbage")])
    with pytest.raises(DataError, match="test/cat/0000.jpg: unreadable image"):
        load_dataset(f"cifar10-jpeg:{notjpeg}", progress=False)
    big = _write_tar(tmp_path / "big.tar.gz", _IMAGES, extra=[("test/cat/0001.jpg", _jpeg(7, hw=(32, 40)))])
    with pytest.raises(DataError, match="test/cat/0001.jpg: image is 40x32, CIFAR-10 images are 32x32"):
        load_dataset(f"cifar10-jpeg:{big}", progress=False)
    notest = _write_tar(tmp_path / "notest.tar.gz", _IMAGES[:2], extra=[("README.md", b"hello")])
    with pytest.raises(DataError, match="no test/<class>/\\*.jpg images"):
        load_dataset(f"cifar10-jpeg:{notest}", progress=False)


def test_cifar10_jpeg_default_places(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_tar(data_dir / "cifar10-jpeg.tar.gz")
    monkeypatch.setenv("PRUNEKIT_DATA", str(data_dir))
    s = load_dataset("cifar10-jpeg", progress=False)
    assert s.name == "cifar10-jpeg" and len(s.train_y) == 4
    monkeypatch.setattr(cifar_jpeg, "default_archive_places", lambda: [tmp_path / "a" / "x.tar.gz"])
    with pytest.raises(DataError, match="cifar10-jpeg.tar.gz not found in .*a; .*PRUNEKIT_DATA"):
        load_dataset("cifar10-jpeg")


def _real_archive() -> Path | None:
    try:
        return cifar_jpeg.find_archive(None)
    except DataError:
        return None


REAL_ARCHIVE = _real_archive()
SKIP_NO_ARCHIVE = pytest.mark.skipif(REAL_ARCHIVE is None, reason="cifar10-jpeg.tar.gz not found ($PRUNEKIT_DATA "
                                                                  "or ../shared/data next to the checkout)")


@SKIP_NO_ARCHIVE
def test_cifar10_jpeg_real_archive_first_members():
    arrays = cifar_jpeg.decode_archive(REAL_ARCHIVE, progress=False, max_members=30)
    n = len(arrays["train_y"]) + len(arrays["test_y"])
    assert n == 30 and arrays["train_x"].shape[1:] == arrays["test_x"].shape[1:] == (3, 32, 32)
    assert arrays["test_x"].std() > 10  # real photographs, not constant images


@pytest.mark.slow
@SKIP_NO_ARCHIVE
def test_cifar10_jpeg_real_archive_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEKIT_CACHE", str(tmp_path / "cache"))
    s = load_dataset("cifar10-jpeg", progress=False)
    assert s.train_x.shape == (50000, 3, 32, 32) and s.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(s.train_y).tolist() == [5000] * 10
    assert torch.bincount(s.test_y).tolist() == [1000] * 10


def test_cli_train_and_eval_on_both_named_datasets(jpeg_env, tmp_path, capsys):
    import json

    import prunekit.cli as cli

    archive, _ = jpeg_env
    make_idx_dir(tmp_path / "fm", hw=(28, 28))
    for i, spec in enumerate((f"cifar10-jpeg:{archive}", f"fashion-mnist:{tmp_path / 'fm'}")):
        out = tmp_path / f"run{i}"
        assert cli.main(["train", "--model", "lenet5", "--data", spec, "--epochs", "1", "--out", str(out),
                         "--no-progress"]) == 0
        capsys.readouterr()
        assert cli.main(["eval", str(out / "best.pt"), "--json"]) == 0  # the dataset comes from the checkpoint
        got = json.loads(capsys.readouterr().out)
        assert (got["data"], got["n"]) == (spec, 2 if i == 0 else 6)
