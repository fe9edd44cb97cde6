"""Models that leave prunekit: ONNX and ``torch.export`` files, and HF ``save_pretrained`` directories.

* :func:`export` (:mod:`prunekit.export.api`): an ONNX file (the dynamo exporter,
  ``torch.onnx.export(..., dynamo=True)``; the ``onnx`` extra) or a ``torch.export``
  ``.pt2`` file, optionally with a dynamic batch dimension; every export is run
  (ONNX Runtime / ``torch.export.load``) on random inputs of several seeds and
  compared with the eager model, and refused above a tolerance.
* :func:`load_model_file` (:mod:`prunekit.export.files`): any model file prunekit
  writes (checkpoint, sparse checkpoint, ``.pkz``) as a dense runnable model, with a
  note saying what an export of it contains.
* :func:`hf_save_pretrained` (:mod:`prunekit.export.hf`): a pruned HF transformers
  model saved with its config sizes updated, reloadable with ``from_pretrained``.

See docs/export.md.

Example:
    >>> import torch
    >>> from prunekit import export
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    >>> r = export.export(net, torch.randn(1, 4), "/tmp/net.pt2", format="pt2", overwrite=True)  # doctest: +SKIP
    >>> r.max_abs_diff < 1e-5                                                                  # doctest: +SKIP
    True
"""
from __future__ import annotations

from prunekit.utils.lazy import lazy_exports

_LAZY = {
    "FORMATS": "prunekit.export.api",
    "ExportOptions": "prunekit.export.api",
    "ExportResult": "prunekit.export.api",
    "export": "prunekit.export.api",
    "LoadedModel": "prunekit.export.files",
    "load_model_file": "prunekit.export.files",
    "hf_config_for": "prunekit.export.hf",
    "hf_save_pretrained": "prunekit.export.hf",
    "hf_compatible": "prunekit.export.hf",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = list(_LAZY)
