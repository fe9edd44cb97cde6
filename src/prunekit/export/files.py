"""Any model file prunekit writes, loaded as a dense runnable model for export, with what the export holds.

==========================  ==============================================================================
file                        what is exported
==========================  ==============================================================================
checkpoint (``.pt``)        the model as loaded by :func:`prunekit.checkpoint.load` (pruned: the smaller
                            model; masked weights of ``prunekit sparsify``'s ``model.pt``: zeros kept dense)
sparse (``model.sparse.pt``) the dense model with its pruned weights at zero (ONNX / ``.pt2`` have no sparse
                            weight storage prunekit could rely on)
``.pkz`` (Deep Compression) the decoded model: shared weights expanded to float32, exactly as compressed
binarized checkpoint        the float-emulated binary layers: ``sign(W) * alpha`` (and ``sign(x) * beta`` for
                            XNOR inputs) in float32 convolutions, not the bit-packed xnor+popcount kernels
``.pkb`` (packed binary)    refused: the packed kernels are prunekit's own code; export the ``.pt`` instead
==========================  ==============================================================================

Example:
    >>> loaded = load_model_file("runs/lenet5.pt")          # doctest: +SKIP
    >>> loaded.kind, loaded.example_inputs()[0].shape        # doctest: +SKIP
    ('checkpoint', torch.Size([1, 1, 28, 28]))
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.errors import CheckpointError, ExportError

__all__ = ["LoadedModel", "binary_note", "load_model_file"]

SPARSE_FORMAT = "prunekit.sparse_checkpoint"   # prunekit.sparse.export.FILE_FORMAT (kept in step by a test)
PKZ_MAGIC = b"\x89PKZ\r\n\x1a\n"              # prunekit.compress.fileformat.MAGIC (kept in step by a test)


@dataclass
class LoadedModel:
    """A model file as export sees it.

    Attributes:
        model: the dense runnable module (eval mode).
        spec: its :class:`~prunekit.spec.ModelSpec` (input shape for the example inputs).
        kind: ``"checkpoint"``, ``"sparse"``, ``"pkz"`` or ``"binary"``.
        note: one sentence saying what an export of it contains.
        meta: the file's meta data (dataset, lineage).
    """

    model: Any
    spec: Any
    kind: str
    note: str
    meta: dict

    def example_inputs(self, batch: int = 1) -> tuple:
        """A random input batch of the spec's input shape."""
        import torch

        return (torch.randn(batch, *self.spec.input_shape, generator=torch.Generator().manual_seed(0)),)


def binary_note(model) -> str | None:
    """What an export of a binarized model holds, or None when ``model`` has no binary layer."""
    from prunekit.binary import binary_layers

    layers = binary_layers(model)
    if not layers:
        return None
    return (f"{len(layers)} binary layer(s) exported float-emulated: sign(W) * alpha (and sign(x) * beta on XNOR "
            "inputs) as float32 convolutions / matmuls, numerically the binarized model; not the bit-packed "
            "xnor+popcount kernels of prunekit's .pkb files")


def _torch_format(p: Path) -> str | None:
    import torch

    try:
        payload = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - checkpoint.load below reports an unreadable file properly
        return None
    return payload.get("format") if isinstance(payload, dict) else None


def load_model_file(path: str | os.PathLike, *, trusted_factories=(), model_fn=None) -> LoadedModel:
    """Load a prunekit checkpoint, sparse checkpoint or ``.pkz`` file as a dense model for export.

    ``trusted_factories`` / ``model_fn``: as in :func:`prunekit.checkpoint.load`.

    Raises:
        ExportError: a ``.pkb`` packed binary file (export its ``.pt`` checkpoint instead).
        CheckpointError: the file is missing, unreadable or of no prunekit kind.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such model file")
    with open(p, "rb") as f:
        head = f.read(len(PKZ_MAGIC))
    if p.suffix == ".pkb":
        raise ExportError(f"{p}: a packed binary (.pkb) model runs prunekit's own xnor+popcount kernels, which do "
                          "not export; export the binarized checkpoint (.pt) instead: it exports float-emulated "
                          "as sign(W) * alpha")
    if head == PKZ_MAGIC:
        from prunekit import compress

        contents = compress.read(p)
        model = contents.build_model(trusted_factories=trusted_factories).eval()
        note = "Deep Compression .pkz: the decoded model, shared weights expanded to dense float32"
        return _finish(model, contents.spec, "pkz", note, dict(contents.meta))
    if _torch_format(p) == SPARSE_FORMAT:
        from prunekit.sparse import load_sparse

        sp = load_sparse(p, trusted_factories=trusted_factories)
        note = "sparse checkpoint: exported with dense weights, the pruned weights stored as zeros"
        return _finish(sp.model, sp.spec, "sparse", note, sp.meta)
    from prunekit import checkpoint

    ckpt = checkpoint.load(p, trusted_factories=trusted_factories, model_fn=model_fn)
    return _finish(ckpt.model, ckpt.spec, "checkpoint", "prunekit checkpoint: the model as loaded", ckpt.meta)


def _finish(model, spec, kind: str, note: str, meta: dict) -> LoadedModel:
    binary = binary_note(model)
    if binary is not None:
        kind, note = "binary", f"{note}; {binary}"
    return LoadedModel(model=model.eval(), spec=spec, kind=kind, note=note, meta=meta)
