"""``prunekit demo``: the whole story on real data in a few minutes.

Trains a LeNet-5 on mnist5k (4,000 real MNIST digits for training, 1,000 for
testing), profiles it, prunes it structurally to half its MACs and fine-tunes,
then Deep-Compresses it into a .pkz file and prints sizes before and after.
"""
from __future__ import annotations

import json
import time
from pathlib import Path


def add_parser(subparsers):
    """Register the ``demo`` sub-command."""
    p = subparsers.add_parser(
        "demo", help="train, profile, prune and compress a small CNN on real MNIST digits",
        description="Train LeNet-5 on mnist5k, report accuracy, params, MACs and latency; prune it to "
                    "half its MACs with L1 filter pruning and fine-tune; compress it with Deep "
                    "Compression into a .pkz file. Everything is written to --out.")
    p.add_argument("--out", default=None, help="run directory (default: runs/demo-<timestamp>)")
    p.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    p.add_argument("--finetune-epochs", type=int, default=3, help="fine-tuning epochs after pruning (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation (default 0)")
    p.add_argument("--skip-prune", action="store_true", help="stop after training and profiling")
    p.add_argument("--skip-compress", action="store_true", help="skip the Deep Compression stage")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--overwrite", action="store_true",
                   help="reuse an --out that holds files (a previous demo's outputs are removed)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every stage's figures")
    return p


#: every file or folder the demo writes into --out
OUTPUT_FILES = ("train/", "finetune/", "lenet5.pt", "lenet5_pruned.pt", "plan.json", "model.pkz")


def run(args) -> int:
    """Run the demo pipeline."""
    import torch

    from prunekit import checkpoint, models
    from prunekit.data import load_dataset
    from prunekit.errors import PrunekitError
    from prunekit.measure import paired_speedup, profile, profile_many
    from prunekit.runs import RunDir, Section, command_line, provenance
    from prunekit.train import TrainConfig, Trainer, evaluate
    from prunekit.validate import check_int

    check_int("--epochs", args.epochs, error=PrunekitError)
    check_int("--finetune-epochs", args.finetune_epochs, minimum=0, error=PrunekitError)
    seed = check_int("--seed", getattr(args, "seed", 0), minimum=0, error=PrunekitError)
    from prunekit.measure.threads import command_threads

    threads = command_threads(args.threads)
    if threads:
        torch.set_num_threads(threads)
    out = Path(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = RunDir.open(out, OUTPUT_FILES, overwrite=args.overwrite, require_empty=True)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    say = (lambda *a: None) if args.json else print
    result: dict = {"out": str(out)}
    t0 = time.perf_counter()

    from prunekit.utils.seed import seed_everything

    seed_everything(seed)  # the initial weights: unseeded, two demo runs ended up to 0.8 point apart
    data = load_dataset("mnist5k")
    say(f"data: mnist5k, {len(data.train_y)} train / {len(data.test_y)} test real MNIST digits")
    model = models.create("lenet5", num_classes=data.num_classes, in_channels=data.in_channels,
                          input_size=data.image_size)
    cfg = TrainConfig(epochs=args.epochs, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9,
                      weight_decay=5e-4, schedule="cosine", seed=seed, progress=not args.no_progress)
    Trainer(model, data, cfg, out_dir=out / "train").fit()
    metrics = evaluate(model, data.test_x, data.test_y)
    input_shape = (data.in_channels, *data.image_size)
    prof = profile(model, input_shape, batch_sizes=(1, 32))
    ckpt = checkpoint.save(out / "lenet5.pt", model, meta={"dataset": "mnist5k", **_metric_meta(metrics)})
    result["trained"] = {"top1": metrics["top1"], **_prof_dict(prof), "file_bytes": ckpt.stat().st_size}
    say(f"\ntrained LeNet-5: test top-1 {metrics['top1']:.2f}%")
    say(prof.to_table())

    if not args.skip_prune:
        from prunekit.engine import plan as make_plan

        example = torch.zeros(1, *input_shape)
        plan = make_plan(model, example, criterion="l1", macs=0.5, tolerance=0.03)
        pruned = plan.apply(model)
        before_ft = evaluate(pruned, data.test_x, data.test_y)
        if args.finetune_epochs:
            ft = TrainConfig(epochs=args.finetune_epochs, batch_size=64, optimizer="sgd", lr=0.01,
                             momentum=0.9, weight_decay=5e-4, schedule="cosine", seed=seed,
                             progress=not args.no_progress)
            Trainer(pruned, data, ft, out_dir=out / "finetune").fit()
        after = evaluate(pruned, data.test_x, data.test_y)
        # both timed in one interleaved call: the before/after latency ratio is paired, with an interval
        both = profile_many({"trained": model, "pruned": pruned}, input_shape, batch_sizes=(1, 32))
        prof_p, comparison = both["pruned"], both["trained"].compare(both["pruned"], labels=("trained", "pruned"))
        ck_p = checkpoint.save(out / "lenet5_pruned.pt", pruned, meta={"dataset": "mnist5k", **_metric_meta(after)})
        plan.save(out / "plan.json")
        result["pruned"] = {"top1_before_finetune": before_ft["top1"], "top1": after["top1"],
                            **_prof_dict(prof_p), "file_bytes": ck_p.stat().st_size,
                            "latency_vs_trained": {str(bs): paired_speedup(both["trained"].latency[bs], r).to_dict()
                                                   for bs, r in prof_p.latency.items()}}
        say(f"\npruned to {prof_p.macs.total / prof.macs.total:.0%} of the MACs with L1 filter pruning: "
            f"top-1 {before_ft['top1']:.2f}% before fine-tuning, {after['top1']:.2f}% after")
        say(comparison.to_table())
        say(plan.table())
        sections += [Section("Profile: trained vs pruned", f"```\n{comparison.to_table()}\n```"),
                     Section("Channels per layer", f"```\n{plan.table()}\n```")]
        model = pruned

    if not args.skip_compress:
        from prunekit.compress import demo_stage

        comp = demo_stage(model, data, out / "model.pkz", progress=not args.no_progress, seed=seed)
        result["compressed"] = comp
        say(f"\nDeep Compression: {comp['dense_bytes']:,} B float32 checkpoint -> {comp['pkz_bytes']:,} B .pkz "
            f"({comp['ratio']:.1f}x smaller), top-1 {comp['top1']:.2f}%")

    result["seconds"] = round(time.perf_counter() - t0, 1)
    config = {k: getattr(args, k) for k in ("epochs", "finetune_epochs", "seed", "skip_prune", "skip_compress", "threads")}
    run_dir.write_report(demo_report(result, sections),
                         provenance(command=command_line(args), config=config, dataset="mnist5k", source="zoo:lenet5"))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"\ndone in {result['seconds']:.0f} s; files in {out}/")
    return 0


def demo_report(result: dict, sections=()):
    """The demo's :class:`prunekit.runs.Report`: one row per stage, the trained vs final model, the tables shown."""
    from prunekit.runs import Report, Section, md_table

    rows = [["trained", result["trained"]["top1"], result["trained"]["params"], result["trained"]["macs"],
             result["trained"]["file_bytes"], "lenet5.pt"]]
    if "pruned" in result:
        p = result["pruned"]
        rows.append(["pruned + fine-tuned", p["top1"], p["params"], p["macs"], p["file_bytes"], "lenet5_pruned.pt"])
    if "compressed" in result:
        c = result["compressed"]
        rows.append(["Deep Compression", c["top1"], None, None, c["pkz_bytes"], "model.pkz"])
    stages = md_table(["stage", "test top-1 %", "params", "MACs", "file bytes", "file"], rows, align="lrrrrl")
    last = rows[-1]
    profile = {"before": {"test top-1 %": rows[0][1], "file bytes": rows[0][4]},
               "after": {"test top-1 %": last[1], "file bytes": last[4]}}
    return Report(title="prunekit demo: LeNet-5 on mnist5k", data=result,
                  summary=[("stages", len(rows)), ("seconds", result.get("seconds"))], profile=profile,
                  labels=("trained", last[0]), sections=[Section("Stages", stages), *sections])


def _metric_meta(m: dict) -> dict:
    return {"top1": m["top1"], "top5": m.get("top5"), "loss": m["loss"]}


def _prof_dict(prof) -> dict:
    return {"params": prof.params, "macs": prof.macs.total,
            "latency_ms": {str(bs): r.median_ms for bs, r in prof.latency.items()}}
