"""The report of a weight-pruning run (``prunekit sparsify``): its content, written by :mod:`prunekit.runs`.

:func:`build_report` turns a method's result into a :class:`prunekit.runs.Report`
(report.json keeps the keys ``method``, ``source``, ``data``, ``notes``, ``files``
and the result's own); :func:`write_reports` writes it, with ``accuracy.png``, into
a :class:`prunekit.runs.RunDir`.
"""
from __future__ import annotations

from pathlib import Path

from prunekit.runs import Report, Section, fmt as _fmt


def curve_markdown(records: list) -> str:
    """The accuracy curve as a Markdown table (one row per evaluated point)."""
    keys = ["stage", "round", "epoch", "step", "sparsity", "test_top1", "val_loss", "rho", "admm_residual"]
    present = [k for k in keys if any(k in r for r in records)]
    lines = ["| " + " | ".join(present) + " |", "|" + "---|" * len(present)]
    for r in records:
        cells = []
        for k in present:
            v = r.get(k)
            if k == "sparsity" and v is not None:
                v = f"{100 * v:.2f}%"
            elif k == "test_top1" and v is not None:
                v = f"{v:.2f}"
            cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rounds_markdown(rounds: list, control: list) -> str:
    """The Lottery Ticket per-round table (ticket vs random re-initialisation)."""
    ctrl = {c["round"]: c for c in control}
    lines = ["| round | sparsity | early-stop step | test top-1 at early stop | final test top-1 | "
             "reinit: test top-1 at early stop | reinit: early-stop step |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rounds:
        c = ctrl.get(r["round"], {})
        lines.append(f"| {r['round']} | {100 * r['sparsity']:.2f}% | {r['early_stop_step']} | "
                     f"{r['test_top1_at_early_stop']:.2f} | {r['test_top1']:.2f} | "
                     f"{_fmt(c.get('test_top1_at_early_stop'))} | {_fmt(c.get('early_stop_step'))} |")
    return "\n".join(lines)


def plot_curve(result, path, title: str = "") -> Path:
    """PNG with the accuracy curve (left) and accuracy against sparsity (right)."""
    from prunekit.runs import figure

    records = result.records
    with figure(path, ncols=2, figsize=(11, 4), title=title) as (fig, (ax1, ax2)):
        stages = []
        for r in records:
            label = r["stage"] if "round" not in r or r["stage"] in ("dense",) else f"{r['stage']} r{r['round']}"
            if not stages or stages[-1][0] != label:
                stages.append((label, []))
            stages[-1][1].append(r)
        x = 0
        for label, rows in stages:
            xs = list(range(x, x + len(rows)))
            ax1.plot(xs, [r["test_top1"] for r in rows], marker="o", ms=3, label=label if len(stages) <= 12 else None)
            x += len(rows)
        ax1.set_xlabel("evaluation (epochs, in order)")
        ax1.set_ylabel("test top-1 (%)")
        ax1.set_title("accuracy curve")
        if len(stages) <= 12:
            ax1.legend(fontsize=7)
        ax1.grid(alpha=0.3)
        if getattr(result, "rounds", None):
            for rows, label in ((result.rounds, "winning ticket (rewound)"), (result.control, "random reinit")):
                if rows:
                    ax2.plot([100 * r["sparsity"] for r in rows], [r["test_top1_at_early_stop"] for r in rows],
                             marker="o", label=label)
            ax2.legend(fontsize=8)
        else:
            by_stage: dict = {}
            for r in records:
                by_stage.setdefault(r["stage"], []).append(r)
            for stage, rows in by_stage.items():
                ax2.scatter([100 * r["sparsity"] for r in rows], [r["test_top1"] for r in rows], s=12, label=stage)
            ax2.legend(fontsize=8)
        ax2.set_xlabel("sparsity (%)")
        ax2.set_ylabel("test top-1 (%)")
        ax2.set_title("accuracy vs sparsity")
        ax2.grid(alpha=0.3)
    return Path(path)


def build_report(result, info: dict) -> Report:
    """The :class:`prunekit.runs.Report` of a weight-pruning result.

    ``info`` holds ``method``, ``source``, ``data``, ``notes`` and ``files`` (kept as report.json keys).
    """
    rep = result.sparsity_report()
    final = result.final
    summary = [("method", info.get("method")), ("source checkpoint", f"`{info.get('source')}`"),
               ("data", f"`{info.get('data')}`"),
               ("final sparsity", f"{100 * final.get('sparsity', 0):.2f}% "
                                  f"({rep.compression():.1f}x fewer non-zero weights)"),
               ("final test top-1", f"{_fmt(final.get('test_top1'))}%")]
    sections = [Section("Sparsity per layer", rep.to_markdown())]
    if getattr(result, "rounds", None):
        sections.append(Section("Lottery Ticket rounds", rounds_markdown(result.rounds, result.control)))
    if result.extra.get("groups"):
        rows = ["The plan (`plan.json`) removes them physically: `model.structural.pt`.", "",
                "| group | layers penalised | channels | kept |", "|---|---|---:|---:|"]
        rows += [f"| {g['name']} | {', '.join(g['layers'])} | {g['size']} | {g['kept']} |"
                 for g in result.extra["groups"]]
        sections.append(Section("Channels removed per coupling group (structured ADMM)", "\n".join(rows)))
    sections.append(Section("Accuracy curve", "![accuracy](accuracy.png)\n\n" + curve_markdown(result.records)))
    dense = next((r for r in result.records if r.get("stage") == "dense"), {})
    profile = {"before": {"non-zero weights": rep.total.total, "test top-1 %": dense.get("test_top1")},
               "after": {"non-zero weights": rep.total.nonzero, "test top-1 %": final.get("test_top1")}}
    return Report(title=f"prunekit sparsify: {info.get('method')}", data={**info, **result.to_dict()},
                  summary=summary, profile=profile, labels=("dense", "pruned"), sections=sections,
                  plots=["accuracy.png"])


def write_reports(result, run, info: dict, provenance: dict | None = None) -> dict:
    """Write ``accuracy.png``, ``report.json`` and ``report.md`` into ``run`` (a :class:`prunekit.runs.RunDir`).

    Returns the JSON dict.
    """
    plot_curve(result, run.file("accuracy.png"), title=f"{info.get('method')} on {info.get('data')}")
    return run.write_report(build_report(result, info), provenance)
