"""One run directory and one report writer for every command that writes outputs.

* :class:`RunDir`: the output folder and the one output rule (refuse to touch existing
  outputs unless overwriting; overwriting clears the previous run's own outputs; orphan
  temporary files of a killed run are removed; every write atomic).
* :class:`Report`, :class:`Section`, :func:`render_markdown`: ``report.json`` and
  ``report.md`` (title, summary table, before/after profile, sections, plots, provenance).
* :func:`provenance`: prunekit and torch versions, command line or API call, config,
  dataset, source checkpoint (path and SHA-256), date.
* :func:`figure` / :func:`save_figure`: every PNG through matplotlib's Agg backend.

Example:
    >>> import tempfile
    >>> from prunekit import runs
    >>> run = runs.RunDir.open(tempfile.mkdtemp(), outputs=["model.pt"])
    >>> data = run.write_report(runs.Report("prunekit demo", {"top1": 98.5}),
    ...                         runs.provenance(call="example", dataset="digits"))
    >>> data["outputs"]
    ['report.json', 'report.md']
"""
from __future__ import annotations

from prunekit.runs.plots import figure, save_figure
from prunekit.runs.provenance import (command_line, complete, describe_source, file_sha256, lineage, provenance,
                                      recorded_dataset, source_path)
from prunekit.runs.report import Report, Section, fmt, md_table, profile_table, render_markdown, to_json
from prunekit.runs.rundir import RunDir, clean_orphans, orphan_temp_files

__all__ = [
    "RunDir", "Report", "Section", "clean_orphans", "command_line", "complete", "describe_source", "figure",
    "file_sha256", "fmt", "lineage", "md_table", "orphan_temp_files", "profile_table", "provenance",
    "recorded_dataset", "render_markdown",
    "save_figure", "source_path", "to_json",
]
