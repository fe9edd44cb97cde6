"""``run_structured``: the whole pipeline of a structured method, with its report files.

Steps: evaluate the dense model -> the method (sparsity training for slimming,
sensitivity for l1, layer-wise reconstruction for lasso/thinet, rounds for
fpgm/taylor) produces plan(s) and the pruned model -> evaluate -> fine-tune (or train
from scratch) -> evaluate, count MACs/params, time both models -> write ``out_dir``:
``pruned.pt`` (``prunekit.checkpoint``), ``plan.json`` (the last plan; ``plans.json``
holds all of them for iterative recipes), ``report.json``, ``report.md`` and PNG plots.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from prunekit.errors import ConfigError


@dataclass
class Outcome:
    """What a method's prune step returns to the pipeline."""

    model: object
    plans: list
    extra: dict = field(default_factory=dict)
    plots: dict = field(default_factory=dict)   # file name -> fn(path)


@dataclass
class StructuredResult:
    """Result of :func:`run_structured`: the final model, the plans, the report dict, written files."""

    model: object
    plans: list
    report: dict
    files: list

    def to_dict(self) -> dict:
        return dict(self.report)


def coerce_config(config_cls, config):
    """``config`` as an instance of ``config_cls`` (None: defaults; dict: checked by ``prunekit.config``)."""
    from prunekit.config import from_dict

    if config is None:
        cfg = config_cls()
    elif isinstance(config, dict):
        cfg = from_dict(config_cls, config, where=config_cls.__name__)
    elif isinstance(config, config_cls):
        cfg = config
    else:
        raise ConfigError(f"expected a {config_cls.__name__} or a dict, got {type(config).__name__}")
    cfg.check()
    return cfg


#: files every structured run may write besides its method's plots (cleared by overwrite)
OUTPUT_FILES = ("pruned.pt", "plan.json", "plans.json")


def run_structured(model, data, method: str, config=None, out_dir=None, progress: bool = True,
                   overwrite: bool = False, provenance: dict | None = None) -> StructuredResult:
    """Run ``method`` on ``model`` (left untouched) with ``data`` (a ``DatasetSplits``).

    Args:
        method: a name of :data:`STRUCTURED_METHODS` (l1, slimming, lasso, thinet, fpgm, taylor, dcp, autocompress,
            dcff, scp, pai, random).
        config: the method's config dataclass, a dict of its keys, or None for defaults.
        out_dir: run directory for the files (None: write nothing).
        overwrite: replace the files of an earlier run in ``out_dir`` (they are cleared first).
        provenance: what the caller knows of the run's origin (e.g. ``{"command": ..., "source": path}``,
            see :func:`prunekit.runs.provenance`); completed with the method, config and dataset.

    Example:
        >>> res = run_structured(net, load_dataset("digits"), "lasso", {"macs": 0.5}, "runs/x")  # doctest: +SKIP
        >>> res.report["after_finetune"]["top1"]                                                  # doctest: +SKIP
    """
    import time

    import torch

    from prunekit.measure import compare_speed, count_macs
    from prunekit.methods.structured import STRUCTURED_METHODS
    from prunekit.methods.structured._common import example_input
    from prunekit.train import evaluate, reinitialize, run_finetune

    info = STRUCTURED_METHODS.get(method)
    cfg = coerce_config(info.config_cls, config)
    run_dir = None
    if out_dir is not None:
        from prunekit.runs import RunDir, source_path

        run_dir = RunDir.open(out_dir, OUTPUT_FILES, overwrite=overwrite, what="a run",
                              keep=[source_path(provenance)])
    torch.manual_seed(cfg.seed)
    ex = example_input(data)
    t0 = time.perf_counter()
    dense = evaluate(model, data.test_x, data.test_y)
    outcome = info.prune(model, data, cfg, progress)
    t_prune = time.perf_counter() - t0
    net = outcome.model
    pruned_acc = evaluate(net, data.test_x, data.test_y)
    if cfg.from_scratch:
        net = reinitialize(net, cfg.seed)
    hist = None
    if cfg.finetune.epochs > 0:
        hist = run_finetune(net, data, cfg.finetune, progress=progress, seed=cfg.seed).history
    final = evaluate(net, data.test_x, data.test_y)
    net.eval()
    macs0, macs1 = float(count_macs(model, ex).total), float(count_macs(net, ex).total)
    par0 = float(sum(p.numel() for p in model.parameters()))
    par1 = float(sum(p.numel() for p in net.parameters()))
    report = {"method": method, "paper": info.paper, "config": _plain(cfg),
              "dense": _acc(dense), "pruned": _acc(pruned_acc), "after_finetune": _acc(final),
              "macs": {"before": macs0, "after": macs1, "kept": macs1 / macs0},
              "params": {"before": par0, "after": par1, "kept": par1 / par0},
              "prune_seconds": t_prune, "finetune_epochs": cfg.finetune.epochs,
              "from_scratch": cfg.from_scratch, "extra": outcome.extra}
    if hist is not None and hasattr(hist, "to_dict"):
        report["finetune_history"] = _safe(hist.to_dict())
    if cfg.latency:
        # dense and pruned timed interleaved: a paired ratio with its interval, or "not measurable"
        report["latency"] = compare_speed(model.eval(), net, data.test_x[:32], rounds=30, warmup=3).to_dict()
    files = []
    if run_dir is not None:
        from prunekit.runs import complete

        prov = complete(provenance, call="prunekit.methods.structured.run_structured", config=report["config"],
                        dataset=getattr(data, "name", None))
        files = _write_run(run_dir, net, outcome, report, prov, getattr(data, "input_shape", None))
    return StructuredResult(net, outcome.plans, report, files)


def _acc(d: dict) -> dict:
    return {"top1": float(d["top1"]), "loss": float(d["loss"])}


def _plain(cfg) -> dict:
    from prunekit.config import to_dict

    return to_dict(cfg)


def _safe(obj):
    return json.loads(json.dumps(obj, default=str))


def _write_run(run, net, outcome: Outcome, report: dict, provenance: dict, input_shape=None) -> list:
    """Write the run's files into ``run`` (a :class:`prunekit.runs.RunDir`, already checked against overwriting)."""
    from prunekit import checkpoint
    from prunekit.runs import lineage, source_path

    out = run.path
    meta = {"structured": {k: report[k] for k in ("method", "macs", "after_finetune")},
            **lineage(source_path(provenance), None, dataset=provenance.get("dataset"), input_shape=input_shape)}
    # the RunDir refused (or cleared) earlier outputs, so these writes replace nothing of the user's
    files = [checkpoint.save(run.file("pruned.pt"), net, meta=meta, overwrite=True)]
    if outcome.plans:
        files.append(outcome.plans[-1].save(run.file("plan.json"), overwrite=True))
    if len(outcome.plans) > 1:
        files.append(run.write_text("plans.json", json.dumps([p.to_dict() for p in outcome.plans])))
    for name, fn in outcome.plots.items():
        fn(run.file(name))
        files.append(out / name)
    report = dict(report, files=[Path(f).name for f in files] + ["report.json", "report.md"])
    plan = outcome.plans[-1] if outcome.plans else None
    run.write_report(build_report(report, plan, [n for n in outcome.plots if n.endswith(".png")]), provenance)
    return files + [out / "report.json", out / "report.md"]


def build_report(report: dict, plan=None, plots=()):
    """The :class:`prunekit.runs.Report` of a run: accuracy/MACs/params before and after, the plan's channels."""
    from prunekit.runs import Report, Section

    r = report
    lines = [f"Method from: {r['paper']}", "",
             "| | top-1 % | MACs | params |", "|---|---:|---:|---:|",
             f"| dense | {r['dense']['top1']:.2f} | {r['macs']['before']:.0f} | {r['params']['before']:.0f} |",
             f"| pruned, before fine-tuning | {r['pruned']['top1']:.2f} | {r['macs']['after']:.0f} | "
             f"{r['params']['after']:.0f} |",
             f"| pruned, after {'training from scratch' if r['from_scratch'] else 'fine-tuning'} "
             f"({r['finetune_epochs']} epochs) | {r['after_finetune']['top1']:.2f} | | |", "",
             f"MACs kept: {100 * r['macs']['kept']:.1f}%, parameters kept: {100 * r['params']['kept']:.1f}%, "
             f"prune step: {r['prune_seconds']:.1f} s."]
    if "latency" in r:
        from prunekit.measure import SpeedupResult

        sp = SpeedupResult.from_dict(r["latency"])
        lines.append(f"Latency of the pruned network against the dense one, timed interleaved (medians: dense "
                     f"{sp.before.median_ms:.2f} ms, pruned {sp.after.median_ms:.2f} ms): {sp.describe()}.")
    sections = [Section("Accuracy and cost", "\n".join(lines))]
    if plan is not None:
        sections.append(Section("Channels per layer (last plan)", f"```\n{plan.table()}\n```"))
        sel = plan.info.get("input_selection")
        if sel:  # channel sampler of lasso (He et al. 2017): the stream keeps its width, the layer reads fewer
            body = "\n".join(["```"] + [f"{k}  {v['before']} -> {v['after']}" for k, v in sel.items()] + ["```"])
            sections.append(Section("Input channels read (channel sampler before the first layer of each branch)",
                                    body))
    profile = {"before": {"params": r["params"]["before"], "MACs": r["macs"]["before"],
                          "test top-1 %": r["dense"]["top1"]},
               "after": {"params": r["params"]["after"], "MACs": r["macs"]["after"],
                         "test top-1 %": r["after_finetune"]["top1"]}}
    return Report(title=f"Structured pruning: {r['method']}", data=_safe(r), sections=sections, profile=profile,
                  labels=("dense", "pruned + fine-tuned"), plots=list(plots))


def report_markdown(report: dict, plan=None) -> str:
    """The Markdown of a run's report (``report.md`` without its provenance section)."""
    from prunekit.runs import render_markdown

    return render_markdown(build_report(report, plan))
