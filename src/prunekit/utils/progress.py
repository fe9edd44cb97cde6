"""Progress bars: one helper for every bar in prunekit, quiet when nobody is watching.

tqdm redraws a bar by writing carriage-return frames. On a terminal that is a
bar; in a log file (``prunekit search ... 2> run.log``, a CI job, a scheduler)
it is hundreds of partial lines. :func:`progress_bar` therefore returns a real
tqdm bar only when the bar is enabled *and* its stream (stderr) is a terminal;
otherwise a silent stand-in with the same methods, so callers never branch.
The commands print their own summary lines (epochs, results) to stdout, which
is what a log needs.

Example:
    >>> total = 0
    >>> with progress_bar(total=3, desc="work", enabled=False) as bar:
    ...     for _ in range(3):
    ...         total += 1
    ...         bar.update(1)
    >>> total, bar.n
    (3, 3)
    >>> list(progress_bar(range(3), desc="rounds"))  # iterating works either way
    [0, 1, 2]
"""
from __future__ import annotations

import sys
from typing import Iterable

__all__ = ["is_terminal", "progress_bar"]


def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default: the current ``sys.stderr``) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class _SilentBar:
    """The subset of tqdm's interface prunekit uses, doing nothing but counting."""

    disable = True  # as on a disabled tqdm bar: callers may skip work done only for the display

    def __init__(self, iterable=None, total=None, initial: int = 0):
        self.iterable = iterable
        self.total = total
        self.n = initial

    def __iter__(self):
        for item in self.iterable if self.iterable is not None else ():
            yield item
            self.n += 1

    def __len__(self) -> int:
        return self.total if self.total is not None else len(self.iterable if self.iterable is not None else ())

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_postfix_str(self, *args, **kwargs) -> None:
        pass

    def set_description(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                 enabled: bool = True, unit: str = "it", initial: int = 0, leave: bool = False, stream=None):
    """A tqdm bar over ``iterable`` (or updated by hand), or a silent one with the same methods.

    The bar is shown only when ``enabled`` and ``stream`` (default ``sys.stderr``, where tqdm writes)
    is a terminal. Use it as an iterable wrapper, a context manager, or call ``update`` / ``set_postfix``
    / ``close``. ``bar.disable`` is True when nothing is drawn.

    Args:
        iterable: what to iterate over, or None for a bar advanced with ``update``.
        total: the number of steps (default ``len(iterable)`` where it has one).
        desc, unit, initial, leave: as in tqdm (``leave=False``: the bar disappears when done).
        enabled: the caller's own switch (``--no-progress``, ``progress=False``).
        stream: where the bar would be drawn (default ``sys.stderr``).
    """
    stream = sys.stderr if stream is None else stream
    if not enabled or not is_terminal(stream):
        return _SilentBar(iterable, total, initial)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=stream,
                dynamic_ncols=True)
