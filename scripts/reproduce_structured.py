"""Reproduce the structured pruning comparison on mnist5k and He et al.'s Figure 4 (single layer).

1. Train a VGG-style and a ResNet-style zoo network once on mnist5k.
2. Prune each with every structured method to the same budgets (default 50% and 20% of
   the MACs), fine-tune with the same epochs and seed, and record MACs, params, top-1
   before/after fine-tuning and the measured latency speedup.
3. Baseline: uniform-width scaling of the same architecture trained from scratch.
4. He et al. 2017 Fig. 4: relative reconstruction error of LASSO vs first-k vs
   max-response for an early and a late layer of the trained VGG, at several ratios.

Writes ``docs/results/structured.md`` and PNG plots next to it.

Run: ``.venv/bin/python scripts/reproduce_structured.py`` (full) or with ``--quick``
(smaller networks and fewer epochs; the numbers in the docs say which was run).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import time
from pathlib import Path

METHODS = ("l1", "slimming", "lasso", "thinet", "fpgm", "taylor")

#: What each paper reports for its own setting, from its abstract (He et al.: as quoted in seed 000).
#: Theirs, not ours: other datasets and networks, shown next to our rows for context.
PAPER = {
    "l1": "Li et al. 2017: VGG-16 -34% and ResNet-110 -38% inference cost on CIFAR-10, close to the original "
          "accuracy after retraining",
    "slimming": "Liu et al. 2017: VGGNet (multi-pass) 20x smaller, 5x fewer operations, without accuracy loss",
    "lasso": "He et al. 2017: VGG-16 5x speed-up, +0.3% error; ResNet / Xception 2x speed-up, -1.4% / -1.0% "
             "accuracy (ImageNet)",
    "thinet": "Luo et al. 2017: VGG-16 3.31x fewer FLOPs, -0.52% top-5; ResNet-50 over half the FLOPs and "
              "parameters removed, about -1% top-5 (ImageNet)",
    "fpgm": "He et al. 2019: ResNet-110 -52% FLOPs with +2.69% relative accuracy (CIFAR-10); ResNet-101 -42% "
            "FLOPs, no top-5 drop (ImageNet)",
    "taylor": "Molchanov et al. 2019: ResNet-101 -40% FLOPs (-30% parameters), -0.02% top-1 (ImageNet)",
    "uniform width, from scratch": "Liu et al. 2019 (Rethinking): the pruned architecture trained from scratch "
                                   "matches or beats fine-tuning in most of their settings",
}


def _vgg_cfg(width: float, base=(32, "M", 64, "M", 128, 128, "M", 128, 128)):
    return [v if v == "M" else max(1, int(round(v * width))) for v in base]


def build(kind: str, width: float, quick: bool):
    from prunekit import models

    if kind == "vgg":
        base = (16, "M", 32, "M", 64, 64, "M", 64, 64) if quick else (32, "M", 64, "M", 128, 128, "M", 128, 128)
        return models.create("vgg11", num_classes=10, in_channels=1, input_size=(28, 28), cfg=_vgg_cfg(width, base))
    w = (8, 16, 32) if quick else (16, 32, 64)
    return models.create("resnet20", num_classes=10, in_channels=1, input_size=(28, 28),
                         widths=[max(1, int(round(v * width))) for v in w])


def train(net, data, epochs, seed, progress):
    from prunekit.train import TrainConfig, fit

    fit(net, data, TrainConfig(epochs=epochs, lr=0.05, batch_size=64, seed=seed, augment=False, progress=progress,
                               eval_every=0, checkpoint_every=0))
    return net


def uniform_baseline(kind, data, budget, epochs, seed, quick, progress):
    """Uniform width multiplier w with MACs ~ w^2 * MACs, found by bisection on the measured MACs."""
    from prunekit.measure import count_macs
    from prunekit.train import evaluate

    x = data.train_x[:1]
    full = float(count_macs(build(kind, 1.0, quick), x).total)
    lo, hi = 0.05, 1.0
    for _ in range(12):
        mid = (lo + hi) / 2
        if float(count_macs(build(kind, mid, quick), x).total) / full > budget:
            hi = mid
        else:
            lo = mid
    from prunekit.train import reinitialize

    # the from-scratch rule every family uses (Liu et al. 2019's scratch baseline at the uniform width)
    net = train(reinitialize(build(kind, lo, quick), seed), data, epochs, seed, progress)
    return {"width": lo, "macs": float(count_macs(net, x).total) / full,
            "params": float(sum(p.numel() for p in net.parameters())),
            "top1": float(evaluate(net, data.test_x, data.test_y)["top1"])}


def figure4(net, data, ratios, seed):
    """Single-layer relative error of each selector (no accumulated error), early and late layer."""
    import torch

    from prunekit.methods.structured import lasso_math as lm
    from prunekit.methods.structured._common import (calib_batch, layer_input, layer_weight, prunable_layers,
                                                     sample_patches, skeleton)
    from prunekit.methods.structured.reconstruct import select_and_fit

    images, _ = calib_batch(data, 500, seed)
    layers = [p for p in prunable_layers(net, skeleton(net, images[:1]))
              if isinstance(net.get_submodule(p.consumer), torch.nn.Conv2d)]
    out = {}
    for p in (layers[0], layers[-1]):
        layer = net.get_submodule(p.consumer)
        X = sample_patches(layer, layer_input(net, p.consumer, images), 20, seed)
        W = layer_weight(layer)
        Y = X.reshape(len(X), -1) @ W.reshape(W.shape[0], -1).T
        row = {}
        for sel in ("lasso", "first_k", "max_response"):
            row[sel] = {}
            for r in ratios:
                keep = max(1, int(round(r * p.size)))
                row[sel][r] = select_and_fit(X, W, Y, keep, sel)[3]
        out[p.consumer] = row
    return out


def plot_acc(results, path, title):
    from prunekit.runs import figure

    with figure(path, figsize=(6, 4)) as (fig, ax):
        for m, pts in results.items():
            pts = sorted(pts)
            ax.plot([100 * a for a, _ in pts], [b for _, b in pts], marker="o", label=m)
        ax.set_xlabel("MACs kept (%)")
        ax.set_ylabel("top-1 after fine-tuning (%)")
        ax.set_title(title)
        ax.legend(fontsize=7)


def plot_fig4(fig4, path):
    from prunekit.runs import figure

    with figure(path, ncols=len(fig4), figsize=(5 * len(fig4), 3.6), squeeze=False) as (fig, axes):
        for ax, (layer, row) in zip(axes[0], fig4.items()):
            for sel, pts in row.items():
                rs = sorted(pts)
                ax.plot(rs, [pts[r] for r in rs], marker="o", label=sel)
            ax.set_title(f"{layer} (ours)")
            ax.set_xlabel("fraction of channels kept")
            ax.set_ylabel("relative reconstruction error")
            ax.legend(fontsize=7)


def main(argv=None):
    import torch

    from prunekit.data import load_dataset
    from prunekit.methods.structured import run_structured
    from prunekit.train import evaluate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller networks, fewer epochs")
    ap.add_argument("--models", default="vgg,resnet")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--budgets", default="0.5,0.2")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs of the dense models and baselines")
    ap.add_argument("--finetune-epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="docs/results/structured.md")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--update", metavar="JSON",
                    help="replace --out's rows of the methods run in JSON (a later run with --methods ..., same seed "
                         "and epochs: its dense accuracies must match) and re-render --out")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="only render --out from the JSON files of earlier runs (e.g. one process per model)")
    a = ap.parse_args(argv)
    if a.merge:
        return merge(a.merge, Path(a.out))
    if a.update:
        return update(Path(a.out), Path(a.update))
    torch.set_num_threads(a.threads)
    epochs = a.epochs if a.epochs is not None else (3 if a.quick else 10)
    ft = a.finetune_epochs if a.finetune_epochs is not None else (1 if a.quick else 3)
    budgets = [float(b) for b in a.budgets.split(",")]
    data = load_dataset("mnist5k")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    all_rows, fig4 = {}, None
    for kind in a.models.split(","):
        torch.manual_seed(a.seed)
        dense = train(build(kind, 1.0, a.quick), data, epochs, a.seed, a.progress)
        acc0 = float(evaluate(dense, data.test_x, data.test_y)["top1"])
        rows, curves = [], {}
        for budget in budgets:
            for m in a.methods.split(","):
                cfg = {"macs": budget, "macs_tolerance": 0.05, "finetune": {"epochs": ft, "lr": 0.01},
                       "seed": a.seed, "calib_images": 500}
                if m == "l1":
                    cfg["eval_samples"] = 500
                if m == "slimming":
                    cfg["sparsity_epochs"] = max(1, epochs // 3)
                if m in ("fpgm", "taylor"):
                    cfg.update(steps=3, epochs_per_step=1)
                t = time.time()
                try:
                    r = run_structured(dense, data, m, cfg, None, progress=a.progress).report
                except Exception as e:  # a method that cannot reach a budget is reported, not fatal
                    rows.append({"method": m, "budget": budget, "error": f"{type(e).__name__}: {e}"})
                    continue
                rows.append({"method": m, "budget": budget, "macs": r["macs"]["kept"], "params": r["params"]["kept"],
                             "before_ft": r["pruned"]["top1"], "after_ft": r["after_finetune"]["top1"],
                             "latency": r.get("latency"), "seconds": time.time() - t})
                curves.setdefault(m, []).append((r["macs"]["kept"], r["after_finetune"]["top1"]))
                print(kind, rows[-1], flush=True)
            b = uniform_baseline(kind, data, budget, epochs, a.seed, a.quick, a.progress)
            rows.append({"method": "uniform width, from scratch", "budget": budget, "macs": b["macs"],
                         "params": None, "before_ft": None, "after_ft": b["top1"], "latency": None,
                         "width": b["width"]})
            curves.setdefault("uniform (scratch)", []).append((b["macs"], b["top1"]))
        for m in curves:
            curves[m].append((1.0, acc0))
        plot_acc(curves, out.with_name(f"structured_{kind}.png"), f"{kind} on mnist5k")
        all_rows[kind] = {"dense_top1": acc0, "rows": rows}
        if kind == "vgg":
            fig4 = figure4(dense, data, [0.25, 0.5, 0.75], a.seed)
            plot_fig4(fig4, out.with_name("structured_fig4.png"))
    meta = {"quick": a.quick, "epochs": epochs, "finetune_epochs": ft, "budgets": budgets, "seed": a.seed,
            "threads": a.threads, "minutes": (time.time() - t_start) / 60, "machine": platform.machine(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    _write(out, meta, all_rows, fig4)


def observations(all_rows, fig4) -> list[str]:
    """Plain statements derived from the results (best method per budget, pruning vs scratch, Fig. 4 winner)."""
    out = []
    for kind, d in all_rows.items():
        budgets = sorted({r["budget"] for r in d["rows"]}, reverse=True)
        for b in budgets:
            rows = [r for r in d["rows"] if r["budget"] == b and "error" not in r]
            missed = [r["method"] for r in rows if budget_missed(r)]
            rows = [r for r in rows if not budget_missed(r)]
            pruned = [r for r in rows if r["before_ft"] is not None]
            scratch = next((r for r in rows if r["before_ft"] is None), None)
            if not pruned:
                continue
            best = max(pruned, key=lambda r: r["after_ft"])
            keep = max(pruned, key=lambda r: r["before_ft"])
            line = (f"- **{kind}, {int(round(100 * b))}% MACs**: best after fine-tuning {best['method']} "
                    f"({best['after_ft']:.2f}%, dense {d['dense_top1']:.2f}%); best *before* fine-tuning "
                    f"{keep['method']} ({keep['before_ft']:.2f}%)")
            if scratch is not None:
                beat = [r["method"] for r in pruned if r["after_ft"] > scratch["after_ft"]]
                line += (f"; uniform width from scratch {scratch['after_ft']:.2f}%, beaten by "
                         f"{', '.join(beat) if beat else 'no pruning method'}")
            if missed:
                line += (f"; not ranked (budget missed by more than {BUDGET_TOLERANCE:.2f}): {', '.join(missed)}")
            out.append(line + ".")
    for layer, row in (fig4 or {}).items():
        wins = {}
        for r in sorted(row["lasso"]):
            w = min(row, key=lambda sel: row[sel][r])
            wins.setdefault(w, []).append(f"{r:.2f}")
        out.append(f"- Fig. 4, layer {layer}: lowest reconstruction error " +
                   "; ".join(f"{sel} at {', '.join(rs)} kept" for sel, rs in wins.items()) + ".")
    out += fig4_checks(fig4)
    return out


def fig4_checks(fig4) -> list[str]:
    """He et al. 2017 Fig. 4's two orderings checked per layer and per depth (pass/fail), from the table.

    1. In every layer, LASSO selection has the lowest error of the three selectors at every fraction kept.
    2. The error grows with depth: the later layer's error is above the earlier one's for each selector
       and fraction kept.
    """
    if not fig4:
        return []
    out, passed = [], 0
    for layer, row in fig4.items():
        fails = [f"{r:.2f} ({min(row, key=lambda s: row[s][r])} lower)" for r in sorted(row["lasso"])
                 if min(row, key=lambda s: row[s][r]) != "lasso"]
        passed += not fails
        out.append(f"- Fig. 4 ordering \"LASSO lowest\", layer {layer}: **{'pass' if not fails else 'fail'}**"
                   + (f" (fails at {', '.join(fails)} kept)" if fails else " (at every fraction kept)") + ".")
    layers = list(fig4)
    if len(layers) >= 2:
        a, b = fig4[layers[0]], fig4[layers[-1]]
        pairs = [(s, r) for s in a for r in sorted(a[s]) if r in b.get(s, {})]
        grow = [(s, r) for s, r in pairs if b[s][r] > a[s][r]]
        out.append(f"- Fig. 4 ordering \"error grows with depth\" ({layers[-1]} above {layers[0]}): "
                   f"**{'pass' if len(grow) == len(pairs) else 'fail'}** in {len(grow)} of {len(pairs)} "
                   "(selector, fraction) pairs.")
    out.append(f"- He et al.'s Fig. 4 claim that LASSO selection beats first-k and max-response therefore holds "
               f"in {passed} of {len(fig4)} layers here.")
    return out


def _parallel(meta) -> str:
    n = meta.get("parallel_runs")
    return f" in {n} processes run side by side, one model each, then merged with `--merge`" if n else ""


def merge(paths, out: Path) -> None:
    """Render one page from several runs' JSON (models in the given order; minutes added up)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    meta = dict(parts[0]["meta"])
    meta["minutes"] = sum(p["meta"]["minutes"] for p in parts)
    meta["parallel_runs"] = sum(p["meta"].get("parallel_runs") or 1 for p in parts)  # a merged page re-merged
    rows, fig4 = {}, None
    for path in paths:  # the parts' plots go next to the merged page
        for png in Path(path).parent.glob("structured_*.png"):
            if png.parent.resolve() != out.parent.resolve():
                shutil.copyfile(png, out.parent / png.name)
    for p in parts:
        rows.update(p["models"])
        if p.get("fig4") and fig4 is None:  # JSON keys are strings: the ratios back to floats
            fig4 = {layer: {sel: {float(k): v for k, v in pts.items()} for sel, pts in row.items()}
                    for layer, row in p["fig4"].items()}
    _write(out, meta, rows, fig4)


def update(out: Path, newer: Path) -> None:
    """Replace ``out``'s rows of the methods re-run in ``newer`` (e.g. ``--methods l1`` after a fix to l1).

    The later run must have trained the same dense networks (same seed and epochs, so equal dense top-1);
    otherwise its rows are not comparable and nothing is written. Rows of other methods are kept; the
    page's meta lists the update (methods, date, minutes).
    """
    old, new = json.loads(out.with_suffix(".json").read_text()), json.loads(newer.read_text())
    for key in ("epochs", "finetune_epochs", "seed", "quick"):
        if old["meta"][key] != new["meta"][key]:
            raise SystemExit(f"--update: {newer} has {key}={new['meta'][key]!r}, {out} has {old['meta'][key]!r}")
    rows = old["models"]
    for kind, d in new["models"].items():
        if kind not in rows or rows[kind]["dense_top1"] != d["dense_top1"]:
            raise SystemExit(f"--update: {kind}'s dense network differs ({d['dense_top1']} vs "
                             f"{rows.get(kind, {}).get('dense_top1')}): not comparable, nothing written")
        methods = {r["method"] for r in d["rows"]}
        by_key = {(r["method"], r["budget"]): r for r in d["rows"]}
        rows[kind]["rows"] = [by_key.get((r["method"], r["budget"]), r) for r in rows[kind]["rows"]
                              if r["method"] not in methods or (r["method"], r["budget"]) in by_key]
    meta = dict(old["meta"])
    meta.setdefault("updates", []).append({"methods": sorted({r["method"] for d in new["models"].values()
                                                              for r in d["rows"]}),
                                           "date": new["meta"]["date"], "minutes": new["meta"]["minutes"]})
    fig4 = {layer: {sel: {float(k): v for k, v in pts.items()} for sel, pts in row.items()}
            for layer, row in (old.get("fig4") or {}).items()} or None
    _write(out, meta, rows, fig4)


#: (results JSON under docs/results, the script that writes it and renders its section)
EXTRA = (("slimming_mlp.json", "reproduce_slimming_mlp"), ("taylor_oracle.json", "reproduce_taylor_oracle"))


def extra_sections() -> list[str]:
    """Sections of the checks run by their own scripts (Network Slimming's MLP, Taylor against the oracle)."""
    import importlib
    import sys

    here = Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    out = []
    for name, module in EXTRA:
        path = here.parent / "docs" / "results" / name
        if path.exists():
            out += [importlib.import_module(module).section(json.loads(path.read_text())).rstrip("\n"), ""]
    return out


def _write(out: Path, meta, rows, fig4) -> None:
    from prunekit.utils.io import atomic_write

    with atomic_write(out.with_suffix(".json"), "w") as f:
        f.write(json.dumps({"meta": meta, "models": rows, "fig4": fig4}, indent=1, default=str))
    with atomic_write(out, "w") as f:
        f.write(markdown(meta, rows, fig4))
    print(f"wrote {out}")


def _f(v, fmt="{:.2f}"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _latency_cell(latency) -> str:
    """The paired ratio pruned/dense with its interval, or "not measurable" (rows of older runs: "-")."""
    if not latency:
        return "-"
    from prunekit.measure import SpeedupResult

    return SpeedupResult.from_dict(latency).short()


#: how far above its budget a row's MACs may land before the row is marked (the harness's, scripts/repro_lib.py)
BUDGET_TOLERANCE = 0.02


def budget_missed(r) -> bool:
    """True when a row keeps more than ``budget + BUDGET_TOLERANCE`` of the MACs."""
    return r.get("macs") is not None and r["macs"] > r["budget"] + BUDGET_TOLERANCE + 1e-9


def _macs_cell(r) -> str:
    cell = _f(r["macs"], "{:.3f}")
    return f"**{cell} (budget missed)**" if budget_missed(r) else cell


def _updates(meta) -> str:
    return "".join(f" Rows of {' and '.join(u['methods'])} re-run on {u['date']} ({u['minutes']:.1f} min) with `... "
                   f"--methods {','.join(m for m in u['methods'] if not m.startswith('uniform'))} --out /tmp/u.md`, "
                   "then `... --update /tmp/u.json`; the dense networks were the same (equal dense top-1)."
                   for u in meta.get("updates", []))


def markdown(meta, all_rows, fig4) -> str:
    L = ["# Structured pruning: reproduced results", "",
         f"Generated by `scripts/reproduce_structured.py{' --quick' if meta['quick'] else ''}` on {meta['date']} "
         f"({meta['machine']}, torch {meta['torch']}, {meta['threads']} thread(s), {meta['minutes']:.1f} min of "
         f"compute{_parallel(meta)}; the machine is shared by several people, so latencies are noisy).", "",
         "Reproduce: `.venv/bin/python scripts/reproduce_structured.py` (both models in one process), or one "
         "process per model side by side: `... --models vgg --out /tmp/s/vgg.md`, `... --models resnet --out "
         "/tmp/s/resnet.md`, then `... --merge /tmp/s/vgg.json /tmp/s/resnet.json --out docs/results/structured.md` "
         "(this page was made the second way)." + _updates(meta), "",
         f"Dataset mnist5k (4000 train / 1000 test). Dense models trained {meta['epochs']} epochs; every method "
         f"pruned to each MACs budget and fine-tuned {meta['finetune_epochs']} epoch(s), seed {meta['seed']}. "
         "Latency: pruned / dense, batch 32, CPU, the two timed interleaved in 30 rounds: median of the per-round "
         "ratios with its 95% bootstrap interval, or \"not measurable\" when the interval is wider than +-10% "
         "(docs/measure.md). A row whose MACs kept exceed its budget by more than "
         f"{BUDGET_TOLERANCE:.2f} is marked **budget missed**: it is not ranked with the rows that met the budget "
         "in the findings below.", ""]
    if meta["quick"]:
        L += ["**This is the reduced (`--quick`) run**: narrower networks and fewer epochs than the full script; "
              "the full run was not done for lack of time on the shared 2-core machine.", ""]
    for kind, d in all_rows.items():
        L += [f"## {kind} (dense top-1 {d['dense_top1']:.2f}%)", "", f"![accuracy vs MACs](structured_{kind}.png)", "",
              "| method | budget | MACs kept | params kept | top-1 before FT | top-1 after FT | latency pruned/dense "
              "| theirs (paper, its own setting) |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in d["rows"]:
            theirs = PAPER.get(r["method"], "") if r["budget"] == d["rows"][0]["budget"] else "(as above)"
            if "error" in r:
                L.append(f"| {r['method']} | {r['budget']:.2f} | failed: {r['error']} | | | | | {theirs} |")
                continue
            L.append(f"| {r['method']} | {r['budget']:.2f} | {_macs_cell(r)} | {_f(r['params'], '{:.3f}')} "
                     f"| {_f(r['before_ft'])} | {_f(r['after_ft'])} | {_latency_cell(r.get('latency'))} | {theirs} |")
        L.append("")
    if fig4:
        L += ["## Single-layer channel selection (He et al. 2017, Figure 4)", "",
              "Relative reconstruction error ||Y - Y'||^2/||Y||^2 after the least-squares re-fit, one layer "
              "pruned alone on the trained VGG (inputs from the original network), 500 images x 20 points.", "",
              "![figure 4](structured_fig4.png)", "",
              "| layer | fraction kept | LASSO (ours) | first k (ours) | max response (ours) |",
              "|---|---:|---:|---:|---:|"]
        for layer, row in fig4.items():
            for r in sorted(row["lasso"]):
                L.append(f"| {layer} | {r:.2f} | {row['lasso'][r]:.4f} | {row['first_k'][r]:.4f} | "
                         f"{row['max_response'][r]:.4f} |")
        L += ["", "**Theirs (He et al. 2017, Fig. 4, VGG-16 on ImageNet, as described in seed 000):** LASSO "
              "selection gives the lowest error of the three (its purpose in the paper); the error grows with depth (conv1_x are most redundant, "
              "conv5_x least), which is why the paper prunes shallow layers more. The paper's numbers are only in "
              "the figure image, so they are not copied here.", ""]
    L += ["## What the numbers say (computed from the tables above)", ""] + observations(all_rows, fig4) + [""]
    L += extra_sections()
    L += ["## Reading the paper column", "",
          "The last column is each paper's headline result **for its own setting** (ImageNet or CIFAR-10, full-size "
          "networks, long fine-tuning), taken from the paper's abstract (He et al. 2017 as quoted in seed 000). It is "
          "theirs, not ours and not comparable number for number: our runs are small networks on mnist5k with a few "
          "epochs of fine-tuning on a CPU. What can carry over is the ordering of methods and whether a method "
          "keeps accuracy at a budget.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
