"""Sparse inference for fully connected layers: ``torch.sparse`` CSR matrix products.

Unstructured sparsity saves no time with dense kernels: a 95%-zero matrix
costs as much as a full one. :class:`SparseLinear` stores the weight as a CSR
tensor and computes ``bias + W @ x^T`` with ``torch.addmm``, which on CPU only
touches the kept weights. Whether that is faster than the dense BLAS call
depends on sparsity and batch size; ``bench/sparse_export.py`` measures it
(``docs/bench/sparse.md``). Convolutions are left dense: ``torch.sparse`` has
no sparse convolution kernel on CPU.

Inference only: the CSR weight is a buffer, not a parameter.

Example:
    >>> import torch
    >>> from prunekit.sparse import magnitude_masks
    >>> net = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> masks = magnitude_masks(net, 0.9)
    >>> fast = to_sparse_inference(net, masks)
    >>> type(fast[0]).__name__
    'SparseLinear'
"""
from __future__ import annotations

import copy
import warnings
from typing import Mapping

from torch import nn

from prunekit.errors import PrunekitError


def _to_csr(dense):
    with warnings.catch_warnings():
        # torch flags CSR support as "beta" on every conversion; the ops used here are stable.
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return dense.to_sparse_csr()


class SparseLinear(nn.Module):
    """A ``Linear`` layer whose weight is a CSR sparse tensor (inference only).

    Args:
        weight: dense ``(out_features, in_features)`` weight; zeros are dropped.
        bias: optional ``(out_features,)`` bias.
    """

    def __init__(self, weight, bias=None) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise PrunekitError(f"SparseLinear needs a 2-D weight, got shape {tuple(weight.shape)}")
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight_csr", _to_csr(weight.detach().contiguous()), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().clone().reshape(-1, 1),
                             persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, mask=None) -> "SparseLinear":
        """Build from an ``nn.Linear``, optionally zeroing the weights ``mask`` prunes."""
        w = linear.weight.detach()
        if mask is not None:
            w = w * mask.to(w.device, w.dtype)
        return cls(w, linear.bias)

    @property
    def nnz(self) -> int:
        """Number of stored (kept) weights."""
        return int(self.weight_csr.values().numel())

    def forward(self, x):
        import torch

        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if self.bias is None:
            out = torch.sparse.mm(self.weight_csr, x2.t())
        else:
            out = torch.addmm(self.bias, self.weight_csr, x2.t())
        return out.t().reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.in_features * self.out_features)
        return f"in_features={self.in_features}, out_features={self.out_features}, density={density:.3f}"


def to_sparse_inference(model: nn.Module, masks: Mapping | None = None, min_sparsity: float = 0.5) -> nn.Module:
    """A copy of ``model`` with every sparse-enough ``nn.Linear`` replaced by :class:`SparseLinear`.

    Args:
        masks: optional ``{param name: BoolTensor}``; without masks the weights'
            own zeros define the sparsity.
        min_sparsity: layers with a smaller fraction of zeros stay dense (at low
            sparsity the dense kernel is faster).

    The copy is in eval mode; the original is untouched.
    """
    import torch

    masks = dict(masks or {})
    out = copy.deepcopy(model).eval()
    replace = []
    for name, mod in out.named_modules():
        if type(mod) is nn.Linear:
            key = f"{name}.weight" if name else "weight"
            w = mod.weight.detach()
            if key in masks:
                w = w * masks[key].to(w.device, w.dtype)
            sparsity = 1.0 - int(torch.count_nonzero(w)) / w.numel()
            if sparsity >= min_sparsity:
                replace.append((name, SparseLinear(w, mod.bias)))
    from prunekit.surgery import replace_module

    for name, new in replace:
        if not name:
            return new
        replace_module(out, name, new)
    return out
