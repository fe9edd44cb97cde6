"""PruningNet blocks (MetaPruning, Liu et al. ICCV 2019): closed-form generated weights, the low-rank
last layer, and the cached per-dim masks equal to ``SearchSpace.masks``."""
import numpy as np
import pytest
import torch
from torch import nn

from prunekit import models
from prunekit.errors import PrunekitError
from prunekit.search import PruningNet, SearchSpace


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))


def _set_block(block, fc1_w, fc1_b, proj_w, fc2_w, fc2_b):
    with torch.no_grad():
        block.fc1.weight.copy_(torch.tensor(fc1_w))
        block.fc1.bias.copy_(torch.tensor(fc1_b))
        if proj_w is not None:
            block.proj.weight.copy_(torch.tensor(proj_w))
        block.fc2.weight.copy_(torch.tensor(fc2_w))
        block.fc2.bias.copy_(torch.tensor(fc2_b))


def test_generated_weight_is_the_closed_form_of_the_low_rank_block():
    net = _mlp()
    space = SearchSpace.build(net, torch.zeros(1, 2), ratios=(0.5, 1.0))
    assert space.candidates == [(2, 4)]
    pnet = PruningNet(net, space, hidden=2, rank=1)
    # layer 0: code = (kept fraction of its 4 outputs, 1.0 for its unsearched input)
    # W = fc2.bias + fc2.weight @ proj.weight @ relu(fc1.weight @ code + fc1.bias)
    _set_block(pnet.meta["0__weight"], [[1.0, 0.0], [0.0, 1.0]], [0.0, -1.0], [[2.0, 3.0]],
               [[float(i)] for i in range(8)], [1.0] * 8)
    bias0 = dict(net.named_parameters())["0.bias"].detach()
    # half width: code (0.5, 1) -> h = (0.5, 0) -> z = 1 -> W = 1 + arange(8); channels 2, 3 zeroed
    gen = pnet.generate((2,))
    assert torch.equal(gen["0.weight"], torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0], [0.0, 0.0]]))
    assert torch.equal(gen["0.bias"], torch.cat([bias0[:2], torch.zeros(2)]))
    # full width: code (1, 1) -> h = (1, 0) -> z = 2 -> W = 1 + 2 * arange(8)
    gen = pnet.generate((4,))
    assert torch.equal(gen["0.weight"], torch.tensor([[1.0, 3.0], [5.0, 7.0], [9.0, 11.0], [13.0, 15.0]]))
    assert torch.equal(gen["0.bias"], bias0)
    # layer 2 (input group searched): code (1.0, kept fraction of its 4 inputs); trailing inputs zeroed
    _set_block(pnet.meta["2__weight"], [[0.0, 2.0], [1.0, 1.0]], [0.0, 0.0], [[1.0, -1.0]],
               [[1.0], [2.0], [3.0], [4.0]], [0.0] * 4)
    # code (1, 0.5): h = (1, 1.5) -> z = -0.5
    assert torch.equal(pnet.generate((2,))["2.weight"], torch.tensor([[-0.5, -1.0, 0.0, 0.0]]))


def test_rank_at_least_hidden_is_the_papers_dense_block():
    net = _mlp()
    space = SearchSpace.build(net, torch.zeros(1, 2), ratios=(0.5, 1.0))
    pnet = PruningNet(net, space, hidden=3, rank=5)
    block = pnet.meta["0__weight"]
    assert block.proj is None
    assert {k: tuple(v.shape) for k, v in block.state_dict().items()} == {
        "fc1.weight": (3, 2), "fc1.bias": (3,), "fc2.weight": (8, 3), "fc2.bias": (8,)}
    code = torch.tensor([0.5, 1.0])
    want = block.fc2(torch.relu(block.fc1(code))).view(4, 2)
    assert torch.allclose(block(code), want, atol=1e-6)


def test_low_rank_block_equals_dense_block_with_the_product_weight():
    net = _mlp()
    space = SearchSpace.build(net, torch.zeros(1, 2), ratios=(0.5, 1.0))
    pnet = PruningNet(net, space, hidden=6, rank=2)
    block = pnet.meta["0__weight"]
    # parameters: fc1 (6x2 + 6), proj (2x6), fc2 (8x2 + 8): the last weight costs rank, not hidden, per entry
    assert sum(p.numel() for p in block.parameters()) == 18 + 12 + 24
    code = torch.tensor([0.5, 1.0])
    dense = block.fc2.weight @ block.proj.weight  # (numel x hidden), rank 2
    want = block.fc2.bias + dense @ torch.relu(block.fc1(code))
    assert torch.allclose(block(code), want.view(4, 2), atol=1e-6)
    assert torch.linalg.matrix_rank(dense) == 2
    # starts at the checkpoint's weight with a small code-dependent part
    assert torch.allclose(block(code), net[0].weight, atol=0.05)


@pytest.mark.parametrize("kw", [{"rank": 0}, {"hidden": -1}, {"rank": 2.5}, {"hidden": True}])
def test_bad_widths_are_errors(kw):
    net = _mlp()
    space = SearchSpace.build(net, torch.zeros(1, 2), ratios=(0.5, 1.0))
    with pytest.raises(PrunekitError, match=next(iter(kw))):
        PruningNet(net, space, **kw)


def test_cached_dim_masks_equal_the_space_masks():
    torch.manual_seed(0)
    m = models.create("mobilenet_v2", num_classes=10, input_size=(32, 32))
    space = SearchSpace.build(m.eval(), torch.randn(1, 3, 32, 32), ratios=(0.25, 0.5, 1.0))
    pnet = PruningNet(m, space, hidden=4, rank=2)
    rng = np.random.default_rng(0)
    for enc in [space.smallest, space.full] + [tuple(int(c[rng.integers(len(c))]) for c in space.candidates)
                                               for _ in range(2)]:
        with torch.no_grad():
            gen = pnet.generate(enc)
            raw = dict(pnet.net.named_parameters())
            codes = pnet._codes(enc)
            raw.update({n: pnet.meta[k](codes[i]) for i, (n, k, _, _) in enumerate(pnet._generated)})
            masks = space.masks(enc, raw)
        assert set(gen) == set(raw)
        for n, t in raw.items():
            assert torch.equal(gen[n], t * masks[n] if n in masks else t), n


def test_resuming_with_another_rank_names_the_setting(tmp_path):
    from prunekit.search.api import SearchConfig
    from prunekit.search.supernet import train_supernet as _train_supernet

    net = _mlp()
    space = SearchSpace.build(net, torch.zeros(1, 2), ratios=(0.5, 1.0))
    torch.save(PruningNet(net, space, hidden=4, rank=2).state_dict(), tmp_path / "supernet.pt")
    cfg = SearchConfig(method="metapruning", macs=0.5, hidden=4, rank=3)
    with pytest.raises(PrunekitError, match="hidden/rank"):
        _train_supernet(net, space, None, cfg, tmp_path / "supernet.pt", resume=True, progress=False)
    cfg = SearchConfig(method="metapruning", macs=0.5, hidden=4, rank=2)
    pnet = _train_supernet(net, space, None, cfg, tmp_path / "supernet.pt", resume=True, progress=False)
    assert pnet.meta["0__weight"].fc2.weight.shape == (8, 2)
