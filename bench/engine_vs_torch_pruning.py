"""prunekit's pruning engine side by side with Torch-Pruning 1.6.1 on the same model and ratio.

Measures, in one run on one machine:

(a) time to analyse and prune (prunekit: ``plan`` + ``apply(inplace=True)``;
    Torch-Pruning: ``MetaPruner(...)`` + ``step()``, also in place), median of
    ``--timing-runs`` fresh copies, the libraries' runs interleaved;
(b) CPU latency of the dense and both pruned models, interleaved
    (``prunekit.measure.compare_latency``), and speedup / MACs reduction with 95% intervals
    (``prunekit.measure.paired_speedup``: per-round paired ratios, bootstrap over rounds);
(c) MACs and parameters of both results counted the same way (``prunekit.measure``);
(d) peak memory (``prunekit.measure.memory.peak_cpu_memory``: torch's CPU allocator plus
    Python/NumPy allocations) of prunekit's analysis (``prunekit.graph.analyze``), of
    ``prunekit.plan`` + ``apply`` and of Torch-Pruning's ``MetaPruner`` + ``step``, each as a
    multiple of the dense model's own forward at batch 1 (measured the same way), on
    fresh copies, outside the timed runs (tracemalloc slows Python down).

Torch-Pruning is a benchmark-only dependency: ``pip install --no-deps torch-pruning==1.6.1``.

Usage:
    python bench/engine_vs_torch_pruning.py --model resnet50 --size 224 --ratio 0.5 --criterion l2
"""
from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--criterion", default="l2")
    ap.add_argument("--round-to", default="1,8", help="prunekit round_to values to compare (comma list)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timing-runs", type=int, default=5)
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--repeats", type=int, default=10, help="timed forward passes per model and batch size")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory table (d)")
    args = ap.parse_args(argv)

    import torch

    import prunekit
    from prunekit import measure, models

    try:
        import torch_pruning as tp
    except ImportError:
        raise SystemExit("install the benchmark-only dependency: pip install --no-deps torch-pruning==1.6.1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense = models.create(args.model, num_classes=args.num_classes, in_channels=3,
                          input_size=(args.size, args.size)).eval()
    x1 = torch.randn(1, 3, args.size, args.size)
    rounds = [int(r) for r in args.round_to.split(",")]

    def run_prunekit(round_to):
        net = copy.deepcopy(dense)
        t = time.perf_counter()
        plan = prunekit.plan(net, x1, criterion=args.criterion, ratio=args.ratio, ignored_layers=[net.fc],
                             round_to=round_to)
        plan.apply(net, inplace=True)
        return time.perf_counter() - t, net

    def run_tp():
        net = copy.deepcopy(dense)
        t = time.perf_counter()
        imp = tp.importance.MagnitudeImportance(p=2 if args.criterion == "l2" else 1)
        pruner = tp.pruner.MetaPruner(net, x1, importance=imp, pruning_ratio=args.ratio, ignored_layers=[net.fc])
        pruner.step()
        return time.perf_counter() - t, net

    runners = {**{f"prunekit round_to={r}": (lambda r=r: run_prunekit(r)) for r in rounds},
               "torch-pruning 1.6.1": run_tp}
    for fn in runners.values():
        fn()  # warm-up (imports, first trace)
    times = {k: [] for k in runners}
    nets = {}
    for i in range(args.timing_runs):  # interleaved, rotating order: a slow spell hits everyone alike
        order = list(runners)[i % len(runners):] + list(runners)[:i % len(runners)]
        for k in order:
            t, nets[k] = runners[k]()
            times[k].append(t)
    results = {k: {"time_s": statistics.median(times[k]), "model": nets[k].eval()} for k in runners}

    base_macs = measure.count_macs(dense, x1).total
    base_params = measure.count_params(dense)
    for r in results.values():
        r["macs"] = measure.count_macs(r["model"], x1).total
        r["params"] = measure.count_params(r["model"])

    lat = {}
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        xb = torch.randn(bs, 3, args.size, args.size)
        named = {"dense": dense, **{k: v["model"] for k, v in results.items()}}
        lat[bs] = measure.compare_latency(named, xb, warmup=args.warmup, repeats=args.repeats, threads=args.threads)

    print(f"### Engine vs Torch-Pruning: {args.model} at {args.size}x{args.size}, ratio {args.ratio}, "
          f"criterion {args.criterion}\n")
    print(f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads; shared and noisy (medians, interleaved timing). "
          f"Date: {time.strftime('%Y-%m-%d')}\n")
    head = "| | analyse+prune s | MACs | MACs kept | params | params kept |"
    cols = []
    for bs in lat:
        head += f" latency bs={bs} ms | speedup bs={bs} | speedup/MACs-reduction bs={bs} |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    d = {bs: lat[bs]["dense"].median_ms for bs in lat}
    line = f"| dense | - | {base_macs / 1e9:.3f} G | 1.000 | {base_params / 1e6:.2f} M | 1.000 |"
    for bs in lat:
        line += f" {d[bs]:.1f} | 1.00 | - |"
    print(line)
    for k, r in results.items():
        red = base_macs / r["macs"]
        line = (f"| {k} | {r['time_s']:.3f} | {r['macs'] / 1e9:.3f} G | {r['macs'] / base_macs:.3f} | "
                f"{r['params'] / 1e6:.2f} M | {r['params'] / base_params:.3f} |")
        for bs in lat:
            # speedup = 1 / (median per-round latency ratio), with its 95% bootstrap interval
            sp = measure.paired_speedup(lat[bs]["dense"], lat[bs][k])
            if sp.measurable:
                cells = (f"{sp.speedup:.2f} [{1 / sp.high:.2f}, {1 / sp.low:.2f}]",
                         f"{sp.speedup / red:.2f} [{1 / sp.high / red:.2f}, {1 / sp.low / red:.2f}]")
            else:
                cells = (sp.short(), "-")
            line += f" {lat[bs][k].median_ms:.1f} | {cells[0]} | {cells[1]} |"
        print(line)
    del cols
    if not args.no_memory:
        print()
        print(memory_table(dense, x1, run_prunekit_plain(args), run_tp_plain(tp, args)))
    # Each round timed every library back to back, so the per-round ratio cancels the machine's drift;
    # its median gets a bootstrap interval over the rounds.
    tp_key = "torch-pruning 1.6.1"
    print()
    for k in runners:
        if k == tp_key:
            continue
        ratios = [a / b for a, b in zip(times[k], times[tp_key])]
        med, lo, hi = _median_ci(ratios)
        print(f"- analyse+prune time, {k} / Torch-Pruning: median {med:.2f} "
              f"[95% bootstrap CI {lo:.2f}, {hi:.2f}] over {len(ratios)} interleaved rounds")
    return 0


def run_prunekit_plain(args):
    """prunekit's analyse + prune on a model, in place (what the timed runs do), for the memory table."""
    import prunekit

    def run(net, x):
        plan = prunekit.plan(net, x, criterion=args.criterion, ratio=args.ratio, ignored_layers=[net.fc])
        plan.apply(net, inplace=True)
    return run


def run_tp_plain(tp, args):
    """Torch-Pruning's analyse + prune on a model, in place, for the memory table."""
    def run(net, x):
        imp = tp.importance.MagnitudeImportance(p=2 if args.criterion == "l2" else 1)
        tp.pruner.MetaPruner(net, x, importance=imp, pruning_ratio=args.ratio, ignored_layers=[net.fc]).step()
    return run


def memory_table(dense, x, run_prunekit, run_tp) -> str:
    """Markdown table (d): peak CPU memory of the analysis and of each library's prune, vs the forward.

    Each figure is ``peak_cpu_memory(..., python=True)`` on a fresh copy of ``dense``
    (one warm-up call first, so one-off caches and imports are not counted): the
    peak of torch's CPU allocator plus the peak of Python/NumPy allocations.
    """
    import torch

    from prunekit.graph import analyze
    from prunekit.measure.memory import peak_cpu_memory

    def fresh_peak(fn):
        fn(copy.deepcopy(dense))  # warm-up
        net = copy.deepcopy(dense)
        return peak_cpu_memory(lambda: fn(net), python=True)

    def forward(net):
        with torch.no_grad():
            return net(x)

    rows = {"dense forward (batch 1, no grad)": fresh_peak(forward),
            "prunekit analysis (graph.analyze)": fresh_peak(lambda net: analyze(net, x)),
            "prunekit plan + apply": fresh_peak(lambda net: run_prunekit(net, x)),
            "Torch-Pruning MetaPruner + step": fresh_peak(lambda net: run_tp(net, x))}
    base = rows["dense forward (batch 1, no grad)"]
    lines = ["| peak CPU memory (torch allocator + Python/NumPy) | MB | x forward |", "|---|---|---|"]
    for name, b in rows.items():
        if b is None:
            lines.append(f"| {name} | n/a | - |")
            continue
        lines.append(f"| {name} | {b / 2**20:.1f} | {b / base:.2f} |" if base else f"| {name} | {b / 2**20:.1f} | - |")
    return "\n".join(lines)


def _median_ci(values, n_boot: int = 2000, seed: int = 0):
    """Median of ``values`` and a percentile-bootstrap 95% interval of it."""
    import random

    rng = random.Random(seed)
    boots = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(n_boot))
    return statistics.median(values), boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]


if __name__ == "__main__":
    raise SystemExit(main())
