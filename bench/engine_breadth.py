"""Breadth run: which architectures prunekit and Torch-Pruning 1.6.1 prune, how much, how fast.

For every zoo model and every test architecture in ``tests/graph`` (constructs,
ResNeXt, DenseNet, EfficientNet, RegNet, ConvNeXt, Inception, GhostNet, ViTs,
nn.MultiheadAttention), each library prunes 50% of channels (L2 magnitude,
final classifier ignored). Recorded per library: wall time, parameters kept,
whether the pruned model still runs and gives outputs of the original shapes,
and, for prunekit, whether removal equals masking where the model has no
normalisation across channels.

Usage:
    python bench/engine_breadth.py            # prints a Markdown table
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path


def _last_linear(net):
    import torch.nn as nn

    last = None
    for m in net.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    import torch

    import prunekit
    from prunekit import models
    from tests.graph.arch_models import CONSTRUCTS
    from tests.graph.breadth_models import BREADTH
    from tests.graph.helpers import flat_outputs, make_inputs, randomize, rel_err

    try:
        import torch_pruning as tp
    except ImportError:
        tp = None
    torch.set_num_threads(args.threads)

    cases = []
    for name in models.list_models():
        info = models.model_info(name)
        cases.append((f"zoo:{name}", lambda name=name: models.create(name, num_classes=10, in_channels=3),
                      [(3, *info.input_size)], True))
    for name, (fn, shapes, exact) in {**CONSTRUCTS, **BREADTH}.items():
        cases.append((f"test:{name}", fn, shapes, exact))

    rows = []
    for label, fn, shapes, exact in cases:
        torch.manual_seed(0)
        net = randomize(fn())
        x = make_inputs(shapes, batch=1)
        with torch.no_grad():
            ref = net(*x)
        p0 = sum(p.numel() for p in net.parameters())
        row = {"model": label}
        # prunekit
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                work = copy.deepcopy(net)
                t = time.perf_counter()
                plan = prunekit.plan(work, x, criterion="l2", ratio=args.ratio, ignored_layers=[_last_linear(work)]
                                     if _last_linear(work) is not None else None)
                small = plan.apply(work, inplace=True)
                row["pk_time"] = time.perf_counter() - t
            with torch.no_grad():
                out = small(*x)
            ok = [o.shape for o in flat_outputs(out)] == [o.shape for o in flat_outputs(ref)]
            if exact:
                masked = plan.apply_masks(net)
                with torch.no_grad():
                    ok = ok and rel_err(out, masked(*x)) < 1e-4
            row["pk_kept"] = sum(p.numel() for p in small.parameters()) / p0
            row["pk_ok"] = "exact" if (ok and exact) else ("runs" if ok else "WRONG")
            row["pk_warn"] = len(w)
        except Exception as e:  # recorded, not raised: this is a survey
            row["pk_ok"] = f"error: {type(e).__name__}"
        # torch-pruning
        if tp is not None:
            try:
                work = copy.deepcopy(net)
                ex = x[0] if len(x) == 1 else x
                t = time.perf_counter()
                last = _last_linear(work)
                pruner = tp.pruner.MetaPruner(work, ex, importance=tp.importance.MagnitudeImportance(p=2),
                                              pruning_ratio=args.ratio, ignored_layers=[last] if last else [])
                pruner.step()
                row["tp_time"] = time.perf_counter() - t
                with torch.no_grad():
                    out = work(*x)
                ok = [o.shape for o in flat_outputs(out)] == [o.shape for o in flat_outputs(ref)]
                row["tp_kept"] = sum(p.numel() for p in work.parameters()) / p0
                row["tp_ok"] = "runs" if ok else "wrong shape"
            except Exception as e:
                row["tp_ok"] = f"error: {type(e).__name__}"
        rows.append(row)
        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    print(f"### Breadth: {len(rows)} architectures, ratio {args.ratio}, L2, classifier ignored\n")
    print("prunekit 'exact' = pruned output equals the masked dense model (1e-4); 'runs' = output shapes right "
          "(models with LayerNorm/GroupNorm across channels, where masking differs by design). "
          "Torch-Pruning is only checked for running with the right output shapes.\n")
    print("| model | prunekit | params kept | time s | warnings | Torch-Pruning 1.6.1 | params kept | time s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r.get('pk_ok', '-')} | {f(r.get('pk_kept'), '.3f')} | {f(r.get('pk_time'), '.3f')} "
              f"| {r.get('pk_warn', '-')} | {r.get('tp_ok', '-')} | {f(r.get('tp_kept'), '.3f')} | "
              f"{f(r.get('tp_time'), '.3f')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
