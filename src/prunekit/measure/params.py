"""Parameter counts: total, trainable, and non-zero (for weight-pruned models).

Shared (tied) parameters are counted once. Models pruned with
``torch.nn.utils.prune`` keep a dense ``weight_orig`` parameter and a
``weight_mask`` buffer; their non-zeros are counted on the effective weight
(``weight_orig * weight_mask``), which is what the model computes with.

Example:
    >>> import torch.nn as nn
    >>> count_params(nn.Linear(10, 5))
    55
"""
from __future__ import annotations

_ORIG_SUFFIX = "_orig"
_MASK_SUFFIX = "_mask"


def count_params(model, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``model`` (tied parameters once).

    Args:
        model: any ``nn.Module``.
        trainable_only: count only parameters with ``requires_grad=True``.

    Example:
        >>> import torch.nn as nn
        >>> count_params(nn.Conv2d(3, 8, 3))   # 8*3*3*3 weights + 8 biases
        224
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _effective_tensors(model):
    """Yield ``(qualified_name, tensor)`` for every parameter, as the forward pass sees it.

    For a parameter ``<name>_orig`` next to a buffer ``<name>_mask`` (the layout
    ``torch.nn.utils.prune`` creates) the effective ``<name>`` attribute is used.
    Tied parameters are yielded once.
    """
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        buffers = dict(module.named_buffers(recurse=False))
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            tensor = p
            if p_name.endswith(_ORIG_SUFFIX):
                base = p_name[: -len(_ORIG_SUFFIX)]
                effective = getattr(module, base, None)
                if base + _MASK_SUFFIX in buffers and effective is not None and effective.shape == p.shape:
                    tensor = effective
            yield (f"{mod_name}.{p_name}" if mod_name else p_name), tensor


def count_nonzero_params(model) -> int:
    """Number of non-zero parameter elements, i.e. what survives weight pruning.

    Example:
        >>> import torch, torch.nn as nn
        >>> lin = nn.Linear(4, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[0., 1, 0, 2], [3, 0, 0, 0]]))
        >>> count_nonzero_params(lin)
        3
    """
    import torch

    with torch.no_grad():
        return sum(int(torch.count_nonzero(t)) for _, t in _effective_tensors(model))


def sparsity(model) -> float:
    """Fraction of parameter elements that are exactly zero (0.0 for a dense model, 0.0 for no parameters)."""
    total = count_params(model)
    return 0.0 if total == 0 else 1.0 - count_nonzero_params(model) / total


def nonzero_per_param(model) -> dict[str, tuple[int, int]]:
    """``{qualified parameter name: (non-zero elements, total elements)}``, e.g. for a per-layer sparsity table."""
    import torch

    with torch.no_grad():
        return {name: (int(torch.count_nonzero(t)), t.numel()) for name, t in _effective_tensors(model)}
