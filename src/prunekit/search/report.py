"""The report of a search (report.json / report.md through :mod:`prunekit.runs`) and its bar chart of widths."""
from __future__ import annotations

from pathlib import Path


def build_report(report: dict):
    """The :class:`prunekit.runs.Report` of a finished search (``report`` is what report.json holds)."""
    from prunekit.runs import Report, Section, md_table

    r = report
    lim = r.get("limits") or {}
    budget = ", ".join(f"{k} {v:g}" for k, v in (("MACs fraction", r["config"].get("macs")),
                                                  ("params fraction", r["config"].get("params")),
                                                  ("latency ms", r["config"].get("latency_ms"))) if v is not None)
    summary = [("method", r["method"]), ("budget", budget or "-"),
               ("budget floor", f"{lim.get('budget_floor', 0):g}"),
               ("MACs kept", f"{100 * r['macs_fraction']:.1f}%"),
               ("test top-1 (fine-tuned)", f"{r['test_top1']:.2f}%"),
               ("test top-1 before fine-tuning", f"{r['test_top1_before_finetune']:.2f}%"),
               ("search score (sub-validation)", r.get("search_score"))]
    if "latency_ms_measured" in r:
        summary += [("latency predicted", f"{r['latency_ms_predicted']:.3f} ms"),
                    ("latency measured", f"{r['latency_ms_measured']:.3f} ms ({r['latency_mode']})")]
    if "latency_ratio" in r:  # found vs full, timed interleaved: a paired ratio with its interval
        from prunekit.measure import SpeedupResult

        summary.append(("latency found / full", SpeedupResult.from_dict(r["latency_ratio"]).describe()))
    profile = {"before": {"params": r["params_full"], "MACs": r["macs_full"], "test top-1": r["test_top1_full_model"]},
               "after": {"params": r["params"], "MACs": r["macs"], "test top-1": r["test_top1"]}}
    widths = md_table(["group", "kept", "channels"], [[f"`{w['group']}`", w["kept"], w["size"]] for w in r["widths"]])
    sections = [Section("Channels kept per group", "![widths](widths.png)\n\n" + widths),
                Section("Search", "![population](population.png)\n\nEvery candidate evaluated: `search_log.json`.")]
    return Report(title=f"prunekit search: {r['method']}", data=r, summary=summary, profile=profile,
                  sections=sections, plots=["widths.png", "population.png"], labels=("full model", "found"))


def plot_widths(widths: list[dict], path, title: str = "channels kept", others: dict | None = None,
                found_label: str = "found") -> Path:
    """Bar chart of the full vs kept channels per group (``widths`` from ``SearchSpace.layer_widths``).

    ``others`` adds more bars: ``{label: [kept per group]}`` (e.g. another method's result).
    """
    import numpy as np

    from prunekit.runs import figure

    n = len(widths)
    series = {"full": [w["size"] for w in widths], found_label: [w["kept"] for w in widths]}
    series.update(others or {})
    with figure(path, figsize=(max(6, 0.35 * n * len(series)), 4), dpi=100) as (fig, ax):
        step = 0.8 / len(series)
        for k, (label, vals) in enumerate(series.items()):
            ax.bar(np.arange(n) + k * step, vals, width=step, label=label)
        ax.set_xticks(np.arange(n) + 0.4 - step / 2)
        ax.set_xticklabels([w["group"] for w in widths], rotation=75, fontsize=7)
        ax.set_ylabel("channels")
        ax.set_title(title)
        ax.legend()
    return Path(path)
