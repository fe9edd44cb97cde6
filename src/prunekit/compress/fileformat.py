"""The ``.pkz`` container: one self-describing, checksummed file holding a compressed model.

Layout (little-endian)::

    offset  size  field
    0       8     magic  b"\\x89PKZ\\r\\n\\x1a\\n"  (PNG-style: catches text-mode and 7-bit mangling)
    8       2     format version (uint16), currently 1
    10      2     flags (uint16), 0
    12      4     header length H (uint32)
    16      8     payload length P (uint64)
    24      H     header: zlib-compressed UTF-8 JSON
    24+H    P     payload: the codebooks and coded streams the header points into
    24+H+P  32    SHA-256 of every byte before it

The JSON header holds ``format`` (``"prunekit.pkz"``), ``spec`` (the
:class:`prunekit.checkpoint.ModelSpec` as a dict: the architecture and any
structural transforms, so loading needs no user code), ``meta`` (free-form) and
``tensors``: one record per state-dict entry (see :mod:`prunekit.compress.codec`).

Files are written atomically; reading checks, in order, the size, the magic,
the version, the lengths, the checksum, then every record, and raises
:class:`PkzError` naming the file and the problem.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from pathlib import Path

from prunekit.errors import CheckpointError

MAGIC = b"\x89PKZ\r\n\x1a\n"
VERSION = 1
FORMAT = "prunekit.pkz"
_FIXED = struct.Struct("<8sHHIQ")
_DIGEST = 32


class PkzError(CheckpointError):
    """A ``.pkz`` file is missing, truncated, altered, of an unknown version, or not one at all."""


def pack(header: dict, payload: bytes) -> bytes:
    """The complete file contents for ``header`` (JSON-able) and ``payload``."""
    head = zlib.compress(json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8"), 9)
    body = _FIXED.pack(MAGIC, VERSION, 0, len(head), len(payload)) + head + payload
    return body + hashlib.sha256(body).digest()


def unpack(data: bytes, source: str = "<bytes>") -> tuple[dict, memoryview]:
    """Validate file contents and return ``(header, payload)``; raises :class:`PkzError`."""
    mv = memoryview(data)
    if len(mv) < len(MAGIC) or bytes(mv[:len(MAGIC)]) != MAGIC:
        raise PkzError(f"{source}: not a prunekit .pkz file (wrong magic bytes)")
    if len(mv) < _FIXED.size:
        raise PkzError(f"{source}: truncated .pkz file ({len(mv)} bytes, shorter than its fixed header)")
    _, version, flags, hlen, plen = _FIXED.unpack_from(mv)
    if version != VERSION:
        raise PkzError(f"{source}: .pkz format version {version} is not supported (this prunekit reads "
                       f"version {VERSION}; a newer prunekit may read it)")
    expected = _FIXED.size + hlen + plen + _DIGEST
    if len(mv) < expected:
        raise PkzError(f"{source}: truncated .pkz file ({len(mv)} bytes, its header says {expected})")
    if len(mv) > expected:
        raise PkzError(f"{source}: {len(mv) - expected} unexpected bytes after the end of the .pkz data")
    body = mv[:expected - _DIGEST]
    if hashlib.sha256(body).digest() != bytes(mv[expected - _DIGEST:]):
        raise PkzError(f"{source}: checksum mismatch: the file was altered or corrupted")
    if flags != 0:
        raise PkzError(f"{source}: unknown flags {flags:#x} in the .pkz header")
    try:
        header = json.loads(zlib.decompress(bytes(mv[_FIXED.size:_FIXED.size + hlen])).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PkzError(f"{source}: unreadable .pkz header ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise PkzError(f"{source}: the header does not describe a '{FORMAT}' file")
    if not isinstance(header.get("tensors"), list) or not isinstance(header.get("spec"), dict):
        raise PkzError(f"{source}: the header lacks the model spec or the tensor records")
    return header, mv[_FIXED.size + hlen:_FIXED.size + hlen + plen]


def read(path: str | os.PathLike) -> tuple[dict, memoryview, int]:
    """Read and validate the file at ``path``: ``(header, payload, file size)``."""
    p = Path(path)
    if not p.is_file():
        raise PkzError(f"{p}: no such .pkz file")
    data = p.read_bytes()
    header, payload = unpack(data, str(p))
    return header, payload, len(data)
