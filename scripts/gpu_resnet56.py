"""One command, one GPU: the CIFAR-10 ResNet-56 2.11x protocol of Torch-Pruning's table, end to end (~15 min).

1. Train a ResNet-56 base on CIFAR-10 (the JPEG copy, ``--data cifar10-jpeg``) with the CIFAR augmentation.
2. Prune it to 1/2.11 of its MACs (one counter, ``prunekit.measure.count_macs``) with prunekit's l1 and
   slimming (and fpgm) and with Torch-Pruning's L1 magnitude, group-norm (DepGraph group sparsity) and
   BN-scale (slimming) pruners, on the same base weights (the rows of scripts/reproduce_methods.py).
3. Fine-tune every row with the same schedule on the GPU; final-epoch top-1, mean +- std over seeds.
4. Write ``docs/results/methods_cifar10_resnet56_gpu.md`` (+ ``.json``) with Torch-Pruning's published table
   (L1 92.93, Slimming 93.29, DepGraph group sparsity 93.77 from 93.53) beside ours, labelled as theirs.

The default schedule (40 base epochs, 15 fine-tuning epochs, 1 seed) is far shorter than the papers'
(~200 + 100 epochs) so that it fits about 15 minutes on one GPU; ``--seeds 0,1,2`` for three seeds.
Resumable: rerunning skips the finished base and (row, seed) pairs kept under ``--out-dir``.

Run: ``PYTHONPATH=src .venv/bin/python scripts/gpu_resnet56.py`` (``--dry-run`` prints the plan; ``--tiny``
runs the whole pipeline on a CPU in a minute: 512 images, 1 epoch, for testing).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reproduce_methods as rm  # noqa: E402
from repro_lib import ROOT, _atomic_json, markdown_table, run_rows  # noqa: E402

SPEEDUP = 2.11
BASE = "cifar10_resnet56"


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="cifar10-jpeg", help="dataset name for prunekit.data.load_dataset")
    ap.add_argument("--model", default="resnet56")
    ap.add_argument("--base-epochs", type=int, default=40)
    ap.add_argument("--finetune-epochs", type=int, default=15)
    ap.add_argument("--sparsity-epochs", type=int, default=5, help="slimming / group-sparsity training epochs")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (pruning, MACs, evaluation)")
    ap.add_argument("--out-dir", default=str(ROOT / "runs" / "gpu_resnet56"))
    ap.add_argument("--page", default=str(ROOT / "docs" / "results" / "methods_cifar10_resnet56_gpu.md"))
    ap.add_argument("--rows", default=None, help="comma-separated subset of the row labels (default: all)")
    ap.add_argument("--part", default=None,
                    help="write this process's runs to OUT_DIR/results.PART.json (several processes side by side on "
                         "one GPU, each with its own --rows after a --base-only run; the page merges them)")
    ap.add_argument("--base-only", action="store_true", help="train (or find) the base network and exit")
    ap.add_argument("--render", action="store_true", help="only rewrite the page from OUT_DIR's results files")
    ap.add_argument("--l1-eval-samples", type=int, default=200,
                    help="images of l1's sensitivity analysis (CPU work: ResNet-56 has 27 channel groups)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: 512/256 images, 1 epoch each, resnet20")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    a = ap.parse_args(argv)
    if a.tiny:
        a.device, a.model, a.base_epochs, a.finetune_epochs, a.sparsity_epochs = "cpu", "resnet20", 1, 1, 1
    for k in ("base_epochs", "finetune_epochs", "sparsity_epochs", "batch_size"):
        if getattr(a, k) < (0 if k != "batch_size" else 1):
            ap.error(f"--{k.replace('_', '-')} must be >= {0 if k != 'batch_size' else 1}")
    a.seeds = tuple(int(s) for s in a.seeds.split(","))
    return a


def schedule(a) -> dict:
    ft = {"epochs": a.finetune_epochs, "lr": 0.01, "batch_size": a.batch_size, "device": a.device}
    sched = {"finetune": ft, "sparsity_epochs": a.sparsity_epochs}
    # l1's sensitivity analysis prunes and evaluates every group at each ratio on the CPU: three ratios
    sched["options"] = {"l1": {"sensitivity_ratios": [0.3, 0.5, 0.7], "eval_samples": a.l1_eval_samples}}
    if a.tiny:  # a short sensitivity analysis and calibration: the smoke test checks the steps, not the numbers
        sched["options"] = {m: {"calib_images": 64} for m in ("l1", "slimming", "fpgm")}
        sched["options"]["l1"].update(sensitivity_ratios=[0.5], eval_samples=64)
    return sched


def load(a):
    from prunekit import data

    splits = data.load_dataset(a.data)
    if a.tiny:  # a fixed small strided slice (the archive is ordered by class), enough to run every step
        tr = slice(None, None, max(1, len(splits.train_y) // 512))
        te = slice(None, None, max(1, len(splits.test_y) // 256))
        splits.train_x, splits.train_y = splits.train_x[tr][:512], splits.train_y[tr][:512]
        splits.test_x, splits.test_y = splits.test_x[te][:256], splits.test_y[te][:256]
    return splits


def train_base(a, splits, base_dir: Path) -> dict:
    """Train (or resume) the base network into ``base_dir/BASE.pt`` + ``.json`` (the files run_rows loads)."""
    import shutil

    from prunekit import models, train

    info_path = base_dir / f"{BASE}.json"
    if info_path.exists():
        return json.loads(info_path.read_text())
    cfg = {"epochs": a.base_epochs, "lr": 0.1, "batch_size": a.batch_size, "schedule": "cosine", "seed": 0,
           "augment": True, "device": a.device, "progress": False, "eval_every": max(1, a.base_epochs // 4)}
    net = models.create(a.model, num_classes=splits.num_classes, in_channels=splits.train_x.shape[1],
                        input_size=tuple(splits.train_x.shape[2:]))
    run = base_dir / "run"
    t0 = time.time()
    train.fit(net, splits, cfg, out_dir=run, resume=(run / "last.pt").exists())
    top1 = train.evaluate(net.cpu(), splits.test_x, splits.test_y)["top1"]
    shutil.copyfile(run / "last.pt", base_dir / f"{BASE}.pt")
    info = {"name": BASE, "model": a.model, "model_kwargs": {}, "data": a.data, "train": cfg, "epochs": a.base_epochs,
            "final_test_top1": top1, "seconds": round(time.time() - t0, 1), "tiny": a.tiny}
    _atomic_json(info_path, info)
    return info


def main(argv=None) -> int:
    import torch

    a = parse(argv)
    budget = round(1 / SPEEDUP, 4)
    sched = schedule(a)
    plan = {"model": a.model, "data": a.data, "device": a.device, "macs_budget": budget, "seeds": a.seeds,
            "base_epochs": a.base_epochs, "schedule": sched, "prunekit": ["l1", "slimming", "fpgm"],
            "torch_pruning": list(rm.TP_KINDS), "out_dir": a.out_dir, "page": a.page}
    print(json.dumps(plan, indent=1))
    if a.dry_run:
        return 0
    out_dir = Path(a.out_dir)
    base_dir = out_dir / "base"
    if a.render:  # no GPU needed: the page from the results files
        info = json.loads((base_dir / f"{BASE}.json").read_text())
        write_page(a, merged_results(out_dir), table_rows(a, info, sched, budget, out_dir), budget, Path(a.page))
        return 0
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on a GPU machine, or use --tiny / --device cpu")
    if a.threads:
        torch.set_num_threads(a.threads)
    base_dir.mkdir(parents=True, exist_ok=True)
    splits = load(a)
    info = train_base(a, splits, base_dir)
    if a.base_only:
        print(f"base {a.model}: top-1 {info['final_test_top1']:.2f}% after {info['epochs']} epochs")
        return 0
    rows = table_rows(a, info, sched, budget, out_dir)
    if a.rows:
        rows = [r for r in rows if r.label in a.rows.split(",")]
    run_rows(BASE, rows, seeds=a.seeds, finetune={**sched["finetune"], "eval_every": 0, "checkpoint_every": 0},
             results_path=out_dir / (f"results.{a.part}.json" if a.part else "results.json"), base_dir=base_dir,
             keep_going=True, splits=splits)
    write_page(a, merged_results(out_dir), table_rows(a, info, sched, budget, out_dir), budget, Path(a.page))
    return 0


def table_rows(a, info, sched, budget, out_dir: Path):
    """The protocol's rows: prunekit l1 / slimming / fpgm and Torch-Pruning's three pruners."""
    return rm.rows_for(BASE, info, out_dir / "pruned", sched=sched, budget=budget,
                       methods=("l1", "slimming", "fpgm"), scratch=False)


def merged_results(out_dir: Path) -> dict:
    """``results.json`` with the runs of every ``results.PART.json`` (``--part``) merged in."""
    files = sorted(out_dir.glob("results*.json"))
    if not files:
        raise SystemExit(f"no results in {out_dir}: run the rows first")
    results = json.loads(files[0].read_text())
    for f in files[1:]:
        extra = json.loads(f.read_text())
        for key in ("runs", "skipped", "failed"):
            results.setdefault(key, {}).update(extra.get(key) or {})
    return results


def write_page(a, results: dict, rows, budget: float, page: Path) -> None:
    L = [f"# {a.data} {a.model} at {SPEEDUP}x fewer MACs (GPU protocol){' - TINY SMOKE RUN' if a.tiny else ''}", "",
         f"Generated by `scripts/gpu_resnet56.py` on {time.strftime('%Y-%m-%d')} ({results['machine']}, device "
         f"{a.device}). Base {a.model}: {results['base_info']['epochs']} epochs (cosine, lr 0.1, CIFAR augmentation), "
         f"top-1 {results['dense']['top1']:.2f}%. Every row pruned to at most {budget} of the MACs "
         f"(`prunekit.measure.count_macs`), fine-tuned {a.finetune_epochs} epochs (lr 0.01, cosine); sparsity "
         f"training {a.sparsity_epochs} epochs for slimming / Torch-Pruning group-norm and slimming. Seeds "
         f"{', '.join(map(str, a.seeds))}; final-epoch top-1, mean +- std.", "",
         markdown_table(results, rows), "", "What the table says:", ""] + rm.observations(results, rows) + [""]
    L += ["## Torch-Pruning's published table (theirs)", "",
          "**Theirs, not ours**: Torch-Pruning benchmarks README / DepGraph (Fang et al., CVPR 2023), ResNet-56 on "
          "CIFAR-10 at 2.11x, their base and their much longer schedule.", "",
          "| method (theirs) | base top-1 | pruned top-1 | speed-up |", "|---|---:|---:|---:|"]
    L += [f"| {m} | {b}% | {p}% | {s} |" for m, b, p, s in rm.TP_PUBLISHED] + [""]
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(L))
    _atomic_json(page.with_suffix(".json"), results)
    print(f"wrote {page}")


if __name__ == "__main__":
    raise SystemExit(main())
