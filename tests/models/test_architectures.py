"""Architecture details: exact parameter counts, cfg rebuilding, options, helpers, registry behaviour."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from prunekit import checkpoint
from prunekit.errors import ConfigError, PrunekitError
from prunekit.models import MODELS, create, list_models, register_model
from prunekit.models._common import channel_shuffle, conv_out_size, make_divisible
from prunekit.models.vgg import VGG_CFGS


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_create(name, **kw):
    """Build on the meta device: parameter shapes without allocating or initialising weights."""
    with torch.device("meta"):
        return create(name, **kw)


# Reference counts. ImageNet models at 1000 classes equal the widely used
# reference implementation's (the same architecture); CIFAR models at 10 classes
# match the papers' rounded figures.
EXACT_1000 = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "squeezenet1_1": 1_235_496,
    "mobilenet_v1": 4_231_976,  # the MobileNet paper's "4.2M"
}
# (our exact count, the paper's rounded figure in millions)
CIFAR_10 = {
    "resnet20": (272_474, 0.27),    # He et al. 2016, Table 6 (option-A shortcuts: 269,722)
    "resnet56": (855_770, 0.85),    # He et al. 2016 (option A: 853,018); 1x1 projections add 2,752
    "resnet110": (1_730_714, 1.73),  # He et al. 2016 "1.7M" (option A: 1,727,962)
    "vgg19": (20_035_018, 20.04),   # Network Slimming, Table 1
    "preresnet164": (1_703_258, 1.70),  # Network Slimming, Table 1
    "vgg16": (14_724_042, 14.72),
}


@pytest.mark.parametrize("name", sorted(EXACT_1000))
def test_imagenet_param_counts_match_reference(name):
    assert n_params(meta_create(name, num_classes=1000)) == EXACT_1000[name]


@pytest.mark.parametrize("name", sorted(CIFAR_10))
def test_cifar_param_counts(name):
    exact, paper_millions = CIFAR_10[name]
    count = n_params(meta_create(name, num_classes=10))
    assert count == exact
    assert abs(count / 1e6 - paper_millions) < 0.01


def test_small_model_param_counts():
    # 784*300+300 + 300*100+100 + 100*10+10
    assert n_params(create("lenet300_100", in_channels=1)) == 266_610
    # conv 1*6*25+6, conv 6*16*25+16, fc 400*120+120, 120*84+84, 84*10+10
    assert n_params(create("lenet5", in_channels=1)) == 61_706
    # seed 001: convs 1->32->64->64 (3x3, bias) and Linear(3136, 10)
    assert n_params(create("convnet3", in_channels=1)) == 320 + 18_496 + 36_928 + 31_370


def test_vgg_from_pruned_cfg_has_expected_shapes():
    cfg = [10, 12, "M", 20, 24, "M", 30, 31, 32, "M", 40, 41, 42, "M", 50, 51, 52]
    net = create("vgg16", num_classes=10, in_channels=1, cfg=cfg)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    bns = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
    widths = [c for c in cfg if c != "M"]
    assert [c.out_channels for c in convs] == widths
    assert [c.in_channels for c in convs] == [1, *widths[:-1]]
    assert [b.num_features for b in bns] == widths
    assert net.classifier.in_features == 52
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.features) == 4
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_vgg_default_cfgs_and_spatial_sizes():
    net = create("vgg11", in_channels=1)
    assert [m.out_channels for m in net.features if isinstance(m, nn.Conv2d)] == \
        [c for c in VGG_CFGS["vgg11"] if c != "M"]
    # ceil-mode pools: 28 -> 14 -> 7 -> 4 -> 2 (never 0)
    feats = net.features(torch.randn(1, 1, 28, 28))
    assert feats.shape == (1, 512, 2, 2)


@pytest.mark.parametrize("cfg, msg", [
    ([64, "M", 0], r"'cfg'\[2\]"),
    ([64, "X"], r"'cfg'\[1\]"),
    (["M", "M"], "no convolution"),
    ("64,M", "must be a list"),
])
def test_vgg_bad_cfg(cfg, msg):
    with pytest.raises(ConfigError, match=msg):
        create("vgg16", cfg=cfg)


def test_cifar_resnet_cfg_and_widths():
    cfg = list(range(1, 10))
    net = create("resnet20", cfg=cfg, widths=[8, 16, 32])
    mids = [blk.conv1.out_channels for layer in (net.layer1, net.layer2, net.layer3) for blk in layer]
    assert mids == cfg
    assert net.conv1.out_channels == 8 and net.fc.in_features == 32
    # projection shortcut (1x1 conv + BN) exactly where the shape changes
    has_proj = [blk.downsample is not None for layer in (net.layer1, net.layer2, net.layer3) for blk in layer]
    assert has_proj == [False, False, False, True, False, False, True, False, False]
    assert isinstance(net.layer2[0].downsample[1], nn.BatchNorm2d)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="'cfg' needs 9 entries, got 3"):
        create("resnet20", cfg=[1, 2, 3])


def test_preresnet_cfg():
    net = create("preresnet164", cfg=[4, 5] * 54)
    blk = net.layer2[0]
    assert (blk.bn1.num_features, blk.conv1.out_channels, blk.conv2.out_channels, blk.conv3.out_channels) == \
        (64, 4, 5, 128)
    assert isinstance(blk.downsample, nn.Conv2d) and net.layer2[1].downsample is None
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def _pre_pool_shape(model, x):
    seen = {}

    def hook(module, inputs, output):
        seen["shape"] = tuple(inputs[0].shape)

    handle = model.avgpool.register_forward_hook(hook)
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen["shape"][2:]


@pytest.mark.parametrize("name, small, expected", [
    ("resnet18", False, (1, 1)), ("resnet18", True, (4, 4)),
    ("resnet50", True, (4, 4)),
    ("mobilenet_v1", False, (1, 1)), ("mobilenet_v1", True, (2, 2)),
    ("mobilenet_v2", False, (1, 1)), ("mobilenet_v2", True, (4, 4)),
    ("shufflenet_v1", False, (1, 1)), ("shufflenet_v1", True, (4, 4)),
])
def test_small_input_keeps_resolution(name, small, expected):
    kw = {"width_mult": 0.25} if name != "shufflenet_v1" else {"width_mult": 0.5}
    net = create(name, small_input=small, **kw)
    assert _pre_pool_shape(net, torch.randn(1, 3, 32, 32)) == expected


def test_width_mult_scales_channels():
    net = create("resnet18", width_mult=0.5)
    assert net.conv1.out_channels == 32 and net.fc.in_features == 256
    net = create("mobilenet_v2", width_mult=0.5)
    assert net.stem[0].out_channels == 16 and net.classifier.in_features == 1280  # head never shrinks
    net = create("mobilenet_v1", width_mult=0.75)
    assert net.stem[0].out_channels == 24 and net.classifier.in_features == 768
    # the one validation module's wording for a positive number: the open interval (0, inf)
    with pytest.raises(ConfigError, match=r"'width_mult' must be a number in \(0, inf\), got 0"):
        create("mobilenet_v1", width_mult=0)


def test_mobilenet_v1_cfg():
    cfg = [8] + [16] * 13
    net = create("mobilenet_v1", cfg=cfg)
    assert net.features[0].dw[0].groups == 8 and net.classifier.in_features == 16
    with pytest.raises(ConfigError, match="not both"):
        create("mobilenet_v1", cfg=cfg, width_mult=0.5)


def test_mobilenet_v2_residuals():
    net = create("mobilenet_v2")
    flags = [blk.use_residual for blk in net.features]
    # repeats 1,2,3,4,3,3,1: only non-first blocks of each stage are residual
    assert flags == [False, False, True, False, True, True, False, True, True, True,
                     False, True, True, False, True, True, False]
    assert net.features[0].expand is None and net.features[1].expand is not None


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_shufflenet_groups(groups):
    net = create("shufflenet_v1", groups=groups, small_input=True)
    stage_out = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}[groups]
    first = net.stage2[0]
    assert first.conv1.groups == 1  # the paper leaves the first pointwise conv ungrouped
    assert net.stage2[1].conv1.groups == groups and first.conv3.groups == groups
    assert first.conv3.out_channels == stage_out - 24  # concat with the pooled 24-channel input
    assert net.stage4[-1].bn3.num_features == 4 * stage_out
    assert net(torch.randn(1, 3, 28, 28)).shape == (1, 10)


def test_shufflenet_bad_groups():
    with pytest.raises(ConfigError, match="'groups' must be one of"):
        create("shufflenet_v1", groups=5)


def test_channel_shuffle_exact():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    # shuffling with g then with c/g is the identity
    assert torch.equal(channel_shuffle(channel_shuffle(x, 3), 4), x)


def test_squeezenet_fire_concat():
    net = create("squeezenet1_1", num_classes=5)
    fire = net.features[3]
    out = fire(torch.randn(1, 64, 9, 9))
    assert out.shape == (1, 128, 9, 9)
    assert isinstance(net.classifier, nn.Conv2d) and net.classifier.out_channels == 5


def test_make_divisible_and_conv_out_size():
    assert [make_divisible(v, 8) for v in (32, 24, 10, 3.2, 1280 * 0.5)] == [32, 24, 16, 8, 640]
    assert make_divisible(20, 12) == 24 and make_divisible(12, 8, min_value=4) == 16
    assert conv_out_size(32, 5) == 28 and conv_out_size(28, 5, padding=2) == 28
    assert conv_out_size(7, 2, 2) == 3 and conv_out_size(7, 2, 2, ceil_mode=True) == 4
    assert conv_out_size(224, 7, 2, 3) == 112


def test_lenets_depend_on_input_size():
    net = create("lenet5", in_channels=3, input_size=(32, 32))
    assert net.fc1.in_features == 16 * 6 * 6
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    net = create("convnet3", in_channels=1, cfg=[8, 16, 32])  # seed 001's pruned ConvNet
    assert net.linear1.in_features == 1568
    net = create("lenet300_100", in_channels=3, input_size=(32, 32))
    assert net.features[0].in_features == 3072
    with pytest.raises(ConfigError, match="too small"):
        create("lenet5", input_size=(8, 8))
    with pytest.raises(ConfigError, match="'input_size'"):
        create("convnet3", input_size=(28, 0))


def test_unknown_name_lists_known():
    with pytest.raises(PrunekitError, match="unknown model 'resnet21'.*resnet20") as info:
        create("resnet21")
    for name in list_models():
        assert name in str(info.value)


def test_duplicate_registration_raises():
    with pytest.raises(KeyError, match="'resnet20' is already registered"):
        @register_model("resnet20")
        def again(num_classes=10, in_channels=3):
            return nn.Linear(1, 1)


def test_register_your_own_model(monkeypatch, tmp_path):
    # work on a copy of the registry so the test leaves no trace
    monkeypatch.setattr(MODELS, "_items", dict(MODELS._items))

    @register_model("tiny_test_mlp", input_size=(8, 8), paper="none", tags=("test",))
    def tiny(num_classes=10, in_channels=3, input_size=(8, 8), hidden=16):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size[0] * input_size[1], hidden),
                             nn.ReLU(), nn.Linear(hidden, num_classes))

    net = create("tiny_test_mlp", num_classes=3, in_channels=1, hidden=5)
    assert net[1].in_features == 64 and net.prunekit_spec.input_shape == [1, 8, 8]
    loaded = checkpoint.load(checkpoint.save(tmp_path / "t.pt", net)).model
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert "tiny_test_mlp" in list_models()
