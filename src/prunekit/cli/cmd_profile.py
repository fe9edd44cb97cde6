"""``prunekit profile``: parameters, MACs, latency, memory and file size of a checkpoint.

``prunekit profile A.pt --compare B.pt`` profiles both in one call: their latencies are
timed interleaved in rounds and compared as a paired ratio with a bootstrap interval
(:func:`prunekit.measure.compare`), or called not measurable when the rounds disagree too much.
"""
from __future__ import annotations

import json
import sys

MAX_BATCH = 1 << 16


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,32" -> [1, 32]``; anything else raises a PrunekitError naming the flag."""
    from prunekit.errors import PrunekitError

    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise PrunekitError(f"--batch-sizes must be positive integers separated by commas, e.g. 1,32; got {text!r}")
    if max(sizes) > MAX_BATCH:  # a typo must not ask for terabytes of input
        raise PrunekitError(f"--batch-sizes: {max(sizes)} is more than {MAX_BATCH} samples per batch")
    return sizes


def check_input_shape(model, shape, path) -> None:
    """One forward pass on a zero sample of the stored input shape; a PrunekitError if the model rejects it."""
    import torch

    from prunekit.errors import PrunekitError

    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape))
    except (RuntimeError, ValueError, IndexError) as e:   # what torch raises for mismatched shapes
        raise PrunekitError(f"{path}: the model does not accept inputs of its stored shape {list(shape)}: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def add_parser(subparsers):
    """Register the ``profile`` sub-command."""
    p = subparsers.add_parser(
        "profile", help="parameters, MACs, latency, peak memory and file size of a checkpoint",
        description="Measure a prunekit checkpoint: parameters (total, non-zero), MACs per sample (per layer "
                    "with --per-layer), median latency per batch size at a fixed thread count, peak memory of a "
                    "forward pass, and the size of the checkpoint file. See docs/measure.md.")
    from prunekit.cli.model_arg import add_model_arguments

    add_model_arguments(p)   # CKPT, a .pt2 program, or --model package.module:factory
    p.add_argument("--batch-sizes", help="comma-separated batch sizes for latency/memory (default 1,32; a .pt2 "
                                         "program exported with a fixed batch size: that size)")
    p.add_argument("--threads", type=int, help="torch threads (default: $PRUNEKIT_NUM_THREADS or torch's)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (default 10)")
    p.add_argument("--repeats", type=int, default=50, help="timed runs per batch size (default 50)")
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--per-layer", action="store_true", help="also print MACs and parameters per layer")
    p.add_argument("--json", action="store_true", help="print the full report as one JSON object")
    p.add_argument("--runtimes", metavar="LIST", help="also time on these runtimes, e.g. eager,compile,onnxruntime "
                                                      "(onnxruntime needs the onnx extra); see docs/measure.md")
    p.add_argument("--compare", metavar="CKPT2",
                   help="profile CKPT2 too and print CKPT vs CKPT2: latencies timed interleaved in rounds, "
                        "their ratio with a 95%% bootstrap interval, or 'not measurable' when the spread is too large")
    p.add_argument("--until-tight", action="store_true",
                   help="with --compare: keep timing rounds until the interval is within +-10%% or --max-time passes")
    p.add_argument("--max-time", type=float, default=60.0, metavar="SECONDS",
                   help="time limit of --until-tight per batch size (default 60)")
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


def run(args) -> int:
    """Profile and print the report."""
    from prunekit.measure import profile
    from prunekit.measure.threads import command_threads

    from prunekit.cli.model_arg import load_model

    sizes = parse_batch_sizes(args.batch_sizes or "1,32")
    threads = command_threads(args.threads)
    loaded = load_model(args)
    if loaded.kind == "checkpoint" and len(loaded.spec.input_shapes) == 1:
        check_input_shape(loaded.model, loaded.spec.input_shape, loaded.path)
    fixed = getattr(loaded.model, "fixed_batch", None)   # a .pt2 program exported without a dynamic batch
    if fixed and not args.batch_sizes:
        sizes = [fixed]
    if args.compare is not None or args.until_tight:
        if loaded.kind != "checkpoint":
            from prunekit.errors import PrunekitError

            raise PrunekitError("--compare times two prunekit checkpoints; pass CKPT, not --model or a .pt2")
        return _compare(args, loaded, sizes, threads)
    report = profile(loaded.model, loaded.inputs, batch_sizes=sizes, latency=not args.no_latency,
                     threads=threads, file=loaded.path, warmup=args.warmup, repeats=args.repeats,
                     name=loaded.name, progress=not args.json and sys.stderr.isatty())
    rows = _runtimes(args, loaded, sizes, threads)
    if args.json:
        print(json.dumps({**report.to_dict(), **({"runtimes": rows} if rows is not None else {})}))
    else:
        print(report.to_table(per_layer=args.per_layer))
        for r in rows or []:
            print(f"{r['runtime']:>12s} bs={r['batch_size']:<3d} {r['threads']} thread(s): median {r['median_ms']:.3f} ms "
                  f"(p10 {r['p10_ms']:.3f}, p90 {r['p90_ms']:.3f}; {r['rounds']} runs)")
    return 0


def _runtimes(args, ckpt, sizes, threads):
    """``--runtimes``: the model's latency on each runtime (prunekit.measure.runtimes), or None without the flag."""
    if not args.runtimes:
        return None
    from prunekit.measure.runtimes import parse_runtimes, time_runtimes

    if isinstance(ckpt.example, tuple):
        from prunekit.errors import PrunekitError

        raise PrunekitError(f"--runtimes times one-input models; {ckpt.name} takes {len(ckpt.example)} inputs")
    return time_runtimes(ckpt.model, ckpt.input_shape, parse_runtimes(args.runtimes), sizes, threads)


def _compare(args, ckpt, sizes, threads) -> int:
    """``--compare``: both checkpoints profiled in one interleaved timing, printed side by side."""
    from prunekit import checkpoint
    from prunekit.cli.trust import trusted
    from prunekit.errors import PrunekitError
    from prunekit.measure import SpeedConfig, compare, profile_many
    from prunekit.validate import check_number

    if args.compare is None:
        raise PrunekitError("--until-tight needs --compare CKPT2 (it tightens the interval of a before/after ratio)")
    check_number("--max-time", args.max_time, minimum=0.0, low_open=True, error=PrunekitError)
    if getattr(args, "runtimes", None):
        raise PrunekitError("--runtimes times one checkpoint on several runtimes; it cannot be combined with --compare")
    other = checkpoint.load(args.compare, trusted_factories=trusted(args))
    check_input_shape(other.model, other.spec.input_shape, other.path)
    if list(other.spec.input_shape) != list(ckpt.spec.input_shape):
        raise PrunekitError(f"--compare: {other.path} takes inputs {list(other.spec.input_shape)}, "
                            f"{ckpt.path} takes {list(ckpt.spec.input_shape)}; they cannot be timed on one input")
    names = (ckpt.path.name, other.path.name)
    if names[0] == names[1]:
        names = (str(ckpt.path), str(other.path))
    speed = SpeedConfig(rounds=args.repeats, warmup=args.warmup, until_tight=args.until_tight,
                        max_time_s=args.max_time)
    reports = profile_many({names[0]: ckpt.model, names[1]: other.model}, ckpt.spec.input_shape,
                           batch_sizes=sizes, latency=not args.no_latency, threads=threads,
                           files={names[0]: ckpt.path, names[1]: other.path}, warmup=args.warmup,
                           repeats=args.repeats, progress=not args.json and sys.stderr.isatty(), speed=speed)
    before, after = reports[names[0]], reports[names[1]]
    comparison = compare(before, after, labels=names)
    if args.json:
        print(json.dumps({"before": before.to_dict(), "after": after.to_dict(), "comparison": comparison.to_dict()}))
    else:
        print(comparison.to_table(per_layer=args.per_layer))
    return 0
