"""``prunekit export``: a model file as ONNX or a ``torch.export`` ``.pt2`` file, checked against the eager model.

Example::

    prunekit export runs/lenet5_pruned.pt --format onnx --dynamic-batch --out lenet5.onnx
"""
from __future__ import annotations

import json


def add_parser(subparsers):
    """Register the ``export`` sub-command."""
    p = subparsers.add_parser(
        "export", help="export a model file to ONNX or torch.export (.pt2), checked against the eager model",
        description="Load a prunekit checkpoint, sparse checkpoint or .pkz file and export it with the ONNX "
                    "dynamo exporter (needs the onnx extra) or torch.export (.pt2). The file is run (ONNX Runtime / "
                    "torch.export.load) on random inputs of several seeds, and at two batch sizes with "
                    "--dynamic-batch, and compared with the model; the max abs difference is printed and written "
                    "to OUT.report.json / OUT.report.md, and an export above the tolerance is refused. The file "
                    "runs without prunekit. Binarized models export float-emulated (sign(W) * alpha). See "
                    "docs/export.md.")
    p.add_argument("checkpoint", metavar="CKPT", help="the model file (.pt checkpoint, sparse checkpoint, .pkz)")
    p.add_argument("--format", required=True, choices=("onnx", "pt2"), help="onnx or pt2 (torch.export)")
    p.add_argument("--out", "-o", required=True, help="the file to write (e.g. model.onnx, model.pt2)")
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch dimension dynamic (checked at "
                                                                  "batch sizes 1 and 5)")
    p.add_argument("--seeds", type=int, default=3, help="random inputs compared per batch size (default 3)")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="refuse an export whose max abs difference exceeds ATOL + RTOL * max|output| (default 1e-4)")
    p.add_argument("--rtol", type=float, default=1e-4, help="see --atol (default 1e-4)")
    p.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file and its reports")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


def run(args) -> int:
    """Load, export, check, report."""
    from pathlib import Path

    from prunekit.cli.trust import trusted
    from prunekit.errors import ExportError
    from prunekit.export import ExportOptions, export, load_model_file
    from prunekit.runs import Report, RunDir, command_line, provenance

    opts = ExportOptions(seeds=args.seeds, atol=args.atol, rtol=args.rtol, opset=args.opset)
    out = Path(args.out)
    if out.resolve() == Path(args.checkpoint).resolve():
        raise ExportError(f"--out {out} is the model file itself; choose another name")
    run_dir = RunDir.open(out.parent, [out.name], overwrite=args.overwrite, shared=True, prefix=f"{out.name}.",
                          what="an export's outputs", keep=[args.checkpoint])
    loaded = load_model_file(args.checkpoint, trusted_factories=trusted(args))
    result = export(loaded.model, loaded.example_inputs(), run_dir.file(out.name), format=args.format,
                    dynamic_batch=args.dynamic_batch, options=opts, overwrite=args.overwrite)
    run_dir.add(*[f.name for f in result.files])
    data = {**result.to_dict(), "source": str(args.checkpoint), "kind": loaded.kind, "exported": loaded.note,
            "options": opts.to_dict()}
    batches = sorted({c["batch"] for c in result.checks})
    summary = [("file", str(result.path)), ("format", result.format), ("source", str(args.checkpoint)),
               ("what is exported", loaded.note), ("dynamic batch", result.dynamic_batch),
               ("checked", f"{opts.seeds} seed(s) x batch {', '.join(map(str, batches))}"),
               ("max abs diff", f"{result.max_abs_diff:.3g} (tolerance {result.tolerance:.3g})")]
    run_dir.write_report(Report(title=f"prunekit export: {args.checkpoint} -> {out.name}", data=data,
                                summary=summary),
                         provenance(command=command_line(args), source=args.checkpoint))
    if args.json:
        print(json.dumps(data))
    else:
        print(f"{args.checkpoint} -> {result.path} ({result.format}{', dynamic batch' if result.dynamic_batch else ''})"
              f": max abs diff {result.max_abs_diff:.3g} over {len(result.checks)} check(s) at batch "
              f"{', '.join(map(str, batches))} (tolerance {result.tolerance:.3g}); {loaded.note}")
    return 0
