"""Every planner option in one dataclass: :class:`PlanOptions`.

:func:`prunekit.plan`, :func:`prunekit.prune`, the command ``prunekit prune``
and the recipe step ``prune`` all take a :class:`PlanOptions`. Each field's
help text lives here, in the field's metadata; the CLI builds its planner flags
from it (``metadata["flag"]``; fields without a flag are set with
``--set KEY=VALUE``). Adding a planner option is one field here plus its use in
:mod:`prunekit.engine.planner`.

Example:
    >>> opts = PlanOptions.from_dict({"criterion": "l2", "macs": 0.5, "ignored_layers": ["fc"]})
    >>> opts.to_dict()["macs"], opts.best_effort
    (0.5, True)
    >>> # prunekit.prune(model, x, opts)  or  prunekit.prune(model, x, criterion="l2", macs=0.5)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from prunekit.errors import ConfigError
from prunekit.validate import check_bool, check_choice, check_fraction, check_int, check_number

__all__ = ["NORMALIZATIONS", "PlanOptions", "TRACERS", "options_with", "step_options"]

TRACERS = ("auto", "fx", "export")
NORMALIZATIONS = ("mean", "max", "sum", "none")


def _opt(default=None, help: str = "", flag: str | None = None, goal: bool = False, factory=None, **extra):
    """A field whose metadata carries its help text and, for CLI options, its flag.

    ``goal=True`` puts the flag into the command's mutually exclusive "what to aim at"
    group (ratio, macs, params). Extra keys (``metavar``) are passed to argparse.
    """
    meta = {"help": help, "flag": flag, "goal": goal, **extra}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class PlanOptions:
    """How the planner chooses channels; round-trips to YAML/JSON (``from_dict`` / ``to_dict``).

    Layers are given by qualified module names (``"layer1.0.conv1"``); the Python
    API also takes the module objects. The ``metadata["help"]`` of every field is
    its documentation (printed by ``prunekit prune --help``).
    """

    criterion: str = _opt("l1", "channel importance: l1, l2, fpgm, bn_scale, lamp, random, taylor, synflow, snip, "
                                "grasp (taylor, snip and grasp need calibration data: Python API or "
                                "prune --method pai)", flag="--criterion")
    ratio: Optional[float] = _opt(None, "fraction of every group's channels to remove, in [0, 1) (default 0.5 "
                                        "when no target and no per-layer ratios are set)", flag="--ratio", goal=True)
    ratios: Dict[str, Any] = _opt(help="per-layer ratios {layer: ratio}; a group takes the ratio of the first of "
                                       "its producing layers listed (a container applies to every layer inside); "
                                       "with no ratio or target set, only the listed layers are pruned",
                                  factory=dict)
    ignored_layers: List[Any] = _opt(help="layers whose output channels are never pruned (their input channels "
                                          "may still shrink with the layers that feed them)",
                                     flag="--ignore", factory=list, metavar="LAYER")
    macs: Optional[float] = _opt(None, "keep this fraction of the MACs, in (0, 1], e.g. 0.5", flag="--macs",
                                 goal=True)
    params: Optional[float] = _opt(None, "keep this fraction of the parameters, in (0, 1]", flag="--params",
                                   goal=True)
    latency: Optional[float] = _opt(None, "keep this fraction of the dense model's measured latency, in (0, 1], "
                                          "e.g. 0.5: widths chosen on a per-layer latency table measured on this "
                                          "machine, then the pruned model timed against the dense one and re-planned "
                                          "until within latency_tolerance (see docs/pruning.md)", flag="--latency",
                                    goal=True)
    latency_batch: int = _opt(1, "batch size a latency budget is measured at (default 1)", flag="--latency-batch")
    latency_threads: Optional[int] = _opt(None, "torch threads a latency budget is measured at (default: the "
                                                "process's current count)", flag="--latency-threads")
    latency_tolerance: float = _opt(0.05, "a latency budget is met when the median over timing sessions of the "
                                          "measured ratio is within this fraction of the target (default 0.05: "
                                          "0.5 +- 0.025); an interval over sessions wider than this is reported "
                                          "as not measurable")
    latency_refinements: int = _opt(5, "re-plans with a corrected target after the first measurement, at most "
                                       "(default 5)")
    latency_sessions: int = _opt(5, "independent timing sessions per latency measurement (fresh model copies, "
                                    "own warm-up; the ratio is their median, the interval is over sessions; at "
                                    "least 3, default 5)")
    latency_rounds: int = _opt(10, "interleaved dense/pruned timing rounds per session (default 10)")
    latency_session_pause_s: float = _opt(0.25, "pause between two timing sessions, seconds (default 0.25)")
    latency_max_time_s: float = _opt(60.0, "no further timing session of a measurement starts after this many "
                                           "seconds (at least 3 sessions run; default 60)")
    latency_cache: Optional[str] = _opt(None, "folder of the cached per-layer latency tables (default "
                                              "$PRUNEKIT_CACHE_DIR/latency or ~/.cache/prunekit/latency; 'off': "
                                              "no cache)", flag="--latency-cache", metavar="DIR")
    tolerance: float = _opt(0.01, "allowed error of a MACs/params target, as a fraction of the original "
                                  "(default 0.01)", flag="--tolerance")
    best_effort: bool = _opt(True, "when whole channels cannot meet a reachable MACs/params target within "
                                   "tolerance, take the nearest reachable one and warn (default); "
                                   "--no-best-effort makes that an error", flag="--best-effort")
    global_ranking: bool = _opt(False, "rank normalised scores across all groups instead of pruning every "
                                       "group alike", flag="--global")
    round_to: Optional[int] = _opt(None, "keep channel counts multiples of this (hardware-friendly widths; "
                                         "default 1, and for a latency budget the width this CPU's kernels "
                                         "block channels by: 16 with AVX-512, else 8)", flag="--round-to")
    min_channels: int = _opt(1, "keep at least this many channels per group (default 1)", flag="--min-channels")
    max_ratio: float = _opt(0.9, "never remove more than this fraction of a group when aiming at a target or "
                                 "ranking globally, in [0, 1)")
    normalize: str = _opt("mean", "score normalisation across groups for global ranking: mean, max, sum, none")
    keep_scores: bool = _opt(False, "store every channel's score in the plan (a bigger JSON)")
    tracer: str = _opt("auto", "graph capture: auto (torch.fx; torch.export when fx cannot trace the root "
                               "forward), fx or export")
    steps: int = _opt(1, "prune iteratively in this many steps, step k reaching k/steps of the ratio or "
                         "target measured on the original model (prunekit.prune and the recipe step; a "
                         "plan is one step)")

    def __post_init__(self):
        # Checked here, so a recipe or --set value is refused when it is read, not mid-run.
        if not isinstance(self.criterion, str):  # the name itself is checked against CRITERIA when planning
            raise ConfigError(f"criterion must be a name such as 'l1', got {self.criterion!r}")
        self.ratio = check_fraction("ratio", self.ratio, allow_none=True)
        self.macs = check_fraction("macs", self.macs, allow_zero=False, allow_one=True, allow_none=True)
        self.params = check_fraction("params", self.params, allow_zero=False, allow_one=True, allow_none=True)
        self.latency = check_fraction("latency", self.latency, allow_zero=False, allow_one=True, allow_none=True)
        if sum(v is not None for v in (self.macs, self.params, self.latency)) > 1:
            raise ConfigError("give at most one of macs=, params= and latency= (--macs, --params, --latency)")
        self.latency_batch = check_int("latency_batch", self.latency_batch)
        self.latency_threads = check_int("latency_threads", self.latency_threads, allow_none=True)
        self.latency_tolerance = check_fraction("latency_tolerance", self.latency_tolerance, allow_zero=False)
        self.latency_refinements = check_int("latency_refinements", self.latency_refinements, minimum=0)
        from prunekit.measure.sessions import MIN_SESSIONS  # fewer give no interval over sessions

        self.latency_sessions = check_int("latency_sessions", self.latency_sessions, minimum=MIN_SESSIONS)
        self.latency_rounds = check_int("latency_rounds", self.latency_rounds, minimum=3)
        self.latency_session_pause_s = check_number("latency_session_pause_s", self.latency_session_pause_s,
                                                    minimum=0.0)
        self.latency_max_time_s = check_number("latency_max_time_s", self.latency_max_time_s, minimum=0.0)
        if self.latency_cache is not None and not isinstance(self.latency_cache, str):
            raise ConfigError(f"latency_cache must be a folder path or 'off', got {self.latency_cache!r}")
        self.max_ratio = check_fraction("max_ratio", self.max_ratio)
        self.tolerance = check_number("tolerance", self.tolerance, minimum=0.0)
        self.round_to = check_int("round_to", self.round_to, allow_none=True)
        self.min_channels = check_int("min_channels", self.min_channels)
        self.steps = check_int("steps", self.steps)
        for name in ("best_effort", "global_ranking", "keep_scores"):
            check_bool(name, getattr(self, name))
        check_choice("normalize", self.normalize, NORMALIZATIONS)
        check_choice("tracer", self.tracer, TRACERS)
        self.ratios = dict(self.ratios or {})
        for layer, r in self.ratios.items():
            self.ratios[layer] = check_fraction(f"ratio for {layer!r}", r)
        self.ignored_layers = list(self.ignored_layers or [])

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "prune") -> "PlanOptions":
        """Build from plain data; unknown keys or wrong values raise ConfigError naming the key."""
        from prunekit.config import from_dict

        return from_dict(cls, d, where=where)

    def to_dict(self) -> dict:
        """Plain data (the inverse of :meth:`from_dict`)."""
        from prunekit.config import to_dict

        return to_dict(self)

    @classmethod
    def names(cls) -> list[str]:
        """Every option's name, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @property
    def target(self) -> tuple[str, float] | None:
        """``("macs", 0.5)`` / ``("params", 0.4)`` when a target is set, else None."""
        if self.macs is not None:
            return "macs", self.macs
        if self.params is not None:
            return "params", self.params
        return None


def options_with(options: PlanOptions | None = None, overrides: dict | None = None) -> PlanOptions:
    """``options`` (or the defaults) with ``overrides`` (option name -> value) applied and checked.

    Raises:
        ConfigError: ``options`` is not a PlanOptions, or an override is no option's name
            (the message lists the valid names).

    Example:
        >>> options_with(PlanOptions(macs=0.5), {"tolerance": 0.03}).tolerance
        0.03
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(PlanOptions.names()))
    if unknown:
        raise ConfigError(f"unknown planner option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"valid: {', '.join(PlanOptions.names())}")
    if options is None:
        return PlanOptions(**overrides)
    if not isinstance(options, PlanOptions):
        raise ConfigError(f"options must be a PlanOptions, got {type(options).__name__} {options!r} "
                          "(pass the criterion by name: criterion='l1')")
    return dataclasses.replace(options, **overrides) if overrides else options


def step_options(options: PlanOptions, k: int, kept: float = 1.0) -> PlanOptions:
    """The one-step options of step ``k`` (1..``options.steps``) of iterative pruning.

    Step ``k`` reaches ``k/steps`` of the way to the final ratio or target, measured on
    the original model. For a MACs/params target, ``kept`` is the fraction of the
    original's MACs/params the current (already pruned) model keeps; the step aims at
    ``1 - (1 - target) * k / steps`` of the original, i.e. ``goal / kept`` of the
    current model. For ratios (uniform and per-layer), step ``k`` removes the share of
    the current channels that takes the kept fraction from ``1 - r (k-1)/steps`` to
    ``1 - r k/steps``. Pure.

    Example:
        >>> step_options(PlanOptions(ratio=0.5, steps=2), 2).ratio   # 0.75 -> 0.5 of the channels
        0.33333333333333337
        >>> round(step_options(PlanOptions(macs=0.4, steps=3), 2, kept=0.8).macs, 4)   # goal 0.6 of 0.8
        0.75
    """
    if options.steps == 1:
        return options
    if options.latency is not None:
        raise ConfigError("a latency budget is met in one step (it is measured on the pruned model): steps must "
                          f"be 1, got {options.steps}")
    n = options.steps
    target = options.target
    if target is not None:
        key, t = target
        goal = 1.0 - (1.0 - t) * k / n
        return dataclasses.replace(options, steps=1, **{key: min(1.0, goal / kept)})

    def share(r):
        before, after = 1.0 - r * (k - 1) / n, 1.0 - r * k / n
        return 1.0 - after / before

    ratio = options.ratio if options.ratio is not None or options.ratios else 0.5
    return dataclasses.replace(options, steps=1, ratio=None if ratio is None else share(ratio),
                               ratios={layer: share(r) for layer, r in options.ratios.items()})
