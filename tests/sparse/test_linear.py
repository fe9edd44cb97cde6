"""SparseLinear / to_sparse_inference: same outputs as the dense masked model."""
import torch
from torch import nn

from prunekit import models
from prunekit.sparse import SparseLinear, apply_masks, magnitude_masks, to_sparse_inference


def test_sparse_linear_matches_dense():
    torch.manual_seed(0)
    lin = nn.Linear(12, 5)
    mask = magnitude_masks(lin, 0.8)["weight"]
    sp = SparseLinear.from_linear(lin, mask)
    assert sp.nnz == int(mask.sum())
    x = torch.randn(3, 7, 12)  # extra leading dims are kept
    ref = nn.functional.linear(x, lin.weight * mask, lin.bias)
    assert sp(x).shape == (3, 7, 5)
    assert torch.allclose(sp(x), ref, atol=1e-6)
    nb = SparseLinear(lin.weight.detach() * mask)
    assert torch.allclose(nb(x[0]), nn.functional.linear(x[0], lin.weight * mask), atol=1e-6)


def test_to_sparse_inference_replaces_only_sparse_layers():
    torch.manual_seed(0)
    net = models.create("lenet300_100", in_channels=1).eval()
    masks = magnitude_masks(net, {"features.0.weight": 0.95, "features.2.weight": 0.3})
    apply_masks(net, masks)
    fast = to_sparse_inference(net, masks, min_sparsity=0.5)
    assert isinstance(fast.features[0], SparseLinear)
    assert type(fast.features[2]) is nn.Linear and type(fast.classifier) is nn.Linear
    assert type(net.features[0]) is nn.Linear  # original untouched
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fast(x), net(x), atol=1e-5)
