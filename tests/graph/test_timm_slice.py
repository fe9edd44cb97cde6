"""A sampled slice of the timm coverage sweep (bench/coverage.py) in the default suite.

Each architecture, from a different timm family, is built at random init on a
small input, pruned at 50% of channels with its head ignored, and must be
*really* pruned: MACs after/before <= 0.6, output shape kept, finite output,
and ``plan.apply`` equal to ``plan.apply_masks`` within 1e-4 (relative) unless
the plan prunes channels that a LayerNorm-style op normalises over (removing
and zeroing differ there by design). The full sweep is ``python bench/coverage.py``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[2] / "bench" / "coverage.py"


def _harness():
    spec = importlib.util.spec_from_file_location("prunekit_bench_coverage", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


HARNESS = _harness()
TIMM = HARNESS.import_timm()

# one per family: residual CNNs, inverted residuals + SE, RegNet groups, ConvNeXt (channels-last + LayerNorm),
# ViT (attention heads), MLP-Mixer, ResMLP (affine), DenseNet (concatenation), RepVGG, GhostNet (cheap ops +
# slicing), ReXNet (partial residual adds), DLA (trees), PoolFormer (GroupNorm),
# LeViT (attention with literal sizes), PiT (pooling tokens, a class-token parameter passed between modules),
# CaiT / Swin V2 CR (per-head width computed at run time: C // num_heads; cosine attention),
# NFNet (weight-standardised convs, ScaledStdConv2d: MACs ratio 0.77 before they pruned their inputs)
ARCHS = [
    "resnet18", "efficientnet_b0", "mobilenetv3_small_050", "regnetx_002", "convnext_atto",
    "vit_tiny_patch16_224", "mixer_s32_224", "resmlp_12_224", "densenet121", "repvgg_a0", "ghostnet_050",
    "rexnet_100", "dla34", "poolformer_s12", "levit_128s", "pit_ti_224", "cait_xxs24_224", "swinv2_cr_tiny_224",
    "davit_tiny", "eca_nfnet_l0",
]


@pytest.mark.skipif(TIMM is None, reason="timm is not installed (pip install --no-deps timm huggingface_hub "
                                         "safetensors; the Makefile's install step does this)")
@pytest.mark.parametrize("arch", ARCHS)
def test_timm_architecture_is_really_pruned(arch):

    model, x, heads = HARNESS.build_timm(arch)
    assert x.shape[-1] <= 224
    row = HARNESS.run_prunekit(model, x, heads)
    assert row["status"] == "pruned", row.get("reason")
    assert row["shape_kept"] and row["finite"]
    assert row["macs_ratio"] <= 0.6, row
    if not row["norm_coupled"]:
        assert row["apply_vs_masks"] <= 1e-4, row
