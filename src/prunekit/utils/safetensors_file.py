"""Tensors plus string meta data in a ``.safetensors`` file: no pickle at all, readable by any safetensors reader.

:mod:`prunekit.checkpoint` writes a checkpoint whose path ends in ``.safetensors``
this way: the weights are the file's tensors, the model spec and meta data are JSON
strings in its header (``__metadata__``). Loading parses a JSON header and raw tensor
bytes, so a file cannot run code even in principle (``torch.load(weights_only=True)``
still runs a restricted unpickler).

Example:
    >>> import torch
    >>> p = write_safetensors("/tmp/w.safetensors", {"w": torch.ones(2)}, {"note": "x"})  # doctest: +SKIP
    >>> read_safetensors(p)[1]["note"]                                                     # doctest: +SKIP
    'x'
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from prunekit.errors import CheckpointError

__all__ = ["is_safetensors", "read_safetensors", "write_safetensors"]

SUFFIX = ".safetensors"


def is_safetensors(path: str | os.PathLike) -> bool:
    """True when ``path`` ends in ``.safetensors`` or starts like one (an 8-byte header length, then ``{``)."""
    p = Path(path)
    if p.suffix == SUFFIX:
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= p.stat().st_size - 8


def _import():
    try:
        import safetensors.torch as st
    except ImportError as e:
        raise CheckpointError(f".safetensors checkpoints need the safetensors package: pip install safetensors "
                              f"({e})") from None
    return st


def write_safetensors(path: str | os.PathLike, state: dict, metadata: dict) -> Path:
    """Write ``state`` (name -> tensor) with ``metadata`` (name -> str) to ``path`` atomically.

    Tensors are copied to their own contiguous storage first: safetensors refuses tensors that
    share memory (tied weights), and each name must own its bytes to be read back alone.
    """
    import torch

    from prunekit.utils.io import atomic_write

    st = _import()
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"a .safetensors checkpoint holds tensors only; state entry {bad[0]!r} is a "
                              f"{type(state[bad[0]]).__name__} (save it as .pt)")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    data = st.save(tensors, metadata={str(k): str(v) for k, v in metadata.items()})
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def read_safetensors(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(state, metadata)`` of a ``.safetensors`` file; CheckpointError naming the file if it is not one."""
    p = Path(path)
    st = _import()
    try:
        data = p.read_bytes()
        state = st.load(data)
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
    except Exception as e:  # noqa: BLE001 - I/O errors and the Rust parser's assorted errors
        raise CheckpointError(f"{p}: not a readable .safetensors file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{p}: malformed .safetensors metadata")
    return state, {str(k): str(v) for k, v in meta.items()}
