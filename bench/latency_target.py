"""Latency targets: ``prunekit.plan(model, x, latency=T)`` on ResNet-50 and MobileNet v2 at T = 0.5 and 0.7.

Issue 18's "done when": latency targets hit within 5% (measured, interval stated) on
ResNet-50 and MobileNet v2 at 0.5 and 0.7, with Torch-Pruning's MACs-matched result
beside it. For every model and target:

1. prunekit plans to the target (per-layer latency table on this machine, widths
   rounded to the CPU's fast multiple, measured and refined; ``plan.info`` holds the
   predicted ratio, the plan's own measurement and every refinement) and reports the
   planning time;
2. Torch-Pruning 1.6.1 prunes the dense model to the **same MACs** as prunekit's
   result (uniform L2 ratio, bisection);
3. dense, prunekit's and Torch-Pruning's models are timed again, interleaved in one
   run: the latency ratio to dense with its 95% bootstrap interval, for both.

Eager torch at ``--batch`` (default 1, the budget's own default) and ``--threads``.
Writes docs/bench/latency_target.md and prints the lines for BENCHMARKS.md.

Usage (idle machine; about 10 minutes on 2 cores, the first run building the latency tables):
    python bench/latency_target.py
    python bench/latency_target.py --batch 32
    python bench/latency_target.py --quick      # tiny inputs: checks the script (minutes; writes nothing)
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_common import build, machine_line, macs_of, publish, time_models, tp_prune_to_macs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50,mobilenet_v2")
    ap.add_argument("--targets", default="0.5,0.7")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds of the final three-way timing "
                    "before its intervals are first looked at")
    ap.add_argument("--until-within", type=float, default=0.025, help="the final timing goes on until every "
                    "interval is within +- this share of its ratio (default 0.025) or --max-time passed; 0: off")
    ap.add_argument("--max-time", type=float, default=120.0, help="time limit of the final timing, seconds")
    ap.add_argument("--cache", default=None, help="latency table folder (default prunekit's)")
    ap.add_argument("--out", default="docs/bench/latency_target.md")
    ap.add_argument("--quick", action="store_true", help="tiny inputs and rounds: checks the script, writes nothing")
    args = ap.parse_args(argv)

    import torch

    import prunekit

    if args.quick:
        args.threads = 1  # a loaded machine's scheduler makes multi-threaded tiny timings crawl
    torch.set_num_threads(args.threads)
    size, rounds = (32, 3) if args.quick else (args.size, args.rounds)
    extra = {"latency_refinements": 1, "latency_rounds": 3, "latency_cache": "off", "latency_max_time_s": 5.0} \
        if args.quick else {}
    if args.cache:
        extra["latency_cache"] = args.cache
    lines = [f"## Latency targets (eager CPU, batch {args.batch})", "",
             machine_line(args.threads) + " prunekit plans with `latency=T` (per-layer latency table, widths "
             "rounded to the CPU's fast multiple, measured and refined until within 5%); Torch-Pruning 1.6.1 is "
             "pruned to the same MACs. The last columns are one interleaved timing of dense, prunekit and "
             f"Torch-Pruning (at least {rounds} rounds, then until every interval is within "
             f"+-{100 * args.until_within:g}% or {args.max_time:g} s passed; median per-round ratio, 95% bootstrap "
             "interval).", "",
             "Then prunekit's model is timed once more against dense alone, as `prunekit profile A --compare B` "
             "does (the pair column): the two timings differ where the rotation matters (see "
             "prunekit.measure.interleave).", "",
             "| model | target | predicted | plan's measurement | refinements | plan s | MACs kept | "
             "prunekit latency ratio (three-way) | within 5% | Torch-Pruning (same MACs) latency ratio | rounds | "
             "prunekit vs dense, pair | within 5% (pair) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for name in args.models.split(","):
        dense, shape, ignored = build(name, size)
        x = torch.randn(1, *shape)
        xb = torch.randn(args.batch, *shape)
        base = macs_of(dense, x)
        for target in [float(t) for t in args.targets.split(",")]:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a missed target is reported in the table
                plan = prunekit.plan(dense, x, latency=target, latency_batch=args.batch, latency_threads=args.threads,
                                     ignored_layers=ignored, **extra)
            plan_s = time.perf_counter() - t0
            small = plan.apply(dense).eval()
            kept = macs_of(small, x) / base
            tp_net, tp_kept, _ = tp_prune_to_macs(dense, x, kept, ignored, steps=2 if args.quick else 6)
            res = time_models({"dense": dense, "prunekit": small, "tp": tp_net}, xb, args.threads, rounds,
                              until_within=None if args.quick else (args.until_within or None),
                              max_time_s=args.max_time)
            pk, tp = res["prunekit"], res["tp"]
            pair = time_models({"dense": dense, "prunekit": small}, xb, args.threads, rounds,
                               until_within=None if args.quick else (args.until_within or None),
                               max_time_s=args.max_time)["prunekit"]
            m = plan.info["latency_measured"]
            within = abs(pk["ratio"] / target - 1) <= 0.05
            within_pair = abs(pair["ratio"] / target - 1) <= 0.05
            lines.append(f"| {name} {size}x{size} | {target:g} | {plan.info['latency_predicted']:.3f} | "
                         f"{m['ratio']:.3f} [{m['low']:.3f}, {m['high']:.3f}] ({m['rounds']} rounds) | "
                         f"{len(plan.info['latency_refinements']) - 1} | {plan_s:.0f} | {kept:.3f} | "
                         f"{pk['ratio']:.3f} [{pk['low']:.3f}, {pk['high']:.3f}] | {'yes' if within else 'no'} | "
                         f"{tp['ratio']:.3f} [{tp['low']:.3f}, {tp['high']:.3f}] (MACs {tp_kept:.3f}) | "
                         f"{pk['rounds']} | {pair['ratio']:.3f} [{pair['low']:.3f}, {pair['high']:.3f}] | "
                         f"{'yes' if within_pair else 'no'} |")
            summary.append(f"- {name}, latency target {target:g} (batch {args.batch}): measured "
                           f"{pk['ratio']:.3f} [{pk['low']:.3f}, {pk['high']:.3f}] "
                           f"({'within' if within else 'outside'} 5%; pair with dense alone "
                           f"{pair['ratio']:.3f} [{pair['low']:.3f}, {pair['high']:.3f}], "
                           f"{'within' if within_pair else 'outside'} 5%), MACs {kept:.3f}; Torch-Pruning at the same "
                           f"MACs: {tp['ratio']:.3f} [{tp['low']:.3f}, {tp['high']:.3f}]")
    lines += ["", *summary, ""]
    text = "\n".join(lines)
    publish(text, args.out, args.quick, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
