"""Reports of a weight-pruning run: JSON, Markdown and a PNG accuracy curve.

Used by ``prunekit sparsify``; not public API.
"""
from __future__ import annotations

import json
from pathlib import Path


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


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


def plot_curve(result, path: Path, title: str = "") -> Path:
    """PNG with the accuracy curve (left) and accuracy against sparsity (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prunekit.utils.io import atomic_write

    records = result.records
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def write_reports(result, out_dir: Path, info: dict) -> dict:
    """Write ``report.json``, ``report.md`` and ``accuracy.png`` into ``out_dir``; returns the JSON dict."""
    from prunekit.utils.io import atomic_write

    out_dir = Path(out_dir)
    data = {**info, **result.to_dict()}
    with atomic_write(out_dir / "report.json", "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    rep = result.sparsity_report()
    final = result.final
    lines = [f"# prunekit sparsify: {info.get('method')}", "",
             f"- source checkpoint: `{info.get('source')}`", f"- data: `{info.get('data')}`",
             f"- final sparsity: {100 * final.get('sparsity', 0):.2f}% "
             f"({rep.compression():.1f}x fewer non-zero weights)",
             f"- final test top-1: {_fmt(final.get('test_top1'))}%", "",
             "## Sparsity per layer", "", rep.to_markdown(), ""]
    if getattr(result, "rounds", None):
        lines += ["## Lottery Ticket rounds", "", rounds_markdown(result.rounds, result.control), ""]
    if result.extra.get("groups"):
        lines += ["## Channels removed per coupling group (structured ADMM)", "",
                  "The plan (`plan.json`) removes them physically: `model.structural.pt`.", "",
                  "| group | layers penalised | channels | kept |", "|---|---|---:|---:|"]
        lines += [f"| {g['name']} | {', '.join(g['layers'])} | {g['size']} | {g['kept']} |"
                  for g in result.extra["groups"]]
        lines.append("")
    lines += ["## Accuracy curve", "", "![accuracy](accuracy.png)", "", curve_markdown(result.records), ""]
    with atomic_write(out_dir / "report.md", "w") as f:
        f.write("\n".join(lines))
    plot_curve(result, out_dir / "accuracy.png", title=f"{info.get('method')} on {info.get('data')}")
    return data
