"""Benchmark: wall time of the default ``prunekit search`` (MetaPruning and AutoSlim) and its accuracy.

Issue 18 asks that the default search finish within 5 minutes on VGG-11 and
ResNet-20 on an idle 2-core CPU. For each model this script

1. trains the model on the dataset (``--train-epochs``; not part of the timing,
   cached as ``OUT/MODEL.pt`` and reused by later runs),
2. runs the search command exactly as a user would, in a fresh process:
   ``prunekit search CKPT --method M --macs 0.3 --data mnist5k --out DIR`` (the
   ``fast`` preset, i.e. the defaults), timed end to end (process start, imports and
   data loading included),
3. reads the search's ``report.json``: wall time per phase (``seconds``: space
   analysis, super-network training, search, fine-tuning, total inside the call),
   the number of candidates evaluated, MACs kept and test top-1 before and after
   fine-tuning, against the full model's.

``--thorough MODEL`` also runs both methods on that model with ``--preset thorough``
(the settings before the presets: the papers' evolution, 5+5 epochs; tens of minutes
each on 2 cores), so the fast preset's accuracy can be set against the slow one's.

Run (idle machine):
    .venv/bin/python bench/search_time.py --out /tmp/search_time [--thorough vgg11]
Check that it works (seconds, tiny model and data, not a timing):
    .venv/bin/python bench/search_time.py --quick --out /tmp/search_time_quick
Prints a Markdown table (paste into docs/bench/search.md) and writes OUT/results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

LIMIT_S = 300.0  # the bound for the whole default command


def _train(model: str, data: str, epochs: int, out: Path, quick: bool) -> Path:
    """The trained checkpoint of ``model`` on ``data`` (trained once, then reused)."""
    path = out / f"{model}_{data}_e{epochs}.pt"
    if path.exists():
        return path
    import torch

    from prunekit import checkpoint, models
    from prunekit.data import load_dataset
    from prunekit.train import TrainConfig, fit

    d = load_dataset(data)
    torch.manual_seed(0)
    m = models.create(model, num_classes=d.num_classes, in_channels=d.input_shape[0], input_size=d.image_size)
    if epochs > 0:
        fit(m, d, TrainConfig(epochs=epochs, batch_size=64 if not quick else 256, lr=0.05, eval_every=0,
                              progress=False))
    checkpoint.save(path, m.eval())
    return path


def _run_search(ckpt: Path, method: str, args, preset: str, out: Path) -> dict:
    """One ``prunekit search`` in a fresh process; its report plus the command's own wall time."""
    argv = [sys.executable, "-m", "prunekit.cli", "search", str(ckpt), "--method", method, "--macs", str(args.macs),
            "--data", args.data, "--out", str(out), "--overwrite", "--no-progress", "--json", "--preset", preset]
    if args.quick:  # tiny settings: checks the script, times nothing
        argv += ["--epochs", "1", "--supernet-samples", "256", "--finetune-epochs", "1", "--iterations", "2",
                 "--population", "4", "--eval-samples", "64"]
    if args.workers is not None:
        argv += ["--workers", str(args.workers)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"search failed ({' '.join(argv)}):\n{proc.stderr[-2000:]}")
    rep = json.loads((out / "report.json").read_text())
    rep = rep.get("result", rep) if "test_top1" not in rep else rep
    return {"method": method, "preset": preset, "command_s": wall, "seconds": rep.get("seconds", {}),
            "candidates": rep.get("candidates_evaluated"), "macs_fraction": rep["macs_fraction"],
            "top1_before": rep["test_top1_before_finetune"], "top1": rep["test_top1"],
            "top1_full": rep["test_top1_full_model"], "command": " ".join(argv[1:])}


def _table(rows: list) -> list[str]:
    lines = ["| model | method | preset | command s | super-net s | search s | fine-tune s | candidates "
             "| MACs kept | top-1 before FT | top-1 | full model | under 5 min |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        s = r["seconds"]
        lines.append(f"| {r['model']} | {r['method']} | {r['preset']} | {r['command_s']:.0f} | "
                     f"{s.get('supernet', 0):.0f} | {s.get('search', 0):.0f} | {s.get('finetune', 0):.0f} | "
                     f"{r['candidates']} | {100 * r['macs_fraction']:.1f}% | {r['top1_before']:.2f} | "
                     f"{r['top1']:.2f} | "
                     f"{r['top1_full']:.2f} | {'yes' if r['command_s'] <= LIMIT_S else 'NO'} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="vgg11,resnet20", help="zoo models, comma separated")
    ap.add_argument("--methods", default="metapruning,autoslim")
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--macs", type=float, default=0.3)
    ap.add_argument("--train-epochs", type=int, default=3, help="training of the checkpoint searched (not timed)")
    ap.add_argument("--thorough", metavar="MODEL", help="also run the thorough preset on this model (slow)")
    ap.add_argument("--workers", type=int, help="--workers of the searches (default: the search's own)")
    ap.add_argument("--quick", action="store_true", help="tiny model and settings: checks the script in seconds")
    ap.add_argument("--out", required=True, help="folder for checkpoints, search runs and results.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.data, args.train_epochs = "convnet3", "digits", 1
        args.macs = 0.5
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    models = [m for m in args.models.split(",") if m]
    runs = [(m, meth, "fast") for m in models for meth in args.methods.split(",")]
    if args.thorough:
        runs += [(args.thorough, meth, "thorough") for meth in args.methods.split(",")]
    for model, method, preset in runs:
        ckpt = _train(model, args.data, args.train_epochs, out, args.quick)
        row = {"model": model, **_run_search(ckpt, method, args, preset, out / f"{model}_{method}_{preset}")}
        rows.append(row)
        print(f"{model} {method} {preset}: {row['command_s']:.1f} s, top-1 {row['top1']:.2f}%", file=sys.stderr)
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "data": args.data, "macs": args.macs, "train_epochs": args.train_epochs, "quick": args.quick}
    (out / "results.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    print(f"Search wall time (`bench/search_time.py`, {args.data}, {100 * args.macs:.0f}% MACs, "
          f"{os.cpu_count()} CPUs{', QUICK: not a timing' if args.quick else ''}):\n")
    print("\n".join(_table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
