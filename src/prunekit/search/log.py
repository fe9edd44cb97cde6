"""The search log: every evaluated candidate as JSON, rewritten atomically after each step.

The log is also the resume point: a search restarted on the same log replays
its finished iterations (their records are reused, never re-evaluated) and
continues with the next one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from prunekit.errors import PrunekitError

LOG_FORMAT = "prunekit.search_log"


@dataclass
class SearchLog:
    """Candidates evaluated so far, grouped by iteration (or greedy step).

    Attributes:
        path: where the log is saved after every iteration (None keeps it in memory).
        header: the search settings; a resumed run must match them.
        records: ``{"iteration", "encoding", "score", "macs", ...}`` per candidate.
        iterations: per finished iteration, its parents.
    """

    path: Path | None = None
    header: dict = field(default_factory=dict)
    records: list = field(default_factory=list)
    iterations: list = field(default_factory=list)

    def iterations_done(self) -> int:
        """Number of finished iterations (the next one to run)."""
        return len(self.iterations)

    def add_iteration(self, it: int, records: list, parents: list) -> None:
        """Append one finished iteration's records and save the log."""
        self.records.extend(records)
        self.iterations.append({"iteration": it, "parents": parents, "evaluated": len(records)})
        self.save()

    def to_dict(self) -> dict:
        """The log as JSON-able data."""
        return {"format": LOG_FORMAT, "header": self.header, "iterations": self.iterations, "records": self.records}

    def save(self) -> None:
        """Rewrite the file atomically (no-op without a path)."""
        if self.path is None:
            return
        from prunekit.utils.io import atomic_write

        with atomic_write(self.path, "w") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def open(cls, path, header: dict, resume: bool) -> "SearchLog":
        """A new log at ``path``, or (``resume``) the one there, checked against ``header``."""
        path = Path(path)
        if resume and path.exists():
            try:
                d = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise PrunekitError(f"{path}: cannot read the search log ({e})") from None
            if not isinstance(d, dict) or d.get("format") != LOG_FORMAT:
                raise PrunekitError(f"{path} is not a prunekit search log")
            old = d.get("header", {})
            diff = sorted(k for k in set(old) | set(header) if old.get(k) != header.get(k))
            if diff:
                raise PrunekitError(f"{path}: cannot resume, the settings differ in {', '.join(diff)}")
            return cls(path, header, list(d.get("records", [])), list(d.get("iterations", [])))
        return cls(path, header)


def plot_population(log: SearchLog, path, metric: str = "accuracy", cost: str = "macs") -> Path:
    """Scatter of every candidate (``cost`` vs ``metric``), coloured by iteration, as PNG."""
    from prunekit.runs import figure

    recs = [r for r in log.records if metric in r and cost in r]
    with figure(path, figsize=(6, 4), dpi=100) as (fig, ax):
        if recs:
            sc = ax.scatter([r[cost] for r in recs], [r[metric] for r in recs], c=[r["iteration"] for r in recs],
                            cmap="viridis", s=12)
            fig.colorbar(sc, ax=ax, label="iteration")
        ax.set_xlabel(cost)
        ax.set_ylabel(metric)
        ax.set_title("search population")
    return Path(path)
