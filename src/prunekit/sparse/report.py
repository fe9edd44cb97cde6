"""Per-layer sparsity of a model: how many weights each layer keeps.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(4, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[0., 1, 0, 2], [0, 0, 0, 3]]))
    >>> rep = sparsity_report(net)
    >>> rep.total.nonzero, rep.total.sparsity
    (3, 0.625)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

from prunekit.sparse.masks import check_masks, select_params


@dataclass(frozen=True)
class LayerSparsity:
    """One row of a :class:`SparsityReport`.

    Attributes:
        name: qualified parameter name (``"TOTAL"`` for the sum row).
        shape: the tensor's shape (empty for the total).
        total: number of entries.
        nonzero: entries that are non-zero (after masking, when masks are given).
        sparsity: ``1 - nonzero / total``.
    """

    name: str
    shape: tuple
    total: int
    nonzero: int
    sparsity: float


@dataclass(frozen=True)
class SparsityReport:
    """Rows per layer plus a total row; see :func:`sparsity_report`."""

    rows: list = field(default_factory=list)
    total: LayerSparsity = LayerSparsity("TOTAL", (), 0, 0, 0.0)

    def to_dict(self) -> dict:
        """Plain JSON-able form: ``{"layers": [...], "total": {...}}``."""
        def row(r):
            d = asdict(r)
            d["shape"] = list(r.shape)
            return d

        return {"layers": [row(r) for r in self.rows], "total": row(self.total)}

    def to_markdown(self) -> str:
        """A Markdown table (one row per layer, then the total)."""
        lines = ["| layer | shape | weights | non-zero | sparsity |", "|---|---|---:|---:|---:|"]
        for r in [*self.rows, self.total]:
            shape = "x".join(map(str, r.shape)) if r.shape else ""
            name = f"**{r.name}**" if r is self.total else f"`{r.name}`"
            lines.append(f"| {name} | {shape} | {r.total} | {r.nonzero} | {100 * r.sparsity:.2f}% |")
        return "\n".join(lines)

    def compression(self) -> float:
        """Dense/non-zero ratio of the counted weights (Han et al. report "12x"); inf when all are zero."""
        return self.total.total / self.total.nonzero if self.total.nonzero else float("inf")


def sparsity_report(model_or_params, masks: Mapping | None = None,
                    layers: Iterable[str] | None = None) -> SparsityReport:
    """Count total and non-zero weights per layer.

    Args:
        model_or_params: module or ``{name: tensor}`` mapping.
        masks: optional mask set; a weight counts as non-zero only if its mask
            keeps it *and* its value is non-zero. When given and ``layers`` is
            None, the masked tensors are the ones reported.
        layers: tensors to report (default: Conv/Linear weights, see
            :func:`prunekit.sparse.masks.select_params`).
    """
    import torch

    if layers is None and masks:
        layers = list(masks)
    params = select_params(model_or_params, layers)
    masks = dict(masks or {})
    check_masks(params, {k: v for k, v in masks.items() if k in params})
    rows = []
    total = nonzero = 0
    for name, t in params.items():
        w = t.detach()
        nz = w != 0
        if name in masks:
            nz = nz & masks[name].to(w.device)
        n, k = w.numel(), int(torch.count_nonzero(nz))
        rows.append(LayerSparsity(name, tuple(w.shape), n, k, 1.0 - k / n if n else 0.0))
        total += n
        nonzero += k
    tot = LayerSparsity("TOTAL", (), total, nonzero, 1.0 - nonzero / total if total else 0.0)
    return SparsityReport(rows=rows, total=tot)
