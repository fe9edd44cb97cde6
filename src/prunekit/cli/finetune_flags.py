"""The fine-tuning flags of every command that fine-tunes, generated from :class:`prunekit.train.FinetuneConfig`.

Each field of FinetuneConfig whose metadata has a ``help`` text becomes a flag
``--finetune-<field>`` (``--finetune-epochs``, ``--finetune-lr``,
``--finetune-label-smoothing``, ...) with that help, its type from the field's
annotation and the field's ``choices``. ``prunekit prune --method``, ``sparsify``,
``search``, ``compress`` (also ``--retrain-*`` for its masked retraining) and
``binarize`` all add them here, so a fine-tuning option added to the dataclass is
a flag of every one of them. Flags left out keep the ``--config`` / recipe value,
then the family's default.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_finetune_arguments(p)
    >>> args = p.parse_args(["--finetune-epochs", "3", "--finetune-label-smoothing", "0.1"])
    >>> finetune_overrides(args)
    {'epochs': 3, 'label_smoothing': 0.1}
"""
from __future__ import annotations

import argparse
import dataclasses
import typing


def flag_fields(cls=None) -> list[tuple[str, type, str, tuple | None]]:
    """``(name, python type, help, choices)`` of every field of ``cls`` (FinetuneConfig) that is a flag."""
    from prunekit.train import FinetuneConfig

    cls = cls or FinetuneConfig
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help")
        if not help_text:
            continue
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) is typing.Union and len(args) == 1:  # Optional[X] -> X
            tp = args[0]
        out.append((f.name, tp, help_text, f.metadata.get("choices")))
    return out


def _flag_name(prefix: str, name: str) -> str:
    return f"--{prefix + '-' if prefix else ''}{name.replace('_', '-')}"


def _dest(prefix: str, name: str) -> str:
    return f"{prefix}_{name}" if prefix else name


def add_finetune_arguments(parser, *, prefix: str = "finetune", what: str = "fine-tuning",
                           aliases: dict[str, list[str]] | None = None) -> None:
    """Add ``--<prefix>-<field>`` for every flag field of FinetuneConfig to ``parser`` (an argument group).

    Args:
        prefix: flag and ``args`` prefix (``"retrain"`` gives ``--retrain-epochs`` into ``args.retrain_epochs``;
            ``""`` gives plain ``--epochs`` into ``args.epochs``, as ``prunekit train`` uses them).
        what: what the flags configure (the title of their group in ``--help``).
        aliases: extra option strings of a field (``{"epochs": ["--epochs"]}``) kept for a command's older flags.
    """
    if prefix:
        described = (f"--{prefix}-* flags: keys of prunekit.train.FinetuneConfig "
                     "(default: the --config value, then the method's own)")
    else:
        described = "keys of prunekit.train.TrainConfig (default: the --config value, then TrainConfig's)"
    group = parser.add_argument_group(what, described)
    for name, tp, help_text, choices in flag_fields():
        opts = [_flag_name(prefix, name), *((aliases or {}).get(name, []))]
        kw = {"dest": _dest(prefix, name), "default": None, "help": help_text}
        if tp is bool:
            group.add_argument(*opts, action=argparse.BooleanOptionalAction, **kw)
        else:
            metavar = None if choices else {int: "N", float: "X"}.get(tp, "VALUE")
            group.add_argument(*opts, type=tp, choices=choices, metavar=metavar, **kw)


def finetune_overrides(args, *, prefix: str = "finetune") -> dict:
    """``{field: value}`` of the ``--<prefix>-*`` flags given on the command line (pure)."""
    out = {}
    for name, *_ in flag_fields():
        value = getattr(args, _dest(prefix, name), None)
        if value is not None:
            out[name] = value
    return out


def merge_finetune(config: dict, args, *, key: str = "finetune", prefix: str = "finetune") -> dict:
    """``config`` (a dict of a family's config keys) with the given ``--<prefix>-*`` flags merged into ``config[key]``.

    Example:
        >>> import argparse
        >>> merge_finetune({"finetune": {"lr": 0.1}}, argparse.Namespace(finetune_epochs=2))
        {'finetune': {'lr': 0.1, 'epochs': 2}}
    """
    flags = finetune_overrides(args, prefix=prefix)
    if not flags:
        return config
    current = config.get(key) or {}
    if not isinstance(current, dict):
        from prunekit.errors import ConfigError

        raise ConfigError(f"{key} must be a mapping of fine-tuning keys (epochs, lr, ...), got {current!r}")
    return {**config, key: {**current, **flags}}
