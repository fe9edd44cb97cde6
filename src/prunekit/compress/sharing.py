"""Weight sharing: per-layer codebooks from k-means over the surviving weights (Deep Compression, section 3).

:func:`share_weights` reads a model (it does not change it) and returns one
:class:`SharedTensor` per conv/linear weight: the codebook, the cluster of every
weight, the mask of kept weights and how the tensor will be stored.
:func:`apply_shared` writes the shared values into the model (the only function
here that mutates a module).

Storage decides the codebook size. A tensor stored sparsely whose gaps
overflow, or stored densely with pruned positions, needs a code that decodes to
exactly 0 (the paper's "filler zero"); it is appended to the codebook, leaving
``2**bits - 1`` learned shared values, so the index still fits in ``bits`` bits.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 4))
    >>> shared = share_weights(net)
    >>> st = shared["0.weight"]
    >>> st.bits, st.kind, len(st.codebook) <= 32
    (5, 'fc', True)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch
from torch import nn

from prunekit.compress.config import CompressConfig
from prunekit.compress.kmeans import kmeans_1d
from prunekit.compress.relindex import count_fillers
from prunekit.errors import ConfigError

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_FLOAT16_MAX = 65504.0


@dataclass
class SharedTensor:
    """One weight tensor after weight sharing.

    Attributes:
        name: parameter name, e.g. ``"features.0.weight"``.
        kind: ``"conv"`` or ``"fc"``.
        shape: the weight's shape.
        codebook: float32 shared values (learned ones first, then the zero code if any).
        assignments: int64 cluster of every weight, weight-shaped (the zero code, or 0, at pruned positions).
        mask: bool, weight-shaped, True = kept.
        bits: bits per cluster index.
        index_bits: bits per relative position (sparse layout).
        layout: ``"sparse"`` (relative positions + indices of kept weights) or ``"dense"``.
        zero_code: index of the exact-zero code in ``codebook``, or None.
        codebook_dtype: ``"float32"`` or ``"float16"``: how ``codebook`` is stored.
    """

    name: str
    kind: str
    shape: tuple
    codebook: torch.Tensor
    assignments: torch.Tensor
    mask: torch.Tensor
    bits: int
    index_bits: int
    layout: str
    zero_code: Optional[int]
    codebook_dtype: str = "float32"

    @property
    def n_learned(self) -> int:
        """Number of trainable shared values (codebook without the zero code)."""
        return len(self.codebook) - (1 if self.zero_code is not None else 0)

    def weight(self) -> torch.Tensor:
        """The shared weight tensor: ``codebook[assignments]`` at kept positions, exactly 0 elsewhere."""
        return quantized_weight(self.codebook, self.assignments, self.mask)


def quantized_weight(codebook: torch.Tensor, assignments: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``codebook[assignments]`` where ``mask`` is True, +0.0 elsewhere (pure)."""
    vals = codebook[assignments]
    return torch.where(mask, vals, torch.zeros((), dtype=vals.dtype))


def quantizable_weights(model: nn.Module, config: CompressConfig | None = None) -> dict[str, str]:
    """``{weight name: "conv" | "fc"}`` for every conv/linear weight not excluded by ``config``."""
    config = config or CompressConfig()
    out: dict[str, str] = {}
    seen: set[int] = set()
    for mname, module in model.named_modules():
        if isinstance(module, nn.Linear):
            kind = "fc"
        elif isinstance(module, _CONV):
            kind = "conv"
        else:
            continue
        w = getattr(module, "weight", None)
        if not isinstance(w, nn.Parameter) or id(w) in seen or not w.is_floating_point():
            continue
        seen.add(id(w))
        name = f"{mname}.weight" if mname else "weight"
        if not config.is_excluded(name):
            out[name] = kind
    return out


def round_codebook(values: torch.Tensor, dtype: str, name: str = "") -> torch.Tensor:
    """Centroids rounded to the storage dtype and back to float32 (what the file will hold)."""
    v = values.to(torch.float32)
    if dtype == "float16":
        if torch.any(v.abs() > _FLOAT16_MAX):
            raise ConfigError(f"{name}: a shared value exceeds float16's range; use codebook_dtype='float32'")
        v = v.to(torch.float16).to(torch.float32)
    return v


def plan_layout(mask: torch.Tensor, bits: int, index_bits: int, layout: str) -> tuple[str, bool]:
    """Choose ``"sparse"`` or ``"dense"`` storage and whether a zero code is needed.

    ``"auto"`` picks the layout with fewer fixed-width bits: sparse costs
    ``(kept + fillers) * (bits + index_bits)``, dense ``size * bits``.
    """
    n = mask.numel()
    nnz = int(mask.sum())
    if layout == "auto" and nnz == n:
        return "dense", False
    fillers = count_fillers(mask.numpy(), index_bits)
    if layout == "auto":
        layout = "sparse" if (nnz + fillers) * (bits + index_bits) < n * bits else "dense"
    needs_zero = fillers > 0 if layout == "sparse" else nnz < n
    return layout, needs_zero


def share_tensor(name: str, weight: torch.Tensor, mask: torch.Tensor | None, kind: str,
                 config: CompressConfig) -> SharedTensor:
    """Cluster one weight tensor (pure: returns a new :class:`SharedTensor`)."""
    w = weight.detach().to("cpu", torch.float32)
    mask = (w != 0) if mask is None else mask.detach().to("cpu", torch.bool)
    if mask.shape != w.shape:
        raise ConfigError(f"{name}: mask shape {tuple(mask.shape)} does not match weight {tuple(w.shape)}")
    bits = config.weight_bits(name, kind)
    index_bits = config.position_bits(name, kind)
    layout, needs_zero = plan_layout(mask, bits, index_bits, config.layout)
    k = (1 << bits) - (1 if needs_zero else 0)
    kept = w[mask]
    assignments = torch.zeros(w.shape, dtype=torch.int64)
    if kept.numel():
        k = max(1, min(k, kept.numel()))   # never more clusters than surviving weights
        centroids, assign = kmeans_1d(kept, k, init=config.init, max_iter=config.max_iter, seed=config.seed)
        assignments[mask] = assign
    else:
        centroids = torch.zeros(0, dtype=torch.float64)
    codebook = round_codebook(centroids, config.codebook_dtype, name)
    zero_code = None
    if needs_zero:
        zero_code = len(codebook)
        codebook = torch.cat([codebook, torch.zeros(1)])
        assignments[~mask] = zero_code
    return SharedTensor(name=name, kind=kind, shape=tuple(w.shape), codebook=codebook, assignments=assignments,
                        mask=mask, bits=bits, index_bits=index_bits, layout=layout, zero_code=zero_code,
                        codebook_dtype=config.codebook_dtype)


def share_weights(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None,
                  config: CompressConfig | None = None, *, progress: bool = False) -> dict[str, SharedTensor]:
    """Weight sharing for every conv/linear weight of ``model`` (the model is not changed).

    Args:
        model: the (pruned) network.
        masks: ``{weight name: BoolTensor}`` (True = kept), as from ``prunekit.sparse``;
            a weight without a mask counts its exact zeros as pruned.
        config: bits, initialisation, layout; defaults to the paper's (8 conv / 5 fc, linear init).
        progress: show a tqdm bar over layers.
    """
    from prunekit.utils.progress import progress_bar

    config = config or CompressConfig()
    masks = dict(masks or {})
    params = dict(model.named_parameters())
    targets = quantizable_weights(model, config)
    unknown = sorted(set(masks) - set(params))
    if unknown:
        raise ConfigError(f"masks name parameters the model does not have: {', '.join(unknown[:5])}")
    out = {}
    for name in progress_bar(list(targets), desc="weight sharing", enabled=progress):
        out[name] = share_tensor(name, params[name], masks.get(name), targets[name], config)
    return out


@torch.no_grad()
def apply_shared(model: nn.Module, shared: Mapping[str, SharedTensor]) -> nn.Module:
    """Write every shared weight into ``model`` in place (and return it)."""
    params = dict(model.named_parameters())
    for name, st in shared.items():
        if name not in params:
            raise ConfigError(f"model has no parameter {name!r} to receive shared weights")
        p = params[name]
        if tuple(p.shape) != tuple(st.shape):
            raise ConfigError(f"{name}: model weight {tuple(p.shape)} vs shared {tuple(st.shape)}")
        p.copy_(st.weight().to(p.dtype))
    return model


def finalize_codebooks(shared: Mapping[str, SharedTensor]) -> None:
    """Round each codebook to its storage dtype (after fine-tuning, before writing)."""
    for st in shared.values():
        st.codebook = round_codebook(st.codebook, st.codebook_dtype, st.name)
        if st.zero_code is not None:
            st.codebook[st.zero_code] = 0.0
