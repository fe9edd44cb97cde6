"""Deep Compression into a real file (Han, Mao & Dally, "Deep Compression", ICLR 2016).

Pruning (via :mod:`prunekit.sparse`), weight sharing by per-layer k-means with
centroid fine-tuning, relative-index sparse storage, and Huffman or rANS coding,
written to one self-describing, checksummed ``.pkz`` file that
:func:`load` turns back into a runnable model with no user code.

Pure pieces (no module is touched): :mod:`~prunekit.compress.kmeans`,
:mod:`~prunekit.compress.relindex`, :mod:`~prunekit.compress.huffman`,
:mod:`~prunekit.compress.rans`, :mod:`~prunekit.compress.codec`,
:mod:`~prunekit.compress.fileformat`. Module-touching: :func:`apply_shared`,
:class:`CentroidFinetune`, :func:`compress_model`.

Example::

    from prunekit import compress, models
    net = models.create("lenet300_100", in_channels=1, input_size=(28, 28))
    result = compress.compress_model(net, {"prune_sparsity": 0.9, "bits_fc": 5})
    result.save("net.pkz")
    net2 = compress.load("net.pkz")              # equals result.model exactly

See ``docs/compress.md``.
"""
from __future__ import annotations

from prunekit.utils.lazy import lazy_exports

_EXPORTS = {
    "CompressConfig": "prunekit.compress.config",
    "SharedTensor": "prunekit.compress.sharing",
    "share_weights": "prunekit.compress.sharing",
    "share_tensor": "prunekit.compress.sharing",
    "apply_shared": "prunekit.compress.sharing",
    "finalize_codebooks": "prunekit.compress.sharing",
    "quantizable_weights": "prunekit.compress.sharing",
    "kmeans_1d": "prunekit.compress.kmeans",
    "CentroidFinetune": "prunekit.compress.finetune",
    "centroid_grads": "prunekit.compress.finetune",
    "CompressionReport": "prunekit.compress.report",
    "PkzError": "prunekit.compress.fileformat",
    "PkzContents": "prunekit.compress.api",
    "encode_model": "prunekit.compress.api",
    "save": "prunekit.compress.api",
    "load": "prunekit.compress.api",
    "loads": "prunekit.compress.api",
    "read": "prunekit.compress.api",
    "reads": "prunekit.compress.api",
    "CompressResult": "prunekit.compress.pipeline",
    "compress_model": "prunekit.compress.pipeline",
    "demo_stage": "prunekit.compress.pipeline",
    "demo_sparsity": "prunekit.compress.pipeline",
    "recipe_step": "prunekit.compress.pipeline",
    "CODERS": "prunekit.compress.codec",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
