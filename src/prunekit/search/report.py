"""Figures of a search: the per-group channel counts found (bar chart)."""
from __future__ import annotations

from pathlib import Path


def plot_widths(widths: list[dict], path, title: str = "channels kept", others: dict | None = None,
                found_label: str = "found") -> Path:
    """Bar chart of the full vs kept channels per group (``widths`` from ``SearchSpace.layer_widths``).

    ``others`` adds more bars: ``{label: [kept per group]}`` (e.g. another method's result).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(widths)
    series = {"full": [w["size"] for w in widths], found_label: [w["kept"] for w in widths]}
    series.update(others or {})
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * n * len(series)), 4))
    step = 0.8 / len(series)
    for k, (label, vals) in enumerate(series.items()):
        ax.bar(np.arange(n) + k * step, vals, width=step, label=label)
    ax.set_xticks(np.arange(n) + 0.4 - step / 2)
    ax.set_xticklabels([w["group"] for w in widths], rotation=75, fontsize=7)
    ax.set_ylabel("channels")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    from prunekit.utils.io import atomic_write

    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
