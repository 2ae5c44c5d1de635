"""bench.registry: the one registry behind methods, backbones, data sets, criteria and
combiners."""
import pytest

import methods
from bench import backbones, data
from bench.evaluate import combiners, criteria
from bench.registry import Registry, UnknownName


def test_register_get_and_names():
    reg = Registry("widget")

    @reg.register("b")
    def b():
        return 2

    reg.register("a", make=lambda obj: ("made", obj))(len)
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and len(reg) == 2
    assert reg.get("b") is b and reg.get("a") == ("made", len)
    assert "a" in reg and "c" not in reg and ["unhashable"] not in reg


def test_a_name_is_registered_once():
    reg = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", 2)
    assert reg.get("a") == 1
    with pytest.raises(ValueError, match="non-empty name"):
        reg.add("", 3)


def test_an_unknown_name_lists_the_registered_ones():
    reg = Registry("widget")
    reg.add("b", 1)
    reg.add("a", 1)
    with pytest.raises(UnknownName) as err:
        reg.get("c")
    assert str(err.value) == "unknown widget 'c'; registered: a, b"  # not quoted like KeyError
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    with pytest.raises(UnknownName, match="unknown widget"):
        reg.get(["unhashable"])
    with pytest.raises(UnknownName, match="registered: none"):
        Registry("widget").get("a")


@pytest.mark.parametrize("lookup, what", [
    (lambda: methods.create("nope"), "method"),
    (lambda: backbones.create("nope"), "backbone"),
    (lambda: data.get("nope"), "data set"),
    (lambda: criteria.create("nope"), "exit criterion"),
    (lambda: combiners.create("nope"), "combiner"),
])
def test_every_registry_of_the_project_is_one(lookup, what):
    with pytest.raises(UnknownName, match=rf"^unknown {what} 'nope'; registered: \w"):
        lookup()
