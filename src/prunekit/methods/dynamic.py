"""Dynamic (run-time, input-dependent) channel pruning: FBS gates, with the static alternative beside it.

Feature Boosting and Suppression (Gao, Zhao, Dudziak, Mullins & Xu, "Dynamic Channel
Pruning: Feature Boosting and Suppression", ICLR 2019): a small gate per convolution
(global average pool -> linear -> ReLU) keeps the ``k`` most salient output channels of
each input and scales them by their saliency; trained with the network (k-winners-take-all:
the gradient flows through the kept saliencies). Runtime Neural Pruning (Lin, Rao, Lu & Zhou,
NeurIPS 2017) is the reinforcement-learning variant of the same idea; the survey in the seeds
(003_*, "dynamic pruning") places both beside static pruning, which removes the same channels
for every input.

Which convolutions get a gate comes from the engine's coupling groups
(:func:`prunekit.graph.build_groups`): a group with one Conv2d producer (``groups=1``),
optionally its BatchNorm, and Conv2d/Linear readers. A group with several producers (a
residual sum: every branch must keep the same channels) or other members stays static and is
listed with its reason. The swap itself is :func:`prunekit.surgery.gates.gate_convs`.

:func:`run_dynamic` gates a trained model, fine-tunes it with the gates (one
:class:`~prunekit.train.FinetuneConfig`), counts its MACs per test input on the skipping path
(really smaller convolutions, batch 1), and trains the static alternative: the same network
pruned by the engine (``prunekit.plan(macs=<the dynamic average>)``) and fine-tuned the same way.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

from prunekit.errors import PrunekitError
from prunekit.methods.structured import StructuredFinetune
from prunekit.train import as_finetune, finetune_field
from prunekit.validate import check_fraction, check_int

PAPER = ("Gao, Zhao, Dudziak, Mullins & Xu, Dynamic Channel Pruning: Feature Boosting and Suppression, "
         "ICLR 2019")


#: the gated network's training: the structured methods' fine-tuning defaults (2 epochs of SGD at 0.01, cosine)
DynamicFinetune = StructuredFinetune


@dataclass
class DynamicConfig:
    """Options of :func:`run_dynamic`.

    Attributes:
        keep: fraction of each gated convolution's output channels kept per input (``k = round(keep * C)``, >= 1).
        finetune: training of the network with its gates (and of the static alternative).
        static: also prune the network statically to the dynamic one's average MACs and fine-tune it the same way.
        static_criterion: the engine's criterion for the static alternative.
        macs_images: test images whose MACs are counted on the skipping path (the average is reported).
        seed: seeds the gates' initialisation and (unless ``finetune.seed`` is set) the training.
    """

    keep: float = 0.5
    finetune: DynamicFinetune = finetune_field(DynamicFinetune)
    static: bool = True
    static_criterion: str = "l1"
    macs_images: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        self.finetune = as_finetune(self.finetune, DynamicFinetune, "finetune")

    def check(self) -> None:
        """Raise ConfigError for out-of-range values."""
        check_fraction("config key 'keep'", self.keep, allow_zero=False, allow_one=True)
        check_int("config key 'macs_images'", self.macs_images, minimum=1)


def plan_gates(model, example_input, keep: float):
    """``(units, static)``: the convolutions to gate (see :func:`~prunekit.surgery.gates.gate_convs`) and the rest.

    ``static`` maps each coupling group left static to the reason (several producers: a residual
    sum; a non-Conv2d producer; members the skipping path cannot slice).
    """
    import torch.nn as nn

    from prunekit.graph import build_groups

    mods = dict(model.named_modules())
    units, static = {}, {}
    for g in build_groups(model, example_input):
        prods = g.producers
        if len(prods) != 1:
            static[g.name] = f"{len(prods)} producers ({', '.join(prods)}): coupled channels (residual sum)"
            continue
        conv = mods.get(prods[0])
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
            static[g.name] = f"producer is {type(conv).__name__}, not a Conv2d with groups=1"
            continue
        bn, readers, per, why = None, [], {}, None
        for m in g.members:
            mod = mods.get(m.module)
            if m.module == prods[0]:
                continue
            if isinstance(mod, nn.BatchNorm2d) and m.role != "in":
                if bn not in (None, m.module):
                    why = "two BatchNorms"
                bn = m.module
            elif m.role == "in" and m.param.endswith(".weight") and m.dim == 1 and (
                    isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.groups == 1)):
                if m.module not in readers:
                    readers.append(m.module)
                    width = mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels
                    if width % g.size:
                        why = f"reader {m.module} has {width} inputs for {g.size} channels"
                    per[m.module] = width // g.size
            else:
                why = f"member {m.param}[{m.dim}] ({type(mod).__name__}) cannot be sliced per input"
        if why:
            static[g.name] = why
            continue
        units[prods[0]] = {"k": max(1, int(round(keep * g.size))), "readers": readers, "bn": bn, "per_channel": per}
    return units, static


def gate_model(model, example_input, keep: float, seed: int = 0):
    """``(gated copy of model, units, static)``: FBS gates on every gateable convolution (``model`` untouched).

    Raises:
        PrunekitError: no convolution can be gated, or the skipping path does not reproduce the masked one
            (an op between a gated layer and its reader that does not keep zeros zero).
    """
    import torch

    from prunekit import checkpoint
    from prunekit.surgery.gates import gates_transform

    units, static = plan_gates(model, example_input, keep)
    if not units:
        raise PrunekitError("dynamic pruning: no convolution can be gated (" +
                            "; ".join(f"{k}: {v}" for k, v in static.items()) + ")")
    net = copy.deepcopy(model)
    torch.manual_seed(seed)
    net = checkpoint.apply_transform(net, gates_transform(units))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(example_input.shape), generator=gen)
    diff = skip_error(net, x)
    if diff > 1e-4:
        raise PrunekitError(f"dynamic pruning: the skipping path differs from the masked one by {diff:.3g}; an op "
                            "between a gated layer and its reader does not map zero to zero")
    return net, units, static


def skip_error(gated, x) -> float:
    """Largest ``|skip(x) - masked(x)|`` over the batch-1 inputs of ``x`` (eval mode)."""
    import torch

    from prunekit.surgery.gates import set_mode

    was = gated.training
    gated.eval()
    err = 0.0
    with torch.no_grad():
        for i in range(x.shape[0]):
            set_mode(gated, "masked")
            a = gated(x[i:i + 1])
            set_mode(gated, "skip")
            b = gated(x[i:i + 1])
            err = max(err, float((a - b).abs().max()))
    set_mode(gated, "masked")
    gated.train(was)
    return err


def dynamic_macs(gated, x) -> list:
    """MACs of each input of ``x`` on the skipping path (batch 1): what really runs, the gates included.

    The first input is counted by :func:`prunekit.measure.count_macs` (the flop counter); the layers
    without gates do the same work for every input, so each further input's count is that total with
    the gated layers' own MACs (their ``last_macs``: shapes of the convolutions that ran) swapped.
    """
    import torch

    from prunekit.measure import count_macs
    from prunekit.surgery.gates import set_mode, skipped_macs

    was = gated.training
    gated.eval()
    set_mode(gated, "skip")
    try:
        first = int(count_macs(gated, x[:1]).total)
        fixed = first - skipped_macs(gated)
        out = [first]
        with torch.no_grad():
            for i in range(1, x.shape[0]):
                gated(x[i:i + 1])
                out.append(fixed + skipped_macs(gated))
        return out
    finally:
        set_mode(gated, "masked")
        gated.train(was)


@dataclass
class DynamicResult:
    """Result of :func:`run_dynamic`: the gated model, the static alternative (or None), the report dict, files."""

    model: object
    static_model: Optional[object]
    report: dict
    files: list


def run_dynamic(model, data, config=None, out_dir=None, progress: bool = True, overwrite: bool = False,
                provenance: dict | None = None) -> DynamicResult:
    """Gate ``model`` (left untouched), train it with its gates, count MACs per input, train the static alternative.

    Args:
        config: a :class:`DynamicConfig`, a dict of its keys, or None.
        out_dir: run directory for ``gated.pt``, ``static.pt``, ``report.json``, ``report.md`` (None: write nothing).

    Example:
        >>> res = run_dynamic(net, load_dataset("digits"), {"keep": 0.5}, "runs/dyn")    # doctest: +SKIP
        >>> res.report["dynamic"]["macs_mean"] / res.report["dense"]["macs"]                # doctest: +SKIP
    """
    import prunekit
    from prunekit.measure import count_macs
    from prunekit.methods.structured.pipeline import coerce_config
    from prunekit.train import evaluate, run_finetune

    cfg = coerce_config(DynamicConfig, config)
    run_dir = None
    if out_dir is not None:
        from prunekit.runs import RunDir, source_path

        run_dir = RunDir.open(out_dir, ("gated.pt", "static.pt"), overwrite=overwrite, what="a run",
                              keep=[source_path(provenance)])
    ex = data.train_x[:1].clone()
    dense_acc = evaluate(model, data.test_x, data.test_y)
    dense_macs = float(count_macs(model, ex).total)
    gated, units, static = gate_model(model, ex, cfg.keep, cfg.seed)
    before_ft = evaluate(gated, data.test_x, data.test_y)
    if cfg.finetune.epochs > 0:
        run_finetune(gated, data, cfg.finetune, progress=progress, seed=cfg.seed)
    gated.eval()
    gated_acc = evaluate(gated, data.test_x, data.test_y)
    per_input = dynamic_macs(gated, data.test_x[:cfg.macs_images])
    mean_macs = sum(per_input) / len(per_input)
    report = {"method": "dynamic", "paper": PAPER, "config": _plain(cfg), "dense": _acc(dense_acc, dense_macs),
              "dynamic": {**_acc(gated_acc, mean_macs), "before_training_top1": float(before_ft["top1"]),
                          "macs_mean": mean_macs, "macs_min": float(min(per_input)),
                          "macs_max": float(max(per_input)), "macs_images": len(per_input),
                          "macs_kept": mean_macs / dense_macs},
              "gated": {k: {"k": v["k"], "readers": v["readers"], "bn": v["bn"]} for k, v in units.items()},
              "static_groups": static}
    static_net = None
    if cfg.static:
        plan = prunekit.plan(model, ex, criterion=cfg.static_criterion, macs=min(1.0, mean_macs / dense_macs))
        static_net = plan.apply(model)
        if cfg.finetune.epochs > 0:
            run_finetune(static_net, data, cfg.finetune, progress=progress, seed=cfg.seed)
        static_net.eval()
        s_macs = float(count_macs(static_net, ex).total)
        report["static"] = {**_acc(evaluate(static_net, data.test_x, data.test_y), s_macs),
                            "criterion": cfg.static_criterion, "macs_kept": s_macs / dense_macs}
    files = []
    if run_dir is not None:
        files = _write(run_dir, gated, static_net, report, provenance, data)
    return DynamicResult(gated, static_net, report, files)


def _acc(d: dict, macs: float) -> dict:
    return {"top1": float(d["top1"]), "loss": float(d["loss"]), "macs": float(macs)}


def _plain(cfg) -> dict:
    from prunekit.config import to_dict

    return to_dict(cfg)


def _write(run, gated, static_net, report, provenance, data) -> list:
    from prunekit import checkpoint
    from prunekit.runs import complete, lineage, source_path

    prov = complete(provenance, call="prunekit.methods.dynamic.run_dynamic", config=report["config"],
                    dataset=getattr(data, "name", None))
    meta = {"dynamic": {k: report[k] for k in ("config", "dynamic")},
            **lineage(source_path(prov), None, dataset=prov.get("dataset"),
                      input_shape=getattr(data, "input_shape", None))}
    files = [checkpoint.save(run.file("gated.pt"), gated, meta=meta, overwrite=True)]
    if static_net is not None:
        files.append(checkpoint.save(run.file("static.pt"), static_net, meta=meta, overwrite=True))
    run.write_report(build_report(report), prov)
    return files + [run.path / "report.json", run.path / "report.md"]


def build_report(r: dict):
    """The :class:`prunekit.runs.Report` of a dynamic run: dense, dynamic and static accuracy and MACs."""
    import json

    from prunekit.runs import Report, Section

    d0 = r["dense"]["macs"]
    rows = [("dense", r["dense"]), ("dynamic (FBS gates, skipping path)", r["dynamic"])]
    if "static" in r:
        rows.append((f"static ({r['static']['criterion']}, same average MACs)", r["static"]))
    lines = [f"Method from: {r['paper']}", "", "| network | top-1 % | MACs per input | MACs kept |",
             "|---|---:|---:|---:|"]
    lines += [f"| {name} | {v['top1']:.2f} | {v['macs']:.0f} | {100 * v['macs'] / d0:.1f}% |" for name, v in rows]
    dyn = r["dynamic"]
    lines += ["", f"Dynamic MACs: mean over {dyn['macs_images']} test inputs, counted on the skipping path "
                  f"(min {dyn['macs_min']:.0f}, max {dyn['macs_max']:.0f}; the gates' own MACs included)."]
    gates = "\n".join(f"| {k} | {v['k']} | {', '.join(v['readers'])} | {v['bn'] or ''} |"
                      for k, v in r["gated"].items())
    sections = [Section("Accuracy and MACs", "\n".join(lines)),
                Section("Gated convolutions", "| conv | kept per input | readers | BatchNorm |\n|---|---:|---|---|\n"
                        + gates)]
    if r["static_groups"]:
        sections.append(Section("Left static", "\n".join(f"- {k}: {v}" for k, v in r["static_groups"].items())))
    return Report(title="Dynamic channel pruning (FBS)", data=json.loads(json.dumps(r, default=str)),
                  sections=sections)
