"""``prunekit eval``: accuracy and loss of a checkpoint on a dataset's test split."""
from __future__ import annotations

import json

def add_parser(subparsers):
    """Register the ``eval`` sub-command."""
    p = subparsers.add_parser(
        "eval", help="top-1/top-5 accuracy and loss of a checkpoint on a test set",
        description="Load a prunekit checkpoint and evaluate it on the test split of its dataset "
                    "(the one recorded in the checkpoint, or --data).")
    from prunekit.cli.model_arg import add_model_arguments

    add_model_arguments(p)   # CKPT, a .pt2 program, or --model package.module:factory
    p.add_argument("--data", help="dataset name (default: the one the checkpoint was trained on), "
                                  "e.g. mnist5k, digits, cifar10:DIR")
    p.add_argument("--batch-size", type=int, default=512, help="samples per forward pass (default 512)")
    p.add_argument("--threads", type=int, help="torch threads (default: $PRUNEKIT_NUM_THREADS or torch's)")
    p.add_argument("--json", action="store_true", help="print one JSON object: top1, top5, loss, n, data, checkpoint")
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


def dataset_name(meta: dict, override: str | None, path) -> str:
    """The dataset to evaluate on: ``override``, else the name stored in the checkpoint's meta."""
    from prunekit.errors import PrunekitError
    from prunekit.runs import recorded_dataset

    if override:
        return override
    name = recorded_dataset(meta)
    if name:
        return name
    raise PrunekitError(f"{path}: the checkpoint does not record its dataset (no meta['data']); pass --data NAME")


def run(args) -> int:
    """Evaluate and print the metrics."""
    from prunekit import data
    from prunekit.errors import PrunekitError
    from prunekit.measure.threads import command_threads, num_threads
    from prunekit.validate import check_int
    from prunekit.train import evaluate

    check_int("--batch-size", args.batch_size, error=PrunekitError)
    threads = command_threads(args.threads)
    from prunekit.cli.model_arg import check_data_shape, load_model

    # a factory model's default input shape is the dataset's: load the named data first
    splits = data.load_dataset(args.data) if args.data and getattr(args, "model", None) else None
    ckpt = load_model(args, data_shape=None if splits is None else splits.test_x.shape[1:])
    name = dataset_name(ckpt.meta, args.data, ckpt.path or ckpt.name)
    splits = splits or data.load_dataset(name)
    check_data_shape(ckpt, splits.test_x.shape[1:], name)
    with num_threads(threads):
        metrics = evaluate(ckpt.model, splits.test_x, splits.test_y, batch_size=args.batch_size)
    result = {**metrics, "data": name, "checkpoint": str(ckpt.path or ckpt.name)}
    if args.json:
        print(json.dumps(result))
        return 0
    top5 = "n/a" if metrics.get("top5") is None else f"{metrics['top5']:.2f}%"
    print(f"{ckpt.path or ckpt.name} on {name} (test, n={metrics['n']}): top-1 {metrics['top1']:.2f}%  top-5 {top5}  "
          f"loss {metrics['loss']:.4f}")
    return 0
