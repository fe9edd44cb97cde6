"""Atomic file writes: write to a temporary file in the same folder, then rename.

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


def atomic_save_torch(obj, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
