"""Collect the per-topic benchmark and result pages into BENCHMARKS.md and docs/RESULTS.md.

Each benchmark script writes (or its author pastes) a page under ``docs/bench/``;
each reproduction script writes a page under ``docs/results/``. This script
concatenates them, in file-name order, under a short header, so the two
top-level files never drift from the pages they are built from.

    python scripts/build_reports.py
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEADERS = {
    "BENCHMARKS.md": (
        "# Benchmarks\n\n"
        "Speed and size figures measured by the scripts in `bench/`. Each section names the machine, "
        "the exact command, the figures and the date. The machines are shared and noisy (2 CPU cores); "
        "figures are medians, and ratios are measured side by side in one run.\n\n"
        "This file is built by `python scripts/build_reports.py` from `docs/bench/*.md`.\n"
    ),
    "docs/RESULTS.md": (
        "# Reproduced results\n\n"
        "Each section is written by a script under `scripts/` that anyone can re-run (the command is in "
        "the section). Figures from the papers are labelled as theirs; every other figure was measured "
        "here.\n\n"
        "This file is built by `python scripts/build_reports.py` from `docs/results/*.md`.\n"
    ),
}
SOURCES = {"BENCHMARKS.md": ROOT / "docs" / "bench", "docs/RESULTS.md": ROOT / "docs" / "results"}


def _demote(text: str, base: Path, target: Path) -> str:
    """Shift headings one level down and re-point relative links/images at the new location."""
    text = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.M)

    def relink(m):
        link = m.group(2)
        if re.match(r"^[a-z]+:|^#|^/", link):
            return m.group(0)
        new = os.path.relpath((base / link).resolve(), target.parent.resolve())
        return f"{m.group(1)}({new})"

    return re.sub(r"(!?\[[^\]]*\])\(([^)\s]+)\)", relink, text)


def build() -> list[Path]:
    """Write the collected files; returns their paths."""
    written = []
    for target_name, header in HEADERS.items():
        target = ROOT / target_name
        parts = [header]
        for page in sorted(SOURCES[target_name].glob("*.md")):
            parts.append(_demote(page.read_text(), page.parent, target))
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write("\n\n".join(p.rstrip() for p in parts) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        written.append(target)
    return written


if __name__ == "__main__":
    for p in build():
        print(f"wrote {p.relative_to(ROOT)}")
