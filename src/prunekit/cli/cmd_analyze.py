"""``prunekit analyze``: analyses of a checkpoint that change nothing.

``prunekit analyze criteria CKPT --data DATA --out DIR`` scores every coupling group's
channels with several pruning criteria and reports how alike they rank them
(Spearman rank correlation per layer; Huang et al., *Rethinking the Pruning
Criteria for Convolutional Neural Network*, NeurIPS 2021). See
:mod:`prunekit.criteria_rank`.

Example::

    prunekit analyze criteria runs/lenet5/best.pt --data fashion-mnist --out runs/criteria
"""
from __future__ import annotations

import json
import sys

#: every file ``analyze criteria`` writes into --out (cleared by --overwrite)
OUTPUT_FILES = ("criteria_heatmap.png",)


def add_parser(subparsers):
    """Register the ``analyze`` sub-command and its analyses."""
    p = subparsers.add_parser("analyze", help="analyses of a checkpoint (criteria rank correlation)",
                              description="Analyses that read a checkpoint and write a report; the model is "
                                          "not changed.")
    sub = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    c = sub.add_parser(
        "criteria", help="Spearman rank correlation between pruning criteria, per layer (Huang et al. 2021)",
        description="Score the channels of every coupling group of the structural engine with each criterion "
                    "(the same channels `prunekit prune` would remove) and write into --out: report.json, "
                    "report.md (mean and per-layer Spearman correlations) and criteria_heatmap.png.")
    from prunekit.cli.model_arg import add_model_arguments

    add_model_arguments(c)
    c.add_argument("--data", required=True, help="dataset of the calibration batches (taylor), e.g. mnist5k")
    c.add_argument("--out", required=True, metavar="DIR", help="output directory")
    c.add_argument("--criteria", default="l1,l2,fpgm,bn_scale,taylor",
                   help="comma-separated names from the criteria registry (default: l1,l2,fpgm,bn_scale,taylor)")
    c.add_argument("--batches", type=int, default=4, help="calibration batches for gradient criteria (4)")
    c.add_argument("--batch-size", type=int, default=64, help="calibration batch size (64)")
    c.add_argument("--overwrite", action="store_true", help="reuse an --out directory that already holds files")
    c.add_argument("--json", action="store_true", help="print the mean correlation matrix as one JSON object")
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(c)
    return p


def run(args) -> int:
    """Dispatch to the chosen analysis."""
    return _criteria(args)


def _criteria(args) -> int:
    from pathlib import Path

    import torch

    from prunekit.cli.model_arg import check_data_shape, load_model
    from prunekit.criteria_rank import analyze_criteria, write_criteria_report
    from prunekit.data import load_dataset
    from prunekit.runs import RunDir, command_line, provenance
    from prunekit.validate import check_int

    check_int("--batches", args.batches)
    check_int("--batch-size", args.batch_size)
    names = [n.strip() for n in args.criteria.split(",") if n.strip()]
    out = Path(args.out)
    run_dir = RunDir.open(out, OUTPUT_FILES, overwrite=args.overwrite, keep=[args.checkpoint])
    data = load_dataset(args.data)
    ckpt = load_model(args, data_shape=data.input_shape)
    check_data_shape(ckpt, data.input_shape, args.data)
    model = ckpt.model.eval()
    n = min(len(data.train_x), args.batches * args.batch_size)
    batches = [(data.train_x[i:i + args.batch_size], torch.as_tensor(data.train_y[i:i + args.batch_size]))
               for i in range(0, n, args.batch_size)]
    ranking = analyze_criteria(model, ckpt.example, data=batches, criteria=names)
    source = str(ckpt.path or ckpt.name)
    prov = provenance(command=command_line(args), config={"criteria": names, "batches": args.batches,
                                                          "batch_size": args.batch_size},
                      dataset=args.data, source=ckpt.path)
    report = write_criteria_report(ranking, run_dir, {"source": source, "data": args.data}, prov)
    if args.json:
        print(json.dumps({"criteria": report["criteria"], "mean_spearman": report["mean_spearman"],
                          "notes": report["notes"]}))
        return 0
    from prunekit.criteria_rank import ranking_markdown

    print(ranking_markdown(ranking))
    for note in ranking.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {', '.join(str(out / f) for f in report['outputs'])}", file=sys.stderr)
    return 0
