"""``prunekit compress``: Deep Compression of a checkpoint into a ``.pkz`` file.

Example::

    prunekit compress runs/lenet/best.pt --prune-sparsity 0.92 --retrain-epochs 5 --retrain-lr 0.05 \\
        --finetune-epochs 2 --data mnist5k -o lenet.pkz
"""
from __future__ import annotations

import json
import sys


def add_parser(subparsers):
    """Register the ``compress`` sub-command."""
    p = subparsers.add_parser(
        "compress", help="Deep Compression (prune, share weights, Huffman-code) of a checkpoint into a .pkz file",
        description="Compress a prunekit checkpoint as Deep Compression does (Han et al., ICLR 2016): optional "
                    "magnitude pruning with retraining, per-layer k-means weight sharing with centroid "
                    "fine-tuning, relative-index sparse storage and Huffman (or rANS) coding. Writes one "
                    "self-describing .pkz file that 'prunekit decompress' or prunekit.compress.load() turn back "
                    "into a model, plus OUT.report.json and OUT.report.md. Without pruning flags, weights that "
                    "are already zero (or masks stored in the checkpoint) count as pruned.")
    from prunekit.cli.model_arg import add_model_arguments

    add_model_arguments(p)   # CKPT (.pt), or --model package.module:factory
    p.add_argument("-o", "--output", required=True, help="the .pkz file to write")
    p.add_argument("--bits-conv", type=int, help="bits per cluster index of conv layers (default 8)")
    p.add_argument("--bits-fc", type=int, help="bits per cluster index of fully connected layers (default 5)")
    p.add_argument("--index-bits-conv", type=int, help="bits per relative position, conv layers (default 8)")
    p.add_argument("--index-bits-fc", type=int, help="bits per relative position, fc layers (default 5)")
    p.add_argument("--init", choices=("linear", "density", "random"), help="k-means initialisation (default linear)")
    p.add_argument("--coder", choices=("huffman", "rans"), help="entropy coder (default huffman, as the paper)")
    p.add_argument("--codebook-dtype", choices=("float32", "float16"), help="storage of shared values")
    p.add_argument("--layout", choices=("auto", "sparse", "dense"), help="storage of pruned layers (default auto)")
    prune = p.add_mutually_exclusive_group()
    prune.add_argument("--prune-sparsity", type=float, help="magnitude-prune this fraction of every layer")
    prune.add_argument("--quality", type=float, help="prune |w| < QUALITY * std(w) per layer (the paper's rule)")
    p.add_argument("--prune-scope", choices=("layer", "global"))
    p.add_argument("--config", help="YAML/JSON file of CompressConfig keys (flags override it)")
    p.add_argument("--data", help="dataset for retraining, fine-tuning and the accuracy column (e.g. mnist5k)")
    p.add_argument("--threads", type=int, help="torch threads (default: $PRUNEKIT_NUM_THREADS or torch's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    from prunekit.cli.finetune_flags import add_finetune_arguments

    add_finetune_arguments(p, prefix="retrain", what="masked retraining after pruning (needs --data)")
    add_finetune_arguments(p, what="centroid fine-tuning after sharing (needs --data)")
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


_FLAGS = ("bits_conv", "bits_fc", "index_bits_conv", "index_bits_fc", "init", "coder", "codebook_dtype", "layout",
          "prune_sparsity", "quality", "prune_scope")


def build_config(args):
    """CompressConfig from defaults, then ``--config``, then the flags given."""
    from prunekit.compress import CompressConfig
    from prunekit.config import from_dict, load_yaml

    base = dict(load_yaml(args.config)) if args.config else {}
    for key in _FLAGS:
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    if args.prune_sparsity is not None:
        base.pop("quality", None)
    if args.quality is not None:
        base.pop("prune_sparsity", None)
    from prunekit.cli.finetune_flags import merge_finetune

    base = merge_finetune(merge_finetune(base, args, key="retrain", prefix="retrain"), args)
    return from_dict(CompressConfig, base)


def _threads(args) -> None:
    import torch

    from prunekit.measure.threads import command_threads

    n = command_threads(args.threads)
    if n:
        torch.set_num_threads(n)


def run(args) -> int:
    """Compress the checkpoint and write the file and its reports."""
    from pathlib import Path

    from prunekit import compress, sparse
    from prunekit.config import to_dict
    from prunekit.runs import RunDir, command_line, provenance

    out = Path(args.output)
    # the .pkz and its two reports are one run's outputs: none is replaced without --overwrite
    run_dir = RunDir.open(out.parent, [out.name], overwrite=args.overwrite, prefix=f"{out.name}.", shared=True,
                          what="a compress run's outputs", keep=[args.checkpoint, args.config])
    config = build_config(args)
    _threads(args)
    from prunekit.cli.trust import trusted

    data = None
    if args.data:
        from prunekit.data import load_dataset

        data = load_dataset(args.data)
    from prunekit.cli.model_arg import load_model, names_model

    if names_model(args):   # --model package.module:factory (no masks stored beside it)
        ckpt, masks = load_model(args, data_shape=None if data is None else data.input_shape), None
        ckpt.require_spec("compressed")
    else:
        ckpt, masks = sparse.load_with_masks(args.checkpoint, trusted_factories=trusted(args))
    from prunekit.checkpoint import check_finite

    check_finite(ckpt.model, str(ckpt.path or ckpt.name))
    if config.prune_sparsity is not None or config.quality is not None:
        masks = None   # prune afresh (weights already zero are the smallest and go first)
    progress = not args.no_progress and not args.json and sys.stderr.isatty()
    from prunekit.runs import lineage

    # the .pkz header carries the checkpoint's lineage; decompress hands it on to the .pt it writes
    result = compress.compress_model(ckpt.model, config, data=data, masks=masks, progress=progress,
                                     meta=lineage(ckpt.path, ckpt.meta, dataset=args.data,
                                                  input_shape=ckpt.spec.input_shape))
    path = result.save(run_dir.file(out.name), overwrite=args.overwrite)
    report = result.report
    run_dir.write_report(report.run_report(f"Deep Compression of {args.checkpoint or ckpt.name}"),
                         provenance(command=command_line(args), config=to_dict(config), dataset=args.data,
                                    source=args.checkpoint or ckpt.path))
    if args.json:
        print(json.dumps({"output": str(path), **report.to_dict()}))
    else:
        print(report.to_markdown())
        print(f"wrote {path} ({report.file_bytes:,} bytes, {report.ratios()['file']:.1f}x smaller than the "
              f"{report.original_bytes:,} bytes of tensors in {args.checkpoint or ckpt.name})")
    return 0
