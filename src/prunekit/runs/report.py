"""One report renderer: a title, a summary table, the before/after profile, sections, plots, provenance.

A command builds a :class:`Report` (its ``data`` is what ``report.json`` holds, with
the keys that command has always written) and hands it to
:meth:`prunekit.runs.RunDir.write_report`, which writes ``report.json`` and the
Markdown of :func:`render_markdown` as ``report.md``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field


@dataclass
class Section:
    """One ``## title`` of report.md with a Markdown body (tables, text, image links)."""

    title: str
    body: str


@dataclass
class Report:
    """What one run reports.

    Attributes:
        title: the ``#`` heading of report.md, e.g. ``"prunekit sparsify: magnitude"``.
        data: the JSON body of report.json (plain data; the command's own keys).
        summary: ``(label, value)`` rows of the summary table under the title.
        profile: before/after figures: ``{"before": {metric: value}, "after": {...}}``, shown as one
            table with the ratio after/before (metrics in the order of ``before``).
        sections: further ``##`` sections, in order.
        plots: PNG file names (relative to the report) linked under ``## Plots`` unless a section links them.
        labels: the column names of the profile table (default ``("before", "after")``).

    Example:
        >>> r = Report("demo", {"x": 1}, summary=[("top-1", "98.1%")],
        ...            profile={"before": {"params": 100}, "after": {"params": 50}})
        >>> print(render_markdown(r).splitlines()[0])
        # demo
    """

    title: str
    data: dict
    summary: list = field(default_factory=list)
    profile: dict | None = None
    sections: list = field(default_factory=list)
    plots: list = field(default_factory=list)
    labels: tuple = ("before", "after")


def fmt(v) -> str:
    """A cell value: ``-`` for None, 4 significant digits for floats, thousands separators from 10,000 on."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if math.isfinite(v) and abs(v) >= 1e4 and v == int(v):
            return f"{int(v):,}"
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 1e4 else str(v)
    return str(v)


def md_table(header, rows, align: str | None = None) -> str:
    """A Markdown table; ``align`` is one character per column (``l``/``r``), default: first left, others right.

    Example:
        >>> print(md_table(["a", "b"], [["x", 1]]))
        | a | b |
        |---|---:|
        | x | 1 |
    """
    header = [str(h) for h in header]
    align = align or ("l" + "r" * (len(header) - 1))
    sep = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(header) + " |", sep]
    lines += ["| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def profile_table(before: dict, after: dict, labels=("before", "after")) -> str:
    """The before/after table: one row per metric of ``before`` (or ``after``), with the ratio after/before."""
    rows = []
    for key in list(before) + [k for k in after if k not in before]:
        b, a = before.get(key), after.get(key)
        ratio = "-"
        if isinstance(b, (int, float)) and isinstance(a, (int, float)) and not isinstance(b, bool) and b:
            ratio = f"{a / b:.3f}"
        rows.append([key, fmt(b), fmt(a), ratio])
    return md_table(["", *labels, "ratio"], rows)


def provenance_markdown(prov: dict) -> str:
    """The provenance record as a two-column table (the config as JSON below it)."""
    rows = [["prunekit", fmt(prov.get("prunekit"))], ["torch", fmt(prov.get("torch"))]]
    if prov.get("command"):
        rows.append(["command", f"`{prov['command']}`"])
    if prov.get("call"):
        rows.append(["API call", f"`{prov['call']}`"])
    if prov.get("dataset"):
        rows.append(["dataset", f"`{prov['dataset']}`"])
    src = prov.get("source") or {}
    if src.get("path"):
        rows.append(["source", f"`{src['path']}` (sha256 `{src.get('sha256')}`)"])
    elif src.get("name"):
        rows.append(["source", f"`{src['name']}`"])
    rows.append(["date", fmt(prov.get("date"))])
    text = md_table(["", ""], rows, align="ll")
    if prov.get("config") is not None:
        text += "\n\nConfig:\n\n```json\n" + json.dumps(prov["config"], indent=1, default=str) + "\n```"
    return text


def render_markdown(report: Report, provenance: dict | None = None) -> str:
    """report.md: title, summary table, before/after profile, sections, plot links, provenance."""
    parts = [f"# {report.title}"]
    if report.summary:
        parts.append(md_table(["", ""], [[str(k), v if isinstance(v, str) else fmt(v)] for k, v in report.summary],
                              align="ll"))
    if report.profile:
        parts.append("## Before / after\n\n" + profile_table(report.profile.get("before", {}),
                                                              report.profile.get("after", {}), report.labels))
    for s in report.sections:
        parts.append(f"## {s.title}\n\n{s.body.rstrip()}")
    linked = "\n".join(s.body for s in report.sections)
    loose = [p for p in report.plots if f"]({p})" not in linked]
    if loose:
        parts.append("## Plots\n\n" + "\n\n".join(f"![{p}]({p})" for p in loose))
    if provenance:
        parts.append("## Provenance\n\n" + provenance_markdown(provenance))
    return "\n\n".join(parts) + "\n"


def to_json(data: dict) -> str:
    """Indented JSON of a report; non-finite floats become null (``NaN`` is not JSON), other odd values strings."""
    return json.dumps(_finite(data), indent=1, default=str, allow_nan=False) + "\n"


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
