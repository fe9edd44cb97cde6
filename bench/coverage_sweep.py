"""Bookkeeping of the coverage sweep (bench/coverage.py): which models, which shard, the resumable store, progress.

A full timm sweep is 1371 architectures; on a 2-core machine it takes hours, so
it must survive interruption and split over processes:

* the per-model results live in one JSON store (``--json``); every finished
  model is merged into it at once, under a lock and with an atomic replace, so
  an interrupted sweep loses at most the model in flight, and several shard
  processes may share one store;
* ``--resume`` runs only the models the store lacks (or lacks the
  Torch-Pruning half of, when that is asked for);
* ``--shard i/n`` keeps every n-th model starting at the i-th (1-based), so the
  shards are disjoint, cover the list, and each gets a spread of families;
* ``--families`` is one architecture per name stem (the text before the first
  ``_``: ``resnet18``, ``vit``, ``convnext``... 289 stems in timm 1.0.31), the
  smallest-looking name of each.

Everything here is pure bookkeeping on names and row dictionaries (no torch),
so it is tested on fake rows (tests/graph/test_coverage_sweep.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

# name fragments that mark the small variant of a family, best first
SMALL_MARKS = ("atto", "femto", "pico", "nano", "tiny", "xxs", "xs", "small", "s12", "t8", "_002", "050", "18",
               "_b0", "lite0", "a0", "_s", "128s")


def name_stem(name: str) -> str:
    """The family stem of an architecture name: the text before the first ``_`` (``vit_tiny_patch16_224`` -> ``vit``)."""
    return name.split("_", 1)[0]


def small_rank(name: str) -> tuple:
    """Sort key putting the smallest-looking name of a family first (size marks, then short names)."""
    hit = [k for k, s in enumerate(SMALL_MARKS) if s in name]
    return (min(hit) if hit else len(SMALL_MARKS), len(name), name)


def one_per_family(names: list[str], family=name_stem) -> list[str]:
    """One name per family (``family(name)``), the smallest-looking, families in alphabetical order."""
    fams: dict[str, list[str]] = {}
    for n in names:
        fams.setdefault(family(n), []).append(n)
    return [min(fams[f], key=small_rank) for f in sorted(fams)]


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``1 <= i <= n``; ValueError naming the accepted form otherwise."""
    try:
        i, n = (int(s) for s in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r}: expected i/n with integers, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {spec!r}: need 1 <= i <= n")
    return i, n


def shard(names: list[str], spec: str | None) -> list[str]:
    """The ``i``-th of ``n`` interleaved shards of ``names`` (every n-th name from the i-th); all of them for None."""
    if not spec:
        return list(names)
    i, n = parse_shard(spec)
    return list(names[i - 1::n])


# ----------------------------------------------------------------------------- the store


def load_store(path: str | Path) -> dict:
    """``{"meta": {...}, "rows": {model: row}}`` from a store (or a legacy ``{"rows": [...]}`` file); empty if absent."""
    p = Path(path)
    if not p.exists():
        return {"meta": {}, "rows": {}}
    data = json.loads(p.read_text())
    rows = data.get("rows", {})
    if isinstance(rows, list):
        rows = {r["model"]: r for r in rows}
    return {"meta": data.get("meta", {}), "rows": rows}


def save_store(path: str | Path, store: dict, extra: dict | None = None) -> None:
    """Write ``store`` (plus ``extra`` top-level keys, e.g. totals) atomically: a temporary file, then a rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": store.get("meta", {}), **(extra or {}), "rows": store["rows"]}
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the store is an ordinary results file
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path + '.lock'`` (shard processes sharing one store merge one at a time; the
    empty lock file stays, ignored by git)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def merge_row(path: str | Path, row: dict, meta: dict | None = None) -> dict:
    """Merge one finished ``row`` (keyed by ``row["model"]``) into the store at ``path``; returns the new store.

    The store is re-read under the lock, so rows other processes wrote
    meanwhile are kept. A new row's tool results replace the stored row's
    ones, and a stored tool result the new row lacks (a Torch-Pruning half run
    earlier) is kept.
    """
    p = Path(path)
    with _locked(p):
        store = load_store(p)
        old = store["rows"].get(row["model"], {})
        store["rows"][row["model"]] = {**old, **row}
        if meta:
            store["meta"].update(meta)
        save_store(p, store)
    return store


def tools_needed(row: dict | None, with_tp: bool) -> list[str]:
    """Which tools still have to run for a stored ``row`` (None: not stored) on resume.

    A model whose build did not finish (failed, skipped, too large) is not retried.
    """
    if row is None or "build" not in row:
        return ["prunekit"] + (["torch_pruning"] if with_tp else [])
    if row["build"] != "ok":
        return []
    need = [] if "prunekit" in row else ["prunekit"]
    if with_tp and "torch_pruning" not in row:
        need.append("torch_pruning")
    return need


# ----------------------------------------------------------------------------- progress


def eta_seconds(done: int, total: int, elapsed: float) -> float | None:
    """Seconds left at the mean pace so far (None before the first model)."""
    if done <= 0:
        return None
    return elapsed / done * (total - done)


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(done: int, total: int, elapsed: float, name: str, category: str, detail: str = "") -> str:
    """``[done/total] name: category detail | elapsed h:mm:ss, ETA h:mm:ss``."""
    eta = eta_seconds(done, total, elapsed)
    tail = f"elapsed {_hms(elapsed)}, ETA {'?' if eta is None else _hms(eta)}"
    return f"[{done}/{total}] {name}: {category}{' ' + detail if detail else ''} | {tail}"


class Progress:
    """Counts models done in this run and formats :func:`progress_line` with the run's wall clock."""

    def __init__(self, total: int, clock=time.monotonic):
        self.total, self.done, self._clock = total, 0, clock
        self._t0 = clock()

    def step(self, name: str, category: str, detail: str = "") -> str:
        """Count one model done and return its progress line."""
        self.done += 1
        return progress_line(self.done, self.total, self._clock() - self._t0, name, category, detail)
