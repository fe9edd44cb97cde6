"""Sparse export: exact round trips, compact index types, file size, masks in checkpoints."""
import pytest
import torch
from torch import nn

from prunekit import models
from prunekit.errors import CheckpointError, PrunekitError
from prunekit.sparse import (
    from_sparse_state_dict, load_sparse, load_with_masks, magnitude_masks, save_sparse, save_with_masks,
    sparse_nbytes, to_sparse_state_dict,
)
from prunekit.sparse.export import decode_tensor, encode_tensor, index_dtype


def test_encode_exact_coo_and_csr():
    t = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, -3.0]])
    m = t != 0
    coo = encode_tensor(t, m, "coo")
    assert coo["indices"].tolist() == [1, 3, 5] and coo["indices"].dtype == torch.int16
    assert coo["values"].tolist() == [1.5, 2.0, -3.0]
    csr = encode_tensor(t, m, "csr")
    assert csr["crow"].tolist() == [0, 1, 3] and csr["col"].tolist() == [1, 0, 2]
    assert csr["values"].tolist() == [1.5, 2.0, -3.0]
    for e in (coo, csr):
        dense, mask = decode_tensor(e)
        assert torch.equal(dense, t) and torch.equal(mask, m)


def test_index_dtypes():
    assert index_dtype(32767) == torch.int16
    assert index_dtype(32768) == torch.int32
    assert index_dtype(2**31) == torch.int64


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_state_dict_round_trip_conv_model(layout):
    torch.manual_seed(0)
    net = models.create("lenet5", in_channels=1)
    masks = magnitude_masks(net, 0.8, scope="global")
    masks["fc1.weight"][0, :3] = True  # a kept weight that is exactly zero must stay kept
    with torch.no_grad():
        net.fc1.weight[0, 0] = 0.0
    sd = to_sparse_state_dict(net, masks, layout)
    state, masks2 = from_sparse_state_dict(sd)
    assert set(masks2) == set(masks)
    for k, m in masks.items():
        assert torch.equal(masks2[k], m), k
        assert torch.equal(state[k], net.state_dict()[k] * m), k
    for k, v in net.state_dict().items():
        if k not in masks:
            assert torch.equal(state[k], v), k
    assert sd["sparse"]["conv1.weight"]["layout"] == layout


def test_unknown_layout_and_bad_header():
    net = nn.Linear(3, 2)
    m = {"weight": torch.ones(2, 3, dtype=torch.bool)}
    with pytest.raises(PrunekitError, match="layout"):
        to_sparse_state_dict(net, m, "bsr")
    with pytest.raises(CheckpointError, match="header"):
        from_sparse_state_dict({"dense": {}})
    bad = to_sparse_state_dict(net, m, "coo")
    bad["sparse"]["weight"]["indices"] = torch.tensor([0, 99], dtype=torch.int16)
    bad["sparse"]["weight"]["values"] = torch.tensor([1.0, 2.0])
    with pytest.raises(CheckpointError, match="range"):
        from_sparse_state_dict(bad)


def test_sparse_file_is_small_and_loads(tmp_path):
    torch.manual_seed(0)
    net = models.create("lenet300_100", in_channels=1)
    masks = magnitude_masks(net, 0.95)
    dense_path = tmp_path / "dense.pt"
    from prunekit import checkpoint

    checkpoint.save(dense_path, net)
    p = save_sparse(tmp_path / "sparse.pt", net, masks, layout="csr", meta={"note": "x"})
    ratio = p.stat().st_size / dense_path.stat().st_size
    assert ratio <= 1 / 8, ratio
    ck = load_sparse(p)
    assert ck.meta == {"note": "x"} and all(torch.equal(ck.masks[k], masks[k]) for k in masks)
    x = torch.randn(4, 1, 28, 28)
    ref = net.eval()(x * 1)  # net was not modified by save_sparse ...
    from prunekit.sparse import apply_masks

    apply_masks(net, masks)
    assert torch.allclose(ck.model(x), net(x), atol=1e-6)
    assert not torch.allclose(ref, net(x))  # ... and masking changes the output, so the check bites
    sd = to_sparse_state_dict(net, masks, "csr")
    assert sparse_nbytes(sd) < 0.1 * sum(v.numel() * 4 for v in net.state_dict().values())
    with pytest.raises(PrunekitError, match="exists"):
        save_sparse(p, net, masks, overwrite=False)


def test_load_sparse_rejects_garbage(tmp_path):
    f = tmp_path / "junk.pt"
    f.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_sparse(f)
    with pytest.raises(CheckpointError, match="no such"):
        load_sparse(tmp_path / "missing.pt")


def test_masks_recorded_in_checkpoint(tmp_path):
    net = models.create("lenet300_100", in_channels=1)
    masks = magnitude_masks(net, 0.9, scope="global")
    save_with_masks(tmp_path / "m.pt", net, masks, meta={"run": 1})
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # plain data: safe loader accepts it
    assert raw["train_state"]["masks"]["features.0.weight"].dtype == torch.bool
    ck, masks2 = load_with_masks(tmp_path / "m.pt")
    assert all(torch.equal(masks2[k], masks[k]) for k in masks)
    assert ck.meta["run"] == 1 and ck.meta["sparsity"]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    for k, m in masks.items():
        assert torch.all(dict(ck.model.named_parameters())[k][~m] == 0)
