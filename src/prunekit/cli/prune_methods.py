"""Helpers behind ``prunekit prune CKPT --method NAME``: the structured methods' whole pipeline.

``cmd_prune`` calls :func:`add_method_arguments` on its parser and, when
``args.method`` (or ``args.recipe``) is set, returns :func:`run_method(args) <run_method>`.
The run directory (``--out DIR``) then holds ``pruned.pt``, ``plan.json``,
``report.json``, ``report.md`` and the plots (see ``docs/methods.md``).

A YAML recipe describes the same run with every hyper-parameter::

    method: lasso          # l1 | slimming | lasso | thinet | fpgm | taylor | dcp | autocompress | dcff | scp | pai
                           # | random | dynamic
    data: mnist5k          # any prunekit.data name or path spec
    config:                # the method's config dataclass (docs/methods.md)
      macs: 0.5
      finetune: {epochs: 2, lr: 0.01}
      points_per_image: 10

Command-line flags override the recipe. ``prunekit prune`` is the only front end (the module has no
parser of its own).
"""
from __future__ import annotations

import json

RECIPE_KEYS = ("method", "data", "config")
#: the run-time (input-dependent) method: not a channel-removing plan, so not in STRUCTURED_METHODS
DYNAMIC = "dynamic"


def add_method_arguments(parser) -> None:
    """Add ``--method``, ``--recipe``, ``--data``, the ``--finetune-*`` flags, ``--seed``, ``--set``, ``--no-progress``."""
    parser.add_argument("--method", help="run a structured method's whole pipeline: l1, slimming, lasso, thinet, "
                                         "fpgm, taylor, dcp, autocompress, dcff, scp, pai, random, or dynamic (FBS "
                                         "run-time gates, --set keep=F; docs/methods.md) (then --out is a run "
                                         "directory)")
    parser.add_argument("--recipe", metavar="YAML", help="YAML recipe (method, data, config) for --method runs")
    parser.add_argument("--data", help="dataset for --method runs (calibration, fine-tuning, evaluation), e.g. mnist5k")
    parser.add_argument("--seed", type=int, help="seed of sampling and fine-tuning (--method runs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one option (YAML value), repeatable: a config key of the method with "
                             "--method (finetune.KEY=VALUE for a fine-tuning key), else a planner option "
                             "(PlanOptions key); unknown keys are errors")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    from prunekit.cli.finetune_flags import add_finetune_arguments

    add_finetune_arguments(parser, what="fine-tuning after pruning (--method runs)")


def load_recipe(path) -> dict:
    """Read and check a recipe file: a mapping with only ``method``, ``data`` and ``config``."""
    from pathlib import Path

    from prunekit.config import load_yaml
    from prunekit.errors import ConfigError

    p = Path(path)
    try:
        d = load_yaml(p, "recipe file")
    except ConfigError as e:
        if "top level" not in str(e):
            raise
        raise ConfigError(f"{p}: a recipe must be a mapping with keys {', '.join(RECIPE_KEYS)}") from None
    for k in d:
        if k not in RECIPE_KEYS:
            raise ConfigError(f"{p}: unknown recipe key {k!r} (allowed: {', '.join(RECIPE_KEYS)})")
    for k in ("method", "data"):
        if k in d and not isinstance(d[k], str):
            raise ConfigError(f"{p}: recipe key {k!r} must be a string, got {d[k]!r}")
    if "config" in d and not isinstance(d["config"], dict):
        raise ConfigError(f"{p}: recipe key 'config' must be a mapping, got {d['config']!r}")
    return d


def resolve(args):
    """``(method, data name, config instance)`` from the recipe and the flags (flags win)."""
    from prunekit.config import parse_assignment
    from prunekit.errors import ConfigError
    from prunekit.methods.structured import STRUCTURED_METHODS
    from prunekit.methods.structured.pipeline import coerce_config

    recipe = load_recipe(args.recipe) if getattr(args, "recipe", None) else {}
    method = getattr(args, "method", None) or recipe.get("method")
    if not method:
        raise ConfigError("give --method or a recipe with a 'method' key")
    if method not in STRUCTURED_METHODS and method != DYNAMIC:
        names = sorted([*STRUCTURED_METHODS.names(), DYNAMIC])
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(names)}")
    data = getattr(args, "data", None) or recipe.get("data")
    if not data:
        raise ConfigError("give --data (e.g. mnist5k) or a recipe with a 'data' key")
    cfg = dict(recipe.get("config") or {})
    if method == DYNAMIC:
        for flag in ("macs", "ratio"):
            if getattr(args, flag, None) is not None:
                raise ConfigError(f"--{flag} does not apply to --method dynamic: give the channels kept per input "
                                  "with --set keep=FRACTION (the static alternative gets the same average MACs)")
    for flag, key in (("macs", "macs"), ("ratio", "ratio"), ("seed", "seed")):
        v = getattr(args, flag, None)
        if v is not None:
            cfg[key] = v
    if getattr(args, "ratio", None) is not None and getattr(args, "macs", None) is None:
        cfg["macs"] = None
    from prunekit.cli.finetune_flags import merge_finetune

    cfg = merge_finetune(cfg, args)
    for item in getattr(args, "set", None) or []:
        k, v = parse_assignment(item)
        if k.startswith("finetune.") and isinstance(cfg.get("finetune", {}), dict):
            cfg["finetune"] = {**cfg.get("finetune", {}), k[len("finetune."):]: v}
        else:
            cfg[k] = v
    if method == DYNAMIC:
        from prunekit.methods.dynamic import DynamicConfig

        return method, data, coerce_config(DynamicConfig, cfg)
    return method, data, coerce_config(STRUCTURED_METHODS.get(method).config_cls, cfg)


def run_method(args) -> int:
    """Load ``args.checkpoint`` and ``--data``, run the method's pipeline into ``args.out``; print a summary."""
    from prunekit import checkpoint
    from prunekit.data import load_dataset
    from prunekit.errors import PrunekitError
    from prunekit.methods.structured import run_structured

    method, data_name, cfg = resolve(args)
    if not getattr(args, "out", None):
        raise PrunekitError("--out DIR is required with --method (the run directory)")
    from prunekit.runs import command_line, provenance

    from prunekit.cli.model_arg import check_data_shape, load_model

    data = load_dataset(data_name)
    ckpt = load_model(args, data_shape=data.input_shape)   # CKPT or --model package.module:factory
    ckpt.require_spec("pruned")
    check_data_shape(ckpt, data.input_shape, data_name)
    checkpoint.check_finite(ckpt.model, str(ckpt.path or ckpt.name))
    if method == DYNAMIC:
        return _run_dynamic(args, ckpt, data, cfg, provenance(command=command_line(args), source=ckpt.path))
    res = run_structured(ckpt.model, data, method, cfg, args.out, progress=getattr(args, "progress", True),
                         overwrite=bool(getattr(args, "overwrite", False)),
                         provenance=provenance(command=command_line(args), source=ckpt.path))
    r = res.report
    if getattr(args, "json", False):
        print(json.dumps({k: r[k] for k in ("method", "dense", "pruned", "after_finetune", "macs", "params")}))
    else:
        print(f"{method}: top-1 {r['dense']['top1']:.2f}% -> {r['pruned']['top1']:.2f}% (pruned) -> "
              f"{r['after_finetune']['top1']:.2f}% (after {r['finetune_epochs']} epochs); "
              f"MACs kept {100 * r['macs']['kept']:.1f}%, params kept {100 * r['params']['kept']:.1f}%")
        print(f"wrote {args.out}/: " + ", ".join(r_.name for r_ in map(_path, res.files)))
    return 0


def _path(p):
    from pathlib import Path

    return Path(p)


def _run_dynamic(args, ckpt, data, cfg, prov) -> int:
    """``--method dynamic``: gates trained with the network, MACs per input, the static alternative."""
    from prunekit.methods.dynamic import run_dynamic

    res = run_dynamic(ckpt.model, data, cfg, args.out, progress=getattr(args, "progress", True),
                      overwrite=bool(getattr(args, "overwrite", False)), provenance=prov)
    r = res.report
    if getattr(args, "json", False):
        print(json.dumps({k: r[k] for k in ("method", "dense", "dynamic", "static") if k in r}))
        return 0
    d0 = r["dense"]["macs"]
    line = (f"dynamic: top-1 {r['dense']['top1']:.2f}% (dense) -> {r['dynamic']['top1']:.2f}% at "
            f"{100 * r['dynamic']['macs'] / d0:.1f}% MACs per input (mean)")
    if "static" in r:
        line += f"; static {r['static']['top1']:.2f}% at {100 * r['static']['macs'] / d0:.1f}% MACs"
    print(line)
    print(f"wrote {args.out}/: " + ", ".join(_path(p).name for p in res.files))
    return 0
