"""``prunekit train``: train a zoo model (or fine-tune a checkpoint) on a dataset.

Works under ``torchrun --nproc_per_node=N -m prunekit.cli train ...`` too
(data parallel; rank 0 prints and writes the files).
"""
from __future__ import annotations

import json
import os
import sys
import time

# The training options that are flags of every fine-tuning command (--epochs, --lr, --label-smoothing, ...) are
# generated from TrainConfig's field metadata (prunekit.cli.finetune_flags); these are train's own extra flags:
# CLI flag (argparse dest) -> TrainConfig key; flags left unset keep the --config/default value
_FLAG_KEYS = {"eval_every": "eval_every", "threads": "num_threads", "device": "device"}


def add_parser(subparsers):
    """Register the ``train`` sub-command."""
    from prunekit.cli.finetune_flags import add_finetune_arguments

    p = subparsers.add_parser(
        "train", help="train a model from the zoo (or fine-tune a checkpoint) on a dataset",
        description="Train MODEL on DATA and write last.pt (resumable), best.pt, history.json, config.yaml, "
                    "report.json and report.md into --out. The model's input channels, classes and input size "
                    "come from the dataset. "
                    "Settings: defaults < --config file < flags. Run under 'torchrun --nproc_per_node=N -m "
                    "prunekit.cli train ...' for data-parallel training.")
    p.add_argument("--model", required=True,
                   help="zoo name (see 'prunekit models'), a prunekit checkpoint .pt to fine-tune, or a model of "
                        "your own: 'package.module:function' (see docs/your-model.md)")
    from prunekit.cli.model_arg import add_model_arguments

    add_model_arguments(p, positional=False, model_flag=False)   # --model-kwargs, --input-shape, ... of a factory
    p.add_argument("--data", required=True, help="dataset: mnist5k, digits, synthetic, cifar10:DIR, ...")
    p.add_argument("--out", required=True, help="run directory for checkpoints and history")
    p.add_argument("--config", help="YAML/JSON file of TrainConfig keys")
    add_finetune_arguments(p, prefix="", what="training options")
    p.add_argument("--eval-every", type=int, help="evaluate every N epochs (0: only at the end)")
    p.add_argument("--threads", type=int, help="torch threads (default: $PRUNEKIT_NUM_THREADS or torch's)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an --out that holds checkpoints")
    p.add_argument("--no-progress", action="store_true", help="hide the per-epoch progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object (final metrics, paths) only")
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


def build_config(args):
    """TrainConfig from defaults, then ``--config``, then the flags given."""
    from prunekit.train import TrainConfig

    from prunekit.cli.finetune_flags import finetune_overrides

    base = TrainConfig.load(args.config).to_dict() if args.config else TrainConfig().to_dict()
    base.update(finetune_overrides(args, prefix=""))
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            base[key] = value
    if args.threads is None and base.get("num_threads") is None and os.environ.get("PRUNEKIT_NUM_THREADS"):
        from prunekit.measure.threads import env_threads

        base["num_threads"] = env_threads()
    base["progress"] = not args.no_progress and not args.json and sys.stderr.isatty()
    return TrainConfig.from_dict(base)


#: what a training run writes into --out (the trainer's checkpoints, history and config, and the reports)
OUTPUT_FILES = ("last.pt", "best.pt", "history.json", "config.yaml")


def _write_report(run_dir, summary: dict, history, args) -> None:
    """report.json (what ``--json`` prints) and report.md (final and best epoch, the history table)."""
    from prunekit.runs import Report, Section, command_line, md_table, provenance

    rows = history.to_list()
    keys = [k for k in ("epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "seconds")
            if any(k in r for r in rows)]
    # epochs counted from 1 as the console lines say (the history stores them from 0)
    cells = [[r[k] + 1 if k == "epoch" and r.get(k) is not None else r.get(k) for k in keys] for r in rows]
    table = md_table(keys, cells) if rows else "(no epoch trained)"
    final, best = summary["final"] or {}, summary["best"] or {}
    report = Report(title=f"prunekit train: {summary['model']} on {summary['data']}", data=summary,
                    summary=[("epochs", summary["epochs"]), ("final test top-1", final.get("test_top1")),
                             ("best test top-1", best.get("test_top1")),
                             ("best epoch", None if best.get("epoch") is None else best["epoch"] + 1),
                             ("seconds", round(summary["seconds"], 1))],
                    sections=[Section("History", table)])
    source = args.model if os.path.isfile(args.model) else \
        f"factory:{args.model}" if ":" in args.model else f"zoo:{args.model}"
    run_dir.write_report(report, provenance(command=command_line(args), config=summary["config"],
                                            dataset=summary["data"], source=source))


def build_model(name: str, splits, trusted_factories=(), args=None):
    """A zoo model sized for ``splits``, the model stored in a checkpoint file, or a ``module:factory`` model."""
    from prunekit import models
    from prunekit.errors import PrunekitError

    if args is not None and (name.endswith(".pt2") or (":" in name and not os.path.isfile(name))):
        from prunekit.cli.model_arg import check_data_shape, load_model

        loaded = load_model(args, data_shape=splits.input_shape, model_value=name)
        loaded.require_spec("trained")
        check_data_shape(loaded, splits.input_shape, splits.name)
        return loaded.model.train()
    given = [f for f in ("model_kwargs", "input_shape", "example_inputs", "weights") if getattr(args, f, None)]
    if given:   # they shape a factory's model; silently ignoring them on a zoo name would mislead
        raise PrunekitError(f"--{given[0].replace('_', '-')} applies to --model package.module:factory, not to "
                            f"{name!r}")

    if name.endswith(".pt") or os.path.sep in name:
        from prunekit import checkpoint

        ckpt = checkpoint.load(name, trusted_factories=trusted_factories)
        if tuple(ckpt.spec.input_shape) != tuple(splits.input_shape):
            raise PrunekitError(f"{name}: the model takes inputs {tuple(ckpt.spec.input_shape)} but dataset "
                                f"{splits.name!r} has {tuple(splits.input_shape)}")
        return ckpt.model
    if name not in models.list_models():
        raise PrunekitError(f"unknown model {name!r}; see 'prunekit models' (known: {', '.join(models.list_models())})")
    return models.create(name, num_classes=splits.num_classes, in_channels=splits.in_channels,
                         input_size=tuple(splits.image_size))


def run(args) -> int:
    """Train and report."""
    from prunekit import data
    from prunekit.train import EpochLogger, Trainer
    from prunekit.train.trainer import check_run_dir

    from prunekit.runs import RunDir

    cfg = build_config(args)
    check_run_dir(args.out, resume=args.resume, overwrite=args.overwrite)  # fail before loading anything
    run_dir = RunDir.open(args.out, OUTPUT_FILES, overwrite=args.overwrite, resume=args.resume, resumable=True,
                          what="a training run", keep=[args.model, args.config])
    splits = data.load_dataset(args.data)
    from prunekit.cli.trust import trusted

    from prunekit.utils.seed import seed_everything

    seed_everything(cfg.seed or 0)   # the initial weights too: the same command gives the same model
    model = build_model(args.model, splits, trusted(args), args)
    callbacks = [] if args.json else [EpochLogger()]
    meta = {"model": args.model, "command": " ".join(["prunekit", *sys.argv[1:]])}
    if os.path.isfile(args.model):  # fine-tuning a checkpoint: best.pt / last.pt record it as their parent
        from prunekit.runs import lineage

        meta.update(lineage(args.model, None, dataset=splits.name, input_shape=tuple(splits.input_shape)))
    trainer = Trainer(model, splits, cfg, callbacks=callbacks, out_dir=args.out, resume=args.resume,
                      overwrite=args.overwrite, meta=meta)
    t0 = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - t0
    if not trainer.is_main:
        return 0
    final, best = history.last, history.best()
    # only files that exist: --epochs 0 trains nothing and writes no checkpoint
    paths = {"last": str(trainer.last_path) if trainer.last_path.exists() else None, "best": str(trainer.best_path) if trainer.best_path.exists() else None,
             "history": str(trainer.out_dir / "history.json"), "config": str(trainer.out_dir / "config.yaml")}
    summary = {"model": args.model, "data": splits.name, "epochs": trainer.epochs_done,
               "world_size": trainer.world_size, "seconds": seconds, "final": final, "best": best,
               "paths": paths, "config": cfg.to_dict()}
    _write_report(run_dir, summary, history, args)
    if args.json:
        print(json.dumps(summary))
        return 0
    if final is None:
        print(f"nothing to train (epochs={cfg.epochs})" + (f"; {paths['last']}" if paths["last"] else ""))
        return 0
    line = f"trained {args.model} on {splits.name} for {trainer.epochs_done} epochs in {seconds:.1f} s"
    if final.get("test_top1") is not None:
        line += f": test top-1 {final['test_top1']:.2f}%"
    if best is not None:
        line += f" (best {best['test_top1']:.2f}% after epoch {best['epoch'] + 1})"
    print(line)
    print(f"checkpoints: {paths['last']}" + (f", {paths['best']}" if paths["best"] else ""))
    return 0
