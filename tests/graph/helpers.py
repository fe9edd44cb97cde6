"""Shared helpers for engine tests: inputs, randomised norm statistics, output comparison."""
from __future__ import annotations

import torch


def make_inputs(shapes, batch=2, seed=0):
    """Random inputs for a list of per-sample shapes; ``("tokens", shape)`` gives token ids."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in shapes:
        if isinstance(s, tuple) and s and s[0] == "tokens":
            out.append(torch.randint(0, 20, (batch, *s[1]), generator=g))
        else:
            out.append(torch.randn(batch, *s, generator=g))
    return tuple(out)


def randomize(model, seed=0):
    """Give every norm layer non-trivial statistics and affine parameters, so removed channels matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._NormBase):
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if isinstance(m, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    return model.eval()


def flat_outputs(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in flat_outputs(v)]
    return [t for v in out for t in flat_outputs(v)]


def rel_err(a, b) -> float:
    """Largest relative difference between two (nested) outputs."""
    worst = 0.0
    for x, y in zip(flat_outputs(a), flat_outputs(b)):
        assert x.shape == y.shape, (x.shape, y.shape)
        worst = max(worst, float((x - y).abs().max() / (y.abs().max() + 1e-12)))
    return worst
