"""What methods declare about themselves: options (kinds, defaults, help), search spaces,
and the checks of methods.create and methods.register."""
import pytest
import torch

import methods
from methods import BOOL, NUMBER, NUMBER_OR_NUMBERS, NUMBERS, Method, Option, OptionError, Range


def test_every_method_declares_typed_options_with_help():
    for name in methods.names():
        options = methods.options_of(name)
        assert options and all(isinstance(o, Option) and o.kind in methods.KINDS
                               and o.help for o in options), name
        assert methods.create(name).options() == methods.defaults(name)


def test_the_shipped_methods_keep_their_option_names_and_defaults():
    assert methods.defaults("joint") == {"loss_weights": None}
    assert methods.defaults("boostnet") == {"temperature": 0.5, "grad_rescale": True,
                                            "joint": True, "loss_weights": None,
                                            "freeze_previous": True}
    assert methods.defaults("sequential") == {"temperature": 1.0, "freeze_previous": True,
                                              "loss_weights": None}


def test_search_spaces():
    assert methods.search_space("joint") == {}
    for name in ("boostnet", "sequential"):
        (rng,) = methods.search_space(name).values()
        assert (rng.low, rng.high, rng.log, rng.per_exit) == (0.05, 2.0, True, False)
        assert rng.param_names("temperature", 4, False) == ["temperature"]
        assert rng.param_names("temperature", 4, True) == ["t_2", "t_3", "t_4"]
        assert rng.value("temperature", {"t_2": 0.1, "t_3": 0.2, "t_4": 0.3}, 4, True) == \
            [0.1, 0.2, 0.3]


@pytest.mark.parametrize("kind,value,normalised", [
    (BOOL, True, True), (NUMBER, 1, 1.0), (NUMBERS, [1, 2.5], [1.0, 2.5]),
    (NUMBER_OR_NUMBERS, 2, 2.0), (NUMBER_OR_NUMBERS, (1, 2), [1.0, 2.0]),
])
def test_kinds_normalise(kind, value, normalised):
    got = Option("x", kind, None if kind == NUMBERS else value, "help").check(value)
    assert got == normalised and type(got) is type(normalised)


@pytest.mark.parametrize("kind,value,expected,index", [
    (BOOL, "no", "true or false", None),
    (NUMBER, [1.0], "a finite number", None),
    (NUMBER, float("nan"), "a finite number", None),
    (NUMBERS, [], "a non-empty list", None),
    (NUMBER_OR_NUMBERS, [1.0, "a"], "a finite number", 1),
])
def test_bad_values_name_the_option(kind, value, expected, index):
    with pytest.raises(OptionError) as err:
        Option("x", kind, 1.0 if kind != BOOL else False, "help").check(value)
    assert (err.value.option, err.value.expected, err.value.index) == ("x", expected, index)
    if index is not None:
        assert err.value.value == value[index]


def test_create_checks_options_against_the_declaration():
    with pytest.raises(OptionError, match="method 'boostnet': option grad_rescale: expected "
                                          "true or false") as err:
        methods.create("boostnet", grad_rescale="no")
    assert err.value.option == "grad_rescale"
    with pytest.raises(OptionError, match="no option 'temp'; options: temperature, "
                                          "grad_rescale") as err:
        methods.create("boostnet", temp=0.5)
    assert err.value.option == "temp"
    assert methods.create("sequential", temperature=1).temperature == 1.0


def test_a_subclass_that_only_combines_is_a_complete_method():
    @methods.register("test-mean-so-far")
    class MeanSoFar(Method):
        OPTIONS = Method.OPTIONS + (Option("scale", NUMBER, 2.0, "multiplies F_n"),)
        SEARCH_SPACE = {"scale": Range(0.5, 4.0)}

        def combine(self, outs):
            return [self.scale * sum(outs[: n + 1]) / (n + 1) for n in range(len(outs))]

    try:
        m = methods.create("test-mean-so-far", scale=3)
        outs = [torch.tensor([[1.0, 0.0]], requires_grad=True),
                torch.tensor([[0.0, 3.0]], requires_grad=True)]
        assert [o.tolist() for o in m.combine(outs)] == [[[3.0, 0.0]], [[1.5, 4.5]]]
        loss = m.loss(outs, torch.tensor([0]))  # the base joint loss on f_n
        loss.backward()
        assert outs[0].grad is not None and len(m.stages(2)) == 1
        assert methods.search_space("test-mean-so-far")["scale"].high == 4.0
        assert methods.defaults("test-mean-so-far") == {"loss_weights": None, "scale": 2.0}
    finally:
        methods.base.METHODS._entries.pop("test-mean-so-far")


@pytest.mark.parametrize("attrs,match", [
    ({"OPTIONS": (Option("loss", NUMBER, 1.0, "hides Method.loss"),)}, "would hide"),
    ({"OPTIONS": (Option("a", BOOL, 1.0, "bad default"),)}, "true or false"),
    ({"SEARCH_SPACE": {"nope": Range(0.1, 1.0)}}, "declared option"),
])
def test_register_rejects_bad_declarations(attrs, match):
    cls = type("Bad", (Method,), attrs)
    with pytest.raises(ValueError, match=match):
        methods.register("test-bad")(cls)
    assert "test-bad" not in methods.names()


def test_range_checks_itself():
    with pytest.raises(ValueError, match="low < high"):
        Range(2.0, 1.0)
    with pytest.raises(ValueError, match="low > 0"):
        Range(0.0, 1.0, log=True)


def test_integer_and_choice_kinds_and_bounds():
    epochs = methods.Option("epochs", methods.INT, 5, "help", low=1)
    assert epochs.check(3) == 3 and type(epochs.check(3)) is int
    for bad, expected in ((2.5, "an integer"), (True, "an integer"), (0, "a value in [1, inf]")):
        with pytest.raises(OptionError) as err:
            epochs.check(bad)
        assert err.value.expected == expected
    split = methods.Option("split", methods.CHOICE, "train", "help", choices=("train", "heldout"))
    assert split.check("heldout") == "heldout"
    with pytest.raises(OptionError, match="expected one of train, heldout, found 'test'"):
        split.check("test")
    share = Option("share", NUMBER, 0.5, "help", low=0.0, high=1.0)
    with pytest.raises(OptionError, match=r"expected a value in \[0, 1\], found 1.5"):
        share.check(1.5)
    with pytest.raises(ValueError, match="choices go with kind"):
        Option("x", NUMBER, 1.0, "help", choices=("a",))
