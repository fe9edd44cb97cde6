"""Tensors to coded streams and back: the per-tensor records of a ``.pkz`` file.

Two encodings:

* ``"shared"``: a weight after weight sharing. Its codebook (float16/float32),
  and either every cluster index (``layout="dense"``) or, for a pruned tensor,
  the relative positions and cluster indices of the kept weights and filler
  zeros (``layout="sparse"``, Deep Compression section 2). Each index stream is
  entropy-coded by the coder named in the record (see :data:`CODERS`) and
  carries a CRC-32 of its symbols, checked after decoding. With ``coder="rans"``
  a short stream for which Huffman is smaller (its table costs less) is stored
  with Huffman instead.
* ``"raw"``: any other tensor (biases, BatchNorm statistics, step counters),
  byte for byte in its own dtype.

Decoding gathers every stream of the model and decodes them together
(:func:`decode_tensors`), so a model decodes in a fixed number of vectorised
steps however many layers it has.
"""
from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from prunekit.compress import huffman, rans
from prunekit.compress.bitio import StreamFormatError
from prunekit.compress.relindex import decode_positions, encode_positions
from prunekit.compress.sharing import SharedTensor
from prunekit.registry import Registry


@dataclass(frozen=True)
class Coder:
    """An entropy coder of integer streams: ``encode(symbols, alphabet_size, lane_len=)``,
    ``parse(blob, what)`` and ``decode_many(parsed, what)``."""

    name: str
    encode: Callable
    parse: Callable
    decode_many: Callable


CODERS: Registry[Coder] = Registry("entropy coder")
CODERS.add("huffman", Coder("huffman", huffman.encode, huffman.parse, huffman.decode_many))
CODERS.add("rans", Coder("rans", rans.encode, rans.parse, rans.decode_many))

_FALLBACK_MAX = 1 << 16   # streams up to this length are also tried with Huffman when rANS is asked for
_RAW_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
_CODEBOOK_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def _check_byteorder() -> None:
    if sys.byteorder != "little":  # pragma: no cover - no big-endian CI
        raise StreamFormatError(".pkz files are little-endian; this machine is big-endian")


class Payload:
    """Append-only byte buffer handing out ``[offset, length]`` pairs for records."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, blob: bytes) -> list[int]:
        """Append ``blob``; returns its ``[offset, length]``."""
        ref = [self.size, len(blob)]
        self.parts.append(blob)
        self.size += len(blob)
        return ref

    def getvalue(self) -> bytes:
        """All blobs concatenated."""
        return b"".join(self.parts)


def crc_symbols(symbols: np.ndarray) -> int:
    """CRC-32 of a symbol stream (as little-endian uint16), stored to check decoding."""
    return zlib.crc32(np.ascontiguousarray(symbols, dtype="<u2").tobytes())


def entropy_bits(counts) -> float:
    """Shannon entropy, in bits, of a whole stream with this histogram: ``-sum c log2(c / n)``.

    Example:
        >>> entropy_bits([2, 2])
        4.0
    """
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    n = c.sum()
    return float(-(c * np.log2(c / n)).sum()) if n else 0.0


def _stream(payload: Payload, coder: Coder, symbols: np.ndarray, alphabet: int, lane_len: int) -> tuple[dict, dict]:
    counts = np.bincount(symbols, minlength=alphabet) if len(symbols) else np.zeros(alphabet, np.int64)
    blob = coder.encode(symbols, alphabet, lane_len=lane_len, counts=counts)
    if coder.name == "rans" and len(symbols) <= _FALLBACK_MAX:
        # A short stream's frequency table and lane state can outweigh rANS's gain over
        # Huffman; the record names the coder of each stream, so take the smaller.
        alt = CODERS.get("huffman").encode(symbols, alphabet, lane_len=lane_len, counts=counts)
        if len(alt) < len(blob):
            coder, blob = CODERS.get("huffman"), alt
    ref = payload.add(blob)
    rec = {"coder": coder.name, "at": ref, "n": int(len(symbols)), "alphabet": int(alphabet),
           "crc": crc_symbols(symbols)}
    stats = {"n": int(len(symbols)), "bytes": len(blob), "entropy_bits": entropy_bits(counts)}
    return rec, stats


def encode_shared(st: SharedTensor, payload: Payload, coder: str = "huffman", lane_len: int = 4096) -> tuple[dict, dict]:
    """Record (JSON-able) and statistics of one shared tensor; its blobs go to ``payload``."""
    _check_byteorder()
    c = CODERS.get(coder)
    stored = st.codebook.numpy().astype(_CODEBOOK_DTYPES[st.codebook_dtype])
    if not np.array_equal(stored.astype(np.float32), st.codebook.numpy()):
        # Writing would silently change the weights: the caller forgot finalize_codebooks().
        raise ValueError(f"{st.name}: codebook is not representable in {st.codebook_dtype}; "
                         "call prunekit.compress.finalize_codebooks first")
    cb_bytes = stored.tobytes()
    assign = st.assignments.reshape(-1).numpy()
    rec = {"name": st.name, "enc": "shared", "shape": list(st.shape), "dtype": "float32", "kind": st.kind,
           "bits": st.bits, "index_bits": st.index_bits, "layout": st.layout, "zero_code": st.zero_code,
           "codebook": {"dtype": st.codebook_dtype, "n": len(st.codebook), "at": payload.add(cb_bytes)}}
    mask = st.mask.reshape(-1).numpy()
    stats = {"name": st.name, "kind": st.kind, "n": int(mask.size), "kept": int(mask.sum()), "bits": st.bits,
             "index_bits": st.index_bits if st.layout == "sparse" else 0, "layout": st.layout,
             "codebook_bytes": len(cb_bytes), "n_codes": len(st.codebook)}
    if st.layout == "sparse":
        gaps, filler = encode_positions(mask, st.index_bits)
        values = assign[decode_positions(gaps)]
        rec["gaps"], stats["gaps"] = _stream(payload, c, gaps, 1 << st.index_bits, lane_len)
        stats["entries"] = int(len(gaps))
        stats["fillers"] = int(filler.sum())
    else:
        values = assign
        stats["entries"] = int(mask.size)
        stats["fillers"] = 0
    rec["values"], stats["values"] = _stream(payload, c, values, len(st.codebook), lane_len)
    return rec, stats


def _dtype(name: str, what: str) -> torch.dtype:
    if not isinstance(name, str) or name not in _RAW_DTYPES:
        raise StreamFormatError(f"{what}: unsupported dtype {name!r}")
    return getattr(torch, name)


def encode_raw(name: str, tensor: torch.Tensor, payload: Payload) -> tuple[dict, dict]:
    """Record and statistics of a tensor stored as raw bytes in its own dtype."""
    _check_byteorder()
    t = tensor.detach().cpu().contiguous()
    dname = str(t.dtype).removeprefix("torch.")
    _dtype(dname, name)
    blob = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    rec = {"name": name, "enc": "raw", "shape": list(t.shape), "dtype": dname, "at": payload.add(blob)}
    return rec, {"name": name, "n": int(t.numel()), "bytes": len(blob)}


# A file may decode to at most this many weights, or VALUES_PER_BYTE per byte of the file, whichever is more:
# a constant tensor codes to almost nothing, so the file's size alone does not bound what it decodes to.
MIN_DECODED_VALUES = 1 << 24
VALUES_PER_BYTE = 1024
MAX_DIM = 1 << 31


def max_decoded_values(file_bytes: int) -> int:
    """How many weights a ``.pkz`` file of ``file_bytes`` bytes may decode to (checked before any allocation)."""
    return max(MIN_DECODED_VALUES, VALUES_PER_BYTE * int(file_bytes))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ref(ref, size: int, what: str) -> tuple[int, int]:
    if (not isinstance(ref, list) or len(ref) != 2 or not all(_is_int(v) and v >= 0 for v in ref)
            or ref[0] + ref[1] > size):
        raise StreamFormatError(f"{what}: data reference {ref!r} lies outside the payload")
    return ref[0], ref[1]


def _slice(payload: memoryview, ref, what: str) -> memoryview:
    start, length = _ref(ref, len(payload), what)
    return payload[start:start + length]


def _numel(shape, what: str) -> int:
    if (not isinstance(shape, list) or len(shape) > 16
            or not all(_is_int(s) and 0 <= s <= MAX_DIM for s in shape)):
        raise StreamFormatError(f"{what}: bad shape {shape!r}")
    n = 1
    for s in shape:   # Python ints: no overflow
        n *= s
    return n


def _refs(rec: dict, what: str) -> list:
    """Every ``[offset, length]`` a record points to, after checking the record's structure."""
    enc = rec.get("enc")
    if enc == "raw":
        return [rec.get("at")]
    if enc != "shared":
        raise StreamFormatError(f"{what}: unknown encoding {enc!r}")
    layout = rec.get("layout")
    if layout not in ("sparse", "dense"):
        raise StreamFormatError(f"{what}: unknown layout {layout!r}")
    cb = rec.get("codebook")
    if (not isinstance(cb, dict) or not isinstance(cb.get("dtype"), str) or cb["dtype"] not in _CODEBOOK_DTYPES
            or not _is_int(cb.get("n")) or cb["n"] < 1):
        raise StreamFormatError(f"{what}: missing or malformed codebook")
    refs = [cb.get("at")]
    for key in ("gaps", "values") if layout == "sparse" else ("values",):
        st = rec.get(key)
        if not isinstance(st, dict) or not isinstance(st.get("coder"), str) or st["coder"] not in CODERS:
            raise StreamFormatError(f"{what} {key} stream: missing or unknown coder")
        if not _is_int(st.get("n")) or not _is_int(st.get("crc")):
            raise StreamFormatError(f"{what} {key} stream: malformed record")
        refs.append(st.get("at"))
    return refs


def check_records(records, payload_size: int, max_values: int | None = None) -> None:
    """Validate a file's tensor records before anything is allocated for them.

    Checks each record's structure, unique names, shapes (sizes computed without
    overflow), stream lengths against their tensor (dense: one index per weight;
    sparse: at most one entry per weight), the total number of weights against
    ``max_values``, and that the data references tile the payload exactly: every
    byte belongs to exactly one blob, so no tensor can alias another's bytes.
    """
    if not isinstance(records, list):
        raise StreamFormatError("the tensor records are not a list")
    names, spans, total = set(), [], 0
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("name"), str):
            raise StreamFormatError(f"tensor record {i} is malformed")
        what = f"tensor {rec['name']!r}"
        if rec["name"] in names:
            raise StreamFormatError(f"{what}: stored twice")
        names.add(rec["name"])
        refs = _refs(rec, what)
        n = _numel(rec.get("shape"), what)
        if rec["enc"] == "shared":
            total += n
            values_n = rec["values"]["n"]
            if rec["layout"] == "dense" and values_n != n:
                raise StreamFormatError(f"{what}: {values_n} indices for {n} weights")
            if rec["layout"] == "sparse" and (values_n != rec["gaps"]["n"] or values_n > n):
                raise StreamFormatError(f"{what}: positions and values disagree or run past the tensor")
        spans.extend(_ref(r, payload_size, what) for r in refs)
    if max_values is not None and total > max_values:
        raise StreamFormatError(f"the records describe {total:,} shared weights, more than the {max_values:,} "
                                "this file's size allows")
    pos = 0
    for start, length in sorted(spans):
        if start != pos:
            raise StreamFormatError(f"data references overlap or leave a gap at payload offset {min(start, pos)}")
        pos += length
    if pos != payload_size:
        raise StreamFormatError(f"data references cover {pos} of the payload's {payload_size} bytes")


def _decode_raw(rec: dict, payload: memoryview) -> torch.Tensor:
    what = f"tensor {rec.get('name')!r}"
    dtype = _dtype(rec.get("dtype"), what)
    n = _numel(rec.get("shape"), what)
    data = _slice(payload, rec.get("at"), what)
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if len(data) != n * itemsize:
        raise StreamFormatError(f"{what}: {len(data)} bytes for {n} values of {rec['dtype']}")
    if n == 0:
        return torch.zeros(rec["shape"], dtype=dtype)
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    if dtype == torch.bool and bool((raw > 1).any()):  # other bytes are not valid bools
        raise StreamFormatError(f"{what}: bool values other than 0 and 1")
    return raw.view(dtype).reshape(rec["shape"]).clone()


def decode_tensors(records: list[dict], payload, *, max_values: int | None = None) -> dict[str, torch.Tensor]:
    """Rebuild every tensor of a file's records; raises :class:`StreamFormatError` on any inconsistency.

    ``max_values``: the most shared weights the records may describe (see :func:`max_decoded_values`);
    every record is checked by :func:`check_records` before anything is decoded.
    """
    _check_byteorder()
    payload = memoryview(payload)
    check_records(records, len(payload), max_values)
    out: dict[str, torch.Tensor] = {}
    # 1. parse every stream, grouped by coder, so each coder decodes all its streams in one pass
    jobs: dict[str, list] = {}
    for i, rec in enumerate(records):
        if rec["enc"] == "raw":
            out[rec["name"]] = _decode_raw(rec, payload)
            continue
        for key in ("gaps", "values") if rec["layout"] == "sparse" else ("values",):
            s = rec[key]
            what = f"tensor {rec['name']!r} {key} stream"
            coder = CODERS.get(s["coder"])
            parsed = coder.parse(_slice(payload, s.get("at"), what), what)
            if parsed.n_symbols != s["n"]:
                raise StreamFormatError(f"{what}: holds {parsed.n_symbols} symbols, the record says {s['n']}")
            jobs.setdefault(s["coder"], []).append((i, key, parsed))
    decoded: dict[tuple[int, str], np.ndarray] = {}
    for name, items in jobs.items():
        arrays = CODERS.get(name).decode_many([p for _, _, p in items], f"{name} streams")
        for (i, key, _), arr in zip(items, arrays):
            decoded[(i, key)] = arr
    # 2. rebuild the shared tensors
    for i, rec in enumerate(records):
        if rec.get("enc") != "shared":
            continue
        out[rec["name"]] = _rebuild_shared(i, rec, payload, decoded)
    return out


def _rebuild_shared(key_i: int, rec: dict, payload: memoryview, decoded: dict) -> torch.Tensor:
    name = rec["name"]
    what = f"tensor {name!r}"
    n = _numel(rec.get("shape"), what)
    cbr = rec.get("codebook")
    if not isinstance(cbr, dict) or cbr.get("dtype") not in _CODEBOOK_DTYPES:
        raise StreamFormatError(f"{what}: missing or malformed codebook")
    dt = _CODEBOOK_DTYPES[cbr["dtype"]]
    raw = _slice(payload, cbr.get("at"), what)
    if len(raw) != dt.itemsize * cbr["n"]:
        raise StreamFormatError(f"{what}: codebook size does not match its record")
    codebook = torch.from_numpy(np.frombuffer(raw, dtype=dt).astype(np.float32))
    for key in ("values", "gaps") if rec["layout"] == "sparse" else ("values",):
        arr = decoded[(key_i, key)]
        if crc_symbols(arr) != rec[key].get("crc"):
            raise StreamFormatError(f"{what}: {key} decoded with a wrong checksum")
    values = decoded[(key_i, "values")]
    if len(values) and values.max() >= len(codebook):
        raise StreamFormatError(f"{what}: cluster index beyond the codebook")
    flat = torch.zeros(n, dtype=torch.float32)
    if rec["layout"] == "sparse":
        pos = decode_positions(decoded[(key_i, "gaps")])
        if len(pos) != len(values) or (len(pos) and pos[-1] >= n):
            raise StreamFormatError(f"{what}: positions and values disagree or run past the tensor")
        flat[torch.from_numpy(pos)] = codebook[torch.from_numpy(values)]
    else:
        if len(values) != n:
            raise StreamFormatError(f"{what}: {len(values)} indices for {n} weights")
        flat = codebook[torch.from_numpy(values)]
    return flat.reshape(rec["shape"])
