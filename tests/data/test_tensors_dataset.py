"""``tensors:FILE``: the user's own arrays (.npz / .pt) as a dataset, values kept as stored."""
import numpy as np
import pytest
import torch

from prunekit.data import load_dataset
from prunekit.errors import DataError


def test_npz_with_splits_keeps_values(tmp_path):
    x_train = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    p = tmp_path / "d.npz"
    np.savez(p, x_train=x_train, y_train=np.array([0, 2]), x_test=x_train[:1] * -1, y_test=np.array([1]))
    s = load_dataset(f"tensors:{p}")
    assert torch.equal(s.train_x, torch.from_numpy(x_train)) and s.test_x[0, 2, 3, 3].item() == -47.0
    assert s.train_y.tolist() == [0, 2] and s.num_classes == 3 and s.input_shape == (3, 4, 4)


def test_pt_with_x_y_is_split_stratified(tmp_path):
    x = torch.randn(50, 8, 8)   # (N, H, W): one channel
    y = torch.arange(50) % 5
    p = tmp_path / "d.pt"
    torch.save({"x": x, "y": y}, p)
    s = load_dataset(f"tensors:{p}")
    assert len(s.train_x) == 40 and len(s.test_x) == 10 and s.in_channels == 1
    assert sorted(s.test_y.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # every sample is one of the originals, unchanged
    flat = {tuple(r.flatten().tolist()) for r in x}
    assert all(tuple(r.flatten().tolist()) in flat for r in torch.cat([s.train_x, s.test_x]))


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 8))}, "expected arrays x_train"),
    ({"x": np.zeros((4, 8)), "y": np.zeros(4, int)}, "(N, C, H, W)"),
    ({"x": np.zeros((4, 1, 2, 2)), "y": np.zeros(3, int)}, "4 non-negative integer class indices"),
    ({"x": np.full((4, 1, 2, 2), np.nan), "y": np.zeros(4, int)}, "NaN"),
])
def test_bad_arrays_name_the_problem(tmp_path, arrays, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match="bad.npz") as e:
        load_dataset(f"tensors:{p}")
    assert message in str(e.value)


def test_missing_and_wrong_kind_of_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(f"tensors:{tmp_path / 'none.npz'}")
    (tmp_path / "a.csv").write_text("1,2")
    with pytest.raises(DataError, match="a .npz or .pt file"):
        load_dataset(f"tensors:{tmp_path / 'a.csv'}")
