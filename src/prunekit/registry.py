"""Name registries for models, criteria, methods and other pluggable parts.

A :class:`Registry` maps a name to an object (usually a factory function).
Registering a name twice is an error, and looking up an unknown name lists the
known ones, so typos are caught early.

Example:
    >>> reg = Registry("criterion")
    >>> @reg.register("l1")
    ... def l1(x): return x.abs().sum()
    >>> reg.get("l1") is l1
    True
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from prunekit.errors import PrunekitError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of objects; see the module docstring."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an object under ``name``; duplicate names raise."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name``; raises ``KeyError`` if the name is taken."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._items:
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; unknown names raise a PrunekitError listing the known ones."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise PrunekitError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
