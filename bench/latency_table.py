"""Benchmark: latency lookup table accuracy and PruningNet / slimmable training throughput.

1. For each model, build the per-layer latency table (torch, CPU, 1 thread) and
   compare its prediction with the measured whole-network latency of the full
   network and random sub-networks of the search grid (physically pruned by the
   engine), three ways (see ``_latency_rows``): the table built once, entries
   re-timed side by side with each network every round, and "fast mode" (every
   entry and network at its fastest round: the CPU without its neighbours' load).
2. Training throughput (images/s, batch 64) of the full model vs the PruningNet
   (MetaPruning; one column per ``--ranks`` entry, ``rank >= hidden`` being the paper's
   dense generator) and the sandwich-rule slimmable step (AutoSlim, 4 widths/step).
   All use SGD with the training loop's defaults (momentum 0.9, weight decay 5e-4).
   The steps are timed one at a time and interleaved (full, PruningNet(s), slimmable,
   full, ...), so machine load hits all alike; the table gives medians of the step
   times and ratios of the medians.

Run:  .venv/bin/python bench/latency_table.py [--models resnet20,mobilenet_v2] [--samples 8]
      .venv/bin/python bench/latency_table.py --only throughput --ranks 8,32 --rounds 15
Prints a Markdown block (paste into docs/bench/search.md).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def _interleaved_medians(steps: dict, x, y, rounds: int, per_round: int) -> dict:
    """Median seconds per call of each ``steps[name](x, y)``, the calls interleaved round-robin."""
    for step in steps.values():
        step(x, y)  # warm-up
    times = {k: [] for k in steps}
    for _ in range(rounds):
        for k, step in steps.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                step(x, y)
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _latency_rows(name, m, x, space, args) -> list:
    """Lookup table vs measured latency of the full network and random sub-networks, two protocols.

    The table is built once (as a search builds it) and predicts every sample. Then in
    each of ``--latency-rounds`` rounds, for the calibration networks (full, half width,
    narrowest) and every sample in turn, the entries that network uses are timed again
    and the network itself right after; the overhead terms are refitted on the round's
    calibration networks. Medians over rounds. The first protocol's error includes the
    machine's drift between building and timing; the second measures the table's model.
    """
    import numpy as np

    from prunekit.measure import measure_latency
    from prunekit.search import LatencyTable

    lut = LatencyTable.build(m, x, space, repeats=args.repeats)
    rng = np.random.default_rng(0)
    encs = [space.full] + [tuple(int(c[rng.integers(len(c))]) for c in space.candidates)
                           for _ in range(args.samples - 1)]
    once = [lut.predict(e) for e in encs]  # entries measured now, at build time
    calib = list(dict.fromkeys([space.full, space.uniform(0.5), space.smallest]))
    side = LatencyTable.from_dict(lut.to_dict())
    nets = {e: space.plan(e).apply(m).eval() for e in dict.fromkeys(calib + encs)}
    preds, meas = {e: [] for e in nets}, {e: [] for e in nets}
    best = {}  # per entry, its fastest timing over the rounds
    for _ in range(args.latency_rounds):
        sums, times = {}, {}
        for e, net in nets.items():
            for sig in side.remeasure([e]):
                best[sig] = min(best.get(sig, float("inf")), side.entries[sig])
            sums[e] = side.layer_sum(e)
            times[e] = float(measure_latency(net, x, warmup=5, repeats=args.repeats, threads=1).median_ms)
        side.fit_overhead(calib, [times[e] for e in calib], layer_sums=[sums[e] for e in calib])
        for e in nets:
            preds[e].append(sums[e] + side.constant_ms + side.per_activation_ms * side.activations(e))
            meas[e].append(times[e])
    # fast mode: every entry and every network at its fastest round (the machine's speed without its neighbours)
    fast = LatencyTable.from_dict(side.to_dict())
    fast.entries.update(best)
    fast.fit_overhead(calib, [min(meas[e]) for e in calib])
    rows, err_once, err_side, err_fast, spread = [], [], [], [], []
    for i, e in enumerate(encs):
        med, pside, low, pfast = statistics.median(meas[e]), statistics.median(preds[e]), min(meas[e]), fast.predict(e)
        err_once.append(100 * abs(once[i] - med) / med)
        err_side.append(100 * abs(pside - med) / med)
        err_fast.append(100 * abs(pfast - low) / low)
        spread.append(100 * (max(meas[e]) / low - 1))
        rows.append((name, i, space.macs(e) / space.macs(space.full), med, once[i], pside, low, pfast, spread[-1]))
    drift = 100 * (statistics.median(meas[space.full]) / lut.reference_ms - 1)
    rows.append((name, "summary", drift, statistics.median(err_once), max(err_once),
                 statistics.median(err_side), max(err_side), statistics.median(err_fast), max(err_fast),
                 statistics.median(spread)))
    return rows


def main() -> None:
    import torch

    from prunekit import models
    from prunekit.search import PruningNet, SandwichRule, SearchSpace, masked_forward

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet20,mobilenet_v2")
    ap.add_argument("--only", choices=("all", "latency", "throughput"), default="all",
                    help="run only the lookup-table part or only the training-throughput part")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=32, help="PruningNet meta-network hidden width")
    ap.add_argument("--ranks", default="8,32",
                    help="PruningNet generator ranks to time (one column each; rank >= hidden: the paper's dense block)")
    ap.add_argument("--rounds", type=int, default=15, help="throughput: interleaved rounds")
    ap.add_argument("--latency-rounds", type=int, default=5,
                    help="lookup table: whole-network timings per sample, interleaved across samples (median)")
    ap.add_argument("--per-round", type=int, default=2, help="throughput: timed steps of each kind per round")
    args = ap.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    rows, thr = [], []
    for name in args.models.split(","):
        torch.manual_seed(0)
        m = models.create(name, num_classes=10, input_size=(args.size, args.size)).eval()
        x = torch.randn(1, 3, args.size, args.size)
        space = SearchSpace.build(m, x)
        if args.only in ("all", "latency"):
            rows += _latency_rows(name, m, x, space, args)
        if args.only == "latency":
            continue

        # training throughput, batch 64, SGD with the training loop's defaults
        xb, yb = torch.randn(64, 3, args.size, args.size), torch.randint(0, 10, (64,))
        full = models.create(name, num_classes=10, input_size=(args.size, args.size)).train()

        def sgd(net):
            return torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                                   weight_decay=5e-4)

        def plain_step(net):
            o = sgd(net)

            def step(a, b):
                o.zero_grad()
                torch.nn.functional.cross_entropy(net(a), b).backward()
                o.step()
            return step

        steps = {"full": plain_step(full)}
        for r in ranks:
            steps[f"pnet{r}"] = plain_step(PruningNet(full, space, hidden=args.hidden, rank=r).train())
        slim_net = models.create(name, num_classes=10, input_size=(args.size, args.size)).train()
        sand, slim_opt = SandwichRule(space, num_random=2), sgd(slim_net)

        def step_slim(a, b, net=slim_net, o=slim_opt, s=sand):
            o.zero_grad()
            out = net(a)
            loss = torch.nn.functional.cross_entropy(out, b)
            soft = out.detach().softmax(1)
            for enc in [space.smallest] + [tuple(int(c[s.rng.integers(len(c))]) for c in space.candidates)
                                           for _ in range(2)]:
                loss = loss - (soft * masked_forward(net, space, enc, a).log_softmax(1)).sum(1).mean()
            loss.backward()
            o.step()

        steps["slim"] = step_slim
        med = _interleaved_medians(steps, xb, yb, args.rounds, args.per_round)
        thr.append((name, med))

    load1 = os.getloadavg()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"1 thread, input 3x{args.size}x{args.size}, PruningNet hidden {args.hidden}; "
          f"load average {load0[0]:.1f} at start, {load1[0]:.1f} at end.\n")
    if rows:
        print("Errors are prediction vs measurement. *Built once*: the table as a search uses it, built at the "
              "start, against each network's median over the rounds. *Side by side*: every round re-times the "
              "entries of each network right before timing it and refits the overhead terms on that round; medians "
              "over rounds. *Fast mode*: every entry and every network at its fastest round, overhead refitted on "
              "those. Spread: a network's slowest round against its fastest. Drift: the full network's median "
              "against its time when the table was built.\n")
        print("| model | sample | MACs frac | measured median ms | built once: predicted ms | error % | "
              "side by side: predicted ms | error % | measured fastest ms | fast mode: predicted ms | error % | "
              "spread % |")
        print("| --- |" + " --- |" * 11)
        for r in rows:
            if r[1] == "summary":
                print(f"| {r[0]} | **median (max) abs error** | drift {r[2]:+.1f}% | | | **{r[3]:.1f}** ({r[4]:.1f}) "
                      f"| | **{r[5]:.1f}** ({r[6]:.1f}) | | | **{r[7]:.1f}** ({r[8]:.1f}) | median {r[9]:.0f} |")
            else:
                name, i, frac, med, once, side, low, fast, spr = r
                print(f"| {name} | {i} | {frac:.3f} | {med:.3f} | {once:.3f} | {100 * (once - med) / med:+.1f} | "
                      f"{side:.3f} | {100 * (side - med) / med:+.1f} | {low:.3f} | {fast:.3f} | "
                      f"{100 * (fast - low) / low:+.1f} | {spr:.0f} |")
    if thr:
        cols = [f"PruningNet rank {r}{' (dense, paper)' if r >= args.hidden else ''}" for r in ranks]
        print(f"\nMedian step time (ms) and images/s, batch 64, {args.rounds} interleaved rounds x "
              f"{args.per_round} steps; ratio = median step time / full model's.\n")
        print("| model | full model ms (img/s) | " + " | ".join(f"{c} ms (img/s) | ratio" for c in cols)
              + " | slimmable sandwich (4 widths) ms (img/s) | ratio |")
        print("| --- | --- |" + " --- | --- |" * (len(ranks) + 1))
        for name, med in thr:
            cells = [f"{1e3 * med['full']:.0f} ({64 / med['full']:.0f})"]
            for k in [f"pnet{r}" for r in ranks] + ["slim"]:
                cells += [f"{1e3 * med[k]:.0f} ({64 / med[k]:.0f})", f"{med[k] / med['full']:.2f}x"]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
