"""Where a run's outputs come from: versions, the command, the config, the data, the source file, the date.

Every report written through :mod:`prunekit.runs` carries this record under the
key ``provenance``, so a result can be traced back to what produced it (and a
source checkpoint that changed since is caught by its SHA-256).
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import os
import shlex
import sys
from pathlib import Path


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (checkpoints can be large).

    A command records its source file twice (the report's provenance and the output
    checkpoint's lineage): the digest is memoised on the file's identity (resolved path,
    size, modification time), so the bytes are read once while a changed file is re-read.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"abc")
        >>> file_sha256(f.name)[:16]
        'ba7816bf8f01cfea'
    """
    p = Path(path).resolve()
    st = p.stat()
    return _sha256_of(str(p), st.st_size, st.st_mtime_ns, chunk)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int, chunk: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def command_line(args=None) -> str:
    """The command line of this process as one shell-quoted string.

    ``args.command_line`` (set by :func:`prunekit.cli.main` from the argv it parsed) wins,
    so ``main([...])`` called from Python records the arguments it was given rather than
    the host program's own ``sys.argv``.
    """
    given = getattr(args, "command_line", None)
    if given:
        return str(given)
    return shlex.join(["prunekit", *sys.argv[1:]])


def _versions() -> dict:
    from prunekit import __version__

    torch = sys.modules.get("torch")
    if torch is not None:
        torch_version = str(torch.__version__)
    else:  # not imported: read the installed version rather than pay for importing torch
        try:
            from importlib.metadata import version

            torch_version = version("torch")
        except Exception:  # noqa: BLE001 - no torch installed: the record says so
            torch_version = None
    return {"prunekit": __version__, "torch": torch_version,
            "python": ".".join(str(v) for v in sys.version_info[:3])}


def describe_source(source) -> dict | None:
    """``{"path", "sha256"}`` for an existing file, ``{"name": ...}`` for anything else given, None for None."""
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        return {"path": str(source), "sha256": file_sha256(source)}
    return {"name": str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__}


def provenance(*, command: str | None = None, call: str | None = None, config: dict | None = None,
               dataset: str | None = None, source=None, date: str | None = None) -> dict:
    """The provenance record of one run (JSON-able).

    Args:
        command: the command line (``prunekit ...``) when run from the CLI (see :func:`command_line`).
        call: the API function when called from Python, e.g. ``"prunekit.search.search"``.
        config: the run's settings as a plain dict.
        dataset: the dataset name or spec.
        source: the source checkpoint path (hashed), or a description (zoo name, module class).
        date: ISO-8601 UTC time; now when None.

    Example:
        >>> p = provenance(call="prunekit.search.search", config={"macs": 0.5}, dataset="digits")
        >>> sorted(p)
        ['call', 'command', 'config', 'dataset', 'date', 'prunekit', 'python', 'source', 'torch']
    """
    if date is None:
        date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {**_versions(), "command": command, "call": call, "config": config, "dataset": dataset,
            "source": describe_source(source), "date": date}


def complete(given: dict | None, **defaults) -> dict:
    """``given`` (a partial record, e.g. the CLI's command and source) completed with ``defaults``.

    API functions call it with what only they know (their name, config, dataset): keys the
    caller gave win, except that a missing or None value is filled in.
    """
    base = provenance(**{k: v for k, v in defaults.items() if k in _KEYS})
    for k, v in (given or {}).items():
        if v is not None:
            base[k] = describe_source(v) if k == "source" and not isinstance(v, dict) else v
    return base


def source_path(given: dict | None) -> str | None:
    """The source file named by a (partial) provenance record, given as a path or as ``{"path": ...}``."""
    src = (given or {}).get("source")
    if isinstance(src, dict):
        return src.get("path")
    return str(src) if isinstance(src, (str, os.PathLike)) else None


_KEYS = ("command", "call", "config", "dataset", "source", "date")


def recorded_dataset(meta) -> str | None:
    """The dataset name a checkpoint's meta records (``data``, else the Trainer's ``dataset``), or None."""
    for key in ("data", "dataset"):
        value = (meta or {}).get(key) if isinstance(meta, dict) else None
        if isinstance(value, dict):
            value = value.get("name")
        if isinstance(value, str) and value:
            return value
    return None


def lineage(parent, parent_meta=None, *, dataset: str | None = None, input_shape=None) -> dict:
    """The meta keys every checkpoint derived from another carries: ``data`` and ``parent``.

    One record, written by every command that turns a file into another (prune, sparsify,
    compress/decompress, binarize, search, recipes, fine-tuning), so ``prunekit eval`` on any
    output finds its dataset without ``--data`` and the output can be traced to the exact
    bytes it came from. ``dataset``: the data the command used (it wins), else the one the
    parent records. Merge the result into the output's meta last, so it replaces a stale
    record copied from the parent.

    Args:
        parent: the source file (hashed), or None (a model built fresh: no parent record).
        parent_meta: the source's meta, read for its dataset.
        dataset: the dataset this command used, if any.
        input_shape: the model's per-sample input shape, e.g. ``(1, 8, 8)``.

    Example:
        >>> m = lineage(None, {"dataset": "digits"}, input_shape=(1, 8, 8))
        >>> m["data"], m["parent"]
        ('digits', None)
    """
    name = dataset or recorded_dataset(parent_meta)
    source = describe_source(parent) if isinstance(parent, (str, os.PathLike)) else None
    record = None
    if source is not None and "sha256" in source:   # an existing file, hashed as the report's provenance is
        record = {**source, "dataset": name, "input_shape": list(input_shape) if input_shape is not None else None}
    out = {"parent": record}
    if name:
        out["data"] = name
    return out
