import pytest

from prunekit.errors import PrunekitError
from prunekit.registry import Registry


def test_register_and_get():
    reg = Registry("thing")

    @reg.register("a")
    def a():
        return 1

    assert reg.get("a") is a
    assert reg.names() == ["a"]
    assert "a" in reg and "b" not in reg
    assert len(reg) == 1


def test_duplicate_name_is_an_error():
    reg = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(KeyError, match="already registered"):
        reg.add("a", 2)
    assert reg.get("a") == 1


def test_unknown_name_lists_known_ones():
    reg = Registry("criterion")
    reg.add("l1", 1)
    reg.add("l2", 2)
    with pytest.raises(PrunekitError, match=r"unknown criterion 'l3'; known: l1, l2"):
        reg.get("l3")


def test_bad_names_rejected():
    reg = Registry("thing")
    with pytest.raises(TypeError):
        reg.add("", 1)
