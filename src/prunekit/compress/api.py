"""Writing and reading ``.pkz`` files: a model plus its shared weights in, a runnable model out.

Example::

    from prunekit import models, compress
    net = models.create("lenet300_100", in_channels=1, input_size=(28, 28))
    shared = compress.share_weights(net)          # 8-bit conv / 5-bit fc codebooks
    compress.apply_shared(net, shared)            # net is now the quantized model
    report = compress.save("net.pkz", net, shared)
    net2 = compress.load("net.pkz")               # outputs equal net's exactly
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from prunekit.compress import codec, fileformat
from prunekit.compress.fileformat import PkzError
from prunekit.compress.report import CompressionReport, build_report
from prunekit.compress.sharing import SharedTensor


@dataclass
class PkzContents:
    """Everything in a ``.pkz`` file, decoded.

    Attributes:
        spec: the :class:`prunekit.checkpoint.ModelSpec` that rebuilds the architecture.
        state_dict: the decoded tensors (shared weights already expanded).
        meta: free-form JSON stored by the writer (dataset, accuracy, command).
        header: the raw JSON header (tensor records included).
        file_bytes: size of the file.
        path: where it was read from (None for bytes).
    """

    spec: object
    state_dict: dict
    meta: dict
    header: dict
    file_bytes: int
    path: Path | None = None

    def build_model(self, *, trusted_factories=()):
        """The architecture with the decoded weights loaded, in eval mode.

        ``trusted_factories``: the model factories (``"module:function"`` names or
        callables) the file may use; zoo models need none (see
        :func:`prunekit.checkpoint.resolve_factory`).
        """
        from prunekit.checkpoint import build, check_base_size
        from prunekit.errors import PrunekitError

        where = str(self.path) if self.path else "<bytes>"
        try:
            check_base_size(self.spec, sum(t.numel() for t in self.state_dict.values()), where)
            model = build(self.spec, trusted_factories=trusted_factories)
        except (PrunekitError, TypeError, KeyError) as e:  # e.g. unknown zoo name, bad kwargs, untrusted factory
            raise PkzError(f"{where}: cannot rebuild the stored architecture: {e}") from None
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as e:
            raise PkzError(f"{where}: weights do not fit the stored architecture: "
                           f"{str(e).splitlines()[0]}") from None
        return model.eval()


def encode_model(model, shared: Mapping[str, SharedTensor], *, coder: str = "huffman", lane_len: int = 4096,
                 spec=None, meta: dict | None = None) -> tuple[bytes, CompressionReport]:
    """The ``.pkz`` bytes of ``model`` with the given shared weights, and its :class:`CompressionReport`.

    Every state-dict entry not in ``shared`` (biases, BatchNorm statistics,
    layers left out of sharing) is stored raw in its own dtype. The stored
    weights of shared tensors are ``shared[name].weight()``: call
    :func:`apply_shared` on ``model`` to make it the model the file decodes to.
    """
    import json

    import torch

    from prunekit.checkpoint import get_spec

    spec = spec or get_spec(model)
    if spec is None:
        raise PkzError("model has no prunekit_spec (it was not built by prunekit.models.create or loaded from a "
                       "prunekit checkpoint); pass spec=prunekit.checkpoint.ModelSpec(...)")
    meta = dict(meta or {})
    try:
        json.dumps(meta)
    except TypeError as e:
        raise PkzError(f"meta must be JSON-serialisable: {e}") from None
    state = model.state_dict()
    missing = sorted(set(shared) - set(state))
    if missing:
        raise PkzError(f"shared weights name tensors the model does not have: {', '.join(missing[:5])}")
    payload = codec.Payload()
    records, stats = [], []
    original = 0
    for name, t in state.items():
        original += t.numel() * t.element_size()
        if name in shared:
            if not torch.equal(t.detach().cpu().float(), shared[name].weight()):
                # The file would decode to a model other than the one the caller holds.
                raise PkzError(f"{name}: the model's weights are not its shared weights; call "
                               "prunekit.compress.apply_shared(model, shared) before saving")
            rec, st = codec.encode_shared(shared[name], payload, coder=coder, lane_len=lane_len)
        else:
            rec, st = codec.encode_raw(name, t, payload)
        records.append(rec)
        stats.append(st)
    from prunekit import __version__

    header = {"format": fileformat.FORMAT, "writer": f"prunekit {__version__}", "spec": spec.to_dict(),
              "meta": meta, "tensors": records}
    data = fileformat.pack(header, payload.getvalue())
    return data, build_report(stats, original, len(data), coder)


def save(path: str | os.PathLike, model, shared: Mapping[str, SharedTensor], *, coder: str = "huffman",
         lane_len: int = 4096, spec=None, meta: dict | None = None, overwrite: bool = False) -> CompressionReport:
    """Write ``model`` with its shared weights to ``path`` atomically (see :func:`encode_model`).

    Refuses to replace an existing file unless ``overwrite``.
    """
    from prunekit.utils.io import check_overwrite

    check_overwrite(path, overwrite)
    data, report = encode_model(model, shared, coder=coder, lane_len=lane_len, spec=spec, meta=meta)
    write_bytes(path, data, overwrite=overwrite)
    return report


def write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write already-encoded ``.pkz`` bytes atomically."""
    from prunekit.utils.io import atomic_write, check_overwrite

    p = check_overwrite(path, overwrite)
    with atomic_write(p, "wb") as f:
        f.write(data)
    return p


def _contents(header: dict, payload, size: int, where: str, path: Path | None) -> PkzContents:
    from prunekit.checkpoint import ModelSpec
    from prunekit.compress.bitio import StreamFormatError
    from prunekit.errors import CheckpointError

    try:
        spec = ModelSpec.from_dict(header["spec"])
    except CheckpointError as e:
        raise PkzError(f"{where}: {e}") from None
    try:
        state = codec.decode_tensors(header["tensors"], payload, max_values=codec.max_decoded_values(size))
    except StreamFormatError as e:
        raise PkzError(f"{where}: {e}") from None
    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
    return PkzContents(spec=spec, state_dict=state, meta=meta, header=header, file_bytes=size, path=path)


def read(path: str | os.PathLike) -> PkzContents:
    """Read, verify and decode a ``.pkz`` file; raises :class:`PkzError` naming the file and the problem."""
    p = Path(path)
    header, payload, size = fileformat.read(p)
    return _contents(header, payload, size, str(p), p)


def reads(data: bytes) -> PkzContents:
    """:func:`read` for ``.pkz`` contents already in memory."""
    header, payload = fileformat.unpack(data, "<bytes>")
    return _contents(header, payload, len(data), "<bytes>", None)


def load(path: str | os.PathLike, *, trusted_factories=()):
    """The runnable model stored in a ``.pkz`` file (eval mode).

    Its outputs equal those of the quantized model that was saved, exactly.
    ``trusted_factories``: see :meth:`PkzContents.build_model`.
    """
    return read(path).build_model(trusted_factories=trusted_factories)


def loads(data: bytes, *, trusted_factories=()):
    """:func:`load` for ``.pkz`` contents already in memory."""
    return reads(data).build_model(trusted_factories=trusted_factories)
