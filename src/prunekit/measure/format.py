"""Text formatting for measurement reports: human-readable numbers and aligned tables (pure functions).

Example:
    >>> human_count(1_234_567)
    '1.23M'
    >>> human_bytes(2048)
    '2.00 KiB'
    >>> print(text_table(["layer", "MACs"], [["conv1", "864"], ["fc", "50"]], align="lr"))
    layer  MACs
    -----  ----
    conv1   864
    fc       50
"""
from __future__ import annotations

from typing import Sequence


def human_count(n: float | None) -> str:
    """``1234 -> '1.23K'``, ``5e6 -> '5.00M'``, ``None -> 'n/a'`` (decimal prefixes K, M, G, T)."""
    if n is None:
        return "n/a"
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:g}" if isinstance(n, float) else str(n)


def human_bytes(n: float | None) -> str:
    """``2048 -> '2.00 KiB'`` (binary prefixes), ``None -> 'n/a'``."""
    if n is None:
        return "n/a"
    for div, suffix in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}"
    return f"{int(n)} B"


def human_ms(ms: float | None) -> str:
    """A duration in milliseconds with 3 significant-ish decimals, or 'n/a'."""
    if ms is None:
        return "n/a"
    return f"{ms:.3f} ms" if ms < 100 else f"{ms:.1f} ms"


def ratio_str(before: float | None, after: float | None) -> str:
    """``after / before`` as ``'0.37x'``, or 'n/a' when either is missing or ``before`` is 0."""
    if before is None or after is None or before == 0:
        return "n/a"
    return f"{after / before:.3f}x"


def change_str(before: float | None, after: float | None) -> str:
    """Relative change ``after / before - 1`` as ``'-63.0%'``, or 'n/a'."""
    if before is None or after is None or before == 0:
        return "n/a"
    return f"{100.0 * (after / before - 1.0):+.1f}%"


def _check(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None) -> str:
    width = len(headers)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"table row {i} has {len(row)} cells, expected {width}")
    align = align or "l" * width
    if len(align) != width or set(align) - {"l", "r"}:
        raise ValueError(f"align must be {width} letters of 'l'/'r', got {align!r}")
    return align


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """An aligned plain-text table for terminals; ``align`` has one 'l' or 'r' per column."""
    align = _check(headers, rows, align)
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` has one 'l' or 'r' per column."""
    align = _check(headers, rows, align)

    def esc(c) -> str:
        return str(c).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
