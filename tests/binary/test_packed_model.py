"""Packed inference models: identical outputs, the .pkb file, exact storage, op counts."""
import pytest
import torch
from torch import nn

from prunekit import models
from prunekit.binary import (
    binarize, binary_ops, gemm, load_packed, pack_model, save_packed, storage_report,
)
from prunekit.binary.packed import PackedBinaryConv2d, PackedBinaryLinear
from prunekit.errors import CheckpointError, PrunekitError


def trained_like(net):
    """Give BN statistics and weights non-default values, as training would."""
    torch.manual_seed(1)
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(16, *net.prunekit_spec.input_shape))
    return net.eval()


def build(name, mode):
    torch.manual_seed(0)
    kw = {"cfg": [8, "M", 70, "M", 16, 16]} if name == "vgg11" else {}
    net = models.create(name, in_channels=1, input_size=(28, 28), **kw)
    return trained_like(binarize(net, mode))


@pytest.mark.parametrize("name", ["lenet5", "vgg11"])
@pytest.mark.parametrize("mode", ["bwn", "xnor"])
@pytest.mark.parametrize("kernel", ["numpy", "auto"])
def test_packed_outputs_equal_float_binarized(name, mode, kernel):
    net = build(name, mode)
    packed = pack_model(net, kernel=kernel)
    assert any(isinstance(m, (PackedBinaryConv2d, PackedBinaryLinear)) for m in packed.modules())
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(packed(x), net(x))


def test_every_kernel_gives_the_same_model_output():
    net = build("vgg11", "xnor")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        ref = net(x)
        for k in gemm.available_kernels():
            assert torch.equal(pack_model(net, kernel=k, threads=2)(x), ref), k


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_pkb_round_trip(tmp_path, mode):
    net = build("lenet5", mode)
    path = save_packed(net, tmp_path / "m.pkb", meta={"note": "t"})
    ck = load_packed(path)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(ck.model(x), net(x))
    assert ck.meta["note"] == "t" and ck.meta["storage"]["ratio"] > 10
    assert ck.spec.transforms[-1]["mode"] == mode
    sd = torch.load(path, weights_only=True)["state_dict"]
    assert sd["fc1.weight_bits"].dtype == torch.int64 and sd["fc1.weight_bits"].shape == (120, 7)
    assert "fc1.weight" not in sd  # the float latent weights are not stored
    with pytest.raises(PrunekitError, match="exists"):
        save_packed(net, path, overwrite=False)


def test_load_packed_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_packed(tmp_path / "missing.pkb")
    bad = tmp_path / "bad.pkb"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_packed(bad)
    torch.save({"format": "something else"}, tmp_path / "other.pkb")
    with pytest.raises(CheckpointError, match="header"):
        load_packed(tmp_path / "other.pkb")
    plain = models.create("lenet5", in_channels=1)
    with pytest.raises(CheckpointError, match="binarize"):
        save_packed(plain, tmp_path / "p.pkb")


def test_pack_model_needs_binary_layers_and_eval_mode():
    with pytest.raises(PrunekitError, match="no binary layers"):
        pack_model(nn.Sequential(nn.Linear(3, 2)))
    packed = pack_model(build("lenet5", "bwn"))
    packed.train()
    with pytest.raises(PrunekitError, match="inference only"):
        packed(torch.randn(1, 1, 28, 28))
    with pytest.raises(PrunekitError, match="float32"):
        packed.eval().conv2(torch.randn(1, 6, 14, 14, dtype=torch.float64))


def test_storage_report_exact_bytes():
    net = binarize(nn.Sequential(nn.Linear(10, 100), nn.Linear(100, 70, bias=False), nn.Linear(70, 3)), "bwn")
    rep = storage_report(net)
    (layer,) = rep.layers
    assert (layer.name, layer.weights, layer.float32_bytes) == ("1", 7000, 28000)
    assert layer.sign_bytes == 70 * 2 * 8 and layer.alpha_bytes == 70 * 4
    assert rep.other_bytes == (10 * 100 + 100 + 70 * 3 + 3) * 4
    assert rep.float32_bytes == 28000 + rep.other_bytes
    assert rep.packed_bytes == 1120 + 280 + rep.other_bytes
    assert rep.binary_ratio == pytest.approx(28000 / 1400)
    # the packed model's own state dict gives the same figures
    assert storage_report(pack_model(net)).to_dict() == rep.to_dict()


def test_wide_layer_approaches_32x():
    rep = storage_report(binarize(nn.Sequential(nn.Linear(8, 8), nn.Linear(4096, 4096), nn.Linear(8, 8)), "bwn"))
    assert rep.layers[0].ratio == pytest.approx(4096 * 4096 * 4 / (4096 * 4096 / 8 + 4096 * 4))
    assert 31.5 < rep.binary_ratio < 32


def test_binary_ops_reported_separately():
    torch.manual_seed(0)
    base = models.create("lenet5", in_channels=1)
    x = torch.zeros(1, 1, 28, 28)
    fp = binary_ops(base, x)
    xn = binary_ops(binarize(base, "xnor"), x)
    bw = binary_ops(binarize(base, "bwn"), x)
    conv2_macs = 16 * 6 * 25 * 10 * 10
    assert fp["per_layer"]["conv2"]["float_macs"] == conv2_macs and fp["binary_ops"] == 0
    assert xn["per_layer"]["conv2"]["binary_ops"] == conv2_macs
    assert xn["binary_ops"] == conv2_macs + 400 * 120 + 120 * 84
    assert bw["bwn_adds"] == xn["binary_ops"] and bw["binary_ops"] == 0
    # float MACs left in conv2 (XNOR): |x| channel sum (6*14*14) + K filter (10*10*25) + 2 scalings per output
    assert xn["per_layer"]["conv2"]["float_macs"] == 6 * 14 * 14 + 100 * 25 + 2 * 1600
    assert xn["float_macs"] < fp["float_macs"]
    # the packed model reports the same ops
    packed = binary_ops(pack_model(binarize(base, "xnor")), x)
    assert packed["binary_ops"] == xn["binary_ops"]


def test_without_the_c_extension_numpy_is_used(monkeypatch):
    net = build("vgg11", "xnor")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        ref = pack_model(net)(x)
    monkeypatch.setattr(gemm, "_extension", lambda: None)
    assert gemm.available_kernels() == ["numpy"] and gemm.best_kernel() == "numpy"
    with torch.no_grad():
        assert torch.equal(pack_model(net)(x), ref)
    with pytest.raises(PrunekitError, match="not available"):
        gemm.binary_gemm(gemm.np.zeros((1, 1), gemm.np.uint64), gemm.np.zeros((1, 1), gemm.np.uint64), 1,
                         kernel="avx512")
