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
from prunekit.spec import MAX_NESTING, nesting_depth

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


MAX_HEADER_BYTES = 16 << 20   # inflated JSON header; a zlib bomb stops here
MAX_JSON_DEPTH = MAX_NESTING     # nesting of the header's lists and objects


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_header(blob, source: str) -> dict:
    """Inflate (at most :data:`MAX_HEADER_BYTES`) and parse the JSON header; raises :class:`PkzError`."""
    d = zlib.decompressobj()
    try:
        raw = d.decompress(bytes(blob), MAX_HEADER_BYTES)
    except zlib.error as e:
        raise PkzError(f"{source}: unreadable .pkz header (zlib: {e})") from None
    if d.unconsumed_tail:
        raise PkzError(f"{source}: the .pkz header inflates to more than {MAX_HEADER_BYTES} bytes")
    if not d.eof or d.unused_data:
        raise PkzError(f"{source}: unreadable .pkz header (truncated or trailing compressed data)")
    try:
        # NaN/Infinity are not JSON; huge integers, deep nesting and bad UTF-8 are refused by json itself
        header = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PkzError(f"{source}: unreadable .pkz header ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise PkzError(f"{source}: the header does not describe a '{FORMAT}' file")
    if nesting_depth(header) > MAX_JSON_DEPTH:
        raise PkzError(f"{source}: the .pkz header nests deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(header.get("tensors"), list) or not isinstance(header.get("spec"), dict):
        raise PkzError(f"{source}: the header lacks the model spec or the tensor records")
    return header


def check_fixed(fixed: bytes, size: int, source: str) -> tuple[int, int]:
    """Check the fixed header (magic, version, flags) against a file of ``size`` bytes: ``(H, P)``."""
    if len(fixed) < len(MAGIC) or bytes(fixed[:len(MAGIC)]) != MAGIC:
        raise PkzError(f"{source}: not a prunekit .pkz file (wrong magic bytes)")
    if len(fixed) < _FIXED.size:
        raise PkzError(f"{source}: truncated .pkz file ({size} bytes, shorter than its fixed header)")
    _, version, flags, hlen, plen = _FIXED.unpack_from(fixed)
    if version != VERSION:
        raise PkzError(f"{source}: .pkz format version {version} is not supported (this prunekit reads "
                       f"version {VERSION}; a newer prunekit may read it)")
    expected = _FIXED.size + hlen + plen + _DIGEST
    if size < expected:
        raise PkzError(f"{source}: truncated .pkz file ({size} bytes, its header says {expected})")
    if size > expected:
        raise PkzError(f"{source}: {size - expected} unexpected bytes after the end of the .pkz data")
    return hlen, plen


def unpack(data: bytes, source: str = "<bytes>") -> tuple[dict, memoryview]:
    """Validate file contents and return ``(header, payload)``; raises :class:`PkzError`."""
    mv = memoryview(data)
    hlen, plen = check_fixed(mv[:_FIXED.size], len(mv), source)
    flags = _FIXED.unpack_from(mv)[2]
    expected = _FIXED.size + hlen + plen + _DIGEST
    body = mv[:expected - _DIGEST]
    if hashlib.sha256(body).digest() != bytes(mv[expected - _DIGEST:]):
        raise PkzError(f"{source}: checksum mismatch: the file was altered or corrupted")
    if flags != 0:
        raise PkzError(f"{source}: unknown flags {flags:#x} in the .pkz header")
    header = parse_header(mv[_FIXED.size:_FIXED.size + hlen], source)
    return header, mv[_FIXED.size + hlen:_FIXED.size + hlen + plen]


def read(path: str | os.PathLike) -> tuple[dict, memoryview, int]:
    """Read and validate the file at ``path``: ``(header, payload, file size)``.

    The fixed header is read and checked against the file's size first, so a file
    that is not a .pkz (or whose lengths do not match its size) is refused without
    reading the rest.
    """
    p = Path(path)
    if not p.is_file():
        raise PkzError(f"{p}: no such .pkz file")
    with p.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        check_fixed(f.read(_FIXED.size), size, str(p))
        f.seek(0)
        data = f.read()
    header, payload = unpack(data, str(p))
    return header, payload, len(data)
