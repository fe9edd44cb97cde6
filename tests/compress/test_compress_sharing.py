"""Weight sharing: layouts, the zero code, per-layer bits, float16 codebooks, applying to a model."""
import pytest
import torch
from torch import nn

from prunekit.compress import CompressConfig, apply_shared, finalize_codebooks, share_weights
from prunekit.compress.sharing import plan_layout, quantizable_weights, quantized_weight, share_tensor
from prunekit.config import from_dict, to_dict
from prunekit.errors import ConfigError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(36, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_quantizable_weights_kinds_and_exclude():
    net = Net()
    assert quantizable_weights(net) == {"conv.weight": "conv", "fc.weight": "fc"}
    assert quantizable_weights(net, CompressConfig(exclude=["conv.*"])) == {"fc.weight": "fc"}


def test_default_bits_and_overrides():
    torch.manual_seed(0)
    shared = share_weights(Net())
    assert shared["conv.weight"].bits == 8 and shared["fc.weight"].bits == 5
    cfg = CompressConfig(bits={"fc.*": 3}, index_bits={"conv.weight": 4})
    shared = share_weights(Net(), config=cfg)
    assert shared["fc.weight"].bits == 3 and len(shared["fc.weight"].codebook) == 8
    assert shared["conv.weight"].index_bits == 4


def test_dense_layer_uses_all_codes_and_no_zero_code():
    torch.manual_seed(0)
    w = torch.randn(10, 40)
    st = share_tensor("w", w, None, "fc", CompressConfig())
    assert st.layout == "dense" and st.zero_code is None and len(st.codebook) == 32
    assert (st.weight() - w).abs().max() < (w.max() - w.min()) / 31


def test_sparse_layer_with_overflow_gets_a_zero_code():
    w = torch.zeros(1, 100)
    w[0, [0, 1, 99]] = torch.tensor([1.0, -1.0, 0.25])
    st = share_tensor("w", w, None, "fc", CompressConfig(bits_fc=2, index_bits_fc=3))
    assert st.layout == "sparse" and st.zero_code == 3 and len(st.codebook) == 4
    assert st.codebook[3] == 0 and st.n_learned == 3
    assert torch.equal(st.weight(), w)                 # three values, three learned centroids: exact
    assert torch.equal(st.mask, w != 0)


def test_plan_layout_rules():
    full = torch.ones(100, dtype=torch.bool)
    assert plan_layout(full, 5, 5, "auto") == ("dense", False)
    sparse = torch.zeros(100, dtype=torch.bool)
    sparse[::10] = True
    assert plan_layout(sparse, 5, 5, "auto") == ("sparse", False)   # 10 * 10 bits < 100 * 5 bits
    assert plan_layout(sparse, 5, 5, "dense") == ("dense", True)    # pruned positions need the zero code
    half = torch.zeros(100, dtype=torch.bool)
    half[::2] = True
    assert plan_layout(half, 5, 5, "auto")[0] == "dense"            # 50 * 10 bits is not < 500


def test_explicit_masks_and_shapes_checked():
    net = Net()
    masks = {"fc.weight": torch.rand(5, 36) > 0.5}
    shared = share_weights(net, masks)
    assert torch.equal(shared["fc.weight"].mask, masks["fc.weight"])
    assert torch.all(shared["fc.weight"].weight()[~masks["fc.weight"]] == 0)
    with pytest.raises(ConfigError, match="mask shape"):
        share_weights(net, {"fc.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="does not have"):
        share_weights(net, {"nope.weight": torch.ones(3, dtype=torch.bool)})


def test_apply_shared_writes_exactly_and_leaves_others():
    torch.manual_seed(1)
    net = Net()
    bias = net.fc.bias.detach().clone()
    shared = share_weights(net)
    apply_shared(net, shared)
    assert torch.equal(net.fc.weight, quantized_weight(shared["fc.weight"].codebook, shared["fc.weight"].assignments,
                                                       shared["fc.weight"].mask))
    assert len(torch.unique(net.fc.weight)) <= 32 and torch.equal(net.fc.bias, bias)


def test_float16_codebook_is_representable():
    torch.manual_seed(2)
    st = share_tensor("w", torch.randn(8, 8), None, "fc", CompressConfig(codebook_dtype="float16"))
    assert torch.equal(st.codebook.half().float(), st.codebook)
    st.codebook = st.codebook + 1e-4            # as after fine-tuning
    finalize_codebooks({"w": st})
    assert torch.equal(st.codebook.half().float(), st.codebook)


def test_config_round_trip_and_errors():
    cfg = CompressConfig(bits_fc=4, coder="rans", prune_sparsity={"fc.weight": 0.9})
    assert from_dict(CompressConfig, to_dict(cfg)) == cfg
    for bad, key in [({"bits_fc": 0}, "bits_fc"), ({"bitz": 3}, "bitz"), ({"coder": "lzw"}, "coder"),
                     ({"bits": {"fc": 13}}, "bits"), ({"prune_sparsity": 1.5}, "prune_sparsity"),
                     ({"prune_sparsity": 0.5, "quality": 1.0}, "quality"), ({"index_bits_conv": "8"}, "index_bits_conv")]:
        with pytest.raises(ConfigError, match=key):
            from_dict(CompressConfig, bad)
