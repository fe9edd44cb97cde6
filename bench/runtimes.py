"""Dense vs pruned latency on the runtimes people deploy with: eager torch, torch.compile, ONNX Runtime.

Issue 18, section 1: the same pruned model (``prunekit.prune(model, x, macs=0.5,
round_to=R)``, R the CPU's fast width multiple) timed against its dense original on
each runtime at batch 1 and 32, interleaved in rounds (dense, pruned, pruned, dense,
...), with the thread count stated. Each row is
:func:`prunekit.measure.runtimes.compare_runtimes`: the median per-round latency
ratio ``t_pruned / t_dense`` with a 95% bootstrap interval. Random weights (latency
only). ONNX Runtime needs the ``onnx`` extra; torch.compile compiles both models
before timing (not counted).

Writes docs/bench/runtimes.md and prints the lines for BENCHMARKS.md.

Usage (idle machine; about 10 minutes on 2 cores):
    python bench/runtimes.py
    python bench/runtimes.py --quick        # a tiny check of the script (seconds; writes nothing)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_common import build, machine_line, macs_of, publish  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--macs", type=float, default=0.5)
    ap.add_argument("--runtimes", default="eager,compile,onnxruntime")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default="docs/bench/runtimes.md")
    ap.add_argument("--quick", action="store_true", help="tiny inputs and rounds: checks the script, writes nothing")
    args = ap.parse_args(argv)

    import torch

    import prunekit
    from prunekit.engine.latency_budget import fast_round_to
    from prunekit.measure.runtimes import compare_runtimes

    torch.set_num_threads(args.threads)
    fast = fast_round_to()
    size = 32 if args.quick else args.size
    rounds = 3 if args.quick else args.rounds
    batches = [int(b) for b in args.batch_sizes.split(",")]
    lines = [f"## Dense vs pruned ({args.macs:.0%} MACs) on eager, torch.compile and ONNX Runtime", "",
             machine_line(args.threads) + f" Pruned with `prunekit.prune(model, x, macs={args.macs}, "
             f"round_to={fast})`; each row times dense and pruned interleaved for {rounds} rounds on one runtime; "
             "latency ratio = median per-round t_pruned / t_dense with its 95% bootstrap interval.", "",
             "| model | runtime | batch | threads | MACs kept | dense ms | pruned ms | latency ratio [95% CI] | "
             "speedup / MACs reduction |", "|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for name in args.models.split(","):
        dense, shape, ignored = build(name, size)
        x1 = torch.randn(1, *shape)
        pruned = prunekit.prune(dense, x1, macs=args.macs, round_to=fast, ignored_layers=ignored,
                                tolerance=0.02).eval()
        kept = macs_of(pruned, x1) / macs_of(dense, x1)
        rows = compare_runtimes(dense, pruned, shape, runtimes=args.runtimes, batch_sizes=batches,
                                threads=args.threads, rounds=rounds)
        for r in rows:
            eff = kept / r.ratio
            lines.append(f"| {name} {size}x{size} | {r.runtime} | {r.batch_size} | {r.threads} | {kept:.3f} | "
                         f"{r.before_ms:.1f} | {r.after_ms:.1f} | {r.ratio:.2f} [{r.low:.2f}, {r.high:.2f}] | "
                         f"{eff:.2f} [{kept / r.high:.2f}, {kept / r.low:.2f}] |")
            summary.append(f"- {name}, {r.runtime}, batch {r.batch_size}, {r.threads} threads: latency ratio "
                           f"{r.ratio:.2f} [{r.low:.2f}, {r.high:.2f}] at {kept:.3f} of the MACs")
    lines += ["", *summary, ""]
    text = "\n".join(lines)
    publish(text, args.out, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
