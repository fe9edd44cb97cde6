"""prunekit.validate: exact values accepted, exact messages for what is refused."""
import math

import numpy as np
import pytest

from prunekit.errors import ConfigError, DataError
from prunekit.validate import (
    check_bool, check_choice, check_fraction, check_int, check_int_sequence, check_number, check_positive,
)


def test_fraction_bounds_and_types():
    assert check_fraction("r", 0) == 0.0 and isinstance(check_fraction("r", 0), float)
    assert check_fraction("r", np.float32(0.25)) == 0.25
    assert check_fraction("r", 1, allow_one=True) == 1.0
    assert check_fraction("r", None, allow_none=True) is None
    with pytest.raises(ConfigError, match=r"^r must be a number in \[0, 1\), got 1$"):
        check_fraction("r", 1)
    with pytest.raises(ConfigError, match=r"^r must be a number in \(0, 1\), got 0$"):
        check_fraction("r", 0, allow_zero=False)
    with pytest.raises(ConfigError, match="must be a number, got True"):
        check_fraction("r", True)
    with pytest.raises(ConfigError, match="finite"):
        check_fraction("r", math.nan)


def test_number_and_positive():
    assert check_number("x", -3, minimum=-5, maximum=5) == -3.0
    with pytest.raises(ConfigError, match=r"x must be a number in \[-5, 5\], got 6"):
        check_number("x", 6, minimum=-5, maximum=5)
    with pytest.raises(ConfigError, match="finite"):
        check_number("x", math.inf)
    assert check_number("x", math.inf, finite=False) == math.inf
    assert check_positive("lr", 0.1) == 0.1
    with pytest.raises(ConfigError, match=r"lr must be a number in \(0, inf\), got 0"):
        check_positive("lr", 0)
    with pytest.raises(ConfigError, match="got '1'"):
        check_positive("lr", "1")


def test_int_and_error_class():
    assert check_int("epochs", np.int64(3)) == 3 and type(check_int("epochs", np.int64(3))) is int
    assert check_int("epochs", 0, minimum=0) == 0
    with pytest.raises(ConfigError, match=r"^epochs must be an integer >= 1, got 0$"):
        check_int("epochs", 0)
    with pytest.raises(ConfigError, match="must be an integer, got 2.0"):
        check_int("epochs", 2.0)
    with pytest.raises(ConfigError, match="must be an integer, got False"):
        check_int("epochs", False)
    with pytest.raises(DataError, match=r"n must be an integer in \[1, 4\], got 5"):
        check_int("n", 5, maximum=4, error=DataError)


def test_bool_and_choice():
    assert check_bool("b", False) is False
    with pytest.raises(ConfigError, match="b must be true or false, got 1"):
        check_bool("b", 1)
    assert check_choice("c", "l2", ["l1", "l2"]) == "l2"
    with pytest.raises(ConfigError, match=r"c must be one of 'l1', 'l2', got 'x'"):
        check_choice("c", "x", ["l1", "l2"])


def test_int_sequence():
    assert check_int_sequence("cfg", (3, np.int64(4))) == [3, 4]
    assert check_int_sequence("input_size", 28, length=2, allow_scalar=True) == [28, 28]
    assert check_int_sequence("shape", np.array([1, 8, 8]), length=3) == [1, 8, 8]
    assert check_int_sequence("pad", [0, 2], minimum=0) == [0, 2]
    with pytest.raises(ConfigError, match=r"^shape\[1\] must be an integer >= 1, got 0$"):
        check_int_sequence("shape", (1, 0, 4), length=3)
    with pytest.raises(ConfigError, match=r"^cfg needs 3 entries, got 2$"):
        check_int_sequence("cfg", [1, 2], length=3)
    with pytest.raises(ConfigError, match=r"^cfg must not be empty$"):
        check_int_sequence("cfg", [])
    with pytest.raises(DataError, match=r"^size must be a list of 2 integers, got '32'$"):
        check_int_sequence("size", "32", length=2, allow_scalar=True, error=DataError)
    with pytest.raises(ConfigError, match=r"must be a list of integers, got 5"):
        check_int_sequence("cfg", 5)  # a scalar only where allow_scalar says so
    with pytest.raises(ConfigError, match=r"cfg\[0\] must be an integer, got True"):
        check_int_sequence("cfg", [True])


def test_find_non_finite_counts_exactly_and_ignores_overflowing_sums():
    import torch

    from prunekit.validate import find_non_finite

    t = torch.zeros(10)
    t[3], t[7] = float("inf"), float("-inf")     # the sum is NaN: counted element by element
    items = [("ints", torch.tensor([1, 2])), ("ok", torch.ones(2, 2)), ("t", t), ("later", torch.full((2,), float("nan")))]
    assert find_non_finite(items) == ("t", 2)
    assert find_non_finite([("big", torch.full((8,), 3.0e38))]) is None   # finite values whose sum overflows
    assert find_non_finite([("h", torch.tensor([1.0, float("nan")], dtype=torch.float16))]) == ("h", 1)
    assert find_non_finite([]) is None
