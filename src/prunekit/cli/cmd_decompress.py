"""``prunekit decompress``: a ``.pkz`` file back into an ordinary prunekit checkpoint."""
from __future__ import annotations

import json


def add_parser(subparsers):
    """Register the ``decompress`` sub-command."""
    p = subparsers.add_parser(
        "decompress", help="turn a .pkz file back into a normal prunekit checkpoint (.pt)",
        description="Verify and decode a .pkz file written by 'prunekit compress' and save the model it holds "
                    "(shared weights expanded, exactly as compressed) as a prunekit checkpoint that "
                    "'prunekit eval', 'prunekit train --model' and prunekit.checkpoint.load() read; "
                    "OUT.report.json and OUT.report.md beside it say where it came from.")
    p.add_argument("pkz", help="the .pkz file")
    p.add_argument("-o", "--output", required=True, help="the checkpoint to write (.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


def run(args) -> int:
    """Decode and save."""
    from pathlib import Path

    from prunekit import checkpoint, compress
    from prunekit.runs import Report, RunDir, command_line, provenance

    out = Path(args.output)
    run_dir = RunDir.open(out.parent, [out.name], overwrite=args.overwrite, shared=True, prefix=f"{out.name}.",
                          what="a decompress run's outputs", keep=[args.pkz])
    contents = compress.read(args.pkz)
    from prunekit.cli.trust import trusted

    model = contents.build_model(trusted_factories=trusted(args))
    from prunekit.runs import lineage

    meta = dict(contents.meta)
    # the parent is now the .pkz (hashed); the checkpoint it came from stays one level up in meta["compressed_from"]
    if isinstance(meta.get("parent"), dict):
        meta["compressed_from"] = meta["parent"]
    meta.update(lineage(args.pkz, contents.meta, input_shape=contents.spec.input_shape))
    path = checkpoint.save(run_dir.file(out.name), model, meta=meta, overwrite=args.overwrite)
    n = sum(t.numel() for t in contents.state_dict.values())
    summary = {"output": str(path), "pkz_bytes": contents.file_bytes, "tensors": len(contents.state_dict), "values": n}
    run_dir.write_report(Report(title=f"prunekit decompress: {args.pkz}", data=summary,
                                summary=[(k, v) for k, v in summary.items()]),
                         provenance(command=command_line(args), source=args.pkz,
                                    dataset=meta.get("dataset") or meta.get("data")))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.pkz}: {contents.file_bytes:,} bytes, {len(contents.state_dict)} tensors, {n:,} values "
              f"-> wrote {path}")
    return 0
