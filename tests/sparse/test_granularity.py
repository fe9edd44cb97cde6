"""Kernel, pattern and N:M masks: exact properties checked by hand."""
import pytest
import torch

from prunekit.errors import PrunekitError
from prunekit.sparse import granular_masks, kernel_mask, nm_mask, parse_nm, pattern_mask
from prunekit.sparse.granularity import pattern_library


def test_parse_nm():
    assert parse_nm("2:4") == (2, 4) and parse_nm("1:8") == (1, 8)
    for bad in ("2-4", "4:2", "0:4", "a:b", "2:4:8"):
        with pytest.raises(PrunekitError):
            parse_nm(bad)


def test_nm_linear_every_group_of_m_has_exactly_n():
    torch.manual_seed(0)
    w = torch.randn(6, 16)
    m = nm_mask(w, 2, 4)
    groups = m.reshape(6, 4, 4)
    assert (groups.sum(2) == 2).all()
    # the kept two are the two largest magnitudes of each group (checked one group at a time)
    for r in range(6):
        for g in range(4):
            vals = w[r, 4 * g:4 * g + 4].abs()
            top = set(torch.topk(vals, 2).indices.tolist())
            assert set(torch.nonzero(groups[r, g]).flatten().tolist()) == top


def test_nm_hand_example():
    w = torch.tensor([[0.1, -0.5, 2.0, 0.3, 4.0, 3.0, -5.0, 0.0]])
    assert nm_mask(w, 2, 4).tolist() == [[False, True, True, False, True, False, True, False]]
    assert nm_mask(w, 1, 4).tolist() == [[False, False, True, False, False, False, True, False]]


def test_nm_conv_groups_run_along_input_channels():
    torch.manual_seed(1)
    w = torch.randn(5, 8, 3, 3)
    m = nm_mask(w, 2, 4)
    # for every output channel and kernel position, the 8 input channels form two groups of 4
    per_pos = m.permute(0, 2, 3, 1).reshape(5, 3, 3, 2, 4)
    assert (per_pos.sum(-1) == 2).all()
    assert m.sum() == w.numel() // 2


def test_nm_short_last_group_keeps_at_most_n():
    w = torch.arange(1.0, 7.0).reshape(1, 6)          # groups [1,2,3,4] and [5,6] (+2 padded zeros)
    assert nm_mask(w, 2, 4).tolist() == [[False, False, True, True, True, True]]
    w = torch.arange(1.0, 6.0).reshape(1, 5)          # last group [5]: keeps min(2, 1) = 1
    assert nm_mask(w, 2, 4).sum() == 3


def test_kernel_mask_keeps_top_kernels_by_norm():
    w = torch.zeros(2, 3, 2, 2)
    # kernel norms by hand: sqrt of sums of squares
    w[0, 0] = torch.tensor([[3.0, 4.0], [0.0, 0.0]])   # 5
    w[0, 1] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])   # 1
    w[0, 2] = torch.tensor([[2.0, 0.0], [0.0, 0.0]])   # 2
    w[1, 0] = torch.tensor([[0.0, 0.0], [6.0, 8.0]])   # 10
    w[1, 1] = torch.tensor([[0.5, 0.5], [0.5, 0.5]])   # 1
    w[1, 2] = torch.tensor([[3.0, 0.0], [0.0, 0.0]])   # 3
    m = kernel_mask(w, 0.5)                             # 6 kernels, prune 3: the norms 1, 1, 2
    kept = m.reshape(2, 3, 4)
    assert (kept.all(2) | ~kept.any(2)).all()           # whole kernels only
    assert kept.all(2).tolist() == [[True, False, False], [True, False, True]]


def test_kernel_mask_linear_is_elementwise():
    w = torch.tensor([[1.0, -3.0], [2.0, 0.5]])
    assert kernel_mask(w, 0.5).tolist() == [[False, True], [True, False]]


def test_pattern_mask_uses_only_library_patterns():
    torch.manual_seed(2)
    w = torch.randn(8, 4, 3, 3)
    lib = pattern_library(w, 4, 3)
    assert lib.shape == (3, 9) and (lib.sum(1) == 4).all()
    m = pattern_mask(w, 0.5, num_patterns=3)            # 9 - round(4.5) = 4 entries per kernel
    allowed = {tuple(p.tolist()) for p in lib}
    kernels = m.reshape(32, 9)
    assert all(tuple(k.tolist()) in allowed for k in kernels)
    # every kernel takes the library pattern that keeps the most squared magnitude
    sq = w.reshape(32, 9).pow(2)
    for k in range(32):
        best = max(float((sq[k] * p).sum()) for p in lib.float())
        assert float((sq[k] * kernels[k].float()).sum()) == pytest.approx(best)


def test_pattern_library_most_frequent_first():
    w = torch.zeros(3, 1, 2, 2)
    w[0, 0] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])    # top-1 support: position 0
    w[1, 0] = torch.tensor([[0.0, 0.2], [0.0, 0.0]])    # position 1
    w[2, 0] = torch.tensor([[0.0, 0.0], [0.0, 9.0]])    # position 3
    w2 = torch.cat([w, w[1:2]], 0)                      # position 1 twice; 0 and 3 once, 0 seen first
    lib = pattern_library(w2, 1, 2)
    assert lib.int().tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]


def test_granular_masks_dispatch_and_existing():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    masks = granular_masks(net, granularity="nm", nm="2:4")
    assert set(masks) == {"0.weight", "2.weight"}
    assert (masks["2.weight"].reshape(4, 2, 4).sum(2) == 2).all()
    km = granular_masks(net, 0.25, "kernel")
    assert int((~km["0.weight"].reshape(32, 9).all(1)).sum()) == 8     # 25% of 32 kernels
    # what an existing mask prunes stays pruned
    old = {"0.weight": torch.ones(8, 4, 3, 3, dtype=torch.bool)}
    old["0.weight"][0] = False
    again = granular_masks(net, 0.25, "kernel", existing=old)
    assert not again["0.weight"][0].any()
    with pytest.raises(PrunekitError, match="granularity"):
        granular_masks(net, 0.5, "block")
