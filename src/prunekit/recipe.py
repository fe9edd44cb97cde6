"""YAML recipes: a model, a dataset and a list of steps, run by ``prunekit run recipe.yaml``.

A recipe describes a whole compression pipeline with every hyper-parameter::

    out: runs/vgg_slim            # run directory (refused if it holds a run, unless --overwrite)
    data: mnist5k                 # any prunekit.data.load_dataset name
    model:                        # either a checkpoint ...
      checkpoint: runs/vgg11/best.pt
    # model: {name: vgg11, kwargs: {}}   # ... or a zoo model built fresh
    steps:
      - train: {epochs: 10, lr: 0.05}
      - prune: {criterion: l1, macs: 0.5}
      - finetune: {epochs: 3, lr: 0.01}
      - compress: {bits_conv: 8, bits_fc: 5}

Each step name maps to a config dataclass (validated with
:func:`prunekit.config.from_dict`: unknown keys and wrong types are errors that
name the step and key) and a function ``fn(state, cfg)`` that transforms the
shared :class:`RecipeState`. Steps are registered in :data:`STEPS`; the modules
defining them are imported only when a recipe uses them.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from prunekit.config import from_dict, load_yaml, to_dict
from prunekit.errors import ConfigError
from prunekit.registry import Registry
from prunekit.validate import check_int


@dataclass(frozen=True)
class Step:
    """A registered recipe step: its config dataclass and the function running it."""

    name: str
    config_cls: type
    fn: Callable
    help: str = ""


STEPS: Registry[Step] = Registry("recipe step")
# step name -> module that registers it (imported lazily).
_STEP_MODULES = {
    "train": "prunekit.recipe_steps",
    "finetune": "prunekit.recipe_steps",
    "eval": "prunekit.recipe_steps",
    "profile": "prunekit.recipe_steps",
    "prune": "prunekit.recipe_steps",
    "structured": "prunekit.recipe_steps",
    "dynamic": "prunekit.recipe_steps",
    "sparsify": "prunekit.recipe_steps",
    "compress": "prunekit.recipe_steps",
    "binarize": "prunekit.recipe_steps",
}


def register_step(name: str, config_cls: type, help: str = ""):
    """Decorator registering ``fn(state, cfg)`` as the recipe step ``name``."""

    def decorator(fn):
        STEPS.add(name, Step(name=name, config_cls=config_cls, fn=fn, help=help))
        return fn

    return decorator


def get_step(name: str) -> Step:
    """The registered step ``name`` (importing the module that defines it)."""
    if name not in STEPS and name in _STEP_MODULES:
        importlib.import_module(_STEP_MODULES[name])
    return STEPS.get(name)


def step_names() -> list[str]:
    """Every recipe step name, built-in (imported on use) or registered, sorted (for help and error texts)."""
    return sorted(set(_STEP_MODULES) | set(STEPS.names()))


@dataclass
class ModelSource:
    """Where the recipe's model comes from: a checkpoint, or a zoo name built fresh."""

    checkpoint: Optional[str] = None
    name: Optional[str] = None
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if (self.checkpoint is None) == (self.name is None):
            raise ValueError("model: give exactly one of 'checkpoint' or 'name'")


@dataclass
class Recipe:
    """A parsed recipe: see the module docstring for the YAML layout."""

    out: str
    data: str
    model: ModelSource
    steps: list = field(default_factory=list)  # list of (name, config) after parsing
    seed: int = 0
    threads: Optional[int] = None

    @classmethod
    def from_dict(cls, raw: dict) -> "Recipe":
        """Validate a raw mapping (from YAML) into a Recipe; errors name the step and key."""
        if not isinstance(raw, dict):
            raise ConfigError("a recipe must be a mapping with keys out, data, model, steps")
        raw = dict(raw)
        known = {"out", "data", "model", "seed", "threads"}
        unknown = sorted(map(str, set(raw) - known - {"steps"}))   # first: a typo such as 'step:' is named
        if unknown:
            raise ConfigError(f"recipe: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known | {'steps'}))}")
        raw_steps = raw.pop("steps", None)
        if not isinstance(raw_steps, list) or not raw_steps:
            raise ConfigError("recipe: 'steps' must be a non-empty list, e.g. [{train: {epochs: 5}}]")
        for key in ("out", "data", "model"):
            if key not in raw:
                raise ConfigError(f"recipe: missing required key '{key}'")
        steps = []
        for i, entry in enumerate(raw_steps):
            if isinstance(entry, str):
                entry = {entry: {}}
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ConfigError(f"recipe: steps[{i}] must be a mapping with one step name, e.g. {{prune: {{...}}}}")
            (name, params), = entry.items()
            if not isinstance(name, str) or (name not in _STEP_MODULES and name not in STEPS):
                known_steps = ", ".join(step_names())
                raise ConfigError(f"recipe: steps[{i}]: unknown step {name!r}; known: {known_steps}")
            step = get_step(name)
            steps.append((name, from_dict(step.config_cls, params or {}, where=f"steps[{i}].{name}")))
        model = from_dict(ModelSource, raw["model"], where="model")
        if not isinstance(raw["out"], str) or not isinstance(raw["data"], str):
            raise ConfigError("recipe: 'out' and 'data' must be strings")
        seed = check_int("recipe: seed", raw.get("seed", 0), minimum=None)
        threads = check_int("recipe: threads", raw.get("threads"), allow_none=True)
        return cls(out=raw["out"], data=raw["data"], model=model, steps=steps, seed=seed, threads=threads)

    @classmethod
    def from_yaml(cls, path) -> "Recipe":
        """Read and validate a recipe file."""
        return cls.from_dict(load_yaml(path))

    def to_dict(self) -> dict:
        """The recipe as plain data (round-trips through :meth:`from_dict`)."""
        model = {k: v for k, v in to_dict(self.model).items() if v not in (None, {})}
        return {"out": self.out, "data": self.data, "model": model, "seed": self.seed,
                "threads": self.threads, "steps": [{n: to_dict(c)} for n, c in self.steps]}


@dataclass
class RecipeState:
    """What steps share: the current model, the data, the run directory and the records so far."""

    model: Any
    data: Any
    out_dir: Path
    records: list = field(default_factory=list)
    masks: Optional[dict] = None
    extras: dict = field(default_factory=dict)

    def record(self, step: str, **info) -> None:
        """Append one line to the run's report."""
        self.records.append({"step": step, **info})


#: files a recipe run writes itself or through its built-in steps; files other steps write are found by
#: :class:`prunekit.runs.RunDir` (new since the run started) and recorded in report.json's ``outputs``
OUTPUT_FILES = ("model.pt", "recipe.json", "model.pkz", "model.pkb", "compress_report.json", "compress_report.md")


def run_recipe(recipe: Recipe, *, overwrite: bool = False, progress: bool = True,
               provenance: dict | None = None, trusted_factories=()) -> RecipeState:
    """Run every step of ``recipe`` in order; writes ``report.json``/``report.md`` and ``model.pt`` to ``recipe.out``.

    The folder must be empty unless ``overwrite``, which first removes the previous run's outputs
    (files the user put there stay). ``provenance``: what the caller knows of the run's origin (the
    command line), see :func:`prunekit.runs.provenance`. ``trusted_factories``: the model factories a
    ``model: {checkpoint: ...}`` file may use (see :func:`prunekit.checkpoint.load`); a recipe cannot trust one
    itself, it is a file too (CLI: --trust-factory).
    """
    import torch

    from prunekit import checkpoint
    from prunekit.data import load_dataset
    from prunekit.runs import RunDir
    from prunekit.utils.seed import seed_everything

    out = Path(recipe.out)
    run = RunDir.open(out, OUTPUT_FILES, overwrite=overwrite, require_empty=True, error=ConfigError,
                      keep=[recipe.model.checkpoint])
    out.mkdir(parents=True, exist_ok=True)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    seed_everything(recipe.seed)
    data = load_dataset(recipe.data)
    if recipe.model.checkpoint:
        model = checkpoint.load(recipe.model.checkpoint, trusted_factories=trusted_factories).model
    else:
        from prunekit import models

        model = models.create(recipe.model.name, num_classes=data.num_classes, in_channels=data.in_channels,
                              input_size=data.image_size, **recipe.model.kwargs)
    state = RecipeState(model=model, data=data, out_dir=out)
    state.extras["progress"] = progress
    run.write_json("recipe.json", recipe.to_dict())
    for i, (name, cfg) in enumerate(recipe.steps):
        print(f"[{i + 1}/{len(recipe.steps)}] {name}")
        get_step(name).fn(state, cfg)
    from prunekit.runs import lineage

    meta = {"recipe": recipe.to_dict(), "records": state.records,
            **lineage(recipe.model.checkpoint, None, dataset=recipe.data, input_shape=tuple(data.input_shape))}
    checkpoint.save(run.file("model.pt"), state.model, meta=meta, overwrite=True)
    write_report(state, recipe, provenance=provenance, run=run)
    return state


def write_report(state: RecipeState, recipe: Recipe, provenance: dict | None = None, run=None) -> dict:
    """Write the run's JSON and Markdown reports (into ``run``, a :class:`prunekit.runs.RunDir`, if given)."""
    from prunekit.runs import Report, RunDir, Section, complete, fmt

    if run is None:
        run = RunDir.open(state.out_dir, resume=True)  # the run's own folder, already checked
    rows = ["| # | step | result |", "|---|---|---|"]
    for i, r in enumerate(state.records, 1):
        info = ", ".join(f"{k}={fmt(v)}" for k, v in r.items() if k != "step" and not isinstance(v, (dict, list)))
        rows.append(f"| {i} | {r['step']} | {info} |")
    report = Report(title=f"prunekit run: {state.out_dir}", data={"recipe": recipe.to_dict(), "records": state.records},
                    summary=[("data", f"`{recipe.data}`"), ("steps", len(recipe.steps))],
                    sections=[Section("Steps", "\n".join(rows))])
    prov = complete(provenance, call="prunekit.recipe.run_recipe", config=recipe.to_dict(), dataset=recipe.data,
                    source=recipe.model.checkpoint or f"zoo:{recipe.model.name}")
    return run.write_report(report, prov)
