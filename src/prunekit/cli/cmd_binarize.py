"""``prunekit binarize CKPT --mode bwn|xnor``: BWN / XNOR-Net training, packing and verification."""
from __future__ import annotations

import json
import os
import sys


def add_parser(subparsers):
    """Register the ``binarize`` sub-command."""
    p = subparsers.add_parser(
        "binarize", help="binarize a model (BWN or XNOR-Net), train it, write a bit-packed model",
        description="Convert CKPT to a Binary-Weight-Network or XNOR-Net (Rastegari et al. 2016), train it "
                    "(forward/backward with binary weights, updates on the real ones), then write into --out: "
                    "model.pt (reloads with prunekit.checkpoint.load), model.pkb (weights packed 64 per "
                    "uint64 word), report.json and report.md (accuracy, packed-vs-float check, exact storage "
                    "ratio, binary ops). Settings: defaults < --config YAML < flags. See docs/binary.md.")
    p.add_argument("ckpt", nargs="?", metavar="CKPT",
                   help="full-precision prunekit checkpoint, or a zoo model name (trained from scratch); "
                        "or use --model")
    from prunekit.cli.model_arg import add_model_arguments

    add_model_arguments(p, positional=False)   # --model package.module:factory instead of CKPT
    p.add_argument("--mode", choices=("bwn", "xnor"), help="binary weights (bwn) or weights and inputs (xnor)")
    p.add_argument("--data", help="dataset (mnist5k, digits, synthetic, cifar10:DIR, ...); default mnist5k")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--config", help="YAML file of BinarizeConfig keys (mode, data, finetune: {...}, ...)")
    p.add_argument("--from-scratch", action="store_true", help="re-initialise the weights (keep the architecture)")
    p.add_argument("--no-keep-first-last", action="store_true",
                   help="binarize the first and last layers too (kept in full precision by default)")
    p.add_argument("--no-reorder", action="store_true", help="XNOR: do not re-order blocks to BN-BinActiv-BinConv-Pool")
    p.add_argument("--exclude", action="append", default=None, metavar="LAYER",
                   help="keep this layer in full precision (repeatable)")
    p.add_argument("--kernel", help="packed GEMM kernel: auto, avx512, popcnt, portable, numpy")
    p.add_argument("--threads", type=int, help="torch threads (default: $PRUNEKIT_NUM_THREADS or torch's)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of a previous run in --out")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    from prunekit.cli.finetune_flags import add_finetune_arguments

    # --epochs, --lr, --batch-size, --seed: this command's older spellings of --finetune-*
    add_finetune_arguments(p, what="training of the binarized network (default Adam, lr 0.002, 10 epochs)",
                           aliases={"epochs": ["--epochs"], "lr": ["--lr"], "batch_size": ["--batch-size"],
                                    "seed": ["--seed"]})
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


def build_config(args):
    """BinarizeConfig from defaults, then ``--config``, then the flags given."""
    from prunekit.binary.recipe import BinarizeConfig
    from prunekit.config import load_yaml
    from prunekit.errors import ConfigError

    raw = load_yaml(args.config) if args.config else {}
    for flag, key in (("mode", "mode"), ("data", "data"), ("kernel", "kernel")):
        if getattr(args, flag) is not None:
            raw[key] = getattr(args, flag)
    if args.from_scratch:
        raw["from_scratch"] = True
    if args.no_keep_first_last:
        raw["keep_first_last"] = False
    if args.no_reorder:
        raw["reorder"] = False
    if args.exclude:
        raw["exclude"] = list(args.exclude)
    from prunekit.cli.finetune_flags import merge_finetune

    try:
        raw = merge_finetune(raw, args)
    except ConfigError as e:
        raise ConfigError(f"{args.config}: {e}") from None
    if isinstance(raw.get("finetune", {}), dict):
        train = dict(raw.get("finetune", {}))
        if args.threads is not None:
            train["num_threads"] = args.threads
        if "num_threads" not in train and os.environ.get("PRUNEKIT_NUM_THREADS"):
            from prunekit.measure.threads import env_threads

            train["num_threads"] = env_threads()
        raw["finetune"] = train
    return BinarizeConfig.from_dict(raw)


def run(args) -> int:
    """Binarize, train, pack and report."""
    from prunekit.binary.recipe import run_binarize
    from prunekit.cli.trust import trusted
    from prunekit.runs import command_line

    cfg = build_config(args)
    threads = cfg.finetune.num_threads
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    progress = not args.no_progress and not args.json and sys.stderr.isatty()
    source = args.ckpt
    if args.model or not args.ckpt:   # a model of your own: built here and handed over as a module
        from prunekit.cli.model_arg import load_model, usage_error
        from prunekit.data import load_dataset

        if args.ckpt:
            usage_error(args, f"give either a checkpoint ({args.ckpt}) or --model {args.model}, not both")
        loaded = load_model(args, data_shape=load_dataset(cfg.data).input_shape)
        loaded.require_spec("binarized")
        source = loaded.model
    report = run_binarize(source, cfg, args.out, overwrite=args.overwrite, progress=progress,
                          meta={"command": command_line(args)}, trusted_factories=trusted(args))
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k not in ("history",)}, default=str))
        return 0
    fp = report["full_precision"]
    same = report["packed_vs_float"]
    st = report["storage"]
    print(f"{report['mode']} of {report['source']} on {report['data']}: "
          f"test top-1 {report['binarized']['top1']:.2f}%"
          + (f" (full precision {fp['top1']:.2f}%)" if fp else " (trained from scratch)"))
    print(f"packed model: top-1 {report['packed']['top1']:.2f}%, outputs "
          + ("identical to the float reference" if same["identical"] else
             f"differ in {same['differing_elements']} of {same['elements']} elements"))
    print(f"storage: {st['float32_bytes']} B float32 -> {st['packed_bytes']} B packed ({st['ratio']:.2f}x whole "
          f"model, {st['binary_ratio']:.2f}x binary layers)")
    print(f"wrote {args.out}/model.pt, model.pkb, report.md, report.json")
    return 0 if same["identical"] else 1
