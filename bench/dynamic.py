"""Dense vs dynamic (FBS gates, skipping path) vs static pruning at the same MACs: latency at batch 1.

Issue 17 (dynamic pruning): the dynamic network's savings measured, not only counted. For each
model, :func:`prunekit.methods.dynamic.gate_model` puts FBS gates (Gao et al., ICLR 2019) on every
gateable convolution (``--keep`` of the channels per input); its *skipping path* computes only the
kept filters (their weights gathered into a smaller convolution) and the next layer reads only
those channels. The static alternative is the engine's L1 pruning to the dynamic network's
average MACs (``prunekit.plan(macs=...)``). Each pair is timed interleaved at batch 1 with
:func:`prunekit.measure.compare_speed` (median per-round ratio with a 95% bootstrap interval, or
"not measurable"). The gather of the kept weights happens on every input: it is part of the cost.

Models: the committed Fashion-MNIST LeNet-5 base (tiny: per-call overhead dominates) and the zoo's
``vgg11`` with BatchNorm at 32x32 (random weights: latency only; the gates keep k channels whatever
the weights are).

Writes docs/bench/dynamic.md (via latency_common.publish).

Usage (idle machine; about 3 minutes on 2 cores):
    PYTHONPATH=src python bench/dynamic.py
    PYTHONPATH=src python bench/dynamic.py --quick      # a tiny check of the script (seconds; writes nothing)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_common import machine_line, macs_of, publish  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    """``(dense model, example input)``."""
    import torch

    from prunekit import checkpoint, models

    torch.manual_seed(0)
    if name == "lenet5_fmnist":
        return checkpoint.load(ROOT / "docs/results/base/fashion_mnist_lenet5.pt").model.eval(), \
            torch.randn(1, 1, 28, 28)
    if name == "vgg11_32":
        net = models.create("vgg11", num_classes=10, in_channels=3, input_size=(32, 32))
        return net.eval(), torch.randn(1, 3, 32, 32)
    raise SystemExit(f"unknown model {name!r}: lenet5_fmnist, vgg11_32")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lenet5_fmnist,vgg11_32")
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--out", default="docs/bench/dynamic.md")
    ap.add_argument("--quick", action="store_true", help="3 rounds: checks the script, writes nothing")
    args = ap.parse_args(argv)

    import torch

    import prunekit
    from prunekit.measure import compare_speed
    from prunekit.methods.dynamic import dynamic_macs, gate_model, skip_error
    from prunekit.surgery.gates import set_mode

    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else args.rounds
    lines = [f"## Dynamic (FBS, keep {args.keep}) vs static pruning at the same MACs, batch 1", "",
             machine_line(args.threads) + f" Each pair timed interleaved for {rounds} rounds with "
             "`prunekit.measure.compare_speed`; ratio = median per-round t_after / t_before, 95% bootstrap "
             "interval. Dynamic = the gated model's skipping path (kept filters gathered per input).", "",
             "| model | MACs kept (dynamic, mean) | MACs kept (static) | dense ms | dynamic ms | static ms | "
             "dynamic / dense | static / dense | dynamic / static |", "|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for name in args.models.split(","):
        dense, x = load(name)
        gated, _, _ = gate_model(dense, x, args.keep, seed=0)
        gated.eval()
        xs = torch.randn(8, *x.shape[1:])
        err = skip_error(gated, xs)
        d0 = macs_of(dense, x)
        dyn = sum(dynamic_macs(gated, xs)) / xs.shape[0] / d0
        static = prunekit.plan(dense, x, criterion="l1", macs=dyn).apply(dense).eval()
        st = macs_of(static, x) / d0
        set_mode(gated, "skip")
        opts = {"rounds": rounds, "warmup": 3, "threads": args.threads}
        a = compare_speed(dense, gated, x, **opts)
        b = compare_speed(dense, static, x, **opts)
        c = compare_speed(static, gated, x, **opts)
        lines.append(f"| {name} | {dyn:.3f} | {st:.3f} | {a.before.median_ms:.3f} | {a.after.median_ms:.3f} | "
                     f"{b.after.median_ms:.3f} | {a.short()} | {b.short()} | {c.short()} |")
        summary.append(f"- {name}: dynamic/dense {a.describe()}; static/dense {b.describe()}; dynamic/static "
                       f"{c.describe()} (skipping path == masked path within {err:.1e})")
    lines += ["", *summary, ""]
    publish("\n".join(lines), args.out, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
