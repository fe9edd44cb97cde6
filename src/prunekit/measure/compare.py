"""Before/after tables of two :class:`~prunekit.measure.report.ProfileReport` objects.

Latency rows carry the paired ratio of :func:`prunekit.measure.paired_speedup` with its
interval when the two reports were timed together (one :func:`~prunekit.measure.profile_many`
call); two reports timed apart get no latency ratio at all, since it would measure the
machine between the two timings.

Example:
    >>> import torch.nn as nn
    >>> from prunekit.measure import profile
    >>> a = profile(nn.Linear(10, 10), (10,), batch_sizes=(1,), latency=False, memory=False)
    >>> b = profile(nn.Linear(10, 5), (10,), batch_sizes=(1,), latency=False, memory=False)
    >>> compare(a, b).row("MACs / sample")["ratio"]
    0.5
"""
from __future__ import annotations

from dataclasses import dataclass, field

from prunekit.measure.format import change_str, human_bytes, human_ms, markdown_table, ratio_str, text_table
from prunekit.measure.report import ProfileReport
from prunekit.measure.speedup import SpeedupResult, paired_speedup

#: what a latency row says when the two reports were not timed together
TIMED_APART = "timed apart: no ratio (time both in one profile_many call)"


def _fmt(value, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "bytes":
        return human_bytes(value)
    if unit == "ms":
        return human_ms(value)
    return f"{value:,}"


@dataclass
class ProfileComparison:
    """Rows of ``(metric, before, after, unit)`` with ratios ``after / before``.

    Attributes:
        rows: summary rows, each ``{"metric", "before", "after", "unit", "ratio"}``
            (``ratio`` is None when a value is missing or ``before`` is 0). Latency rows
            (``unit == "ms"``: before/after are the medians) also have ``"speedup"``: the
            :meth:`SpeedupResult.to_dict` of the interleaved timing, whose paired ratio is the
            row's ``ratio``, or None (and ``ratio`` None) when the reports were timed apart.
        layer_rows: per-layer MACs, each ``{"layer", "type", "before", "after", "ratio"}``
            (a layer missing on one side has None there).
        labels: column titles, default ``("before", "after")``.
    """

    rows: list[dict]
    layer_rows: list[dict] = field(default_factory=list)
    labels: tuple[str, str] = ("before", "after")

    def row(self, metric: str) -> dict:
        """The summary row named ``metric`` (KeyError listing the metrics if absent)."""
        for r in self.rows:
            if r["metric"] == metric:
                return r
        raise KeyError(f"no metric {metric!r}; have: {', '.join(r['metric'] for r in self.rows)}")

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {"labels": list(self.labels), "rows": [dict(r) for r in self.rows],
                "layer_rows": [dict(r) for r in self.layer_rows]}

    def speedups(self) -> dict[str, SpeedupResult | None]:
        """``{metric: SpeedupResult or None}`` of the latency rows (None: timed apart)."""
        return {r["metric"]: None if r.get("speedup") is None else SpeedupResult.from_dict(r["speedup"])
                for r in self.rows if r["unit"] == "ms"}

    def latency_notes(self) -> list[str]:
        """One line per latency row: the ratio with its interval, why it is not measurable, or that it was not paired."""
        return [f"{metric.replace(' (median)', '')}: {TIMED_APART if sp is None else sp.describe()}"
                for metric, sp in self.speedups().items()]

    def _cells(self) -> list[list[str]]:
        cells = []
        for r in self.rows:
            ratio, change = ratio_str(r["before"], r["after"]), change_str(r["before"], r["after"])
            if r["unit"] == "ms":  # the paired ratio with its interval, never a ratio of two medians
                sp = None if r.get("speedup") is None else SpeedupResult.from_dict(r["speedup"])
                ratio = "timed apart" if sp is None else sp.short()
                change = f"{100 * (sp.ratio - 1):+.1f}%" if sp is not None and sp.measurable else ""
            cells.append([r["metric"], _fmt(r["before"], r["unit"]), _fmt(r["after"], r["unit"]), ratio, change])
        return cells

    def _layer_cells(self) -> list[list[str]]:
        return [[r["layer"] or "(root)", r["type"], _fmt(r["before"], "count"), _fmt(r["after"], "count"),
                 ratio_str(r["before"], r["after"])] for r in self.layer_rows]

    def _headers(self):
        a, b = self.labels
        return ["metric", a, b, f"{b}/{a}", "change"], ["layer", "type", f"MACs {a}", f"MACs {b}", f"{b}/{a}"]

    def to_table(self, per_layer: bool = False) -> str:
        """Aligned text for terminals; ``per_layer=True`` adds per-layer MACs."""
        return self._render(text_table, per_layer, "  ")

    def to_markdown(self, per_layer: bool = False) -> str:
        """Markdown tables."""
        return self._render(markdown_table, per_layer, "- ")

    def _render(self, table, per_layer: bool, bullet: str) -> str:
        """The summary table, then (``per_layer``) the per-layer one, each drawn by ``table``."""
        head, layer_head = self._headers()
        out = table(head, self._cells(), "lrrrr")
        notes = self.latency_notes()
        if notes:  # how the latency ratios were measured, in words (docs/measure.md)
            out += "\n\n" + "\n".join(["latency after/before: median of per-round ratios of interleaved runs, "
                                        "bootstrap interval", *(bullet + n for n in notes)])
        if per_layer and self.layer_rows:
            out += "\n\n" + table(layer_head, self._layer_cells(), "llrrr")
        return out

    def __str__(self) -> str:
        return self.to_table()


def _row(metric: str, before, after, unit: str) -> dict:
    ratio = None if before in (None, 0) or after is None else after / before
    return {"metric": metric, "before": before, "after": after, "unit": unit, "ratio": ratio}


def compare(before: ProfileReport, after: ProfileReport, labels: tuple[str, str] = ("before", "after")
            ) -> ProfileComparison:
    """Before/after table of two reports: params, non-zeros, MACs, other ops, latency, memory, sizes.

    Latencies are compared for the batch sizes both reports have. A latency ratio
    (with its bootstrap interval, or "not measurable") is given only when both
    reports were built in one :func:`prunekit.measure.profile_many` call (interleaved
    rounds, paired by :func:`prunekit.measure.paired_speedup`); reports timed apart
    show their medians and "timed apart" instead of a ratio.
    """
    rows = [_row("params", before.params, after.params, "count"),
            _row("nonzero params", before.nonzero_params, after.nonzero_params, "count"),
            _row("MACs / sample", before.macs.total, after.macs.total, "count")]
    bx, ax = before.macs.extra_totals, after.macs.extra_totals
    for kind in list(dict.fromkeys([*bx, *ax])):
        rows.append(_row(f"{kind} / sample", bx.get(kind, 0), ax.get(kind, 0), "count"))
    for bs in before.latency:
        if bs in after.latency:
            sp = paired_speedup(before.latency[bs], after.latency[bs])
            rows.append({"metric": f"latency bs={bs} (median)", "before": before.latency[bs].median_ms,
                         "after": after.latency[bs].median_ms, "unit": "ms",
                         "ratio": None if sp is None else sp.ratio, "speedup": None if sp is None else sp.to_dict()})
    for bs in before.peak_memory:
        if bs in after.peak_memory:
            rows.append(_row(f"peak memory bs={bs}", before.peak_memory[bs], after.peak_memory[bs], "bytes"))
    rows.append(_row("state_dict size", before.state_dict_bytes, after.state_dict_bytes, "bytes"))
    if before.file_bytes is not None or after.file_bytes is not None:
        rows.append(_row("file size", before.file_bytes, after.file_bytes, "bytes"))

    layer_rows = []
    bl, al = before.macs.per_layer, after.macs.per_layer
    for name in list(dict.fromkeys([*bl, *al])):
        b, a = bl.get(name), al.get(name)
        typ = before.macs.layer_types.get(name) or after.macs.layer_types.get(name, "?")
        layer_rows.append({"layer": name, "type": typ, "before": b, "after": a,
                           "ratio": None if b in (None, 0) or a is None else a / b})
    return ProfileComparison(rows=rows, layer_rows=layer_rows, labels=tuple(labels))
