"""What a method declares about itself: its options and where ``tuned`` may search them.

    class Toy(Method):
        OPTIONS = Method.OPTIONS + (Option("scale", NUMBER, 1.0, "multiplies every logit"),)
        SEARCH_SPACE = {"scale": Range(0.25, 4.0)}

An option has a name, a kind (what values it takes), a default and a one-line help. The
kinds normalise what they accept, so that ``temperature: 1`` and ``temperature: 1.0`` are one
configuration: numbers become floats and lists become lists of floats.

Two more kinds take whole numbers (``INT``: epochs, layer widths) and one of a fixed set of
words (``CHOICE``: ``choices`` lists them). ``low``/``high`` bound a number or an integer
(inclusive) where a value outside would be meaningless (a negative temperature).

A :class:`Range` says how ``bench tune`` searches an option: between ``low`` and ``high``,
log-uniform or uniform, one shared value or (where the option takes one value per exit)
one per exit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

BOOL = "bool"  # true or false
NUMBER = "number"  # one finite number
NUMBERS = "numbers"  # a non-empty list of finite numbers
NUMBER_OR_NUMBERS = "number or numbers"  # one number, or a list (e.g. one per exit)
INT = "integer"  # one whole number
CHOICE = "choice"  # one of the option's ``choices``
KINDS = (BOOL, NUMBER, NUMBERS, NUMBER_OR_NUMBERS, INT, CHOICE)

_EXPECTED = {BOOL: "true or false", NUMBER: "a finite number", NUMBERS: "a non-empty list",
             NUMBER_OR_NUMBERS: "a finite number or a non-empty list of them",
             INT: "an integer"}


class OptionError(ValueError):
    """A bad option value (or an option that does not exist, or that does not fit the
    backbone). ``option`` names it; ``expected``/``value``/``index`` say what was wrong
    where the value itself is at fault (``index``: the list item)."""

    def __init__(self, option: str, message: str, *, expected: str | None = None,
                 value: Any = None, index: int | None = None):
        self.option, self.expected, self.value, self.index = option, expected, value, index
        super().__init__(message)


@dataclass(frozen=True)
class Option:
    name: str
    kind: str  # one of KINDS
    default: Any  # None: the option may be left unset (null)
    help: str
    choices: tuple[str, ...] = ()  # CHOICE: the words it takes
    low: float | None = None  # NUMBER, INT: smallest value allowed (inclusive)
    high: float | None = None  # NUMBER, INT: largest value allowed (inclusive)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if (self.kind == CHOICE) != bool(self.choices):
            raise ValueError(f"option {self.name!r}: choices go with kind {CHOICE!r} only")

    def check(self, value: Any) -> Any:
        """``value`` normalised (numbers as floats); raises OptionError naming the option."""
        if value is None and self.default is None:
            return None
        if self.kind == BOOL:
            if not isinstance(value, bool):
                raise self._bad(value)
            return value
        if self.kind == CHOICE:
            if not isinstance(value, str) or value not in self.choices:
                raise self._bad(value, expected=f"one of {', '.join(self.choices)}")
            return value
        if self.kind == INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self._bad(value)
            return self._bounded(int(value))
        if self.kind in (NUMBER, NUMBER_OR_NUMBERS) and not isinstance(value, (list, tuple)):
            return self._number(value)
        if self.kind in (NUMBERS, NUMBER_OR_NUMBERS):
            if not isinstance(value, (list, tuple)) or not value:
                raise self._bad(value)
            return [self._number(v, i) for i, v in enumerate(value)]
        raise self._bad(value)

    def _number(self, value: Any, index: int | None = None) -> float:
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value)):
            raise self._bad(value, index, "a finite number")
        return self._bounded(float(value), index)

    def _bounded(self, value, index: int | None = None):
        if (self.low is not None and value < self.low) or \
                (self.high is not None and value > self.high):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            raise self._bad(value, index, f"a value in [{lo}, {hi}]")
        return value

    def _bad(self, value: Any, index: int | None = None, expected: str | None = None):
        expected = expected or _EXPECTED[self.kind] + (" or null" if self.default is None
                                                       else "")
        where = self.name + ("" if index is None else f"[{index}]")
        return OptionError(self.name, f"option {where}: expected {expected}, found {value!r}",
                           expected=expected, value=value, index=index)


@dataclass(frozen=True)
class Range:
    """Where ``tuned`` searches an option: low..high, log-uniform (``log``) or uniform.

    ``per_exit_param`` (e.g. ``"t_{n}"``) lets the option take one value per exit, for exits
    ``first_exit``..N, each an Optuna parameter of that name; None: one shared value only.
    ``per_exit`` is the default of the suite's ``tune.space.per_exit``."""

    low: float
    high: float
    log: bool = True
    per_exit: bool = False
    per_exit_param: str | None = None
    first_exit: int = 1

    def __post_init__(self):
        if not self.high > self.low or (self.log and self.low <= 0):
            raise ValueError(f"a search range needs low < high (and low > 0 when log), "
                             f"got {self.low}..{self.high} log={self.log}")
        if self.per_exit and self.per_exit_param is None:
            raise ValueError("per_exit needs per_exit_param (the per-exit parameter name)")

    def param_names(self, option: str, num_exits: int, per_exit: bool) -> list[str]:
        """Optuna parameter names: the option's own name, or one per exit."""
        if not per_exit:
            return [option]
        return [self.per_exit_param.format(n=n) for n in range(self.first_exit, num_exits + 1)]

    def value(self, option: str, params: dict, num_exits: int, per_exit: bool):
        """The option's value from a trial's parameters: a float or the per-exit list."""
        names = self.param_names(option, num_exits, per_exit)
        return [float(params[n]) for n in names] if per_exit else float(params[option])
