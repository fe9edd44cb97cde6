"""The training configuration: one dataclass that round-trips through dict, JSON and YAML.

Example:
    >>> cfg = TrainConfig(epochs=3, lr=0.05, schedule="step", milestones=[2])
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> TrainConfig.from_dict({"epoch": 3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    prunekit.errors.ConfigError: unknown key epoch for TrainConfig; known: augment, batch_size, ...
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from prunekit.errors import ConfigError

OPTIMIZER_NAMES = ("sgd", "adam", "adamw")
SCHEDULE_NAMES = ("cosine", "step", "constant")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (see ``docs/train.md``).

    Attributes:
        epochs: number of passes over the training set (0 only evaluates).
        batch_size: samples per optimizer step *per process* (the global batch under
            ``torchrun`` is ``batch_size * world_size``).
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"`` (see :data:`prunekit.train.OPTIMIZERS`).
        lr: peak learning rate (after warmup).
        momentum: SGD momentum (ignored by Adam/AdamW).
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty (decoupled for AdamW), applied to every parameter.
        schedule: ``"cosine"`` (annealed to 0 over the run, per step), ``"step"`` (multiply by
            ``gamma`` at each epoch in ``milestones``) or ``"constant"``.
        milestones: epochs at which ``"step"`` decays the rate; empty means 50% and 75% of
            ``epochs``, the schedule of Li et al. 2017 and Liu et al. 2017 (Network Slimming).
        gamma: decay factor of the ``"step"`` schedule.
        warmup_epochs: linear warmup length in epochs (fractions allowed), per step.
        label_smoothing: cross-entropy label smoothing (Szegedy et al. 2016).
        seed: seeds data order, augmentation and dropout; same seed, same weights.
        augment: use ``prunekit.data.default_augment(data)`` on training batches.
        eval_every: evaluate on the test split every N epochs (and always after the
            last one); 0 evaluates only after the last epoch.
        eval_batch_size: batch size of evaluation.
        progress: show a tqdm bar per epoch.
        num_threads: ``torch.set_num_threads`` during :meth:`Trainer.fit` (restored after);
            None leaves torch's setting alone.
        deterministic: ``torch.use_deterministic_algorithms(True)`` during the run (needed
            for bit-exact GPU runs; CPU runs with a fixed thread count are exact anyway).
        checkpoint_every: write ``last.pt`` every N epochs (and always after the last
            one); 0 writes it only at the end.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None picks CUDA when available.
        distributed: True forces ``torch.distributed`` data parallelism, False forbids it,
            None (default) turns it on when ``WORLD_SIZE`` > 1 (i.e. under ``torchrun``).
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    augment: bool = True
    eval_every: int = 1
    eval_batch_size: int = 512
    progress: bool = True
    num_threads: Optional[int] = None
    deterministic: bool = False
    checkpoint_every: int = 1
    device: Optional[str] = None
    distributed: Optional[bool] = None

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
        self._check_values()

    def _check_values(self) -> None:
        if self.epochs < 0:
            raise ConfigError(f"train config key 'epochs' must be >= 0, got {self.epochs}")
        for key in ("batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train config key {key!r} must be >= 1, got {getattr(self, key)}")
        if self.optimizer not in OPTIMIZER_NAMES:
            raise ConfigError(f"train config key 'optimizer' must be one of {', '.join(OPTIMIZER_NAMES)}; "
                              f"got {self.optimizer!r}")
        if self.schedule not in SCHEDULE_NAMES:
            raise ConfigError(f"train config key 'schedule' must be one of {', '.join(SCHEDULE_NAMES)}; "
                              f"got {self.schedule!r}")
        if not self.lr > 0:
            raise ConfigError(f"train config key 'lr' must be > 0, got {self.lr}")
        for key in ("momentum", "weight_decay", "warmup_epochs", "gamma"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train config key {key!r} must be >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"train config key 'label_smoothing' must be in [0, 1), got {self.label_smoothing}")
        for key in ("eval_every", "checkpoint_every"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train config key {key!r} must be >= 0, got {getattr(self, key)}")
        if self.seed < 0:
            raise ConfigError(f"train config key 'seed' must be >= 0, got {self.seed}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"train config key 'num_threads' must be >= 1 or null, got {self.num_threads}")
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigError("train config key 'milestones' must be increasing positive epochs, "
                              f"got {self.milestones}")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ConfigError("train config key 'nesterov' needs momentum > 0")

    # ---- round trips -------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain JSON/YAML-able dict of every field."""
        from prunekit.config import to_dict

        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a (possibly partial) dict; unknown keys or wrong types raise :class:`ConfigError`."""
        from prunekit.config import from_dict

        return from_dict(cls, d)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated like the constructor)."""
        return self.from_dict({**self.to_dict(), **changes})

    def to_json(self) -> str:
        """The config as a JSON string."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_yaml(self) -> str:
        """The config as a YAML document."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a YAML or JSON file (a mapping of config keys); errors name the file."""
        from prunekit.config import load_yaml  # YAML is a superset of JSON: one parser reads both

        data = load_yaml(path)
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{Path(path)}: {e}") from None


# ---- validation helpers (pure) -------------------------------------------------------------------


def _coerce(key: str, value, hint):
    """Check ``value`` against the annotation ``hint``; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union and type(None) in args:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"train config key {key!r} must be a list, got {type(value).__name__} {value!r}")
        return [_coerce(key, v, args[0]) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"train config key {key!r} must be true/false, got {type(value).__name__} {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"train config key {key!r} must be an integer, got {type(value).__name__} {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"train config key {key!r} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"train config key {key!r} must be a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported annotation {hint!r} for {key}")  # a bug in this file, not user input
