"""Reproduce the channel-search comparison on mnist5k; writes docs/results/search.md (+ PNG bar charts).

For each model (MobileNet v2, ResNet-20 from the zoo), each MACs budget and each
seed: train the dense model, then at the same budget compare
- uniform width scaling (every group at the same width ratio),
- L1 filter pruning through the engine (MACs target) and LASSO channel pruning (He et al.
  2017; the best structural method of docs/results/structured.md), each pruned to the budget,
- AutoSlim (slimmable training + greedy slimming),
- MetaPruning (PruningNet + evolutionary search),
all fine-tuned with the same schedule; test top-1 mean and spread over seeds.
Optionally a latency-constrained MetaPruning run (measured vs budget).

The full protocol (3 seeds, paper defaults for the evolution) is
    .venv/bin/python scripts/reproduce_search.py --seeds 0,1,2 --full
and the reduced one that fits a shared 2-core machine is the default.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

L1 = "L1 (engine, MACs target)"
LASSO = "LASSO (He et al., MACs target)"
METHODS = ["uniform", L1, LASSO, "autoslim", "metapruning"]

PAPER = """\
**Their figures (ImageNet top-1, not reproduced here)**, checked against the authors' own READMEs, which list the
papers' models: github.com/liuzechun/MetaPruning (MetaPruning, Liu et al., ICCV 2019) and
github.com/JiahuiYu/slimmable_networks (AutoSlim, Yu & Huang 2019; given there as top-1 error, converted here).

| network | uniform baseline: top-1 at FLOPs | MetaPruning: top-1 at FLOPs |
| --- | --- | --- |
| MobileNet v1 0.75x | 68.4 at 325M | 70.9 at 316M |
| MobileNet v1 0.5x | 63.7 at 149M | 66.1 at 142M |
| MobileNet v1 0.25x | 50.6 at 41M | 57.2 at 41M |
| MobileNet v2 | 72.0 at 313M | 72.7 at 303M |
| MobileNet v2 | 67.2 at 140M | 68.2 at 140M |
| MobileNet v2 | 54.6 at 43M | 58.3 at 43M |
| ResNet-50 0.75x | 74.8 at 2.3G | 75.4 at 2.0G |
| ResNet-50 0.5x | 72.0 at 1.1G | 73.4 at 1.0G |

| network | AutoSlim: top-1 at FLOPs |
| --- | --- |
| AutoSlim-MobileNet v2 | 75.4 at 505M, 74.2 at 305M, 73.0 at 207M |
| AutoSlim-ResNet-50 | 76.0 at 3.0G, 75.6 at 2.0G, 74.0 at 1.0G, 72.2 at 570M |

Both papers' common finding, which is what can carry over to a small CPU setting: at the same FLOPs a searched
per-layer width beats uniform width scaling, most at the smallest budgets (theirs; whether it holds here is
computed seed by seed in "What the numbers say" above).
"""


def _train(model, data, epochs, seed, lr=0.05):
    from prunekit.train import TrainConfig, Trainer

    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=lr, seed=seed, augment=False, eval_every=0, progress=False)
    Trainer(model, data, cfg).fit()
    return model


def _top1(model, data):
    from prunekit.train import evaluate

    return float(evaluate(model.eval(), data.test_x, data.test_y)["top1"])


def main() -> None:
    import torch

    from prunekit import models
    from prunekit.data import load_dataset
    from prunekit.measure import count_macs
    from prunekit.methods.structured import run_structured
    from prunekit.engine import plan as make_plan
    from prunekit.search import SearchConfig, SearchSpace, plot_widths, search

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v2,resnet20")
    ap.add_argument("--budgets", default="0.3,0.5")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=3, help="dense training epochs")
    ap.add_argument("--supernet-epochs", type=int, default=2)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--ratios", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0",
                    help="candidate width ratios of the search grid")
    ap.add_argument("--greedy-moves", type=int, default=1, help="AutoSlim groups shrunk per greedy step")
    ap.add_argument("--calib-batches", type=int, default=4, help="BN recalibration batches per candidate")
    ap.add_argument("--baselines", default="uniform,l1,lasso",
                    help="comparison columns: uniform width, L1 filter pruning, LASSO channel pruning (He et al.; "
                         "the best structural method of docs/results/structured.md)")
    ap.add_argument("--search-methods", default="autoslim,metapruning",
                    help="searches to run ('none': only the baselines, e.g. as a part merged with --merge)")
    ap.add_argument("--full", action="store_true", help="paper defaults for the evolution (population 50, 20 iters)")
    ap.add_argument("--latency", action="store_true", help="also run a latency-constrained MetaPruning search")
    ap.add_argument("--latency-only", action="store_true", help="only the latency-constrained search")
    ap.add_argument("--latency-mode", choices=("median", "fastest"), default="median",
                    help="the latency-constrained search's SearchConfig.latency_mode")
    ap.add_argument("--workers", type=int, default=1,
                    help="candidate-evaluation processes per search (1: in-process; run models side by side instead)")
    ap.add_argument("--out", default="runs/reproduce_search")
    ap.add_argument("--doc", default="docs/results/search.md")
    ap.add_argument("--findings-only", action="store_true",
                    help="with --merge: only recompute the findings section of an existing --doc")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="only render --doc from the JSON files of earlier runs (e.g. one process per model)")
    args = ap.parse_args()
    if args.merge and args.findings_only:
        return _rewrite_findings(args)
    if args.merge:
        return _merge(args)
    torch.set_num_threads(1)
    data = load_dataset("mnist5k")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budgets = [float(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    ratios = [float(r) for r in args.ratios.split(",")]
    baselines = [m for m in args.baselines.split(",") if m]
    search_methods = [] if args.search_methods == "none" else args.search_methods.split(",")
    evo = {} if args.full else {"population": 16, "top_k": 4, "mutation_num": 6, "crossover_num": 6, "iterations": 5}
    results, widths_md, lat_rows = {}, [], []
    t0 = time.time()
    for name in args.models.split(","):
        for seed in seeds:
            torch.manual_seed(seed)
            dense = models.create(name, num_classes=data.num_classes, in_channels=data.in_channels,
                                  input_size=data.image_size)
            _train(dense, data, args.epochs, seed)
            x = data.train_x[:1]
            full_macs = float(count_macs(dense, x).total)
            if not args.latency_only:  # a --latency-only part is merged into a full run, which has the dense rows
                results.setdefault((name, "dense", 1.0), []).append(_top1(dense, data))
            fine = SearchSpace.build(dense, x, ratios=[round(0.025 * k, 3) for k in range(1, 41)])
            for b in ([] if args.latency_only else budgets):
                if "uniform" in baselines:
                    # uniform width scaling: the widest uniform ratio within the budget
                    r = max((k / 40 for k in range(1, 41) if fine.macs(fine.uniform(k / 40)) <= b * full_macs),
                            default=0.025)
                    uni = fine.plan(fine.uniform(r)).apply(dense)
                    results.setdefault((name, "uniform", b), []).append(
                        _top1(_train(uni, data, args.finetune_epochs, seed, lr=0.02), data))
                if "l1" in baselines:
                    l1 = make_plan(dense, x, criterion="l1", macs=b).apply(dense)
                    results.setdefault((name, L1, b), []).append(
                        _top1(_train(l1, data, args.finetune_epochs, seed, lr=0.02), data))
                if "lasso" in baselines:
                    # pruned and least-squares reconstructed by the method, then the same fine-tuning as the rest
                    lasso = run_structured(dense, data, "lasso", {"macs": b, "macs_tolerance": 0.05, "seed": seed,
                                                                  "finetune": {"epochs": 0}, "calib_images": 500},
                                           None, progress=False).model
                    results.setdefault((name, LASSO, b), []).append(
                        _top1(_train(lasso, data, args.finetune_epochs, seed, lr=0.02), data))
                    print(f"[{time.time() - t0:.0f}s] {name} lasso {b}: {results[(name, LASSO, b)][-1]:.2f}",
                          flush=True)
                found = {}
                for method in search_methods:
                    # preset thorough: the settings these results were produced with (whole splits, 128-image batches)
                    cfg = SearchConfig(method=method, macs=b, seed=seed, preset="thorough", ratios=ratios,
                                       calib_batches=args.calib_batches,
                                       greedy_moves=args.greedy_moves, supernet={"epochs": args.supernet_epochs},
                                       finetune={"epochs": args.finetune_epochs, "lr": 0.02}, evolution=evo,
                                       workers=args.workers)
                    # one super-network per model, method and seed, searched under every budget (as in both papers)
                    first = out / f"{name}_{method}_{budgets[0]}_s{seed}" / "supernet.pt"
                    res = search(dense, data, cfg, out / f"{name}_{method}_{b}_s{seed}", progress=False,
                                 overwrite=True, supernet=first if b != budgets[0] else None)
                    results.setdefault((name, method, b), []).append(res.report["test_top1"])
                    found[method] = [w["kept"] for w in res.widths]
                    base_widths = res.widths
                    print(f"[{time.time() - t0:.0f}s] {name} {method} {b}: {res.report['test_top1']:.2f} "
                          f"(MACs {res.report['macs_fraction']:.3f})", flush=True)
                if seed == seeds[0] and {"autoslim", "metapruning"} <= found.keys():
                    png = Path(args.doc).parent / f"search_widths_{name}_{b}.png"
                    plot_widths([{**w, "kept": found["autoslim"][i]} for i, w in enumerate(base_widths)], png,
                                title=f"{name} at {int(100 * b)}% MACs", others={"metapruning": found["metapruning"]},
                                found_label="autoslim")
                    widths_md.append(f"![{name} {b}]({png.name})")
            _write(args, results, widths_md, lat_rows, budgets, time.time() - t0)
            if args.latency and seed == seeds[0]:
                from prunekit.measure import measure_latency

                from prunekit.search import LatencyTable

                full_ms = float(measure_latency(dense, x, threads=1).median_ms)
                # a budget the grid can meet: the table's prediction for uniform half width
                grid = SearchSpace.build(dense, x, ratios=ratios)
                table = LatencyTable.build(dense, x, grid, repeats=20, mode=args.latency_mode)
                budget_ms = table.predict(grid.uniform(0.5))
                # the search uses this very table, so its budget and its predictions share one timing of the machine
                table_path = table.save(out / f"{name}_latency_table_s{seed}.json")
                cfg = SearchConfig(method="metapruning", latency_ms=budget_ms, seed=seed, preset="thorough",
                                   ratios=ratios,
                                   latency_mode=args.latency_mode, latency_table=str(table_path),
                                   calib_batches=args.calib_batches, workers=args.workers,
                                   supernet={"epochs": args.supernet_epochs}, finetune={"epochs": 0}, evolution=evo)
                trained = out / f"{name}_metapruning_{budgets[0]}_s{seed}" / "supernet.pt"
                res = search(dense, data, cfg, out / f"{name}_latency_s{seed}", progress=False, overwrite=True,
                             supernet=trained if trained.exists() else None)
                lat_rows.append((name, full_ms, budget_ms, res.report["latency_ms_predicted"],
                                 res.report["latency_ms_measured"], res.report.get("latency_drift"),
                                 args.latency_mode))
        _write(args, results, widths_md, lat_rows, budgets, time.time() - t0)  # after each model: partial runs count


def _fmt(v):
    if len(v) == 1:
        return f"{v[0]:.2f}"
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}"


def _merge(args) -> None:
    """Render ``--doc`` from several runs' JSON (results, width charts and latency rows put together)."""
    results, widths_md, lat_rows, secs, models, saved, parts = {}, [], {}, 0.0, [], None, []
    args.latency_parts = False
    for path in args.merge:  # a later file's rows replace an earlier one's for the same model / method / budget
        for png in Path(path).parent.glob("search_widths_*.png"):  # the parts' charts go next to the page
            if png.parent.resolve() != Path(args.doc).parent.resolve():
                shutil.copyfile(png, Path(args.doc).parent / png.name)
        d = json.loads(Path(path).read_text())
        for model, method, budget, vals in d["results"]:
            results[(model, method, budget)] = list(vals)
        widths_md += [w for w in d["widths_md"] if w not in widths_md]
        lat_rows.update({(r[0], r[6] if len(r) > 6 else "median"): tuple(r) for r in d["lat_rows"]})
        secs += d["seconds"]
        a = d["args"]
        parts.append(f"--models {a['models']}" + (" --latency-only" if a.get("latency_only") else "")
                     + (f" --latency-mode {a['latency_mode']}" if a.get("latency_mode", "median") != "median" else "")
                     + (f" --baselines {a['baselines']} --search-methods {a['search_methods']}"
                        if a.get("baselines", "uniform,l1,lasso") != "uniform,l1,lasso"
                        or a.get("search_methods", "autoslim,metapruning") != "autoslim,metapruning" else ""))
        if d["args"].get("latency_only"):
            args.latency_parts = True
        else:
            models += [m for m in d["args"]["models"].split(",") if m not in models]
            saved = d["args"]
    if saved is None:
        raise SystemExit("--merge needs at least one part that is not --latency-only")
    for k, v in saved.items():
        if k not in ("merge", "doc"):
            setattr(args, k, v)
    args.models = ",".join(models)
    args.parallel_runs = len(args.merge)
    args.parts = parts
    _write(args, results, widths_md, list(lat_rows.values()), [float(b) for b in args.budgets.split(",")], secs,
           dump=False, details=_details(args, results))


def _rewrite_findings(args) -> None:
    """Recompute only the page's "What the numbers say" section of ``--doc`` from the parts' JSON (``--merge``).

    For pages whose searches' report.json files (the before-fine-tuning table) are no longer on disk: the rest
    of the page is kept as it is and the findings are computed again from the same table.
    """
    results, budgets = {}, set()
    for path in args.merge:
        d = json.loads(Path(path).read_text())
        for model, method, budget, vals in d["results"]:
            results[(model, method, budget)] = list(vals)
            budgets.add(budget)
    methods = [m for m in METHODS if any(k[1] == m for k in results)]
    text = Path(args.doc).read_text()
    head = "## What the numbers say (computed from the tables above)"
    start = text.index(head)
    sec = text[start:text.index("\n## ", start + len(head)) + 1]
    keep = [ln for ln in sec.splitlines() if ln.startswith("- Searches that") or ln.startswith("- Seed 002")]
    new = "\n".join([head, ""] + _observations(results, sorted(b for b in budgets if b < 1.0), methods) + keep) + "\n\n"
    Path(args.doc).write_text(text.replace(sec, new))
    print(new)


def _strided_groups(model_name) -> set:
    """Names of the search groups written by a stride > 1 convolution (down-sampling layers; a depthwise
    convolution writes the group it reads)."""
    import torch

    from prunekit import models
    from prunekit.search import SearchSpace

    net = models.create(model_name, num_classes=10, in_channels=1, input_size=(28, 28))
    space = SearchSpace.build(net, torch.zeros(1, 1, 28, 28))
    mods = dict(net.named_modules())
    out = set()
    for i, g in enumerate(space.groups):
        for m in g.members:
            mod = mods.get(m.param.rpartition(".")[0])
            if m.role == "out" and isinstance(mod, torch.nn.Conv2d) and max(mod.stride) > 1:
                out.add(space.group_name(i))
    return out


def _details(args, results) -> dict:
    """Per (model, method, budget): the searched networks' MACs kept, top-1 before fine-tuning and the share of
    channels kept in down-sampling groups vs the others (from each search's report.json)."""
    out, strided = {}, {}
    for model, method, b in results:
        if method not in ("autoslim", "metapruning"):
            continue
        if model not in strided:
            strided[model] = _strided_groups(model)
        for seed in args.seeds.split(","):
            rep = Path(args.out) / f"{model}_{method}_{b}_s{seed}" / "report.json"
            if rep.is_file():
                r = json.loads(rep.read_text())
                d = out.setdefault((model, method, b), {"macs": [], "before": [], "down": [], "other": []})
                d["macs"].append(100 * r["macs_fraction"])
                d["before"].append(r["test_top1_before_finetune"])
                for key, sel in (("down", True), ("other", False)):
                    ws = [w for w in r["widths"] if (w["group"] in strided[model]) == sel]
                    if ws:
                        d[key].append(100 * sum(w["kept"] for w in ws) / sum(w["size"] for w in ws))
    return out


def _observations(results, budgets, methods) -> list[str]:
    """Statements computed from the table: best method per budget, searched vs uniform (mean over seeds)."""
    lines = []
    for m in sorted({k[0] for k in results}):
        for b in budgets:
            means = {meth: statistics.mean(results[(m, meth, b)]) for meth in methods if (m, meth, b) in results}
            if not means:
                continue
            best = max(means, key=means.get)
            txt = f"- **{m}, {int(100 * b)}% MACs**: best {best} ({means[best]:.2f}%)"
            if "uniform" in means:
                diffs = [f"{meth} {means[meth] - means['uniform']:+.2f}" for meth in methods
                         if meth in means and meth != "uniform"]
                txt += "; against uniform width: " + ", ".join(diffs) + " points"
            lines.append(txt + ".")
    lines += _searched_vs_uniform(results, budgets, methods)
    return lines


def _searched_vs_uniform(results, budgets, methods) -> list[str]:
    """Seed-paired searched - uniform differences and the verdict on the papers' finding, computed from the table.

    Each seed's searched network is compared with the uniform network of the same seed (same dense model);
    a difference counts as a win (loss) only when its mean minus (plus) its std over seeds is above (below) 0.
    """
    verdict = {"win": [], "loss": [], "tie": []}
    for m in sorted({k[0] for k in results}):
        for b in budgets:
            uni = results.get((m, "uniform", b))
            for meth in (x for x in methods if x in ("autoslim", "metapruning")):
                vals = results.get((m, meth, b))
                if not uni or not vals or len(vals) != len(uni):
                    continue
                d = [v - u for v, u in zip(vals, uni)]
                mu, sd = statistics.mean(d), statistics.stdev(d) if len(d) > 1 else 0.0
                kind = "win" if mu - sd > 0 else "loss" if mu + sd < 0 else "tie"
                verdict[kind].append(f"{meth} on {m} at {int(100 * b)}% ({mu:+.2f} ± {sd:.2f})")
    n = sum(len(v) for v in verdict.values())
    if not n:
        return []
    holds = len(verdict["win"]) > n / 2
    return [f"- **Searched width against uniform width, seed by seed** (searched - uniform of the same seed, mean ± "
            f"std over seeds, points): beats uniform beyond the seed spread in {len(verdict['win'])} of {n} settings"
            + (f" ({'; '.join(verdict['win'])})" if verdict["win"] else "")
            + f"; loses beyond it in {len(verdict['loss'])}"
            + (f" ({'; '.join(verdict['loss'])})" if verdict["loss"] else "")
            + f"; within the spread in {len(verdict['tie'])}"
            + (f" ({'; '.join(verdict['tie'])})" if verdict["tie"] else "") + ".",
            f"- The papers' common finding (a searched per-layer width beats uniform width at the same FLOPs, theirs "
            f"on ImageNet) therefore **{'holds' if holds else 'does not hold'} here** "
            f"({'in most settings' if holds else 'not in most settings'}; reduced protocol, see above)."]


def _write(args, results, widths_md, lat_rows, budgets, secs, dump: bool = True, details=None) -> None:
    import datetime

    from prunekit.utils.io import atomic_write

    if dump:  # the raw numbers, for --merge
        raw = {"results": [[*k, v] for k, v in results.items()], "widths_md": widths_md, "lat_rows": lat_rows,
               "seconds": secs, "args": {k: v for k, v in vars(args).items() if k != "merge"}}
        with atomic_write(Path(args.doc).with_suffix(".json"), "w") as f:
            json.dump(raw, f, indent=1)

    lines = ["# Channel search (MetaPruning, AutoSlim): reproduced on mnist5k", "",
             f"Generated by `scripts/reproduce_search.py` on {datetime.date.today()} "
             f"({secs / 60:.0f} min of compute on a shared 2-core CPU machine"
             f"{', in %d parts run as separate processes, merged with --merge' % args.parallel_runs if getattr(args, 'parallel_runs', 0) else ''}).", "",
             f"Command: `.venv/bin/python scripts/reproduce_search.py --models {args.models} --budgets {args.budgets} "
             f"--seeds {args.seeds} --epochs {args.epochs} --supernet-epochs {args.supernet_epochs} "
             f"--finetune-epochs {args.finetune_epochs} --ratios {args.ratios} --calib-batches {args.calib_batches} --greedy-moves {args.greedy_moves}"
             f"{' --full' if args.full else ''}"
             f"{' --latency' if args.latency else ''} --workers {args.workers} --out {args.out}`"
             + (", run in parts (one process each, with `--doc /tmp/search/part_NAME.md`) that differ from it in "
                "these options: " + "; ".join(f"`{p}`" for p in args.parts) + ". Then `--merge` of the parts' JSON "
                "files (a later part's rows replace an earlier one's) `--doc docs/results/search.md`, which also "
                "reads the searches' report.json files under `--out`." if getattr(args, "parts", None) else ""), "",
             f"Seeds: {args.seeds} ({'mean ± std' if ',' in args.seeds else 'one seed: no spread'}). "
             "Test top-1 (%) on the 1000-image mnist5k test split after fine-tuning; the searches only saw a "
             "sub-validation split of the training data. All methods at the same MACs budget (fraction of the "
             "dense model's MACs kept) and the same fine-tuning schedule.", ""]
    if not args.full:
        lines += ["**Reduced protocol** (the default): short training schedules and a small evolution "
                  "(population 16, 5 iterations) instead of the paper's (50, 20), the search grid and BN "
                  "recalibration given in the command; differences of a few tenths of a percent are within noise "
                  "here.", ""]
    models_ = sorted({k[0] for k in results})
    methods = [m for m in METHODS if any(k[1] == m for k in results)]
    for m in models_:
        lines += [f"## {m}", "", f"Dense model: {_fmt(results[(m, 'dense', 1.0)])}", "",
                  "| MACs kept | " + " | ".join(methods) + " |", "| --- |" + " --- |" * len(methods)]
        for b in budgets:
            lines.append(f"| {int(100 * b)}% | " + " | ".join(_fmt(results.get((m, meth, b), [float('nan')]))
                                                         for meth in methods) + " |")
        lines.append("")
    if details:
        lines += ["## The searched networks before fine-tuning", "",
                  "MACs actually kept (%, the budget is an upper bound; MetaPruning's candidates must also use at least "
                  "90% of it, `budget_floor`, see docs/search.md) and test top-1 (%) of the found network "
                  "right after pruning, with the inherited dense weights and the BatchNorm statistics re-estimated on "
                  "`calib-batches` training batches (mean ± std over seeds).", "",
                  "The last two columns test seed 002's observation that searched networks keep more channels at "
                  "down-sampling layers: the share (%) of channels kept in the groups written by a stride-2 "
                  "convolution (for MobileNet v2 the expansion groups of the stride-2 depthwise blocks), and in "
                  "all other groups.", "",
                  "| model | budget | method | MACs kept | top-1 before fine-tuning | channels kept, down-sampling "
                  "groups | channels kept, other groups |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for (m, meth, b), d in sorted(details.items()):
            lines.append(f"| {m} | {int(100 * b)}% | {meth} | {_fmt(d['macs'])} | {_fmt(d['before'])} | "
                         f"{_fmt(d['down']) if d['down'] else '-'} | {_fmt(d['other']) if d['other'] else '-'} |")
        lines.append("")
    under = [f"{meth} on {m} at {int(100 * b)}% ({statistics.mean(d['macs']):.1f}% kept)"
             for (m, meth, b), d in sorted((details or {}).items()) if statistics.mean(d["macs"]) < 90 * b]
    shares = [(k, statistics.mean(d["down"]) - statistics.mean(d["other"]))
              for k, d in sorted((details or {}).items()) if d["down"] and d["other"]]
    more = [f"{meth} on {m} at {int(100 * b)}%" for (m, meth, b), diff in shares if diff > 0]
    lines += ["## What the numbers say (computed from the tables above)", ""] + \
        _observations(results, budgets, methods) + \
        ([f"- Searches that left more than 10% of their MACs budget unused: {'; '.join(under)}."] if under else []) + \
        ([f"- Seed 002's down-sampling observation: the searched networks kept a larger share of channels in "
          f"down-sampling groups than in the others in {len(more)} of {len(shares)} settings (means over seeds; the "
          f"spread over seeds is often as large as the difference)."] if shares else []) + \
        [""]
    lines += ["## Channels per group found (first seed)", "",
              "Blue: the dense width; orange: AutoSlim; green: MetaPruning. One bar group per coupling group of the "
              "engine (residual-coupled channels share one bar), in forward order.", ""] + widths_md + [""]
    if lat_rows:
        lines += ["## Latency-constrained search (MetaPruning, lookup table on this CPU, 1 thread)", "",
                  "The budget is the table's prediction for the uniform half-width network; the found network is "
                  "realised, then timed in rounds interleaved with the full network, batch 1: the median of 5 rounds in "
                  "`median` mode, the fastest of 10 rounds half a second apart in `fastest` mode, whose table also "
                  "keeps every entry's fastest of 3 passes (docs/search.md). Drift: "
                  "the full network's time then against its time when the search built its table (this shared "
                  "machine's speed changes by itself); the last column divides the measurement by it "
                  "(docs/search.md, docs/bench/search.md)."
                  + (" These rows come from a `--latency-only` re-run with the same settings." if
                     getattr(args, "latency_parts", False) else ""), "",
                  "| model | latency mode | dense ms | budget ms | predicted ms | measured ms | measured vs budget | "
                  "drift | measured at the table's speed vs budget |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for n, a, b, c, d, *rest in lat_rows:
            drift = rest[0] if rest and rest[0] else None
            mode = rest[1] if len(rest) > 1 else "median"
            lines.append(f"| {n} | {mode} | {a:.3f} | {b:.3f} | {c:.3f} | {d:.3f} | {100 * (d - b) / b:+.1f}% | "
                         + (f"{100 * (drift - 1):+.1f}% | {100 * (d / drift - b) / b:+.1f}% |" if drift else "- | - |"))
        lines.append("")
    lines += ["## The papers' ImageNet results", "", PAPER]
    with atomic_write(args.doc, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(json.dumps({" / ".join(map(str, k)): v for k, v in results.items()}))


if __name__ == "__main__":
    main()
