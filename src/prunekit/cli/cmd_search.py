"""``prunekit search``: MetaPruning / AutoSlim channel search on a checkpoint (see docs/search.md)."""
from __future__ import annotations

import json


def add_parser(subparsers):
    """Register the ``search`` sub-command."""
    p = subparsers.add_parser(
        "search", help="search per-layer channel counts under a MACs/params/latency budget (MetaPruning, AutoSlim)",
        description="Train a weight-sharing super-network on the training data (MetaPruning's PruningNet or "
                    "AutoSlim's slimmable network), search per-group channel counts under the budget on a "
                    "sub-validation split of the training data, prune the checkpoint to the found widths, "
                    "fine-tune and report on the test set. Re-run with --resume after an interruption.")
    from prunekit.cli.model_arg import add_model_arguments

    add_model_arguments(p)   # CKPT of the trained model, or --model package.module:factory
    p.add_argument("--method", choices=("metapruning", "autoslim"), default="autoslim")
    p.add_argument("--data", required=True, help="dataset name or spec, e.g. mnist5k, digits, cifar10:DIR")
    p.add_argument("--out", required=True, help="output folder (log, plots, plan, pruned.pt, report.json, report.md)")
    p.add_argument("--macs", type=float, help="keep at most this fraction of the MACs, e.g. 0.3")
    p.add_argument("--params", type=float, help="keep at most this fraction of the parameters")
    p.add_argument("--latency-ms", type=float, help="predicted latency budget in ms (per-layer lookup table, CPU)")
    p.add_argument("--latency-mode", choices=("median", "fastest"),
                   help="how the latency table and the found network are timed: 'median' (default; the typical "
                        "latency) or 'fastest' (grid timed up front in 3 passes, fastest kept: steadier on a shared "
                        "machine)")
    p.add_argument("--latency-table", metavar="TABLE.json",
                   help="use this saved latency table (e.g. an earlier search's OUT/latency_table.json) instead of "
                        "building one; it must match the model, input shape and grid (checked)")
    p.add_argument("--budget-floor", type=float,
                   help="MetaPruning: candidates must also use at least this fraction of the budget (default 0.9; "
                        "0 = the paper's upper bound only)")
    p.add_argument("--preset", choices=("fast", "thorough"),
                   help="settings of every phase not given explicitly: 'fast' (default; the whole search in minutes "
                        "on a 2-core CPU) or 'thorough' (the papers' evolution, longer training; see docs/search.md)")
    p.add_argument("--eval-samples", type=int,
                   help="sub-validation images each candidate is scored on (a fixed subset; 0: all; fast: 256)")
    p.add_argument("--calib-batches", type=int, help="BN recalibration batches per candidate (fast: 2 of 64)")
    p.add_argument("--supernet-samples", type=int,
                   help="training images the super-network trains on (a fixed subset; 0: all; fast: 1024)")
    p.add_argument("--ratios", help="candidate width ratios, comma separated (fast: 0.2,0.4,...,1.0; "
                                    "thorough: 0.1,...,1.0)")
    p.add_argument("--round-to", type=int, default=1, help="kept channel counts are multiples of this")
    p.add_argument("--epochs", type=int, help="super-network training epochs (fast: 1, thorough: 5)")
    p.add_argument("--iterations", type=int, help="evolution iterations (MetaPruning; fast: 4, thorough: 20)")
    p.add_argument("--population", type=int, help="evolution population (MetaPruning; fast: 12, thorough: 50)")
    p.add_argument("--greedy-moves", type=int,
                   help="groups shrunk per greedy slimming step (AutoSlim; 0: half the groups; fast: 0, "
                        "thorough: 1)")
    p.add_argument("--init", choices=("original", "supernet", "scratch"), default="original",
                   help="weights of the found network before fine-tuning (default: inherit the checkpoint's)")
    p.add_argument("--workers", type=int, help="parallel candidate-evaluation processes (default min(4, CPUs))")
    p.add_argument("--ray", metavar="ADDRESS", help="evaluate candidates on a Ray cluster ('local' starts one; "
                                                   "needs pip install 'prunekit[ray]')")
    p.add_argument("--config", help="YAML/JSON file of SearchConfig fields (command-line options override it)")
    p.add_argument("--seed", type=int, help="seed of the split, sampling and search (default 0)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search in --out")
    p.add_argument("--supernet", metavar="SUPERNET.pt",
                   help="reuse the super-network of an earlier search (its OUT/supernet.pt) instead of training "
                        "one: one PruningNet / slimmable network serves every budget; it must come from the same "
                        "checkpoint, method, ratios and seed (checked)")
    p.add_argument("--overwrite", action="store_true", help="start over in an --out that holds a search")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    from prunekit.cli.finetune_flags import add_finetune_arguments

    add_finetune_arguments(p, what="fine-tuning of the found network")
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


def _config(args) -> dict:
    from prunekit.config import load_yaml

    cfg = dict(load_yaml(args.config)) if args.config else {}
    cfg["method"] = args.method
    for key in ("macs", "params", "latency_ms", "latency_mode", "latency_table", "budget_floor", "seed", "preset",
                "eval_samples", "calib_batches", "supernet_samples"):
        v = getattr(args, key)
        if v is not None:
            cfg[key] = v
    if args.ratios is not None:   # an empty --ratios is a mistake, not a request for the default grid
        from prunekit.errors import ConfigError

        try:
            cfg["ratios"] = [float(r) for r in args.ratios.split(",") if r.strip()]
        except ValueError:
            raise ConfigError(f"--ratios must be comma-separated numbers, got {args.ratios!r}") from None
        if not cfg["ratios"]:
            raise ConfigError(f"--ratios must name at least one width ratio, e.g. 0.25,0.5,1.0; got {args.ratios!r}")
    cfg["round_to"] = args.round_to
    cfg["init"] = args.init
    if args.workers is not None:
        cfg["workers"] = args.workers
    if args.greedy_moves is not None:
        cfg["greedy_moves"] = args.greedy_moves
    if args.ray:
        cfg["ray_address"] = args.ray
    if args.epochs is not None:
        cfg["supernet"] = {**cfg.get("supernet", {}), "epochs": args.epochs}
    from prunekit.cli.finetune_flags import merge_finetune

    cfg = merge_finetune(cfg, args)
    evo = dict(cfg.get("evolution", {}))
    if args.iterations is not None:
        evo["iterations"] = args.iterations
    if args.population is not None:
        evo["population"] = args.population
    if evo:
        cfg["evolution"] = evo
    return cfg


def run(args) -> int:
    """Load, search, prune, fine-tune, report."""
    from prunekit import checkpoint
    from prunekit.data import load_dataset
    from prunekit.runs import command_line, provenance
    from prunekit.search import SearchConfig, search

    cfg = SearchConfig.from_dict(_config(args))
    from prunekit.cli.model_arg import check_data_shape, load_model

    data = load_dataset(args.data)
    ckpt = load_model(args, data_shape=data.input_shape)   # CKPT or --model package.module:factory
    ckpt.require_spec("searched")
    check_data_shape(ckpt, data.input_shape, args.data)
    checkpoint.check_finite(ckpt.model, str(ckpt.path or ckpt.name))
    res = search(ckpt.model, data, cfg, args.out, resume=args.resume, progress=not args.no_progress,
                 overwrite=args.overwrite, supernet=args.supernet,
                 provenance=provenance(command=command_line(args), source=ckpt.path))
    r = res.report
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{cfg.method}: MACs {r['macs']:.0f} ({100 * r['macs_fraction']:.1f}% of {r['macs_full']:.0f}), "
              f"params {r['params']} / {r['params_full']}, test top-1 {r['test_top1']:.2f}% "
              f"(before fine-tuning {r['test_top1_before_finetune']:.2f}%, full model {r['test_top1_full_model']:.2f}%)")
        if "latency_ms_measured" in r:
            drift = r.get("latency_drift")
            print(f"latency: predicted {r['latency_ms_predicted']:.3f} ms, measured {r['latency_ms_measured']:.3f} ms "
                  f"({r['latency_mode']})"
                  + (f" (this machine is now {100 * (drift - 1):+.1f}% against when the table was built: "
                     f"{r['latency_ms_measured_at_table_speed']:.3f} ms at the table's speed)" if drift else ""))
        if "latency_ratio" in r:
            from prunekit.measure import SpeedupResult

            print(f"latency found / full model (timed interleaved): "
                  f"{SpeedupResult.from_dict(r['latency_ratio']).describe()}")
        for w in r["widths"]:
            print(f"  {w['group']:<40} {w['kept']:>5} / {w['size']}")
        sec = r.get("seconds", {})
        print(f"preset {r['preset']}: {r['candidates_evaluated']} candidates evaluated; "
              + ", ".join(f"{k} {v:.1f} s" for k, v in sec.items() if k != "total")
              + f" (total {sec.get('total', 0.0):.1f} s)")
        print(f"wrote {args.out}")
    return 0
