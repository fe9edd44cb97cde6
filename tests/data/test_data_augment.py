"""Batched augmentations: exact values against per-sample manual computations."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from prunekit.data import (AUGMENTS, Compose, DatasetSplits, Normalize, RandomCrop, RandomHorizontalFlip,
                           build_augment, default_augment)
from prunekit.errors import ConfigError, PrunekitError


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _manual_crop(x, size, padding, seed):
    """Per-sample loop: draw row offsets, then column offsets, like RandomCrop documents."""
    n, c, h_in, w_in = x.shape
    h, w = size
    padded = torch.zeros(n, c, h_in + 2 * padding, w_in + 2 * padding)
    padded[:, :, padding:padding + h_in, padding:padding + w_in] = x
    g = _gen(seed)
    oy = torch.randint(0, h_in + 2 * padding - h + 1, (n,), generator=g)
    ox = torch.randint(0, w_in + 2 * padding - w + 1, (n,), generator=g)
    return torch.stack([padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(n)])


@pytest.mark.parametrize("size,padding", [((3, 4), 1), (None, 2), ((2, 2), 0), ((6, 7), 1)])
def test_random_crop_matches_manual_computation(size, padding):
    x = torch.arange(5 * 2 * 4 * 5, dtype=torch.float32).view(5, 2, 4, 5) + 1
    out = RandomCrop(size=size, padding=padding)(x, _gen(7))
    expect = _manual_crop(x, size or (4, 5), padding, 7)
    assert torch.equal(out, expect)


def test_random_crop_tiny_exact_and_translation_only():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    shifts = set()
    for seed in range(60):
        out = RandomCrop(padding=1)(x, _gen(seed))[0, 0]
        # Every output is x shifted by (dy, dx) in {-1, 0, 1}^2 with zeros coming in.
        found = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if torch.equal(out, F.pad(x, (1, 1, 1, 1))[0, 0, 1 + dy:3 + dy, 1 + dx:3 + dx])]
        assert len(found) == 1
        shifts.add(found[0])
    assert len(shifts) == 9  # all offsets, extremes included, are reachable
    assert torch.equal(F.pad(x, (1, 1, 1, 1))[0, 0, 0:2, 0:2], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))


def test_random_crop_fill_and_errors():
    x = torch.ones(2, 1, 2, 2)
    out = RandomCrop(size=4, padding=1, fill=-3.0)(x, _gen())
    assert torch.equal(out[:, :, 0, :], torch.full((2, 1, 4), -3.0))  # size 4 of 4: no room to move
    with pytest.raises(PrunekitError, match="exceeds the padded image"):
        RandomCrop(size=5, padding=1)(x, _gen())
    with pytest.raises(PrunekitError, match="padding must be an int"):
        RandomCrop(padding=-1)
    with pytest.raises(PrunekitError, match=r"expects an \(N, C, H, W\) tensor"):
        RandomCrop(padding=1)(torch.ones(3, 4, 4), _gen())


def test_flip_exact():
    x = torch.randn(6, 2, 3, 4, generator=_gen(1))
    assert torch.equal(RandomHorizontalFlip(1.0)(x, _gen()), torch.flip(x, dims=[3]))
    assert torch.equal(RandomHorizontalFlip(0.0)(x, _gen()), x)
    out = RandomHorizontalFlip(0.5)(x, _gen(1))
    mask = torch.rand(6, generator=_gen(1)) < 0.5
    assert 0 < mask.sum() < 6
    for i in range(6):
        assert torch.equal(out[i], torch.flip(x[i], dims=[2]) if mask[i] else x[i])


def test_normalize_exact():
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 8.0]]]])
    out = Normalize(mean=(1.0, 2.0), std=(2.0, 4.0))(x)
    assert torch.equal(out, torch.tensor([[[[0.0, 1.0]], [[-0.5, 1.5]]]]))
    with pytest.raises(PrunekitError, match="Normalize has 2 channels, input has 1"):
        Normalize((0.0, 0.0), (1.0, 1.0))(torch.zeros(1, 1, 2, 2))
    with pytest.raises(PrunekitError, match="std must be positive"):
        Normalize((0.0,), (0.0,))


def test_compose_shares_generator_in_order_and_leaves_input_alone():
    x = torch.randn(4, 3, 5, 5, generator=_gen(2))
    before = x.clone()
    crop, flip = RandomCrop(padding=2), RandomHorizontalFlip(0.5)
    out = Compose([crop, flip])(x, _gen(9))
    g = _gen(9)
    assert torch.equal(out, flip(crop(x, g), g))
    assert torch.equal(x, before)
    assert torch.equal(Compose([])(x, _gen()), x)
    assert torch.equal(Compose([crop, flip])(x, _gen(9)), out)  # same generator state, same output


@pytest.mark.parametrize("kind", sorted(AUGMENTS.names()))
def test_config_round_trip(kind):
    examples = {"random_crop": RandomCrop(size=(3, 4), padding=1, fill=0.5),
                "random_hflip": RandomHorizontalFlip(0.25),
                "normalize": Normalize((0.1, 0.2), (0.3, 0.4)),
                "compose": Compose([RandomCrop(padding=2), RandomHorizontalFlip(0.5)])}
    aug = examples[kind]
    cfg = json.loads(json.dumps(aug.to_config()))
    assert cfg["kind"] == kind and build_augment(cfg) == aug


def test_build_augment_specs_and_errors():
    assert build_augment(None) is None and build_augment("none") is None
    composed = build_augment([{"kind": "random_crop", "padding": 2}, {"kind": "random_hflip"}])
    assert composed == Compose([RandomCrop(padding=2), RandomHorizontalFlip(0.5)])
    with pytest.raises(ConfigError, match=r"augment kind 'blur' unknown; known: compose, normalize"):
        build_augment({"kind": "blur"})
    with pytest.raises(ConfigError, match=r"augment 'random_hflip': unknown key\(s\) prob"):
        build_augment({"kind": "random_hflip", "prob": 0.5})
    with pytest.raises(ConfigError, match=r"random_hflip.*p must be a number in \[0, 1\]"):
        build_augment({"kind": "random_hflip", "p": 2})
    with pytest.raises(ConfigError, match="needs the dataset"):
        build_augment("default")


def _splits(domain, hw, c=1):
    x, y = torch.zeros(2, c, *hw), torch.tensor([0, 1])
    return DatasetSplits("x", x, y, x, y, 2, c, hw, (0.0,) * c, (1.0,) * c, domain=domain)


@pytest.mark.parametrize("domain,hw,expect", [
    ("digits", (28, 28), Compose([RandomCrop(padding=2)])),
    ("digits", (8, 8), Compose([RandomCrop(padding=1)])),
    ("natural", (32, 32), Compose([RandomCrop(padding=4), RandomHorizontalFlip(0.5)])),
    ("synthetic", (32, 32), Compose([RandomCrop(padding=4)])),
])
def test_default_augment(domain, hw, expect):
    splits = _splits(domain, hw, c=3 if domain == "natural" else 1)
    aug = default_augment(splits)
    assert aug == expect and build_augment("default", splits) == expect
    assert aug(splits.train_x, _gen()).shape == splits.train_x.shape
