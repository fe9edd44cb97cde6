"""Model factories named in files: ``"module:function"`` names and the trust rule for calling them.

A prunekit file may name the factory that builds its architecture; importing and
calling it runs its code, so :func:`resolve_factory` only resolves names the caller
trusts (``trusted_factories=``, CLI ``--trust-factory``; see docs/security.md).
Re-exported by :mod:`prunekit.checkpoint`; a leaf module (imports only errors).
"""
from __future__ import annotations

import importlib
from typing import Callable

from prunekit.errors import CheckpointError

__all__ = ["check_factory_name", "factory_name", "resolve_factory"]


def factory_name(fn: Callable) -> str:
    """The ``"module:function"`` name a checkpoint stores for the factory ``fn``.

    Example:
        >>> import collections
        >>> factory_name(collections.OrderedDict)
        'collections:OrderedDict'
    """
    return f"{fn.__module__}:{fn.__qualname__}"


def check_factory_name(name) -> str:
    """``name`` if it has the form ``"module:function"``, else CheckpointError naming it."""
    if not isinstance(name, str) or name.count(":") != 1 or not all(name.partition(":")[::2]):
        raise CheckpointError(f"a trusted model factory is named 'module:function', got {name!r}")
    return name


def _trusted(trusted_factories) -> tuple:
    if trusted_factories is None:
        return ()
    if isinstance(trusted_factories, str) or callable(trusted_factories):
        trusted_factories = (trusted_factories,)  # one name or callable given bare
    return tuple(t if callable(t) else check_factory_name(t) for t in trusted_factories)


def _untrusted(target: str) -> CheckpointError:
    return CheckpointError(
        f"model factory {target!r} is not trusted: a prunekit file may only build zoo models or "
        f"factories you allow, because building one runs its code (Python: trusted_factories=[{target!r}]; "
        f"CLI: --trust-factory {target})")


def resolve_factory(target, trusted_factories=()) -> Callable:
    """The callable behind the factory name ``target``, if the caller trusts it.

    ``trusted_factories`` holds ``"module:function"`` names and callables; a
    callable matches when :func:`factory_name` of it equals ``target`` and is
    then called as given (nothing is imported). A name that no entry matches is
    refused with a CheckpointError naming it and how to allow it: the name comes
    from a file, and importing and calling what a file names runs its code.
    """
    if not isinstance(target, str):
        raise CheckpointError(f"model spec: 'factory' must be a 'module:function' string, got {target!r}")
    for t in _trusted(trusted_factories):
        if callable(t) and factory_name(t) == target:
            return t
        if t == target:
            mod_name, _, fn_name = target.partition(":")
            try:
                obj = importlib.import_module(mod_name)
                for part in fn_name.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as e:
                raise CheckpointError(f"cannot import model factory {target!r}: {e}") from None
            return obj
    raise _untrusted(target)
