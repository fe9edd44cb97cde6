"""Atomic file writes (write to a temporary file in the same folder, then rename) and JSON files.

A crash or Ctrl-C mid-write never leaves a half-written file under the final
name, and the previous file stays intact until the new one is complete.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from prunekit.errors import PrunekitError


def check_overwrite(path: str | os.PathLike, overwrite: bool) -> Path:
    """Return ``path`` as a Path; raise if it exists and ``overwrite`` is False."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise PrunekitError(f"{p} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    return p


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Context manager yielding a file object whose content replaces ``path`` atomically on success.

    Example:
        >>> with atomic_write("/tmp/x.json", "w") as f:
        ...     _ = f.write("{}")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON (with a final newline) through :func:`atomic_write`; returns the path."""
    import json

    p = Path(path)
    with atomic_write(p, "w") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")
    return p


def read_json(path: str | os.PathLike, what: str):
    """The JSON value in ``path``; a missing, unreadable or malformed file raises PrunekitError naming it and ``what``.

    Example:
        >>> read_json("/nonexistent.json", "history")
        Traceback (most recent call last):
        ...
        prunekit.errors.PrunekitError: /nonexistent.json: no such history file
    """
    import json

    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise PrunekitError(f"{p}: no such {what} file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PrunekitError(f"{p}: not a JSON {what} ({e})") from None


def atomic_save_torch(obj, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
