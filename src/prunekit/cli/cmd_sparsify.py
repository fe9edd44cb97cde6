"""``prunekit sparsify``: weight-level (unstructured) pruning of a checkpoint.

Example::

    prunekit sparsify runs/lenet/best.pt --method magnitude --sparsity 0.95 --data mnist5k --out runs/sparse
    prunekit sparsify runs/lenet/best.pt --method lth --config lth.yaml --data mnist5k --out runs/lth
    prunekit sparsify runs/lenet/best.pt --method magnitude --granularity nm --nm 2:4 --data mnist5k --out runs/24
"""
from __future__ import annotations

import json
import sys

#: which config field each generic flag sets, per method
_SPARSITY_FIELD = {"magnitude": "sparsity", "agp": "final_sparsity", "lth": "target_sparsity", "admm": "sparsity",
                   "snip": "sparsity", "grasp": "sparsity", "synflow": "sparsity"}
#: the --granularity values each method accepts
_GRANULARITIES = {"magnitude": ("element", "kernel", "pattern", "nm"), "admm": ("element", "filter", "channel")}
#: every file a sparsify run may write into --out (cleared by --overwrite)
OUTPUT_FILES = ("model.pt", "model.sparse.pt", "accuracy.png", "plan.json", "model.structural.pt")


def add_parser(subparsers):
    """Register the ``sparsify`` sub-command."""
    p = subparsers.add_parser(
        "sparsify", help="weight pruning: magnitude, gradual (AGP), lottery ticket, ADMM, SNIP/GraSP/SynFlow at init",
        description="Prune individual weights of a checkpoint with one of the weight-pruning methods, retrain, "
                    "and write into --out: model.pt (dense, masks recorded), model.sparse.pt (sparse tensors), "
                    "report.json, report.md (sparsity per layer, accuracy curve) and accuracy.png. "
                    "Every method setting can be given in a YAML file (--config) holding the fields of the "
                    "method's config dataclass; the flags below override it. See docs/sparse.md.")
    from prunekit.cli.model_arg import add_model_arguments

    add_model_arguments(p)   # CKPT of the trained model, or --model package.module:factory
    p.add_argument("--method", required=True, choices=sorted(_SPARSITY_FIELD),
                   help="magnitude (Han et al. 2015), agp (Zhu & Gupta 2017), lth (Frankle & Carbin 2019), "
                        "admm (Zhang et al. 2018), snip (Lee et al. 2019), grasp (Wang et al. 2020), synflow "
                        "(Tanaka et al. 2020); snip/grasp/synflow re-initialise the network, prune it at "
                        "initialisation and train it with the masks kept")
    p.add_argument("--data", required=True, help="dataset name, e.g. mnist5k, digits, cifar10:DIR")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML mapping of the method's config fields")
    p.add_argument("--sparsity", type=float,
                   help="target sparsity, e.g. 0.95 (magnitude/admm/snip/grasp/synflow: sparsity, agp: final_sparsity, "
                        "lth: target_sparsity)")
    p.add_argument("--scope", choices=("layer", "global"), help="per-layer or global ranking (not admm)")
    p.add_argument("--granularity", choices=sorted(set(_GRANULARITIES["magnitude"] + _GRANULARITIES["admm"])),
                   help="the pruning unit. magnitude: element (single weights), kernel (whole k x k kernels by "
                        "L2 norm, Mao et al. 2017), pattern (every kernel keeps one of a few shapes, PatDNN) or "
                        "nm (N of every M weights along the input dimension, see --nm). admm: element, or whole "
                        "channels of the engine's coupling groups, scored by the writing layers' filters (filter) "
                        "or the reading layers' input slices (channel); filter/channel also write plan.json and "
                        "model.structural.pt")
    p.add_argument("--nm", metavar="N:M", help="magnitude with --granularity nm: keep N of every M (default 2:4)")
    p.add_argument("--patterns", type=int, metavar="P",
                   help="magnitude with --granularity pattern: size of the pattern library (default 8)")
    p.add_argument("--rounds", type=int, help="pruning rounds (magnitude: makes it iterative; lth; synflow: scoring "
                        "rounds)")
    from prunekit.cli.finetune_flags import add_finetune_arguments

    # the method's `finetune` (magnitude: per retraining round; agp: the whole run; lth: per round;
    # admm: the retraining after the hard prune); --epochs is the older spelling of --finetune-epochs
    add_finetune_arguments(p, aliases={"epochs": ["--epochs"]})
    p.add_argument("--keep-init", action="store_true",
                   help="lth only: use the checkpoint's weights as theta_0 (by default the architecture is "
                        "re-initialised, since a lottery ticket is rewound to its initialisation)")
    p.add_argument("--layout", choices=("csr", "coo"), default="csr", help="layout of model.sparse.pt (csr)")
    p.add_argument("--overwrite", action="store_true", help="reuse an --out directory that already holds files")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


def build_config(method: str, args):
    """The method's config from ``--config`` YAML, then the explicit flags (pure apart from reading the file)."""
    from prunekit.config import from_dict, load_yaml, to_dict
    from prunekit.errors import ConfigError
    from prunekit.methods import METHODS

    info = METHODS.get(method)
    raw = load_yaml(args.config) if args.config else {}
    try:
        cfg = from_dict(info.config_cls, raw)
    except ConfigError as e:
        raise ConfigError(f"{args.config}: {e}") from None
    d = to_dict(cfg)
    if args.sparsity is not None:
        d[_SPARSITY_FIELD[method]] = args.sparsity
    if args.scope is not None:
        if "scope" not in d:
            raise ConfigError(f"--scope does not apply to method {method!r}")
        d["scope"] = args.scope
    if args.granularity is not None:
        allowed = _GRANULARITIES.get(method, ())
        if args.granularity not in allowed:
            raise ConfigError(f"--granularity {args.granularity} does not apply to method {method!r}"
                              + (f" (it takes {', '.join(allowed)})" if allowed else ""))
        d["granularity"] = args.granularity
    for flag, key, value in (("--nm", "nm", args.nm), ("--patterns", "patterns", args.patterns)):
        if value is not None:
            if method != "magnitude":
                raise ConfigError(f"{flag} applies to method 'magnitude' only, not {method!r}")
            d[key] = value
    if method == "magnitude" and d.get("granularity") == "nm" and args.sparsity is not None:
        from prunekit.sparse.granularity import parse_nm

        n, m = parse_nm(d.get("nm", "2:4"))
        if abs(args.sparsity - (1 - n / m)) > 1e-9:
            raise ConfigError(f"--sparsity {args.sparsity} contradicts --nm {n}:{m}, which prunes "
                              f"{1 - n / m:g}; leave --sparsity out with --granularity nm")
    if args.rounds is not None:
        if method == "magnitude":
            d["rounds"] = args.rounds
            d["schedule"] = "iterative" if args.rounds > 1 else d["schedule"]
        elif method in ("lth", "synflow"):
            d["rounds"] = args.rounds
        else:
            raise ConfigError(f"--rounds does not apply to method {method!r}")
    from prunekit.cli.finetune_flags import merge_finetune

    d = merge_finetune(d, args)
    if args.no_progress:
        for key in ("finetune", "admm"):
            if key in d:
                d[key] = {**d[key], "progress": False}
    return from_dict(info.config_cls, d)


def run(args) -> int:
    """Load, prune with the chosen method, save the checkpoints and the reports."""
    from pathlib import Path

    from prunekit import checkpoint
    from prunekit.config import to_dict
    from prunekit.data import load_dataset
    from prunekit.errors import PrunekitError
    from prunekit.methods import METHODS
    from prunekit.methods.report import write_reports
    from prunekit.runs import RunDir, command_line, provenance
    from prunekit.sparse import save_sparse, save_with_masks

    cfg = build_config(args.method, args)
    out = Path(args.out)
    run_dir = RunDir.open(out, OUTPUT_FILES, overwrite=args.overwrite, require_empty=True,
                          keep=[args.checkpoint, args.config])
    from prunekit.cli.model_arg import check_data_shape, load_model

    data = load_dataset(args.data)
    ckpt = load_model(args, data_shape=data.input_shape)   # CKPT or --model package.module:factory
    ckpt.require_spec("sparsified")
    check_data_shape(ckpt, data.input_shape, args.data)
    checkpoint.check_finite(ckpt.model, str(ckpt.path or ckpt.name))
    model = ckpt.model
    notes = []
    if args.method == "lth" and not args.keep_init:
        from prunekit.train import reinitialize

        model = reinitialize(model, seed=cfg.seed)
        notes.append("lth: started from a fresh initialisation of the checkpoint's architecture "
                     f"(seed {cfg.seed}); pass --keep-init to use the checkpoint's weights as theta_0")
    elif args.keep_init:
        raise PrunekitError("--keep-init applies to --method lth only")
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    info = METHODS.get(args.method)
    result = info.fn(model, data, cfg, progress=False if args.no_progress else None)
    meta = {"sparsify": {"method": args.method, "config": to_dict(cfg), "source": str(ckpt.path or ckpt.name),
                         "data": args.data, "final": result.final}}
    from prunekit.runs import lineage

    meta.update(lineage(ckpt.path, ckpt.meta, dataset=args.data, input_shape=ckpt.spec.input_shape))
    weight_masks = {k: v for k, v in result.masks.items() if v.dim() >= 2}
    save_with_masks(out / "model.pt", result.model, result.masks, meta=meta)
    save_sparse(out / "model.sparse.pt", result.model, weight_masks, layout=args.layout, meta=meta)
    files = ["model.pt", "model.sparse.pt", "report.json", "report.md", "accuracy.png"]
    if "plan" in result.extra:
        from prunekit.engine import PruningPlan

        plan = PruningPlan.from_dict(result.extra["plan"])
        plan.save(out / "plan.json")
        checkpoint.save(out / "model.structural.pt", plan.apply(result.model), meta=meta)
        files += ["plan.json", "model.structural.pt"]
    run_dir.add(*files)
    prov = provenance(command=command_line(args), config=to_dict(cfg), dataset=args.data, source=ckpt.path)
    source = str(ckpt.path or ckpt.name)
    report = write_reports(result, run_dir, {"method": args.method, "source": source, "data": args.data,
                                             "notes": notes, "files": files}, prov)
    if args.json:
        print(json.dumps({k: report[k] for k in ("method", "final", "sparsity", "records", "files")}))
        return 0
    print(result.sparsity_report().to_markdown())
    print(f"\nfinal: sparsity {100 * result.final['sparsity']:.2f}%, test top-1 {result.final['test_top1']:.2f}%")
    print(f"wrote {', '.join(str(out / f) for f in files)}", file=sys.stderr)
    return 0
