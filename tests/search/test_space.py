"""SearchSpace: grid, exact costs, and masked sub-network == physically pruned sub-network."""
import numpy as np
import pytest
import torch

from prunekit import models
from prunekit.errors import PrunekitError
from prunekit.measure import count_macs
from prunekit.search import SearchSpace, candidate_counts, masked_forward

ZOO = [("convnet3", 1, 16), ("resnet20", 3, 16), ("mobilenet_v2", 3, 16)]


def test_candidate_counts_exact():
    assert candidate_counts(16, (0.1, 0.5, 1.0)) == (2, 8, 16)
    assert candidate_counts(16, (0.1, 0.5, 1.0), round_to=4) == (4, 8, 16)
    assert candidate_counts(10, (0.25,), min_channels=4) == (4, 10)
    assert candidate_counts(3, (0.1, 0.2)) == (1, 3)


@pytest.fixture(scope="module", params=ZOO, ids=[z[0] for z in ZOO])
def built(request):
    name, cin, size = request.param
    torch.manual_seed(0)
    m = models.create(name, num_classes=10, in_channels=cin, input_size=(size, size)).eval()
    # non-trivial BN statistics so masking must really match removal
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(2, cin, size, size)
    return m, x, SearchSpace.build(m, x[:1], ratios=(0.25, 0.5, 0.75, 1.0))


def _random_enc(space, seed):
    rng = np.random.default_rng(seed)
    return tuple(int(c[rng.integers(len(c))]) for c in space.candidates)


def test_macs_and_params_of_encoding_equal_realised_model(built):
    m, x, space = built
    for seed in range(3):
        enc = _random_enc(space, seed)
        small = space.plan(enc).apply(m)
        assert space.macs(enc) == count_macs(small, x[:1]).total
        assert space.params(enc) == sum(p.numel() for p in small.parameters())
    assert space.macs(space.full) == count_macs(m, x[:1]).total


def test_masked_subnetwork_equals_pruned(built):
    m, x, space = built
    enc = _random_enc(space, 7)
    small = space.plan(enc).apply(m).eval()
    with torch.no_grad():
        ref = small(x)
        via_masks = masked_forward(m, space, enc, x)
        via_plan = space.plan(enc).apply_masks(m).eval()(x)
    assert torch.allclose(via_masks, ref, atol=1e-5)
    assert torch.allclose(via_plan, ref, atol=1e-5)


def test_plan_widths_match_encoding(built):
    m, x, space = built
    enc = space.uniform(0.5)
    plan = space.plan(enc)
    kept = {g.id: g.size - len(g.removed) for g in plan.groups}
    assert [kept[g.id] for g in space.groups] == list(enc)
    assert plan.info["encoding"] == list(enc)


def test_residual_channels_share_one_code():
    m = models.create("resnet20", num_classes=10, input_size=(16, 16))
    space = SearchSpace.build(m, torch.randn(1, 3, 16, 16))
    stems = [g for g in space.groups if "conv1" in g.producers]
    assert len(stems) == 1 and "layer1.0.conv2" in stems[0].producers  # one code for the whole residual stage


def test_check_rejects_off_grid_encodings(built):
    _, _, space = built
    with pytest.raises(PrunekitError, match="entries"):
        space.check(space.full[:-1])
    bad = (space.candidates[0][-1] + 1,) + space.full[1:]
    with pytest.raises(PrunekitError, match="not one of"):
        space.plan(bad)


def test_bad_grid_raises():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))
    with pytest.raises(PrunekitError, match="ratios"):
        SearchSpace.build(net, torch.randn(1, 1, 8, 8), ratios=(0.0, 1.0))
    with pytest.raises(PrunekitError, match="round_to"):
        SearchSpace.build(net, torch.randn(1, 1, 8, 8), round_to=0)
