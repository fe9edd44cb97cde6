"""The torch thread count of measurements and commands: check it, read the default, set it for a block.

Public because the CLI (``prunekit eval``, ``profile``, ``binarize``) shares these rules with the
measurement functions: ``--threads`` or ``PRUNEKIT_NUM_THREADS`` must be a positive integer, and a
measurement leaves the process's own thread count as it found it.

Example:
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with num_threads(1) as used:
    ...     used, torch.get_num_threads()
    (1, 1)
    >>> torch.get_num_threads() == before
    True
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from prunekit.errors import PrunekitError
from prunekit.validate import check_int

__all__ = ["check_threads", "command_threads", "env_threads", "num_threads"]


def check_threads(threads, name: str = "threads") -> int | None:
    """``threads`` if it is None or a positive int, else a PrunekitError naming ``name``."""
    return check_int(name, threads, minimum=1, allow_none=True, error=PrunekitError)


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Set ``torch.set_num_threads(threads)`` for the block and restore the previous value; yields the count in use."""
    import torch

    old = torch.get_num_threads()
    if threads is None:
        yield old
        return
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(old)


def env_threads() -> int | None:
    """``PRUNEKIT_NUM_THREADS`` from the environment (the CLI's default thread count), or None."""
    raw = os.environ.get("PRUNEKIT_NUM_THREADS", "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise PrunekitError(f"PRUNEKIT_NUM_THREADS must be a positive integer, got {raw!r}") from None
    return check_threads(value, "PRUNEKIT_NUM_THREADS")


def command_threads(flag) -> int | None:
    """The thread count of a command: its ``--threads`` value (checked), else ``PRUNEKIT_NUM_THREADS``, else None.

    The one rule every command without a config file of its own follows (``train`` and
    ``binarize`` put a config file's ``num_threads`` between the two).
    """
    return check_threads(flag, "--threads") if flag is not None else env_threads()
