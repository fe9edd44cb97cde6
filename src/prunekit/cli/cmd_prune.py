"""``prunekit prune``: structured channel pruning of a checkpoint."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(subparsers):
    """Register the ``prune`` sub-command."""
    p = subparsers.add_parser(
        "prune", help="remove channels from a checkpoint (dependency-aware structured pruning)",
        description="Plan which channels to remove (criterion + ratio or a MACs/params target), then remove "
                    "them physically and save a smaller checkpoint that reloads on its own, with OUT.report.json "
                    "and OUT.report.md beside it. Prints the before/after profile and the per-layer channel table. "
                    "With --method (l1, slimming, lasso, thinet, fpgm, taylor, dcp, autocompress, dcff, scp, pai, "
                    "random, dynamic) it "
                    "runs that method's whole pipeline, fine-tuning included, into the directory --out. "
                    "See docs/pruning.md and docs/methods.md.")
    from prunekit.cli.model_arg import add_model_arguments

    add_model_arguments(p)   # CKPT of the dense model, or --model package.module:factory
    goal = p.add_mutually_exclusive_group()
    # every planner flag (--criterion, --ratio, --macs, --params, --tolerance, --best-effort, --global,
    # --round-to, --min-channels, --ignore) comes from PlanOptions' field metadata: one place per option
    add_planner_arguments(p, goal)
    goal.add_argument("--plan", metavar="PLAN_JSON", help="apply a saved plan instead of planning")
    p.add_argument("--out", help="output checkpoint (required unless --dry-run)")
    p.add_argument("--save-plan", metavar="PLAN_JSON", help="also write the plan as JSON")
    p.add_argument("--dry-run", action="store_true", help="print the plan only; write nothing")
    p.add_argument("--explain", action="store_true",
                   help="list the frozen regions (ops and modules whose channels are kept, with the source line "
                        "and why); write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out / --save-plan file")
    p.add_argument("--show-indices", action="store_true", help="list the removed channel indices per layer")
    p.add_argument("--time", action="store_true", dest="time_models",
                   help="also time both models (slower); --latency FRACTION is a latency budget")
    p.add_argument("--json", action="store_true", help="print one JSON object (plan summary, profiles)")
    from prunekit.cli.prune_methods import add_method_arguments

    # --method runs a whole pipeline (sparsity training, pruning, fine-tuning) into the directory --out
    add_method_arguments(p)
    from prunekit.cli.trust import add_trust_flag

    add_trust_flag(p)
    return p


def add_planner_arguments(parser, goal_group) -> None:
    """Add a flag for every :class:`~prunekit.engine.options.PlanOptions` field that names one in its metadata.

    The flag's help is the field's ``metadata["help"]``; its type comes from the field's
    annotation (numbers and strings take a value, booleans get ``--x`` / ``--no-x``,
    lists are repeatable). Flags default to "not given", so that only what the user
    typed overrides the options' defaults (see :func:`planner_options`).
    """
    import argparse
    import dataclasses
    import typing

    from prunekit.engine.options import PlanOptions

    hints = typing.get_type_hints(PlanOptions)
    for f in dataclasses.fields(PlanOptions):
        meta = f.metadata
        if not meta.get("flag"):
            continue  # set with --set KEY=VALUE
        kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": meta["help"]}
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is list:
            kw.update(action="append", metavar=meta.get("metavar"))
        else:
            kw["type"] = args[0] if typing.get_origin(tp) is typing.Union else tp
        (goal_group if meta.get("goal") else parser).add_argument(meta["flag"], **kw)


def planner_options(args):
    """The :class:`PlanOptions` of the flags given, then of every ``--set KEY=VALUE`` (YAML value; it wins).

    Raises:
        ConfigError: a --set key that is no option (listing the valid ones), or a bad value.
    """
    import dataclasses

    from prunekit.config import parse_assignment
    from prunekit.engine.options import PlanOptions
    from prunekit.errors import ConfigError

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(PlanOptions) if hasattr(args, f.name)}
    for item in getattr(args, "set", None) or []:
        key, value = parse_assignment(item)
        if key not in PlanOptions.names():
            raise ConfigError(f"--set {key}: no such planner option; valid: {', '.join(PlanOptions.names())}")
        given[key] = value
    options = PlanOptions.from_dict(given, where="options")
    if options.steps != 1:
        raise ConfigError("steps: the prune command makes one plan; iterative pruning is prunekit.prune(..., "
                          "steps=k) or the recipe step prune")
    return options


def run(args) -> int:
    """Plan (or load a plan), apply it, report, save."""
    from prunekit import checkpoint
    from prunekit.engine import PruningPlan
    from prunekit.engine import plan as make_plan
    from prunekit.errors import PrunekitError
    from prunekit.runs import RunDir
    from prunekit.utils.io import check_overwrite

    if getattr(args, "method", None) or getattr(args, "recipe", None):
        from prunekit.cli.prune_methods import run_method

        return run_method(args)
    options = None if args.plan else planner_options(args)  # checked before anything is loaded
    dry = args.dry_run or args.explain
    if not dry and not args.out:
        raise PrunekitError("--out is required (or pass --dry-run to only print the plan)")
    run_dir = None
    if args.out and not dry:
        # the checkpoint and its OUT.report.json / OUT.report.md are one run's outputs
        out_path = Path(args.out)
        run_dir = RunDir.open(out_path.parent, [out_path.name], overwrite=args.overwrite, shared=True,
                              prefix=f"{out_path.name}.", what="a prune run's outputs",
                              keep=[args.checkpoint, args.plan])
    if args.save_plan and not dry:
        check_overwrite(args.save_plan, args.overwrite)
    from prunekit.cli.model_arg import load_model

    ckpt = load_model(args)   # a checkpoint, or --model package.module:factory (its spec is what gets saved)
    ckpt.require_spec("pruned")
    checkpoint.check_finite(ckpt.model, str(ckpt.path or ckpt.name))
    model = ckpt.model
    x = ckpt.example
    if args.plan:
        plan = PruningPlan.load(args.plan)
    else:
        plan = make_plan(model, x, options)
    if args.explain:
        if args.json:
            print(json.dumps({"frozen": plan.frozen, "tied": plan.tied}))
        else:
            print("\n".join(plan.frozen_lines()) or "no frozen regions: the engine follows every op of this model")
            if plan.tied:
                print("tied in proportion (a width read at run time sizes another dimension):")
                print("\n".join("  " + line for line in plan.tied_lines()))
        return 0
    if args.dry_run:
        if args.json:
            print(json.dumps({"plan": plan.summary(), "layers": plan.layer_rows()}))
        else:
            print(str(plan).splitlines()[0])
            if plan.latency_line():
                print(plan.latency_line())
            print(plan.table(show_indices=args.show_indices))
        return 0
    pruned = plan.apply(model)
    before, after = _profiles(model, pruned, ckpt.inputs, args.time_models)
    meta = dict(ckpt.meta)
    meta["pruning"] = {"source": str(ckpt.path or ckpt.name), **{k: v for k, v in plan.summary().items()}}
    from prunekit.runs import lineage

    meta.update(lineage(ckpt.path, ckpt.meta, input_shape=ckpt.spec.input_shape))
    out = checkpoint.save(run_dir.file(Path(args.out).name), pruned, meta=meta, overwrite=args.overwrite)
    if args.save_plan:
        plan.save(args.save_plan, overwrite=args.overwrite)
    _write_report(run_dir, args, ckpt, plan, before, after, options)
    if args.json:
        print(json.dumps({"plan": plan.summary(), "layers": plan.layer_rows(), "out": str(out),
                          "before": before, "after": after}))
        return 0
    print(_profile_table(before, after))
    if plan.latency_line():
        print(plan.latency_line())
    print()
    print(plan.table(show_indices=args.show_indices))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def _write_report(run_dir, args, ckpt, plan, before: dict, after: dict, options) -> None:
    """OUT.report.json (plan summary, both profiles) and OUT.report.md beside the pruned checkpoint."""
    from prunekit.runs import Report, Section, command_line, provenance

    def figures(d):
        row = {"params": d.get("params"), "MACs / sample": _macs(d)}
        for bs, lat in (d.get("latency") or {}).items():  # text: the ratio is the paired one, below
            row[f"latency bs={bs} (median)"] = f"{lat.get('median_ms'):.4g} ms"
        return row

    settings = {"plan": str(args.plan)} if options is None else options.to_dict()
    speed = _speedups(before, after)
    sections = [Section("Channels per layer", f"```\n{plan.table(show_indices=args.show_indices)}\n```")]
    if speed:
        sections.insert(0, Section("Latency (timed interleaved)", "\n".join(
            f"- batch {bs}: {sp.describe()}" for bs, sp in speed.items())))
    report = Report(title=f"prunekit prune: {args.checkpoint or ckpt.name}", profile={"before": figures(before),
                                                                         "after": figures(after)},
                    data={"plan": plan.summary(), "layers": plan.layer_rows(), "out": str(args.out),
                          "before": before, "after": after,
                          **({"latency": {bs: sp.to_dict() for bs, sp in speed.items()}} if speed else {})},
                    sections=sections)
    run_dir.write_report(report, provenance(command=command_line(args), config=settings,
                                            dataset=(ckpt.meta or {}).get("dataset") or (ckpt.meta or {}).get("data"),
                                            source=ckpt.path))


def _profiles(dense, pruned, input_shape, latency: bool):
    """Params / MACs (and optionally latency) of both models, from prunekit.measure."""
    from prunekit import measure

    if latency:
        from prunekit.measure.threads import env_threads

        reps = measure.profile_many({"before": dense, "after": pruned}, input_shape, batch_sizes=(1,),
                                    latency=True, memory=False, threads=env_threads())
        return reps["before"].to_dict(), reps["after"].to_dict()
    out = []
    for m in (dense, pruned):
        rep = measure.profile(m, input_shape, batch_sizes=(1,), latency=False, memory=False)
        out.append(rep.to_dict())
    return out[0], out[1]


def _speedups(before: dict, after: dict) -> dict:
    """``{batch size: SpeedupResult}`` of the latencies both profiles have (timed together by profile_many)."""
    from prunekit.measure import LatencyResult, paired_speedup

    out = {}
    for bs, lat in (before.get("latency") or {}).items():
        a = (after.get("latency") or {}).get(bs)
        sp = a and paired_speedup(LatencyResult.from_dict(lat), LatencyResult.from_dict(a))
        if sp:
            out[bs] = sp
    return out


def _profile_table(before: dict, after: dict) -> str:
    rows = [("params", before.get("params"), after.get("params")),
            ("MACs / sample", _macs(before), _macs(after))]
    cells = [(name, _fmt(b), _fmt(a), f"{a / b:.3f}" if b and a is not None else "-") for name, b, a in rows]
    speed = _speedups(before, after)
    for bs, sp in speed.items():  # the paired ratio with its interval, never a ratio of two medians
        cells.append((f"latency bs={bs} ms", _fmt(sp.before.median_ms), _fmt(sp.after.median_ms), sp.short()))
    lines = [f"{'':16s} {'before':>14s} {'after':>14s} {'ratio':>7s}"]
    lines += [f"{name:16s} {b:>14s} {a:>14s} {ratio:>7s}" for name, b, a, ratio in cells]
    lines += [f"latency bs={bs}: {sp.describe()}" for bs, sp in speed.items()]
    return "\n".join(lines)


def _macs(d: dict):
    m = d.get("macs")
    return m.get("total") if isinstance(m, dict) else m


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v < 1000:
        return f"{v:.3f}"
    return f"{int(v):,}"
