"""Cost of the weight-mask machinery per training step (prints a Markdown block).

Claim checked (issue 5): masking adds at most 10% to a training step of
LeNet-300-100 and of ResNet-20. One training step is
``zero_grad -> forward -> cross-entropy -> backward -> SGD(momentum, weight decay) step``
on a fixed random batch. Variants, timed *interleaved* step by step so background load on
a shared machine hits all alike (figures are medians over ``--steps`` steps):

* ``dense``: the plain step;
* ``callback``: the step plus what :class:`prunekit.sparse.MaskCallback` does
  (gradients masked after backward, weights re-masked after the optimizer step) -- the
  callback's own methods are called, exactly as the Trainer calls them;
* ``guard``: the step under :class:`prunekit.sparse.MaskGuard` (post-accumulate-grad
  hooks plus an optimizer step post-hook), the helper for hand-written loops.

Each variant trains its own copy of the model (same initial weights), so hooks of one
variant never run in another.

Every prunable weight (all Conv/Linear weights) is masked at 90% sparsity.

A second table times whole ``prunekit.train.Trainer.fit`` epochs (loader, loss
bookkeeping, learning-rate schedule included) with and without ``MaskCallback``.

Run: ``.venv/bin/python bench/sparse_overhead.py [--steps 200] [--resnet-steps 40] [--trials 5] [--threads 1]``.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time


def make_step(model, opt, x, y):
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()

    def step(after_backward=None, after_step=None):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        if after_backward is not None:
            after_backward()
        opt.step()
        if after_step is not None:
            after_step()

    return step


def bench_model(name: str, build, x, steps: int, warmup: int = 10) -> dict:
    """Median step times of the three variants; each variant trains its own copy of the model."""
    import torch

    from prunekit.sparse import MaskCallback, MaskGuard, magnitude_masks

    y = torch.randint(0, 10, (x.shape[0],), generator=torch.Generator().manual_seed(0))
    nets = {k: build() for k in ("dense", "callback", "guard")}
    for net in nets.values():
        net.load_state_dict(nets["dense"].state_dict())
    masks = magnitude_masks(nets["dense"], 0.9)
    opts = {k: torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4) for k, n in nets.items()}
    steps_fn = {k: make_step(nets[k], opts[k], x, y) for k in nets}
    cb = MaskCallback(masks)
    trainer = type("TrainerStub", (), {"model": nets["callback"]})()
    cb.on_train_begin(trainer)
    MaskGuard(nets["guard"], masks, opts["guard"]).attach()  # hooks stay for the whole run, as in real use

    variants = {
        "dense": lambda: steps_fn["dense"](),
        "callback": lambda: steps_fn["callback"](lambda: cb.on_after_backward(trainer),
                                                 lambda: cb.on_step_end(trainer, 0)),
        "guard": lambda: steps_fn["guard"](),
    }
    times = {k: [] for k in variants}
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    for _ in range(steps):
        for k, fn in variants.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    for k in ("callback", "guard"):  # sanity: the masks did their job
        p = dict(nets[k].named_parameters())
        assert all(bool((p[n].detach()[~m] == 0).all()) for n, m in masks.items()), k
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    n_masked = sum(m.numel() for m in masks.values())
    return {"model": name, "batch": x.shape[0], "masked_weights": n_masked, **med,
            "callback_overhead": med["callback"] / med["dense"] - 1.0,
            "guard_overhead": med["guard"] / med["dense"] - 1.0}


def bench_trainer(name: str, build, shape, n_train: int, trials: int) -> dict:
    """Seconds per optimizer step of one ``Trainer.fit`` epoch, without and with MaskCallback (interleaved)."""
    import torch

    from prunekit.data import DatasetSplits
    from prunekit.sparse import MaskCallback, magnitude_masks
    from prunekit.train import Trainer

    g = torch.Generator().manual_seed(0)
    data = DatasetSplits(name="random", train_x=torch.randn(n_train, *shape, generator=g),
                         train_y=torch.randint(0, 10, (n_train,), generator=g),
                         test_x=torch.randn(10, *shape, generator=g), test_y=torch.randint(0, 10, (10,), generator=g),
                         num_classes=10, in_channels=shape[0], image_size=tuple(shape[1:]),
                         mean=(0.0,) * shape[0], std=(1.0,) * shape[0], domain="synthetic")
    cfg = {"epochs": 1, "batch_size": 128 if name.startswith("lenet") else 64, "lr": 0.01, "augment": False,
           "progress": False, "eval_every": 0}
    times = {"dense": [], "callback": []}
    for t in range(trials + 1):
        for k in times:
            torch.manual_seed(0)
            net = build()
            cbs = [MaskCallback(magnitude_masks(net, 0.9))] if k == "callback" else []
            trainer = Trainer(net, data, cfg, callbacks=cbs)
            t0 = time.perf_counter()
            trainer.fit()
            if t:  # the first round warms up
                times[k].append((time.perf_counter() - t0) / trainer.steps_per_epoch)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    overheads = [c / d - 1.0 for c, d in zip(times["callback"], times["dense"])]
    return {"model": name, "batch": cfg["batch_size"], **med, "overhead": statistics.median(overheads),
            "trials": overheads}


def main(argv=None) -> int:
    import torch

    from prunekit import models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="timed steps per variant (default 200)")
    ap.add_argument("--resnet-steps", type=int, default=40, help="timed steps for ResNet-20 (default 40)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trials", type=int, default=5, help="independent trials per model (default 5)")
    ap.add_argument("--skip-trainer", action="store_true", help="skip the Trainer.fit measurement")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), {datetime.date.today()}; shared and noisy machine: each trial is a median "
          f"of interleaved steps, and the overhead column is the median over {args.trials} trials "
          "(per-trial overheads in brackets).")
    print()
    print("| model | batch | masked weights | dense step (ms) | + MaskCallback (ms) | overhead | "
          "+ MaskGuard (ms) | overhead |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    cases = [("lenet300_100", lambda: models.create("lenet300_100", in_channels=1), (128, 1, 28, 28), args.steps),
             ("resnet20", lambda: models.create("resnet20", in_channels=3), (64, 3, 32, 32), args.resnet_steps)]
    for name, build, shape, steps in cases:
        trials = []
        for t in range(args.trials):
            torch.manual_seed(t)
            trials.append(bench_model(name, build, torch.randn(*shape), steps))
        med = {k: statistics.median(r[k] for r in trials) for k in ("dense", "callback", "guard",
                                                                     "callback_overhead", "guard_overhead")}
        per = lambda k: ", ".join(f"{100 * r[k]:+.0f}%" for r in trials)  # noqa: E731
        r0 = trials[0]
        print(f"| {name} | {r0['batch']} | {r0['masked_weights']:,} | {med['dense']:.3f} | {med['callback']:.3f} | "
              f"{100 * med['callback_overhead']:+.1f}% [{per('callback_overhead')}] | {med['guard']:.3f} | "
              f"{100 * med['guard_overhead']:+.1f}% [{per('guard_overhead')}] |")
    if args.skip_trainer:
        return 0
    print()
    print("Inside `prunekit.train.Trainer.fit` (what a user runs: one epoch on random data, no evaluation "
          "during the epoch, ms per optimizer step; median over trials, per-trial overheads in brackets):")
    print()
    print("| model | batch | Trainer step (ms) | + MaskCallback (ms) | overhead |")
    print("|---|---:|---:|---:|---:|")
    for name, build, shape, n in (
            ("lenet300_100", lambda: models.create("lenet300_100", in_channels=1), (1, 28, 28), 16384),
            ("resnet20", lambda: models.create("resnet20", in_channels=3), (3, 32, 32), 640)):
        r = bench_trainer(name, build, shape, n, args.trials)
        trials = ", ".join(f"{100 * o:+.0f}%" for o in r["trials"])
        print(f"| {name} | {r['batch']} | {r['dense']:.3f} | {r['callback']:.3f} | "
              f"{100 * r['overhead']:+.1f}% [{trials}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
