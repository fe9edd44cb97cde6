"""Config dataclasses <-> plain dicts (JSON/YAML), with type checking.

Every configurable part of prunekit is a dataclass. :func:`from_dict` builds one
from a dict read from YAML or JSON and raises :class:`~prunekit.errors.ConfigError`
naming the key for an unknown key or a value of the wrong type; :func:`to_dict`
is its inverse, so configs round-trip. A dataclass may list keys of an older
spelling in a class attribute ``RENAMED_KEYS = {old: "what replaced it"}``; giving
one is a ConfigError naming the new key.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Cfg:
    ...     lr: float = 0.1
    ...     epochs: int = 3
    >>> from_dict(Cfg, {"lr": 1})
    Cfg(lr=1.0, epochs=3)
    >>> to_dict(Cfg())
    {'lr': 0.1, 'epochs': 3}
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, Union

from prunekit.errors import ConfigError

T = TypeVar("T")


def to_dict(cfg) -> dict:
    """A dataclass instance as a dict of plain values (tuples become lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(value: Any, tp, where: str):
    """``value`` checked against the annotation ``tp`` (and converted: ints count as floats, lists as tuples).

    The one type check of configs: :func:`from_dict` uses it on every key, and dataclasses that check their
    own fields in ``__post_init__`` (``TrainConfig``) call it directly. ``where`` names the value in the
    ConfigError (``"steps[0].train.epochs"``).

    Example:
        >>> convert(3, float, "lr")
        3.0
        >>> convert("3", int, "epochs")
        Traceback (most recent call last):
        ...
        prunekit.errors.ConfigError: epochs: expected an integer, got '3'
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict | None, *, where: str = "") -> T:
    """Build the dataclass ``cls`` from ``data``, checking keys and types.

    Raises:
        ConfigError: unknown key, missing required key, or a value of the wrong type;
            the message names the key (with its path for nested configs).
    """
    data = {} if data is None else data
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    renamed = [k for k in unknown if k in getattr(cls, "RENAMED_KEYS", {})]
    if renamed:
        # a key of an older spelling: say what replaced it instead of listing every known key
        k = renamed[0]
        raise ConfigError(f"key {prefix + k} of {cls.__name__} is now {cls.RENAMED_KEYS[k]}")
    if unknown:
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
                          f"known: {', '.join(sorted(fields))}")
    kwargs = {name: convert(value, hints[name], prefix + name) for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from None
    except ValueError as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None
    return obj


def parse_assignment(item: str, flag: str = "--set") -> tuple[str, Any]:
    """Split one ``KEY=VALUE`` command-line item; the value is read as YAML (``safe_load``: no tags run code).

    Every ``--set`` style parser of the CLI goes through here, so a malformed item or a
    value YAML refuses (``!!python/...`` tags, an unclosed bracket) is one line naming the key.

    Example:
        >>> parse_assignment("ratio=0.5")
        ('ratio', 0.5)

    Raises:
        ConfigError: no ``=``, an empty key, or a value that is not valid (safe) YAML.
    """
    import yaml

    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r} (empty key)")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{flag} {key}: {value!r} is not a plain YAML value ({problem})") from None


def load_yaml(path, what: str = "config file") -> dict:
    """Read a YAML mapping from ``path`` with a clear error for a missing or malformed file.

    ``what`` names the file in the errors (``"recipe file"``: "x.yaml: no such recipe file");
    a syntax error says its line and column.
    """
    from pathlib import Path

    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such {what}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys to values")
    return data
