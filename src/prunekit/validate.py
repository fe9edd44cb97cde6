"""Checks of user-supplied values, in one place, with errors that name the value.

Every public function here takes the value's name as the user knows it (a CLI
flag, a config key, ``"arch: option 'depth'"``), returns the value in its
canonical Python type, and raises a :class:`~prunekit.errors.PrunekitError`
subclass (``ConfigError`` unless ``error=`` says otherwise) whose message names
the value and says what was expected. They are used instead of ``assert``
(which ``python -O`` removes) and instead of hand-written ``if`` chains, so the
same mistake gets the same message everywhere.

Booleans are never accepted where a number is expected (``True`` is an ``int``
in Python, but ``ratio: true`` in a YAML recipe is a typo, not ``1``), and NaN
or infinity is never accepted as a number unless ``finite=False``.

Example:
    >>> check_fraction("ratio", 0.5)
    0.5
    >>> check_int("epochs", 0, minimum=0)
    0
    >>> check_choice("criterion", "l1", ["l1", "l2"])
    'l1'
    >>> check_fraction("ratio", 1.5)
    Traceback (most recent call last):
    ...
    prunekit.errors.ConfigError: ratio must be a number in [0, 1), got 1.5
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable, Sequence

from prunekit.errors import ConfigError, PrunekitError

__all__ = ["check_bool", "check_choice", "check_fraction", "check_int", "check_int_sequence", "check_number",
           "check_positive"]


def _is_number(value) -> bool:
    # numbers.Real covers int, float and numpy scalars; bool is excluded on purpose (see module docstring).
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
                 low_open: bool = False, high_open: bool = False, finite: bool = True,
                 allow_none: bool = False, error: type[PrunekitError] = ConfigError) -> float | None:
    """``value`` as a float, or ``error`` unless it is a number within the given bounds.

    Args:
        name: how the user knows the value (flag or key), used in the message.
        minimum, maximum: inclusive bounds (exclusive with ``low_open`` / ``high_open``); None = unbounded.
        finite: reject NaN and infinities (default).
        allow_none: return None for None instead of raising.
        error: the PrunekitError subclass to raise.
    """
    if value is None and allow_none:
        return None
    if not _is_number(value):
        raise error(f"{name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise error(f"{name} must be a finite number, got {value!r}")
    too_low = minimum is not None and (v <= minimum if low_open else v < minimum)
    too_high = maximum is not None and (v >= maximum if high_open else v > maximum)
    if too_low or too_high:
        lo = "-inf" if minimum is None else f"{minimum:g}"
        hi = "inf" if maximum is None else f"{maximum:g}"
        interval = f"{'(' if low_open or minimum is None else '['}{lo}, {hi}{')' if high_open or maximum is None else ']'}"
        raise error(f"{name} must be a number in {interval}, got {value!r}")
    return v


def check_fraction(name: str, value, *, allow_zero: bool = True, allow_one: bool = False,
                   allow_none: bool = False, error: type[PrunekitError] = ConfigError) -> float | None:
    """``value`` as a float in [0, 1) (``allow_zero=False``: (0, 1; ``allow_one=True``: up to 1 inclusive)."""
    return check_number(name, value, minimum=0.0, maximum=1.0, low_open=not allow_zero, high_open=not allow_one,
                        allow_none=allow_none, error=error)


def check_positive(name: str, value, *, allow_none: bool = False,
                   error: type[PrunekitError] = ConfigError) -> float | None:
    """``value`` as a float > 0 (finite)."""
    return check_number(name, value, minimum=0.0, low_open=True, allow_none=allow_none, error=error)


def check_int(name: str, value, *, minimum: int | None = 1, maximum: int | None = None,
              allow_none: bool = False, error: type[PrunekitError] = ConfigError) -> int | None:
    """``value`` as an int within [minimum, maximum] (default: a positive integer).

    Integral numpy scalars are accepted; floats (even ``3.0``) and bools are not.
    """
    if value is None and allow_none:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise error(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        if maximum is None:
            raise error(f"{name} must be an integer >= {minimum}, got {value!r}")
        if minimum is None:
            raise error(f"{name} must be an integer <= {maximum}, got {value!r}")
        raise error(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")
    return v


def check_int_sequence(name: str, values, *, length: int | None = None, minimum: int | None = 1,
                       maximum: int | None = None, allow_scalar: bool = False,
                       error: type[PrunekitError] = ConfigError) -> list[int]:
    """``values`` as a non-empty list of ints (shapes, channel lists, sizes), each checked as :func:`check_int`.

    Args:
        length: the exact number of entries, or None for any (but at least one).
        minimum, maximum: bounds of every entry (default: positive integers).
        allow_scalar: a single int stands for ``length`` copies of itself (``input_size: 32`` = ``(32, 32)``).

    Entries are named ``name[i]`` in messages. A string is not a sequence of ints here.

    Example:
        >>> check_int_sequence("input_size", 28, length=2, allow_scalar=True)
        [28, 28]
        >>> check_int_sequence("shape", (1, 0, 4), length=3)
        Traceback (most recent call last):
        ...
        prunekit.errors.ConfigError: shape[1] must be an integer >= 1, got 0
    """
    if allow_scalar and length is not None and isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = [values] * length
    # numpy arrays and tuples are sequences of numbers too; str/bytes/dicts are not what a user meant
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) and not hasattr(values, "tolist"):
        what = f"{length} integers" if length is not None else "integers"
        raise error(f"{name} must be a list of {what}, got {values!r}")
    items = values.tolist() if hasattr(values, "tolist") and not isinstance(values, Sequence) else list(values)
    if not isinstance(items, list):  # a 0-d array
        raise error(f"{name} must be a list of integers, got {values!r}")
    out = [check_int(f"{name}[{i}]", v, minimum=minimum, maximum=maximum, error=error) for i, v in enumerate(items)]
    if length is not None and len(out) != length:
        raise error(f"{name} needs {length} entries, got {len(out)}")
    if not out:
        raise error(f"{name} must not be empty")
    return out


def check_bool(name: str, value, *, error: type[PrunekitError] = ConfigError) -> bool:
    """``value`` if it is a bool (not 0/1, not "yes"), else ``error``."""
    if not isinstance(value, bool):
        raise error(f"{name} must be true or false, got {value!r}")
    return value


def check_choice(name: str, value, choices: Iterable, *, error: type[PrunekitError] = ConfigError):
    """``value`` if it is one of ``choices``, else ``error`` listing the valid ones."""
    choices = tuple(choices)
    if value not in choices:
        raise error(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def find_non_finite(named_tensors) -> tuple[str, int] | None:
    """``(name, count)`` of the first floating-point tensor holding NaN or infinity, or None if all are finite.

    ``named_tensors`` is an iterable of ``(name, tensor)`` (e.g. ``model.state_dict().items()``);
    other values are skipped. A tensor's sum is non-finite whenever one of its elements is
    (inf + x = inf, inf - inf = NaN, NaN + x = NaN), so one cheap reduction per tensor clears
    the common case (about 8x faster than ``isfinite(t).all()`` on ResNet-50); only a tensor
    whose sum is non-finite (or overflows) is counted element by element.

    Example:
        >>> import torch
        >>> find_non_finite([("a", torch.ones(3)), ("b", torch.tensor([1.0, float("nan"), float("inf")]))])
        ('b', 2)
        >>> find_non_finite([("big", torch.full((4,), 3e38))]) is None   # the sum overflows; the values are finite
        True
    """
    import torch

    for name, t in named_tensors:
        if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
            continue
        if bool(torch.isfinite(t.sum())):
            continue
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            return name, bad
    return None

def find_invalid_values(model) -> tuple[str, int] | None:
    """``(name, count)`` of the first parameter holding NaN or infinity, or buffer holding NaN; None if none does.

    Buffers may hold infinity by design (timm's clipped linear layers default
    their clamp bounds to -inf/+inf, attention masks hold -inf), so only NaN
    marks a broken buffer; a parameter must be finite.

    Example:
        >>> import torch
        >>> m = torch.nn.Linear(2, 2)
        >>> m.register_buffer("lo", torch.tensor(-float("inf")))
        >>> find_invalid_values(m) is None
        True
        >>> _ = m.lo.fill_(float("nan"))
        >>> find_invalid_values(m)
        ('lo', 1)
    """
    import torch

    bad = find_non_finite(model.named_parameters())
    if bad is not None:
        return bad
    for name, b in model.named_buffers():
        if isinstance(b, torch.Tensor) and b.is_floating_point() and bool(torch.isnan(b).any()):
            return name, int(torch.isnan(b).sum())
    return None

