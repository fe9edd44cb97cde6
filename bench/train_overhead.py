"""Overhead of ``prunekit.train.Trainer`` over a bare PyTorch training loop.

Both sides do the same work from the same initial weights: SGD (momentum 0.9,
weight decay 5e-4) with a per-step cosine learning rate, a fresh random order
each epoch, no augmentation, no progress bar, and one evaluation on the test
split at the end. The Trainer additionally tracks training loss/accuracy,
runs its callback machinery (empty) and builds its history. Runs alternate
between the two loops (A B B A ...) so that drifting load on a shared machine
hits both alike; the table reports medians over the repeats.

Usage:
    python bench/train_overhead.py [--models lenet5 resnet20] [--data mnist5k]
        [--threads 1] [--repeats 5] [--epochs 2] [--batch-size 128]
"""
from __future__ import annotations

import argparse
import copy
import datetime
import math
import platform
import statistics
import time


def bare_loop(model, splits, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    """A minimal hand-written loop; returns the wall time in seconds."""
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    n = len(splits.train_y)
    steps = math.ceil(n / batch_size)
    total = epochs * steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            xb, yb = splits.train_x[idx], splits.train_y[idx]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.inference_mode():
        correct = 0
        for i in range(0, len(splits.test_y), 512):
            correct += int((model(splits.test_x[i:i + 512]).argmax(1) == splits.test_y[i:i + 512]).sum())
    return time.perf_counter() - t0


def trainer_loop(model, splits, epochs: int, batch_size: int, lr: float, seed: int, threads: int) -> float:
    """The same run through ``prunekit.train.fit``; returns the wall time in seconds."""
    from prunekit import train

    cfg = train.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9, weight_decay=5e-4,
                            schedule="cosine", augment=False, progress=False, eval_every=0, seed=seed,
                            num_threads=threads)
    t0 = time.perf_counter()
    train.fit(model, splits, cfg)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    import torch

    from prunekit import data, models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lenet5", "resnet20"])
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    splits = data.load_dataset(args.data)
    steps = args.epochs * math.ceil(len(splits.train_y) / args.batch_size)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        init = models.create(name, num_classes=splits.num_classes, in_channels=splits.in_channels,
                             input_size=splits.image_size)
        times = {"bare": [], "trainer": []}
        # warm-up run of each (first-call allocations, lazy imports)
        bare_loop(copy.deepcopy(init), splits, 1, args.batch_size, args.lr, 0)
        trainer_loop(copy.deepcopy(init), splits, 1, args.batch_size, args.lr, 0, args.threads)
        for r in range(args.repeats):
            order = ("bare", "trainer") if r % 2 == 0 else ("trainer", "bare")
            for which in order:
                net = copy.deepcopy(init)
                if which == "bare":
                    times[which].append(bare_loop(net, splits, args.epochs, args.batch_size, args.lr, r))
                else:
                    times[which].append(trainer_loop(net, splits, args.epochs, args.batch_size, args.lr, r,
                                                     args.threads))
        bare_ms = 1000 * statistics.median(times["bare"]) / steps
        tr_ms = 1000 * statistics.median(times["trainer"]) / steps
        rows.append((name, bare_ms, tr_ms, 100 * (tr_ms / bare_ms - 1),
                     min(times["bare"]) * 1000 / steps, min(times["trainer"]) * 1000 / steps))

    print(f"### Trainer overhead vs a bare loop ({args.data}, batch {args.batch_size}, {args.epochs} epochs = "
          f"{steps} steps + 1 test evaluation per run, {args.threads} thread(s), median of {args.repeats})\n")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{datetime.date.today().isoformat()}\n")
    print("| model | bare loop ms/step | Trainer ms/step | overhead | bare best | Trainer best |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, b, t, o, bmin, tmin in rows:
        print(f"| {name} | {b:.2f} | {t:.2f} | {o:+.1f}% | {bmin:.2f} | {tmin:.2f} |")


if __name__ == "__main__":
    main()
