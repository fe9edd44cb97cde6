"""Layer-wise Channel Pruning / ThiNet on small models: plan, then reconstructed weights as a second step."""
import pytest
import torch

from prunekit import models
from prunekit.errors import PrunekitError
from prunekit.methods.structured import reconstruct_prune, write_reconstructed
from prunekit.methods.structured._common import budget_counts, plan_from_removed, prunable_layers, skeleton


def _vgg():
    torch.manual_seed(0)
    return models.create("vgg11", num_classes=10, in_channels=1, input_size=(8, 8), cfg=[8, "M", 16, 16]).eval()


def test_prunable_layers_of_vgg_and_resnet():
    net = _vgg()
    x = torch.randn(1, 1, 8, 8)
    layers = prunable_layers(net, skeleton(net, x))
    assert [p.consumer for p in layers] == ["features.4", "features.7", "classifier"]
    res = models.create("resnet20", num_classes=10, in_channels=1, input_size=(8, 8), widths=(4, 4, 8))
    layers = prunable_layers(res, skeleton(res, x))
    # only the groups inside the residual branches (conv1 -> conv2 of each block)
    assert len(layers) == 9 and all(p.consumer.endswith("conv2") for p in layers)


@pytest.mark.parametrize("selector", ["lasso", "thinet", "first_k", "max_response"])
def test_keeping_everything_reproduces_the_model(selector):
    net = _vgg()
    x = torch.randn(32, 1, 8, 8)
    res = reconstruct_prune(net, x, {}, selector, progress=False)
    assert res.plan.num_removed == 0 and res.weights == {}
    torch.testing.assert_close(res.apply(net)(x), net(x))


@pytest.mark.parametrize("selector", ["lasso", "thinet"])
def test_pruned_model_matches_the_dense_working_copy(selector):
    net = _vgg()
    x = torch.randn(64, 1, 8, 8)
    base = skeleton(net, x[:1])
    counts = {p.group: p.size // 2 for p in prunable_layers(net, base)}
    res = reconstruct_prune(net, x, counts, selector, points_per_image=4, base=base, progress=False)
    small = res.apply(net)
    assert small.features[4].in_channels == 4 and small.classifier.in_features == 8
    assert [s.kept for s in res.layers] == [4, 8, 8]
    # removal + reconstructed weights equals the masked dense computation (zeroed columns)
    masked = res.plan.apply_masks(net)
    for name, w in res.weights.items():
        layer = masked.get_submodule(name)
        full = torch.zeros_like(layer.weight)
        gid = next(p.group for p in prunable_layers(net, base) if p.consumer == name)
        keep = sorted(set(range(full.shape[1])) - set(next(g for g in res.plan.groups if g.id == gid).removed))
        full[:, keep] = w.reshape(full.shape[0], len(keep), *full.shape[2:])
        with torch.no_grad():
            layer.weight.copy_(full)
    masked = res.plan.apply_masks(masked)  # re-zero removed producer rows
    torch.testing.assert_close(small(x), masked(x), rtol=1e-4, atol=1e-4)
    for s in res.layers:
        assert s.error_reconstructed <= s.error_selected + 1e-6


def test_budget_counts_meet_macs_target():
    net = _vgg()
    x = torch.randn(1, 1, 8, 8)
    base = skeleton(net, x)
    layers = prunable_layers(net, base)
    counts = budget_counts(net, x, layers, macs=0.6, base=base, tolerance=0.1)
    p = plan_from_removed(net, x, {g: list(range(n)) for g, n in counts.items()}, base=base)
    assert abs(p.info["macs_after"] / p.info["macs_before"] - 0.6) <= 0.1
    assert set(counts) <= {q.group for q in layers}


def test_plan_from_removed_and_write_checks():
    net = _vgg()
    x = torch.randn(1, 1, 8, 8)
    base = skeleton(net, x)
    gid = prunable_layers(net, base)[0].group
    with pytest.raises(PrunekitError, match="cannot remove all"):
        plan_from_removed(net, x, {gid: list(range(8))}, base=base)
    with pytest.raises(PrunekitError, match="group 999"):
        plan_from_removed(net, x, {999: [0]}, base=base)
    p = plan_from_removed(net, x, {gid: [0, 1]}, base=base)
    small = p.apply(net)
    assert small.features[1].num_features == 6  # BN attribute follows (engine analysis)
    with pytest.raises(PrunekitError, match="features.4"):
        write_reconstructed(small, p, {"features.4": torch.zeros(16, 5, 3, 3)})


@pytest.mark.parametrize("conv", [dict(kernel_size=3, padding=1), dict(kernel_size=(3, 5), stride=2, padding=(1, 2),
                                                                        dilation=(1, 2)), dict(kernel_size=1)])
def test_sampled_patches_reproduce_conv_outputs(conv):
    import torch.nn.functional as F

    from prunekit.methods.structured._common import sample_patches

    torch.manual_seed(0)
    layer = torch.nn.Conv2d(3, 4, **conv)
    x = torch.randn(2, 3, 9, 11)
    P = sample_patches(layer, x, 5, seed=0)
    assert P.shape[:2] == (10, 3)
    out = F.conv2d(x, layer.weight, None, layer.stride, layer.padding, layer.dilation)
    flat = out.permute(0, 2, 3, 1).reshape(2, -1, 4)
    vals = P.reshape(10, -1) @ layer.weight.reshape(4, -1).T
    for i, v in enumerate(vals):  # every sampled patch is one true output position of its image
        assert (flat[i // 5] - v).abs().max(dim=1).values.min() < 1e-5
