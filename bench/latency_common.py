"""Shared parts of bench/speedup_vs_macs.py and bench/latency_target.py (not a benchmark itself).

* :func:`build` makes the benchmark models: the zoo's ResNet-50 and MobileNet v2, and
  :class:`YoloStyle`, a YOLOv5s-style detector (CSP backbone with C3 blocks, SPPF, a
  PAN neck with upsampling and concatenation, three 1x1 detection heads), written here
  because the zoo holds classifiers only;
* :func:`tp_prune_to_macs` prunes with Torch-Pruning 1.6.1 (``MetaPruner``, L2 magnitude,
  uniform ratio) to a MACs fraction, bisecting its channel ratio;
* :func:`time_models` times several models interleaved (``prunekit.measure.runtimes``)
  and gives each one's latency ratio to the first with a bootstrap 95% interval;
  :func:`time_sessions` repeats that in several independent sessions and gives the median
  and the interval over sessions (``prunekit.measure.sessions``);
* :func:`write_section` writes a markdown file atomically.
"""
from __future__ import annotations

import copy
import platform
import time

import torch
import torch.nn as nn


class ConvBnAct(nn.Sequential):
    def __init__(self, cin, cout, k=1, s=1, p=None):
        super().__init__(nn.Conv2d(cin, cout, k, s, k // 2 if p is None else p, bias=False), nn.BatchNorm2d(cout),
                         nn.SiLU())


class Bottleneck(nn.Module):
    def __init__(self, c, shortcut=True):
        super().__init__()
        self.cv1, self.cv2, self.add = ConvBnAct(c, c, 1), ConvBnAct(c, c, 3), shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """YOLOv5's CSP block: two 1x1 branches, bottlenecks on one, concatenated and fused."""

    def __init__(self, cin, cout, n=1, shortcut=True):
        super().__init__()
        h = cout // 2
        self.cv1, self.cv2, self.cv3 = ConvBnAct(cin, h), ConvBnAct(cin, h), ConvBnAct(2 * h, cout)
        self.m = nn.Sequential(*[Bottleneck(h, shortcut) for _ in range(n)])

    def forward(self, x):
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class SPPF(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        h = cin // 2
        self.cv1, self.cv2 = ConvBnAct(cin, h), ConvBnAct(4 * h, cout)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat([x, y1, y2, self.pool(y2)], 1))


class YoloStyle(nn.Module):
    """A YOLOv5s-shaped detector (width 0.5, depth 0.33 of YOLOv5l): 80 classes, 3 anchors, 3 scales."""

    def __init__(self, num_classes=80, anchors=3):
        super().__init__()
        out = anchors * (num_classes + 5)
        self.stem = ConvBnAct(3, 32, 6, 2, 2)
        self.b1 = nn.Sequential(ConvBnAct(32, 64, 3, 2), C3(64, 64, 1))
        self.b2 = nn.Sequential(ConvBnAct(64, 128, 3, 2), C3(128, 128, 2))
        self.b3 = nn.Sequential(ConvBnAct(128, 256, 3, 2), C3(256, 256, 3))
        self.b4 = nn.Sequential(ConvBnAct(256, 512, 3, 2), C3(512, 512, 1), SPPF(512, 512))
        self.lat4, self.up = ConvBnAct(512, 256), nn.Upsample(scale_factor=2, mode="nearest")
        self.c3_p4 = C3(512, 256, 1, False)
        self.lat3 = ConvBnAct(256, 128)
        self.c3_p3 = C3(256, 128, 1, False)
        self.down3, self.c3_n4 = ConvBnAct(128, 128, 3, 2), C3(256, 256, 1, False)
        self.down4, self.c3_n5 = ConvBnAct(256, 256, 3, 2), C3(512, 512, 1, False)
        self.head3, self.head4, self.head5 = nn.Conv2d(128, out, 1), nn.Conv2d(256, out, 1), nn.Conv2d(512, out, 1)

    def forward(self, x):
        p3 = self.b2(self.b1(self.stem(x)))
        p4 = self.b3(p3)
        p5 = self.b4(p4)
        l4 = self.lat4(p5)
        n4 = self.c3_p4(torch.cat([self.up(l4), p4], 1))
        l3 = self.lat3(n4)
        o3 = self.c3_p3(torch.cat([self.up(l3), p3], 1))
        o4 = self.c3_n4(torch.cat([self.down3(o3), l3], 1))
        o5 = self.c3_n5(torch.cat([self.down4(o4), l4], 1))
        return self.head3(o3), self.head4(o4), self.head5(o5)

    def heads(self):
        return [self.head3, self.head4, self.head5]


def build(name: str, size: int):
    """``(model, input shape, layers never pruned)`` of a benchmark model at ``size`` x ``size``."""
    from prunekit import models

    torch.manual_seed(0)
    if name == "yolo_style":
        net = YoloStyle().eval()
        return net, (3, size, size), net.heads()
    net = models.create(name, num_classes=1000, in_channels=3, input_size=(size, size)).eval()
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    return net, (3, size, size), [last]


def macs_of(model, x) -> float:
    from prunekit.measure import count_macs

    return float(count_macs(model, x).total)


def tp_prune_to_macs(dense, x, macs: float, ignored, steps: int = 5):
    """Torch-Pruning 1.6.1's uniform L2 pruning at the channel ratio that keeps ``macs`` of the MACs.

    Bisection on the ratio around ``1 - sqrt(macs)`` (MACs of a conv fall with both its
    widths); returns ``(model, MACs fraction, ratio)`` of the closest try.
    """
    try:
        import torch_pruning as tp
    except ImportError:
        raise SystemExit("install the benchmark-only dependency: pip install --no-deps torch-pruning==1.6.1")
    base = macs_of(dense, x)
    names = {id(m): n for n, m in dense.named_modules()}
    ignored_names = [names[id(m)] for m in ignored]

    def run(ratio):
        net = copy.deepcopy(dense)
        mods = dict(net.named_modules())
        pruner = tp.pruner.MetaPruner(net, x, importance=tp.importance.MagnitudeImportance(p=2),
                                      pruning_ratio=ratio, ignored_layers=[mods[n] for n in ignored_names])
        pruner.step()
        return net.eval(), macs_of(net, x) / base

    guess = 1 - macs ** 0.5
    lo, hi, best = max(0.0, guess - 0.12), min(0.9, guess + 0.12), None
    for _ in range(steps):
        mid = (lo + hi) / 2
        net, f = run(mid)
        if best is None or abs(f - macs) < abs(best[1] - macs):
            best = (net, f, mid)
        lo, hi = (mid, hi) if f > macs else (lo, mid)
    return best


def time_models(named: dict, x, threads: int, rounds: int, until_within: float | None = None,
                max_time_s: float = 120.0, first: int = 0) -> dict:
    """Every model timed interleaved on ``x``; ``{name: {"ms", "ratio", "low", "high", "rounds"}}`` (ratio to the first).

    prunekit's one timing loop (``prunekit.measure.interleave``: rotated order, one untimed call per
    turn). ``until_within``: go on past ``rounds`` until every interval's half-width is at most this
    share of its ratio, or ``max_time_s`` passed. ``first``: the model timed first in round 0 (the
    ratios stay relative to the first of ``named``).
    """
    import statistics

    from prunekit.measure.interleave import interleave, stop_rule
    from prunekit.measure.runtimes import ratio_interval, within_interval
    from prunekit.measure.threads import num_threads

    names = list(named)
    names = names[first % len(names):] + names[:first % len(names)]  # the timing order; ratios to the reference
    ref = list(named)[0]
    fns = []
    for n in names:
        m = named[n].eval()

        def call(m=m):
            with torch.inference_mode():
                m(x)
        fns.append(call)

    def tight(times) -> bool:
        r = times[names.index(ref)]
        return all(within_interval(r, t, until_within) for t in times)

    done, _ = stop_rule(rounds, is_tight=tight if until_within else None, max_time_s=max_time_s,
                        start=time.perf_counter())
    with num_threads(threads):
        times = interleave(fns, done, warmup=2, warm_calls=1, min_turn_s=0.005)
    out = {}
    base = times[names.index(ref)]
    for n in named:
        t = times[names.index(n)]
        r, lo, hi = ratio_interval(base, t)
        out[n] = {"ms": 1000 * statistics.median(t), "ratio": r, "low": lo, "high": hi, "rounds": len(t)}
    return out


def time_sessions(named: dict, x, threads: int, rounds: int, sessions: int = 5, pause_s: float = 0.25) -> dict:
    """Every model's latency ratio to the first of ``named``, over ``sessions`` independent interleaved sessions.

    Session ``k`` times fresh deep copies of every model (new allocations) for exactly ``rounds``
    rounds (:func:`time_models`), the model timed first rotating between sessions, after a pause of
    ``pause_s``. Returns ``{name: SessionSpeed}`` for every model but the first
    (``prunekit.measure.sessions.summarize_sessions``: median over sessions, the distribution-free
    interval over sessions, each session's own interval kept).
    """
    from prunekit.measure.runtimes import RuntimeSpeed
    from prunekit.measure.sessions import summarize_sessions

    names = list(named)
    per = {n: [] for n in names[1:]}
    for k in range(sessions):
        if k and pause_s:
            time.sleep(pause_s)
        fresh = {n: copy.deepcopy(m) for n, m in named.items()}
        res = time_models(fresh, x.clone(), threads, rounds, first=k)
        del fresh
        for n in names[1:]:
            r = res[n]
            per[n].append(RuntimeSpeed("eager", int(x.shape[0]), int(threads), res[names[0]]["ms"], r["ms"],
                                       r["ratio"], r["low"], r["high"], r["rounds"]))
    return {n: summarize_sessions(v) for n, v in per.items()}


def machine_line(threads: int) -> str:
    return (f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {threads} threads, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}. Date: {time.strftime('%Y-%m-%d')}.")


def write_section(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (the folder is created)."""
    from pathlib import Path

    from prunekit.utils.io import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as f:
        f.write(text)


def publish(text: str, out, quick: bool, benchmarks_lines=None) -> None:
    """Print the page (and the lines for BENCHMARKS.md, if any); write it to ``out`` unless ``quick``."""
    import sys

    print(text)
    if benchmarks_lines is not None:
        print("\nBENCHMARKS.md lines:")
        print("\n".join(benchmarks_lines))
    if not quick:
        write_section(out, text)
        print(f"\nwrote {out}", file=sys.stderr)
