"""Structured methods side by side at half the MACs on committed base networks (and Torch-Pruning beside them).

Every row starts from the same committed base network (scripts/train_base.py), removes channels until
at most ``BUDGET`` of the dense MACs are left (one counter, ``prunekit.measure.count_macs``), and is then
fine-tuned with the same schedule and seed; three seeds per row, final-epoch top-1 as mean +- std.
Rows: prunekit's registered structured methods (l1, slimming, lasso, thinet, fpgm, taylor, random when
registered), the uniform-width architecture trained from scratch for the base network's own schedule
(Liu et al., "Rethinking the Value of Network Pruning", ICLR 2019), and Torch-Pruning's pruners
(Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023; benchmark-only dependency) with
L1 magnitude, group-norm (group sparsity) and BN-scale (slimming) importance, pruned step by step until
the same MACs budget is met and fine-tuned the same way.

Run (resumable: finished (row, seed) pairs are kept in the page's JSON):
    PYTHONPATH=src .venv/bin/python scripts/reproduce_methods.py fashion_mnist --bases fashion_mnist_lenet5
    PYTHONPATH=src .venv/bin/python scripts/reproduce_methods.py cifar10
    PYTHONPATH=src .venv/bin/python scripts/reproduce_methods.py fashion_mnist --latency   # idle machine only
``--render`` only rewrites the page from the JSON.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from repro_lib import ROOT, Row, RowSkipped, _atomic_json, load_base, markdown_table, run_rows, summary  # noqa: E402

BUDGET = 0.5      # keep at most half of the dense MACs (a 2x MACs reduction)
TOLERANCE = 0.03  # prunekit's default macs_tolerance; a row above BUDGET + TOLERANCE is marked
SEEDS = (0, 1, 2)
METHODS = ("l1", "slimming", "lasso", "thinet", "fpgm", "taylor", "random")
TP_KINDS = ("l1", "group_norm", "slimming")
TP_STEPS = 200    # Torch-Pruning's progressive pruning: up to this many small steps until the budget is met

SETS = {"fashion_mnist": ("fashion_mnist_lenet5", "fashion_mnist_vgg_bn", "fashion_mnist_vgg_small",
                          "fashion_mnist_resnet20"),
        "cifar10": ("cifar10_resnet20", "cifar10_vgg_small")}

#: fine-tuning (one FinetuneConfig for every row of a base) and the sparsity-training epochs of the
#: methods that train with a sparsity penalty before pruning (slimming, TP group-norm / slimming).
SCHEDULES = {
    "fashion_mnist_lenet5": {"finetune": {"epochs": 3, "lr": 0.01, "batch_size": 64}, "sparsity_epochs": 2},
    "fashion_mnist_vgg_bn": {"finetune": {"epochs": 3, "lr": 0.01, "batch_size": 64}, "sparsity_epochs": 2},
    "fashion_mnist_vgg_small": {"finetune": {"epochs": 3, "lr": 0.01, "batch_size": 128}, "sparsity_epochs": 2},
    "fashion_mnist_resnet20": {"finetune": {"epochs": 3, "lr": 0.01, "batch_size": 128}, "sparsity_epochs": 2},
    "cifar10_resnet20": {"finetune": {"epochs": 3, "lr": 0.01, "batch_size": 128}, "sparsity_epochs": 2},
    "cifar10_vgg_small": {"finetune": {"epochs": 3, "lr": 0.01, "batch_size": 128}, "sparsity_epochs": 2},
}

PAPER = {
    "l1": "Li et al. 2017: ResNet-56 on CIFAR-10 -27.6% FLOPs, 93.06% (from 93.04%)",
    "slimming": "Liu et al. 2017: VGGNet on CIFAR-10 -51% FLOPs, 93.80% (from 93.66%)",
    "lasso": "He et al. 2017: ResNet-56 on CIFAR-10 2x speed-up, -1.0% accuracy",
    "thinet": "Luo et al. 2017: VGG-16 on ImageNet 3.31x fewer FLOPs, -0.52% top-5",
    "fpgm": "He et al. 2019: ResNet-56 on CIFAR-10 -52.6% FLOPs, 93.49% (from 93.59%)",
    "taylor": "Molchanov et al. 2019: ResNet-101 on ImageNet -40% FLOPs, -0.02% top-1",
    "random": "Li et al., CVPR 2022 (theirs, abstract): channel configurations found by random search work quite "
              "well compared with other channel pruning methods; no clear winner among importance criteria; "
              "no single headline figure",
    "uniform width from scratch": "Liu et al. 2019: scratch-trained pruned architectures match fine-tuned ones in "
                             "most of their settings",
}

#: Torch-Pruning's own CIFAR-10 ResNet-56 table (VainF/Torch-Pruning benchmarks/README.md, "ResNet-56 / CIFAR-10 /
#: 2.00x - 2.55x"; speed-up there = base MACs / pruned MACs): theirs, not ours - their 93.53% base trained 200
#: epochs, their pruning and fine-tuning schedule on a GPU.
TP_PUBLISHED = [("Group-L1 (Li et al.'s L1 criterion on dependency groups)", "93.53", "92.93", "2.12x"),
                ("Group-BN (slimming's BN-scale criterion on groups)", "93.53", "93.29", "2.12x"),
                ("DepGraph group sparsity (group-norm, with sparse training)", "93.53", "93.77", "2.11x")]


def tp_regularizer(pruner):
    """A training callback that applies Torch-Pruning's sparsity regulariser (``pruner.regularize``) after backward."""
    from prunekit.train import Callback

    class TPRegularizer(Callback):
        def on_after_backward(self, trainer) -> None:
            pruner.regularize(trainer.model)

    return TPRegularizer()


def has_bn(model) -> bool:
    import torch.nn as nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def method_config(method: str, sched: dict, seed: int, budget: float = BUDGET) -> dict:
    """The prunekit config of ``method``: the budget, no fine-tuning inside (run_rows fine-tunes every row alike)."""
    cfg = {"macs": budget, "macs_tolerance": TOLERANCE, "seed": seed, "latency": False, "calib_images": 256,
           "finetune": {**sched["finetune"], "epochs": 0}}
    if method == "l1":
        cfg["eval_samples"] = 500
    if method == "slimming":
        cfg.update(sparsity_epochs=sched["sparsity_epochs"], sparsity_lr=0.01, sparsity=1e-4)
    if method in ("fpgm", "taylor"):
        cfg.update(steps=3, epochs_per_step=0)  # no training between steps: every row gets the same fine-tuning
    cfg.update(sched.get("options", {}).get(method, {}))  # a schedule's own per-method settings (e.g. a smoke test)
    return cfg


def prunekit_row(method: str, sched: dict, cache: Path | None, budget: float = BUDGET) -> Row:
    def prune(model, splits, seed):
        from prunekit.methods.structured import STRUCTURED_METHODS
        from prunekit.methods.structured.pipeline import coerce_config

        if method not in STRUCTURED_METHODS.names():
            raise RowSkipped(f"not available (no '{method}' in STRUCTURED_METHODS yet)")
        if method == "slimming" and not has_bn(model):
            raise RowSkipped("not applicable: no BatchNorm (Network Slimming prunes by BN scales)")
        info = STRUCTURED_METHODS.get(method)
        net = info.prune(model, splits, coerce_config(info.config_cls, method_config(method, sched, seed, budget)),
                         False).model.cpu()
        return _cached(net, cache, method, seed)

    return Row(method, prune, budget=budget, tolerance=TOLERANCE, paper=PAPER.get(method, ""))


def uniform_scratch_row(info: dict, cache: Path | None, budget: float = BUDGET) -> Row:
    """Every group pruned by one ratio (the engine's MACs target), re-initialised, trained with the base schedule."""
    def prune(model, splits, seed):
        from prunekit.engine import plan
        from prunekit.train import fit, reinitialize

        p = plan(model, splits.train_x[:1], criterion="l1", macs=budget)
        net = reinitialize(p.apply(model), seed)
        fit(net, splits, {**info["train"], "epochs": info["epochs"], "seed": seed, "progress": False,
                          "eval_every": 0, "checkpoint_every": 0})
        return _cached(net.cpu(), cache, "uniform width from scratch", seed)

    return Row("uniform width from scratch", prune, budget=budget, tolerance=TOLERANCE, finetune=False,
               paper=PAPER["uniform width from scratch"])


def tp_row(kind: str, sched: dict, cache: Path | None, budget: float = BUDGET) -> Row:
    """Torch-Pruning's pruner for ``kind`` (l1 / group_norm / slimming), stepped until the MACs budget is met."""
    label = f"Torch-Pruning {kind.replace('_', '-')}"

    def prune(model, splits, seed):
        import torch.nn as nn
        import torch_pruning as tp

        from prunekit.measure import count_macs
        from prunekit.train import run_finetune

        if kind == "slimming" and not has_bn(model):
            raise RowSkipped("not applicable: no BatchNorm")
        ex = splits.train_x[:1]
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]  # the classifier keeps its outputs
        if kind == "l1":
            cls, imp, kw = tp.pruner.MagnitudePruner, tp.importance.MagnitudeImportance(p=1), {}
        elif kind == "group_norm":
            cls, imp, kw = tp.pruner.GroupNormPruner, tp.importance.GroupMagnitudeImportance(p=2), {"reg": 5e-4}
        else:  # Network Slimming's global BN-scale ranking
            cls, imp, kw = tp.pruner.BNScalePruner, tp.importance.BNScaleImportance(), {"reg": 1e-4}
        pruner = cls(model, ex, importance=imp, pruning_ratio=1.0, max_pruning_ratio=0.9, iterative_steps=TP_STEPS,
                     ignored_layers=[head], global_pruning=(kind == "slimming"), **kw)
        if kind != "l1":  # sparsity training with the same epochs and rate as prunekit's slimming
            run_finetune(model, splits, {**sched["finetune"], "epochs": sched["sparsity_epochs"], "lr": 0.01,
                                         "seed": seed, "eval_every": 0, "checkpoint_every": 0},
                         callbacks=[tp_regularizer(pruner)], progress=False)
        model = model.cpu().eval()
        dense = count_macs(model, ex).per_sample
        steps = 0
        while count_macs(model, ex).per_sample > budget * dense and steps < TP_STEPS:
            pruner.step()
            steps += 1
        return _cached(model, cache, label, seed), {"tp_steps": steps}

    return Row(label, prune, budget=budget, tolerance=TOLERANCE)


def _cached(net, cache: Path | None, label: str, seed: int):
    """Keep seed 0's pruned architecture (runs/, not committed) for the later ``--latency`` pass."""
    if cache is not None and seed == 0:
        import torch

        cache.mkdir(parents=True, exist_ok=True)
        torch.save(net, cache / f"{_slug(label)}.pt")
    return net


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower())


def rows_for(base: str, info: dict, cache: Path | None = None, *, sched: dict | None = None,
             budget: float = BUDGET, methods=METHODS, tp_kinds=TP_KINDS, scratch: bool = True) -> list[Row]:
    """The table's rows for base network ``base`` (``sched`` default: ``SCHEDULES[base]``)."""
    sched = sched or SCHEDULES[base]
    return ([prunekit_row(m, sched, cache, budget) for m in methods] +
            ([uniform_scratch_row(info, cache, budget)] if scratch else []) +
            [tp_row(k, sched, cache, budget) for k in tp_kinds])


def latency_pass(base: str, rows, results: dict, cache: Path) -> dict:
    """Seed 0's pruned network of each row timed against the dense one, interleaved (idle machine only)."""
    import torch

    from prunekit.measure import compare_speed

    model0, splits, _ = load_base(base)
    x = splits.test_x[:32]
    out = {}
    for row in rows:
        path = cache / f"{_slug(row.label)}.pt"
        try:
            net = torch.load(path, weights_only=False) if path.exists() else row.prune(copy.deepcopy(model0), splits, 0)
        except RowSkipped:
            continue
        net = net[0] if isinstance(net, tuple) else net
        out[row.label] = compare_speed(model0.eval(), net.eval(), x, rounds=30, warmup=3).to_dict()
        print(row.label, out[row.label], flush=True)
    results["latency"] = out
    return results


def latency_cells(results: dict) -> dict:
    from prunekit.measure import SpeedupResult

    return {k: SpeedupResult.from_dict(v).short() for k, v in (results.get("latency") or {}).items()}


def observations(results: dict, rows) -> list[str]:
    """Plain statements computed from one base's results (best row, scratch comparison, budget misses, pending)."""
    s = {r.label: summary(results, r) for r in rows}
    done = {k: v for k, v in s.items() if v is not None}
    out = []
    if not done:
        return ["- No row has finished yet."]
    best = max(done, key=lambda k: done[k]["top1_mean"])
    out.append(f"- Best final top-1: {best} ({done[best]['top1_mean']:.2f} +- {done[best]['top1_std']:.2f}%, "
               f"dense {results['dense']['top1']:.2f}%).")
    scratch = done.get("uniform width from scratch")
    if scratch:
        beat = [k for k, v in done.items() if k != "uniform width from scratch" and v["top1_mean"] > scratch["top1_mean"]]
        out.append(f"- Uniform width from scratch: {scratch['top1_mean']:.2f}%; beaten by "
                   f"{', '.join(beat) if beat else 'no pruned row'}.")
    for ours, theirs in (("l1", "Torch-Pruning l1"), ("slimming", "Torch-Pruning slimming")):
        if ours in done and theirs in done:
            d = done[ours]["top1_mean"] - done[theirs]["top1_mean"]
            out.append(f"- prunekit {ours} vs {theirs}: {d:+.2f} points (mean over seeds).")
    missed = [k for k, v in done.items() if not v["met"]]
    budget = rows[0].budget if rows else BUDGET
    out.append(f"- MACs budget {budget:.3f} (+{TOLERANCE}) missed by: {', '.join(missed) if missed else 'none'}.")
    incomplete = [r.label for r in rows if r.label not in results.get("skipped", {}) and
                  (r.label not in done or done[r.label]["n"] < len(results["seeds"]))]
    if incomplete:
        out.append(f"- Pending (fewer than {len(results['seeds'])} seeds so far): {', '.join(incomplete)}.")
    return out


def section(base: str, results: dict | None, rows) -> list[str]:
    info = json.loads((ROOT / "docs" / "results" / "base" / f"{base}.json").read_text())
    want = info["train"]["epochs"]
    partial = "" if info["epochs"] >= want else f" (**partially trained: {info['epochs']} of {want} epochs**)"
    L = [f"## {base}: {info['model']} on {info['data']}", "",
         f"Runs on: {_machines(results)}; base network trained on: {info.get('device') or 'the CPU'}.", "",
         f"Base network: `docs/results/base/{base}.pt`, {info['epochs']} epochs{partial}, top-1 "
         f"{info['final_test_top1']:.2f}%. Fine-tuning of every row: {SCHEDULES[base]['finetune']} (cosine, "
         f"the base's augmentation); sparsity training {SCHEDULES[base]['sparsity_epochs']} epochs (slimming, "
         "Torch-Pruning group-norm/slimming).", ""]
    if results is None:
        return L + ["Not run yet.", ""]
    dense = results["dense"]["top1"]
    if abs(dense - info["final_test_top1"]) > 1e-6:  # e.g. evaluated on a GPU here, on the CPU in training
        n = round(abs(dense - info["final_test_top1"]) * results["dense"].get("test_images", 10000) / 100)  # both sets test on 10,000
        L += [f"The dense row is the base network re-measured where the rows ran ({dense:.2f}%; its training log "
              f"says {info['final_test_top1']:.2f}%): rounding in another kernel flips {n} test image(s).", ""]
    lat = latency_cells(results) or {r.label: "not measured yet" for r in rows}
    L += [markdown_table(results, rows, {"latency pruned/dense (seed 0, batch 32)": lat}), ""]
    return L + ["What the table says (computed from it):", ""] + observations(results, rows) + [""]


def _machines(results: dict | None) -> str:
    """Where the rows ran: one machine, or each machine with its rows."""
    if not results:
        return "-"
    machines = results.get("machines") or {results.get("machine", "?"): []}
    if len(machines) == 1:
        return next(iter(machines))
    return "; ".join(f"{m} ({', '.join(rows)})" for m, rows in machines.items())


def load_results(folder: Path, base: str) -> dict | None:
    """``methods_BASE.json`` with the runs of its parts (``methods_BASE.PART.json``, ``--part``) merged in."""
    main_path = folder / f"methods_{base}.json"
    parts = sorted(folder.glob(f"methods_{base}.*.json"))
    files = ([main_path] if main_path.exists() else []) + parts
    if not files:
        return None
    results = json.loads(files[0].read_text())
    machines: dict = {}  # machine -> the row labels whose runs came from it (parts may run on different machines)
    for i, f in enumerate(files):
        extra = results if i == 0 else json.loads(f.read_text())
        for key in ("runs", "skipped", "failed", "latency"):
            if i:
                results.setdefault(key, {}).update(extra.get(key) or {})
        labels = machines.setdefault(extra.get("machine", "?"), [])
        labels += [lab for lab in dict.fromkeys(k.rsplit("|", 1)[0] for k in extra.get("runs", {}))
                   if lab not in labels]
    results["machines"] = {m: v for m, v in machines.items() if v}
    results["seeds"] = list(SEEDS)  # the page's seeds, whatever each part ran
    return results


def render(set_name: str, bases, out: Path) -> None:
    L = [f"# Structured methods at {BUDGET:g} of the MACs: {set_name.replace('_', '-')}", "",
         f"Generated by `scripts/reproduce_methods.py {set_name}` ({time.strftime('%Y-%m-%d')}; each section names "
         "the machine its runs came from: a shared 2-core CPU machine with 1 torch thread per run, or a GPU for "
         "training and test-set evaluation with the pruning itself on its CPU, `scripts/gpu_tables.sh`). Seeds "
         f"{', '.join(map(str, SEEDS))}; top-1 is the final-epoch test accuracy, mean +- std over seeds. MACs: "
         "`prunekit.measure.count_macs` for every row (also the Torch-Pruning rows). A row whose largest MACs "
         f"fraction exceeds {BUDGET} + {TOLERANCE} is marked **missed**. Torch-Pruning rows use "
         "torch_pruning (pip's torch-pruning 1.6.1, whose `__version__` says 1.6.0; benchmark-only dependency) on the same base weights, pruned in up to "
         f"{TP_STEPS} progressive steps until the budget is met, then fine-tuned exactly as ours. fpgm/taylor "
         "prune in 3 steps without training between them; l1 chooses per-layer ratios from its sensitivity "
         "analysis; random draws 4 width candidates and trains each for 1 epoch on 90% of the train split "
         "before the chosen one gets the same fine-tuning (4 epochs of training more than the other rows, which "
         "may be part of its lead). \"uniform width from scratch\": every channel group cut by one ratio to the same MACs, "
         "re-initialised and trained for the base network's own schedule (not fine-tuned). Latency: `--latency` (compare_speed, interleaved, median ratio with its 95% interval), run "
         "on an idle machine only; \"not measured yet\" until then. Reproduce: "
         f"`PYTHONPATH=src .venv/bin/python scripts/reproduce_methods.py {set_name}` (resumable).", ""]
    for base in bases:
        results = load_results(out.parent, base)
        info = json.loads((ROOT / "docs" / "results" / "base" / f"{base}.json").read_text()) \
            if (ROOT / "docs" / "results" / "base" / f"{base}.json").exists() else None
        if info is None:
            L += [f"## {base}", "", f"Base network not trained yet (`scripts/train_base.py {base}`).", ""]
            continue
        L += section(base, results, rows_for(base, info))
    if set_name == "cifar10":
        L += ["## Torch-Pruning's published CIFAR-10 ResNet-56 table (theirs)", "",
              "**Theirs, not ours**: Torch-Pruning benchmarks README / DepGraph (Fang et al., CVPR 2023), ResNet-56 "
              "on CIFAR-10 at 2.11x speed-up, their base network and long GPU schedule. Our GPU protocol for the "
              "same setting is `scripts/gpu_resnet56.py`. It has not produced a row yet: its one run (2026-12-04, one "
              "H200 lent for 15 minutes, shortened to 30 base epochs, beside 20 other processes of "
              "`scripts/gpu_tables.sh`) did not finish its base network in the 450 s the session's GPU time allowed, "
              "because the machine's 16 cores, not the GPU, set the pace (docs/train.md, Performance).", "",
              "| method (theirs) | base top-1 | pruned top-1 | speed-up |", "|---|---:|---:|---:|"]
        L += [f"| {m} | {b}% | {p}% | {s} |" for m, b, p, s in TP_PUBLISHED] + [""]
    out.write_text("\n".join(L))
    print(f"wrote {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", choices=sorted(SETS), help="which page: the dataset's base networks")
    ap.add_argument("--bases", default=None, help="comma-separated subset of the set's base networks")
    ap.add_argument("--rows", default=None, help="comma-separated subset of row labels")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--part", default=None,
                    help="write this process's runs to methods_BASE.PART.json (several processes side by side, "
                         "each with its own --rows; the page merges them)")
    ap.add_argument("--latency", action="store_true", help="time seed 0's pruned networks (idle machine only)")
    ap.add_argument("--render", action="store_true", help="only rewrite the page from the JSON files")
    a = ap.parse_args(argv)
    bases = a.bases.split(",") if a.bases else list(SETS[a.set])
    unknown = [b for b in bases if b not in SCHEDULES]
    if unknown:
        ap.error(f"unknown base(s) {', '.join(unknown)}; choose from {', '.join(SETS[a.set])}")
    out = ROOT / "docs" / "results" / f"methods_{a.set}.md"
    if not a.render:
        for base in bases:
            path = out.parent / (f"methods_{base}.{a.part}.json" if a.part else f"methods_{base}.json")
            cache = ROOT / "runs" / "methods" / base
            info = json.loads((ROOT / "docs" / "results" / "base" / f"{base}.json").read_text())
            rows = rows_for(base, info, cache)
            if a.rows:
                rows = [r for r in rows if r.label in a.rows.split(",")]
            if a.latency:
                import torch

                torch.set_num_threads(a.threads)
                path = out.parent / f"methods_{base}.latency.json"
                res = {"runs": {}, "latency": latency_pass(base, rows, {}, cache)["latency"]}
                _atomic_json(path, res)
            else:
                run_rows(base, rows, seeds=tuple(int(s) for s in a.seeds.split(",")),
                         finetune={**SCHEDULES[base]["finetune"], "eval_every": 0, "checkpoint_every": 0},
                         results_path=path, threads=a.threads, keep_going=True)
    render(a.set, list(SETS[a.set]), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
