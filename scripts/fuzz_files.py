"""Fuzz the .pkz reader with crafted and damaged files; write the results row for docs/RESULTS.md.

Seed files are real ``.pkz`` files of a pruned, weight-shared LeNet-5 (Huffman and rANS,
sparse and dense layouts). Each mutant is one of:

* ``bytes``: random bytes flipped anywhere, checksum left as it is (corruption);
* ``truncate``: the file cut or extended (corruption);
* ``payload``: bytes flipped inside the payload, then the checksum recomputed (a crafted file);
* ``header``: one value of the JSON header (a length, a shape, a dtype, a reference, a
  zoo option, a transform...) replaced by a hostile one, checksum recomputed;
* ``stream``: the leading integers of one coded stream (symbol count, alphabet, lane
  length) replaced by hostile ones, references shifted to match, checksum recomputed;
* ``json``: the header's JSON text damaged (deep nesting, huge numbers, NaN, a zlib bomb),
  checksum recomputed.

Every mutant is loaded with ``prunekit.compress.loads`` and classified: a documented
:class:`~prunekit.compress.PkzError` (``error``), the original weights (``identical``), other
weights from a file whose checksum was recomputed (``valid-other``: the file is valid and says
so), other weights from a corrupted file (``silent-wrong``: a bug), any other exception
(``other-exception``: a bug), or more than ``--seconds`` (``hang``: a bug). With ``--max-mb``
the process's address space is capped that far above its size after set-up, so an
unbounded allocation fails (and counts as ``other-exception``).

    python scripts/fuzz_files.py --count 300 --seed 0            # prints the summary as JSON
    python scripts/fuzz_files.py --count 3000 --write            # also writes docs/results/file_fuzz.md
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import platform
import random
import resource
import signal
import struct
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = [0, 1, -1, 2, 255, 1 << 15, 1 << 31, 1 << 32, 10 ** 8, 1 << 40, 1 << 62, 1 << 63, 1 << 64, 10 ** 30, 1.5,
           1e300, True, None, "x", "", "float64", [], {}, [1 << 40], [0], [-1], [1 << 62, 1 << 62], {"kind": "x"},
           ["x"], [[[[[[[[[[0]]]]]]]]]]]
OUTCOMES = ("error", "identical", "valid-other", "silent-wrong", "other-exception", "hang")


class Hang(Exception):
    """Raised by the alarm when one mutant takes too long."""


def seed_files() -> list[bytes]:
    """Real .pkz files: a pruned LeNet-5, weight-shared, coded with Huffman and with rANS."""
    import torch

    from prunekit import compress, models

    out = []
    for coder in ("huffman", "rans"):
        torch.manual_seed(0)
        net = models.create("lenet5", num_classes=10, in_channels=1, input_size=(28, 28))
        with torch.no_grad():   # prune so sparse layouts and filler zeros occur
            for n, p in net.named_parameters():
                if p.dim() > 1 and n != "conv1.weight":   # conv1 stays dense: both layouts
                    p[p.abs() < p.abs().flatten().kthvalue(int(0.9 * p.numel())).values] = 0
        res = compress.compress_model(net, {"coder": coder, "codebook_dtype": "float16", "bits_conv": 4,
                                            "bits_fc": 3, "lane_len": 64}, progress=False)
        out.append(res.data)
    return out


# ------------------------------------------------------------------ file surgery
def split(data: bytes) -> tuple[dict, bytes]:
    """(header, payload) of a valid file."""
    from prunekit.compress import fileformat

    header, payload = fileformat.unpack(data)
    return header, bytes(payload)


def seal(body: bytes) -> bytes:
    """``body`` with a correct SHA-256 appended (the crafted-file case)."""
    return body + hashlib.sha256(body).digest()


def pack_raw(head_json: bytes, payload: bytes) -> bytes:
    from prunekit.compress import fileformat

    head = zlib.compress(head_json, 9)
    return seal(struct.pack("<8sHHIQ", fileformat.MAGIC, fileformat.VERSION, 0, len(head), len(payload))
                + head + payload)


def repack(header: dict, payload: bytes) -> bytes:
    return pack_raw(json.dumps(header, separators=(",", ":")).encode(), payload)


def _nodes(obj, path=()):
    """Every (container, key) of a JSON value, for replacing one value."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield obj, k
        yield from _nodes(v, path + (k,))


def _refs(obj):
    """Every ``"at": [offset, length]`` list of a header, in place."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "at" and isinstance(v, list) and len(v) == 2:
                yield v
            else:
                yield from _refs(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _refs(v)


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _read_varints(blob: bytes, k: int) -> int:
    """Byte length of the first ``k`` varints of ``blob``."""
    pos = 0
    for _ in range(k):
        while pos < len(blob) and blob[pos] & 0x80:
            pos += 1
        pos += 1
    return min(pos, len(blob))


def mutate(rng: random.Random, data: bytes) -> tuple[str, bytes, bool]:
    """One mutant of a valid file: (kind, bytes, whether its checksum was recomputed)."""
    kind = rng.choice(["bytes", "truncate", "payload", "header", "header", "header", "stream", "stream", "json"])
    if kind == "bytes":
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return kind, bytes(b), False
    if kind == "truncate":
        cut = rng.randrange(len(data))
        return kind, (data[:cut] if rng.random() < 0.7 else data + bytes(rng.randrange(1, 64))), False
    header, payload = split(data)
    if kind == "payload":
        b = bytearray(payload)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return kind, repack(header, bytes(b)), True
    if kind == "header":
        container, key = rng.choice(list(_nodes(header)))
        container[key] = copy.deepcopy(rng.choice(HOSTILE))
        return kind, repack(header, payload), True
    if kind == "stream":
        streams = [r[k] for r in header["tensors"] if r.get("enc") == "shared"
                   for k in ("gaps", "values") if k in r]
        s = rng.choice(streams)
        off, length = s["at"]
        blob = payload[off:off + length]
        which = rng.randrange(3)   # the symbol count, the alphabet size, or the varint after them
        keep = _read_varints(blob, which + 1)
        start = _read_varints(blob, which)
        new = _varint(rng.choice([0, 1, 2, 1 << 15, 1 << 16, 10 ** 8, 1 << 32, 1 << 33, 1 << 62, 1 << 63, 1 << 64,
                                  (1 << 70) - 1]))
        blob2 = blob[:start] + new + blob[keep:]
        delta = len(blob2) - len(blob)
        for ref in _refs(header):
            if ref[0] > off:
                ref[0] += delta
        s["at"][1] += delta
        return kind, repack(header, payload[:off] + blob2 + payload[off + length:]), True
    # json: damage the header text itself
    text = json.dumps(header, separators=(",", ":"))
    choice = rng.randrange(5)
    if choice == 0:
        depth = rng.choice([100, 1000, 100000])
        text = text[:-1] + ',"deep":' + "[" * depth + "]" * depth + "}"
    elif choice == 1:
        text = text[:-1] + ',"big":1' + "0" * rng.choice([20, 400, 5000]) + "}"
    elif choice == 2:
        text = text.replace('"n":', '"n":NaN,"n2":', 1)
    elif choice == 3:
        i = rng.randrange(len(text))
        text = text[:i] + text[i + rng.randint(1, 8):]
    else:   # a zlib bomb: tens of MB of whitespace in a header of a few tens of kB
        return kind, pack_raw(text.encode() + b" " * (rng.choice([32, 64]) << 20), payload), True
    return kind, pack_raw(text.encode(), payload), True


# ------------------------------------------------------------------ classification
def reference(data: bytes):
    from prunekit import compress

    model = compress.loads(data)
    return {k: v.clone() for k, v in model.state_dict().items()}


def classify(data: bytes, ref: dict, resealed: bool, seconds: float) -> str:
    import torch

    from prunekit import compress
    from prunekit.compress import PkzError

    def alarm(signum, frame):
        raise Hang()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    t0 = time.perf_counter()
    try:
        state = compress.loads(data).state_dict()
        same = state.keys() == ref.keys() and all(
            state[k].dtype == ref[k].dtype and state[k].shape == ref[k].shape and torch.equal(state[k], ref[k])
            for k in ref)
        outcome = "identical" if same else ("valid-other" if resealed else "silent-wrong")
    except Hang:
        outcome = "hang"
    except PkzError:
        outcome = "error"
    except Exception:  # noqa: BLE001 - any other exception is what this script looks for
        outcome = "other-exception"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if outcome != "hang" and time.perf_counter() - t0 > seconds:
        outcome = "hang"
    return outcome


def cap_memory(max_mb: int) -> int:
    """Cap the address space ``max_mb`` above its current size; returns the cap in bytes."""
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * resource.getpagesize()
    cap = vm + (max_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return cap


def run(count: int, seed: int = 0, seconds: float = 10.0, max_mb: int | None = None,
        examples: int = 3) -> dict:
    """Fuzz ``count`` mutants; returns the summary (counts per outcome, per kind, worst time, bug examples)."""
    import traceback

    import torch

    torch.set_num_threads(1)
    seeds = seed_files()
    refs = [reference(d) for d in seeds]
    if max_mb:
        cap_memory(max_mb)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rng = random.Random(seed)
    counts = {k: 0 for k in OUTCOMES}
    kinds: dict[str, dict[str, int]] = {}
    bugs, worst = [], 0.0
    for i in range(count):
        j = rng.randrange(len(seeds))
        kind, data, resealed = mutate(rng, seeds[j])
        t0 = time.perf_counter()
        outcome = classify(data, refs[j], resealed, seconds)
        worst = max(worst, time.perf_counter() - t0)
        counts[outcome] += 1
        kinds.setdefault(kind, {k: 0 for k in OUTCOMES})[outcome] += 1
        if outcome in ("silent-wrong", "other-exception", "hang") and len(bugs) < examples:
            from prunekit import compress

            try:
                compress.loads(data)
                detail = outcome
            except Exception as e:  # noqa: BLE001
                detail = "".join(traceback.format_exception_only(type(e), e)).strip()[:300]
            bugs.append({"mutant": i, "kind": kind, "outcome": outcome, "detail": detail})
    return {"mutants": count, "seed": seed, "seconds_limit": seconds, "max_mb": max_mb, "counts": counts,
            "by_kind": kinds, "worst_seconds": round(worst, 3),
            "peak_rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1),
            "bugs": bugs}


def write_page(summary: dict, command: str) -> Path:
    c = summary["counts"]
    page = ROOT / "docs" / "results" / "file_fuzz.md"
    rows = "\n".join(f"| {k} | " + " | ".join(str(v[o]) for o in OUTCOMES) + " |"
                     for k, v in sorted(summary["by_kind"].items()))
    page.write_text(
        "## Crafted and damaged .pkz files (fuzzing the reader)\n\n"
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, Python "
        f"{platform.python_version()}). Mutants of real .pkz files of a pruned, weight-shared LeNet-5 (Huffman and "
        "rANS); see the script's docstring for the mutation kinds. *valid-other*: a crafted file whose checksum was "
        "recomputed loads with the weights it now describes (it is a valid file); *silent-wrong*: a corrupted file "
        "(checksum not recomputed) loads with other weights.\n\n"
        "| mutants tried | documented errors | identical weights | valid-other | other exceptions | silent wrong loads "
        "| hangs | slowest mutant | peak memory growth |\n|---|---|---|---|---|---|---|---|---|\n"
        f"| {summary['mutants']} | {c['error']} | {c['identical']} | {c['valid-other']} | {c['other-exception']} | "
        f"{c['silent-wrong']} | {c['hang']} | {summary['worst_seconds']} s | {summary['peak_rss_growth_mb']} MB |\n\n"
        f"Each mutant had {summary['seconds_limit']:g} s and the process an address-space cap of "
        f"{summary['max_mb']} MB above its size after set-up; the memory growth is the whole process's, the "
        "harness's own zlib-bomb headers (32-64 MB of JSON) included. Before the reader was hardened (issue 15), "
        "the same 300 first mutants gave 8 other exceptions (RecursionError on deep JSON nesting, ValueError on "
        "huge integers).\n\n"
        "Per mutation kind:\n\n| kind | " + " | ".join(OUTCOMES) + " |\n|" + "---|" * (len(OUTCOMES) + 1) + "\n"
        + rows + "\n")
    return page


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=300, help="mutants to try (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, default=10.0, help="time limit of one mutant (default 10)")
    p.add_argument("--max-mb", type=int, default=1024, help="address-space headroom in MB (0: no cap; default 1024)")
    p.add_argument("--write", action="store_true", help="write docs/results/file_fuzz.md")
    args = p.parse_args(argv)
    summary = run(args.count, args.seed, args.seconds, args.max_mb or None)
    print(json.dumps(summary, indent=1))
    if args.write:
        cmd = f"python scripts/fuzz_files.py --count {args.count} --seed {args.seed} --write"
        print(f"wrote {write_page(summary, cmd)}", file=sys.stderr)
    c = summary["counts"]
    return 1 if c["other-exception"] or c["silent-wrong"] or c["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())
