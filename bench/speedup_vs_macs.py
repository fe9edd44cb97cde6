"""Measured speedup per MACs reduction at 50% MACs: prunekit (fast-width rounding) vs Torch-Pruning 1.6.1.

Issue 18's goal: on ResNet-50 (224x224), MobileNet v2 (224x224) and a YOLO-style
detector (bench/latency_common.py's YOLOv5s-shaped model, 320x320) pruned to half
their MACs, ``speedup / MACs reduction`` >= 0.85 at batch 32 and >= 0.7 at batch 1
on CPU, eager torch. Speedup is ``t_dense / t_pruned``, its interval from the
bootstrap interval of the median per-round latency ratio; dense, prunekit's and
Torch-Pruning's models are timed interleaved (each round runs all three, the order
rotating) in one run. prunekit: ``prunekit.prune(model, x, macs=0.5,
round_to=R)`` with R the CPU's fast width (``prunekit.engine.latency_budget.fast_round_to``:
16 with AVX-512, else 8) and, for comparison, round_to=1; Torch-Pruning: ``MetaPruner``
with L2 magnitude at the uniform ratio matching 50% MACs. No fine-tuning (latency
only; weights are random).

Writes docs/bench/speedup_vs_macs.md and prints the lines for BENCHMARKS.md.

Usage (idle machine; about 15 minutes on 2 cores):
    python bench/speedup_vs_macs.py
    python bench/speedup_vs_macs.py --quick        # a tiny check of the script (seconds; writes nothing)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_common import build, machine_line, macs_of, publish, time_models, tp_prune_to_macs  # noqa: E402

SIZES = {"resnet50": 224, "mobilenet_v2": 224, "yolo_style": 320}
GOALS = {32: 0.85, 1: 0.7}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50,mobilenet_v2,yolo_style")
    ap.add_argument("--macs", type=float, default=0.5)
    ap.add_argument("--batch-sizes", default="32,1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds per model and batch size")
    ap.add_argument("--round-to", default="auto", help="prunekit's width multiple: auto (the CPU's) or an integer")
    ap.add_argument("--out", default="docs/bench/speedup_vs_macs.md")
    ap.add_argument("--quick", action="store_true", help="tiny inputs and rounds: checks the script, writes nothing")
    args = ap.parse_args(argv)

    import torch

    import prunekit
    from prunekit.engine.latency_budget import fast_round_to

    torch.set_num_threads(args.threads)
    fast = fast_round_to() if args.round_to == "auto" else int(args.round_to)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    if args.quick:
        batches, args.rounds = [2, 1], 3
    lines = [f"## Speedup per MACs reduction at {args.macs:.0%} MACs (eager CPU)", "",
             machine_line(args.threads) + " Interleaved timing (dense, prunekit, Torch-Pruning in every round), "
             f"{args.rounds} rounds; median per-round latency ratio with a 95% bootstrap interval. "
             "Efficiency = speedup / MACs reduction (1.0: latency falls as fast as MACs).", "",
             "| model | batch | pruned by | MACs kept | latency ms | speedup | efficiency [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    summary = []
    for name in args.models.split(","):
        size = 32 if args.quick else SIZES[name]
        dense, shape, ignored = build(name, size)
        x1 = torch.randn(1, *shape)
        base = macs_of(dense, x1)
        pruned = {}
        for r in dict.fromkeys([fast, 1]):
            net = prunekit.prune(dense, x1, macs=args.macs, round_to=r, ignored_layers=ignored, tolerance=0.02)
            pruned[f"prunekit round_to={r}"] = net.eval()
        tp_net, _, tp_ratio = tp_prune_to_macs(dense, x1, args.macs, ignored, steps=2 if args.quick else 5)
        pruned[f"Torch-Pruning 1.6.1 (ratio {tp_ratio:.3f})"] = tp_net
        kept = {k: macs_of(m, x1) / base for k, m in pruned.items()}
        for bs in batches:
            x = torch.randn(bs, *shape)
            res = time_models({"dense": dense, **pruned}, x, args.threads, args.rounds)
            lines.append(f"| {name} {size}x{size} | {bs} | dense | 1.000 | {res['dense']['ms']:.1f} | 1.00 | - |")
            for k, m in pruned.items():
                r = res[k]
                red = 1 / kept[k]
                eff, lo, hi = 1 / (r["ratio"] * red), 1 / (r["high"] * red), 1 / (r["low"] * red)
                lines.append(f"| {name} {size}x{size} | {bs} | {k} | {kept[k]:.3f} | {r['ms']:.1f} | "
                             f"{1 / r['ratio']:.2f} | {eff:.2f} [{lo:.2f}, {hi:.2f}] |")
                if k.startswith("prunekit") or k.startswith("Torch"):
                    goal = GOALS.get(bs)
                    mark = "" if goal is None or not k.startswith(f"prunekit round_to={fast}") else \
                        (" (goal >= %.2f: %s)" % (goal, "met" if lo >= goal else "met by the median" if eff >= goal
                                                    else "missed"))
                    summary.append(f"- {name}, batch {bs}, {k}: speedup/MACs-reduction {eff:.2f} "
                                   f"[{lo:.2f}, {hi:.2f}]{mark}")
    lines += ["", *summary, ""]
    text = "\n".join(lines)
    publish(text, args.out, args.quick, [s for s in summary if "prunekit round_to=1:" not in s])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
