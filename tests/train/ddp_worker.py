"""Worker of test_train_distributed.py, launched twice by torchrun (not collected by pytest).

Usage: torchrun --standalone --nproc_per_node=2 ddp_worker.py OUT_DIR [EPOCHS] [--interrupt-at E] [--resume]

Trains a tiny BatchNorm conv net on digits into OUT_DIR/run and saves each rank's
final weights and history to OUT_DIR/rank{r}.pt. ``--interrupt-at E`` raises
KeyboardInterrupt at the start of epoch E (after last.pt of epoch E-1 was written).
"""
import argparse
from pathlib import Path

import torch


def build(num_classes=10, in_channels=1):
    """A tiny conv net with BatchNorm (its running statistics must also agree across ranks)."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(in_channels, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, num_classes))


def main() -> None:
    from prunekit import data, train
    from prunekit.checkpoint import ModelSpec

    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("epochs", type=int, nargs="?", default=2)
    ap.add_argument("--interrupt-at", type=int)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()

    class Interrupt(train.Callback):
        def on_epoch_begin(self, trainer, epoch):
            if epoch == args.interrupt_at:
                raise KeyboardInterrupt

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build()
    model.prunekit_spec = ModelSpec(arch={"factory": "ddp_worker:build", "kwargs": {}}, input_shape=[1, 8, 8])
    splits = data.load_dataset("digits")
    cfg = train.TrainConfig(epochs=args.epochs, batch_size=64, lr=0.05, progress=False, num_threads=1)
    trainer = train.Trainer(model, splits, cfg, out_dir=args.out / "run", resume=args.resume,
                            callbacks=[Interrupt()])
    hist = trainer.fit()
    torch.save({"state": model.state_dict(), "history": hist.to_list(), "rank": trainer.rank,
                "world_size": trainer.world_size, "steps_per_epoch": trainer.steps_per_epoch},
               args.out / f"rank{trainer.rank}.pt")


if __name__ == "__main__":
    main()
