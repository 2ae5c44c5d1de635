"""Checks of plain (YAML) values that fail with a SuiteError naming the file, the key path,
what was expected and what was found."""
from __future__ import annotations

import copy
import math
import re
from typing import Any, Callable, NoReturn, Sequence

from bench.config.defaults import REQUIRED
from bench.errors import SuiteError

SEEDS = 2 ** 32  # seeds lie in [0, SEEDS)


def found(value: Any) -> str:
    """How an error message shows the value it found."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return f"a mapping {short(value)}"
    if isinstance(value, list):
        return f"a list {short(value)}"
    return f"{short(value)} ({type(value).__name__})"


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def join(path: str, key: str | int) -> str:
    """``methods`` + 2 -> ``methods[2]``; ``training`` + ``epochs`` -> ``training.epochs``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def named_key(path: str, mapping: dict, message: str) -> str:
    """The key of ``mapping`` an error message is about (the first it names), else ``path``."""
    named = [k for k in mapping if re.search(rf"\b{re.escape(k)}\b", message)]
    return join(path, named[0]) if named else path


class Checker:
    def __init__(self, file: str):
        self.file = file

    def fail(self, path: str, message: str) -> NoReturn:
        raise SuiteError(self.file, path, message)

    def expect(self, path: str, expected: str, value: Any) -> NoReturn:
        self.fail(path, f"expected {expected}, found {found(value)}")

    def mapping(self, value: Any, path: str, defaults: dict) -> dict:
        """A mapping whose keys are those of ``defaults``; missing (or null) keys get the
        default, ``REQUIRED`` ones must be there."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.expect(path or "the suite", "a mapping", value)
        for key in value:
            if key not in defaults:
                self.fail(join(path, str(key)),
                          f"unknown key {key!r}; allowed: {', '.join(defaults)}")
        out = {}
        for key, default in defaults.items():
            if key in value and (value[key] is not None or default is None
                                 or default is REQUIRED):
                out[key] = value[key]
            elif default is REQUIRED:
                self.fail(join(path, key), "required key is missing")
            else:
                out[key] = copy.deepcopy(default)
        return out

    def integer(self, value: Any, path: str, lo: int | None = None, null: bool = False,
                hi: int | None = None) -> int | None:
        if value is None and null:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.expect(path, "an integer" + (" or null" if null else ""), value)
        if lo is not None and value < lo:
            self.expect(path, f"an integer >= {lo}", value)
        if hi is not None and value > hi:
            self.expect(path, f"an integer <= {hi}", value)
        return value

    def seed(self, value: Any, path: str) -> int:
        """A seed: NumPy (and with it Optuna's samplers) takes integers in [0, 2**32)."""
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < SEEDS:
            self.expect(path, "a seed: an integer in [0, 2**32), at most 4294967295", value)
        return self.integer(value, path, lo=0)

    def number(self, value: Any, path: str, lo: float | None = None, hi: float | None = None,
               open_lo: bool = False, open_hi: bool = False) -> float:
        """A finite number, as a float (so that 1 and 1.0 are one configuration)."""
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value)):
            self.expect(path, "a finite number", value)
        if ((lo is not None and (value < lo or (open_lo and value == lo)))
                or (hi is not None and (value > hi or (open_hi and value == hi)))):
            interval = f"{'(' if open_lo else '['}{'-inf' if lo is None else lo}, " \
                       f"{'inf' if hi is None else hi}{')' if open_hi else ']'}"
            self.expect(path, f"a number in {interval}", value)
        return float(value)

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.expect(path, "true or false", value)
        return value

    def string(self, value: Any, path: str, pattern: re.Pattern | None = None,
               allowed: str = "") -> str:
        if not isinstance(value, str) or not value:
            self.expect(path, "a non-empty string", value)
        if pattern is not None and not pattern.fullmatch(value):
            self.expect(path, allowed, value)
        return value

    def choice(self, value: Any, path: str, choices: Sequence[str], what: str) -> str:
        if not isinstance(value, str) or value not in choices:
            self.fail(path, f"unknown {what} {short(value)}; known: {', '.join(choices)}")
        return value

    def items(self, value: Any, path: str, check: Callable[[Any, str], Any]) -> list:
        """A non-empty list, each item checked by ``check(item, item_path)``."""
        if not isinstance(value, list) or not value:
            self.expect(path, "a non-empty list", value)
        return [check(v, join(path, i)) for i, v in enumerate(value)]

    def plain(self, value: Any, path: str) -> Any:
        """Free-form data (overrides, options): JSON types only, string keys."""
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    self.expect(join(path, str(key)), "a string key", key)
            return {k: self.plain(v, join(path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.plain(v, join(path, i)) for i, v in enumerate(value)]
        if isinstance(value, float) and not math.isfinite(value):
            self.expect(path, "a finite number", value)
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        self.expect(path, "a string, number, boolean, null, list or mapping", value)
