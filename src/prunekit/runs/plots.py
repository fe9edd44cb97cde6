"""Every PNG a run writes goes through :func:`figure`: matplotlib's Agg backend, an atomic write, the figure closed."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


def _pyplot():
    import matplotlib

    # Agg: no display is needed (servers, CI) and no GUI window opens mid-run
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically and close it; returns the path."""
    from prunekit.utils.io import atomic_write

    plt = _pyplot()
    try:
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)


@contextlib.contextmanager
def figure(path: str | os.PathLike, *, nrows: int = 1, ncols: int = 1, figsize=(7, 4.5), dpi: int = 110,
           title: str = "", **subplots) -> Iterator[tuple]:
    """Context manager yielding ``(fig, axes)``; on a normal exit the figure is laid out and saved to ``path``.

    ``axes`` is one Axes for a 1x1 grid, else matplotlib's array of them (further keywords, e.g.
    ``squeeze=False``, go to ``plt.subplots``). If the body raises, nothing is written and the
    figure is still closed.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
        >>> with figure(p) as (fig, ax):
        ...     _ = ax.plot([0, 1], [1, 0])
        >>> open(p, "rb").read(4) == b"\\x89PNG"
        True
    """
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, **subplots)
    try:
        yield fig, axes
    except BaseException:
        plt.close(fig)
        raise
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=dpi)
