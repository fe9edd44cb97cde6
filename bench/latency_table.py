"""Benchmark: latency lookup table accuracy and PruningNet / slimmable training throughput.

1. For each model, build the per-layer latency table (torch, CPU, 1 thread) and
   compare its prediction with the measured whole-network latency of random
   sub-networks of the search grid (physically pruned by the engine).
2. Training throughput (images/s) of the full model vs the PruningNet
   (MetaPruning) and the sandwich-rule slimmable step (AutoSlim, 4 widths/step).

Run:  .venv/bin/python bench/latency_table.py [--models resnet20,mobilenet_v2] [--samples 8]
Prints a Markdown block (paste into docs/bench/search.md).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time


def _throughput(step, x, y, seconds: float = 3.0) -> float:
    step(x, y)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step(x, y)
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    import numpy as np
    import torch

    from prunekit import models
    from prunekit.measure import measure_latency
    from prunekit.search import LatencyTable, PruningNet, SandwichRule, SearchSpace, masked_forward

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet20,mobilenet_v2")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=32, help="PruningNet meta-network hidden width")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows, thr = [], []
    for name in args.models.split(","):
        torch.manual_seed(0)
        m = models.create(name, num_classes=10, input_size=(args.size, args.size)).eval()
        x = torch.randn(1, 3, args.size, args.size)
        space = SearchSpace.build(m, x)
        lut = LatencyTable.build(m, x, space, repeats=args.repeats)
        rng = np.random.default_rng(0)
        errs = []
        for i in range(args.samples):
            enc = space.full if i == 0 else tuple(int(c[rng.integers(len(c))]) for c in space.candidates)
            pred = lut.predict(enc)
            small = space.plan(enc).apply(m).eval()
            meas = float(measure_latency(small, x, warmup=5, repeats=args.repeats, threads=1).median_ms)
            errs.append(abs(pred - meas) / meas)
            rows.append((name, i, space.macs(enc) / space.macs(space.full), pred, meas, 100 * (pred - meas) / meas))
        rows.append((name, "median |err|", None, None, None, 100 * statistics.median(errs)))

        # training throughput, batch 64
        xb, yb = torch.randn(64, 3, args.size, args.size), torch.randint(0, 10, (64,))
        full = models.create(name, num_classes=10, input_size=(args.size, args.size))
        opt = torch.optim.SGD(full.parameters(), lr=0.01)

        def step_full(a, b, net=full, o=opt):
            o.zero_grad()
            torch.nn.functional.cross_entropy(net(a), b).backward()
            o.step()

        pnet = PruningNet(full, space, hidden=args.hidden).train()
        popt = torch.optim.SGD([p for p in pnet.parameters() if p.requires_grad], lr=0.01)

        def step_pnet(a, b, net=pnet, o=popt):
            o.zero_grad()
            torch.nn.functional.cross_entropy(net(a), b).backward()
            o.step()

        sand = SandwichRule(space, num_random=2)

        def step_slim(a, b, net=full, o=opt, s=sand):
            o.zero_grad()
            out = net(a)
            loss = torch.nn.functional.cross_entropy(out, b)
            soft = out.detach().softmax(1)
            for enc in [space.smallest] + [tuple(int(c[s.rng.integers(len(c))]) for c in space.candidates)
                                           for _ in range(2)]:
                loss = loss - (soft * masked_forward(net, space, enc, a).log_softmax(1)).sum(1).mean()
            loss.backward()
            o.step()

        t_full = _throughput(step_full, xb, yb)
        t_pnet = _throughput(step_pnet, xb, yb)
        t_slim = _throughput(step_slim, xb, yb)
        thr.append((name, t_full, t_pnet, t_slim))

    print(f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, "
          f"input 1x3x{args.size}x{args.size}, PruningNet hidden {args.hidden}; shared 2-core machine (noisy).\n")
    print("| model | sample | MACs frac | LUT predicted ms | measured ms | error % |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, i, frac, pred, meas, err in rows:
        if frac is None:
            print(f"| {name} | **{i}** | | | | **{err:.1f}** |")
        else:
            print(f"| {name} | {i} | {frac:.3f} | {pred:.3f} | {meas:.3f} | {err:+.1f} |")
    print("\n| model | full model train img/s | PruningNet img/s | ratio | slimmable sandwich (4 widths) img/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, a, b, c in thr:
        print(f"| {name} | {a:.0f} | {b:.0f} | {a / b:.2f}x | {c:.0f} | {a / c:.2f}x |")


if __name__ == "__main__":
    main()
