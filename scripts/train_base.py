"""Train the base networks every reproduction starts from, once, and commit them.

Every method in docs/RESULTS.md that prunes a trained network starts from the same weights: the
final-epoch checkpoint this script writes to ``docs/results/base/<name>.pt`` with its training
history (``<name>.history.json``) and the settings (``<name>.json``). Runs are resumable: an
interrupted run continues from ``runs/base/<name>/last.pt`` with ``--resume`` (on a fresh clone, from
the committed partial snapshot that ``--snapshot`` published).

Run: ``.venv/bin/python scripts/train_base.py fashion_mnist_lenet5`` (or ``--list``; ``all``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "base"

#: name -> (zoo model, model kwargs, dataset, TrainConfig keys). The schedules are sized for a 2-core CPU.
BASES = {
    "fashion_mnist_lenet5": ("lenet5", {}, "fashion-mnist",
                             {"epochs": 15, "lr": 0.05, "batch_size": 64, "schedule": "cosine", "seed": 0}),
    # a small BatchNorm network for the methods that read BN parameters (slimming, SCP): the CIFAR-style
    # VGG of the zoo with three conv-BN-ReLU-pool stages of 8/16/32 channels (about LeNet-5's MACs)
    "fashion_mnist_vgg_bn": ("vgg11", {"cfg": [8, "M", 16, "M", 32, "M"]}, "fashion-mnist",
                             {"epochs": 10, "lr": 0.05, "batch_size": 64, "schedule": "cosine", "seed": 0}),
    # a small VGG (BatchNorm after every conv, so Network Slimming applies); 28 -> 14 -> 7 -> 3 px
    "fashion_mnist_vgg_small": ("vgg11", {"cfg": [32, "M", 64, "M", 128, 128, "M", 256, 256]}, "fashion-mnist",
                                {"epochs": 10, "lr": 0.05, "batch_size": 128, "schedule": "cosine", "seed": 0}),
    "fashion_mnist_resnet20": ("resnet20", {}, "fashion-mnist",
                               {"epochs": 10, "lr": 0.1, "batch_size": 128, "schedule": "cosine", "seed": 0}),
    # CIFAR-10 (JPEG copy) with the CIFAR augmentation (pad-4 crop + flip, TrainConfig.augment=True).
    # Short schedules sized for a 2-core CPU (~3 min/epoch for ResNet-20): far below the papers' 160-300 epochs.
    "cifar10_resnet20": ("resnet20", {}, "cifar10-jpeg",
                         {"epochs": 15, "lr": 0.1, "batch_size": 128, "schedule": "cosine", "seed": 0,
                          "augment": True}),
    "cifar10_vgg_small": ("vgg11", {"cfg": [32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 256, 256]},
                          "cifar10-jpeg",
                          {"epochs": 15, "lr": 0.05, "batch_size": 128, "schedule": "cosine", "seed": 0,
                           "augment": True}),
}


def train_one(name: str, resume: bool, threads: int | None) -> dict:
    """Train base network ``name`` and copy its final-epoch checkpoint into docs/results/base/."""
    import torch

    from prunekit import data, models, train

    if threads:
        torch.set_num_threads(threads)
    arch, kwargs, dataset, cfg = BASES[name]
    splits = data.load_dataset(dataset)
    net = models.create(arch, num_classes=splits.num_classes, in_channels=splits.train_x.shape[1],
                        input_size=tuple(splits.train_x.shape[2:]), **kwargs)
    run_dir = ROOT / "runs" / "base" / name
    if resume:
        restore_partial(name, run_dir)
    t0 = time.time()
    history = train.fit(net, splits, {**cfg, "progress": sys.stderr.isatty()}, out_dir=run_dir,
                        resume=resume and (run_dir / "last.pt").exists())
    return publish(name, run_dir, len(history), round(time.time() - t0, 1), torch.get_num_threads())


def restore_partial(name: str, run_dir: Path) -> bool:
    """Seed ``run_dir`` from the committed partial snapshot when the run folder is missing (a fresh clone).

    ``--snapshot`` publishes an unfinished run's ``last.pt`` (which holds the optimizer and schedule
    state) and history; copying them back lets ``--resume`` continue on another machine exactly where
    the committed run stopped. A run folder that already has ``last.pt`` is left alone.
    """
    info_path, ckpt = OUT / f"{name}.json", OUT / f"{name}.pt"
    if (run_dir / "last.pt").exists() or not info_path.exists() or not ckpt.exists():
        return False
    if not json.loads(info_path.read_text()).get("partial"):
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt, run_dir / "last.pt")
    shutil.copyfile(OUT / f"{name}.history.json", run_dir / "history.json")
    print(f"{name}: resuming from the committed partial snapshot ({ckpt})", file=sys.stderr)
    return True


def publish(name: str, run_dir: Path, epochs_done: int, seconds: float | None, threads: int | None) -> dict:
    """Copy ``run_dir``'s last checkpoint and history into docs/results/base/, with the settings in ``NAME.json``.

    A base network whose run stopped before its schedule's end is published the same way with
    ``partial: true`` and the epochs it got (``--snapshot``); ``--resume`` continues it later.
    """
    arch, kwargs, dataset, cfg = BASES[name]
    history = json.loads((run_dir / "history.json").read_text())
    records = history["epochs"] if isinstance(history, dict) and "epochs" in history else history
    records = records[:epochs_done] if epochs_done else records
    final = records[-1]
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "last.pt", OUT / f"{name}.pt")
    shutil.copyfile(run_dir / "history.json", OUT / f"{name}.history.json")
    info = {"name": name, "model": arch, "model_kwargs": kwargs, "data": dataset, "train": cfg,
            "final_test_top1": final["test_top1"], "epochs": len(records), "partial": len(records) < cfg["epochs"],
            "seconds": seconds, "torch_threads": threads, "device": _device_name(),
            "command": f"scripts/train_base.py {name}"}
    fd, tmp = tempfile.mkstemp(dir=OUT, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, OUT / f"{name}.json")
    return info


def _device_name() -> str:
    """Where the training ran: the GPU's name when one was there (the Trainer picks it), else the CPU."""
    import torch

    return f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "the CPU"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="base networks to train (default: all); see --list")
    ap.add_argument("--list", action="store_true", help="list the base networks and exit")
    ap.add_argument("--resume", action="store_true", help="continue runs/base/NAME/last.pt")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--snapshot", action="store_true",
                    help="publish the current runs/base/NAME/last.pt of an unfinished run (labelled partial)")
    args = ap.parse_args(argv)
    if args.list:
        for n, (arch, kw, ds, cfg) in BASES.items():
            print(f"{n}: {arch} {kw or ''} on {ds}, {cfg['epochs']} epochs")
        return 0
    names = list(BASES) if not args.names or args.names == ["all"] else args.names
    unknown = [n for n in names if n not in BASES]
    if unknown:
        ap.error(f"unknown base network(s) {', '.join(unknown)}; choose from {', '.join(BASES)}")
    for n in names:
        if args.snapshot:
            info = publish(n, ROOT / "runs" / "base" / n, 0, None, None)
            print(f"{n}: published {info['epochs']} of {BASES[n][3]['epochs']} epochs, top-1 {info['final_test_top1']:.2f}%")
            continue
        info = train_one(n, args.resume, args.threads)
        print(f"{n}: top-1 {info['final_test_top1']:.2f}% after {info['epochs']} epochs, {info['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
