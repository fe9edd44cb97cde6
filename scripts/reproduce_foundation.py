"""Check the foundation's 'done when' figures and write docs/results/foundation.md.

Runs, through the real command line, exactly what a user would run:

    prunekit demo --json
    prunekit train --model vgg11    --data mnist5k --epochs 15 --out DIR --json
    prunekit train --model resnet20 --data mnist5k --epochs 15 --out DIR --json

and records the final test accuracy and the wall time of each.

    python scripts/reproduce_foundation.py [--threads 2] [--out runs/foundation]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], threads: int) -> tuple[dict, float]:
    env = dict(os.environ, PRUNEKIT_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "prunekit", *args, "--json"], capture_output=True, text=True,
                         env=env, check=False)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"prunekit {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1]), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/foundation")
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    rows = []
    if not args.skip_demo:
        demo, secs = run_cli(["demo", "--out", str(out / "demo"), "--no-progress", "--threads", str(args.threads)],
                             args.threads)
        rows.append(("`prunekit demo` (LeNet-5, 12 epochs)", demo["trained"]["top1"], secs, ">= 97%, <= 5 min"))
    for model in ("vgg11", "resnet20"):
        res, secs = run_cli(["train", "--model", model, "--data", "mnist5k", "--epochs", "15", "--out",
                             str(out / model), "--no-progress", "--threads", str(args.threads)], args.threads)
        rows.append((f"`prunekit train --model {model} --data mnist5k --epochs 15`", res["final"]["test_top1"],
                     secs, ">= 98%"))
    lines = [
        "# Foundation: training on mnist5k",
        "",
        "The foundation issue's acceptance runs, through the command line with default settings. "
        "Accuracy is the final epoch's top-1 on the 1,000-digit mnist5k test split (not the best epoch).",
        "",
        f"Command: `python scripts/reproduce_foundation.py --threads {args.threads}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared, other jobs running), "
        f"torch {__import__('torch').__version__}, {args.threads} threads. Date: {datetime.date.today()}.",
        "",
        "| run | test top-1 | wall time | goal |",
        "|---|---|---|---|",
    ]
    for name, top1, secs, goal in rows:
        lines.append(f"| {name} | {top1:.2f}% | {secs:.0f} s | {goal} |")
    target = ROOT / "docs" / "results" / "foundation.md"
    target.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
